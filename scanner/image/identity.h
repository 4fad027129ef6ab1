// The image's own users and groups, parsed from its /etc/passwd, /etc/group
// and /etc/shadow text. Never NSS, never the host's database: uid 1000 in an
// image is whoever the image says it is.
//
// Parsing is lenient the way glibc's files backend is: comments ('#'), blank
// lines and NIS compat lines ('+', '-') are skipped; a malformed line (wrong
// field count, non-numeric or out-of-range id) is skipped and described in
// `errors` (a per-file problem for the report, never a failed scan).
// Name lookups return the first entry with the id, as getpwuid() does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "rules/policy/policy.h"
#include "scanner/report/findings.h"

namespace moat {

struct PasswdEntry {
  std::string name, password;  // password: "x" (see shadow), "*", "!", "" (none!) or a hash
  uint32_t uid = 0, gid = 0;
  std::string gecos, home, shell;
  size_t line = 0;  // 1-based
};

struct GroupEntry {
  std::string name, password;
  uint32_t gid = 0;
  std::vector<std::string> members;
  size_t line = 0;
};

struct ShadowEntry {
  std::string name, password;  // "*", "!", "!hash" locked; "" no password
  size_t line = 0;
};

struct Identity {
  std::vector<PasswdEntry> users;
  std::vector<GroupEntry> groups;
  std::vector<ShadowEntry> shadow;
  std::vector<std::string> errors;  // "/etc/passwd:7: ..." per malformed line

  std::optional<std::string> user_name(uint32_t uid) const;
  std::optional<std::string> group_name(uint32_t gid) const;
  bool has_uid(uint32_t uid) const { return uid_names_.count(uid) != 0; }
  bool has_gid(uint32_t gid) const { return gid_names_.count(gid) != 0; }
  // Owner with names filled in where the image defines them.
  Owner owner(uint32_t uid, uint32_t gid) const;

  // Builds the lookup maps; parse_identity() calls it.
  void index();

 private:
  std::unordered_map<uint32_t, std::string> uid_names_, gid_names_;
};

std::vector<PasswdEntry> parse_passwd(std::string_view text, std::vector<std::string>* errors);
std::vector<GroupEntry> parse_group(std::string_view text, std::vector<std::string>* errors);
std::vector<ShadowEntry> parse_shadow(std::string_view text, std::vector<std::string>* errors);

// Any of the texts may be empty (file absent): an image without /etc/passwd
// simply defines no names.
Identity parse_identity(std::string_view passwd, std::string_view group, std::string_view shadow);

}  // namespace moat
