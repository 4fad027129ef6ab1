// The scan policy: rules as data (rules/policy/*.json), loaded and validated here.
//
// Three kinds of file, each picked by its "schema" field:
//   moat.policy.severities/v1  {"severities": {rule id: severity name}}
//   moat.policy.setuid/v1      {"distributions": [{name, os_release_ids, setuid: [path], setgid: [path]}]}
//   moat.policy.sensitive/v1   {"patterns": [sensitive pattern], "protected": [protected files]}
// Every object may carry a "comment"; any other unknown key is an error, so a
// typo in a custom policy fails loudly instead of silently matching nothing.
// Sensitive and protected patterns carry `examples` and `negative_examples`
// that the loader runs: a policy whose patterns do not match their own
// examples is rejected (Nosey Parker's self-testing rules).
//
// This library knows nothing of the scanner: severities are kept as their
// names (critical|high|medium|low|info) and rule ids as strings; the scanner's
// check registry (scanner/checks/checks.h) cross-checks the ids.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "storage/result.h"

namespace moat::policy {

struct PolicyFile {
  std::string name;  // for messages: "severities.json"
  std::string text;
};

// The files of rules/policy/, embedded at build time (embed.cmake).
const std::vector<PolicyFile>& builtin_policy_files();

// True for critical, high, medium, low, info.
bool is_severity_name(std::string_view s);

enum class Kind { File, Dir };

// A "should not ship" file: matched by name/path first (the cheap gate, no
// content read), then by size and content markers on the first kContentWindow bytes.
struct SensitivePattern {
  std::string rule;
  Kind kind = Kind::File;
  std::vector<std::string> names;          // fnmatch globs on the last path component
  std::vector<std::string> paths;          // fnmatch globs on the absolute path, FNM_PATHNAME
  std::vector<std::string> except_names;   // globs on the last component that veto a match
  std::vector<std::string> content_markers;  // any one must occur; empty = no content check
  uint64_t min_size = 0;
  std::vector<std::string> examples, negative_examples;

  bool matches_path(std::string_view path) const;
  bool needs_content() const { return !content_markers.empty(); }
  // `head` is the first kContentWindow bytes of the file.
  bool matches_content(std::string_view head) const;
};
inline constexpr size_t kContentWindow = 64 * 1024;

// Files that must not be readable by others (/etc/shadow, private keys).
struct ProtectedFiles {
  std::string rule;
  std::vector<std::string> paths;  // fnmatch globs on the absolute path, FNM_PATHNAME
  std::vector<std::string> examples, negative_examples;
  bool matches(std::string_view path) const;
};

// Setuid/setgid files a distribution ships on purpose, as canonical merged-/usr paths.
struct Distribution {
  std::string name;
  std::vector<std::string> os_release_ids;
  std::set<std::string, std::less<>> setuid, setgid;
  // Matches the path and its merged-/usr form (/bin/su and /usr/bin/su alike).
  bool expects(std::string_view path, bool setgid_bit) const;
};

struct Policy {
  std::map<std::string, std::string, std::less<>> severities;  // rule id -> severity name
  std::vector<Distribution> distributions;
  std::vector<SensitivePattern> sensitive;
  std::vector<ProtectedFiles> protected_files;

  std::optional<std::string> severity_of(std::string_view rule) const;
  // First pattern (file order) of the right kind whose name/path gate matches.
  // Content and size checks are the caller's second stage.
  const SensitivePattern* match_sensitive(std::string_view path, bool is_dir) const;
  const ProtectedFiles* match_protected(std::string_view path) const;
  // The distribution for an image whose /etc/os-release says `ids` (ID first,
  // then ID_LIKE in order), or null: unknown distributions expect nothing.
  const Distribution* distribution_for(const std::vector<std::string>& ids) const;
};

// Parses and validates policy files; later files add to or override earlier
// ones (a severity set twice takes the later value). Runs every example.
Result<Policy> parse_policy(const std::vector<PolicyFile>& files);
// builtin_policy_files() parsed once; an error here is a build defect, but it
// is still returned rather than asserted.
const Result<Policy>& builtin_policy();

// The merged-/usr form of a path: /bin/x -> /usr/bin/x, /sbin, /lib, /lib32,
// /lib64, /libx32 likewise; other paths unchanged.
std::string usr_merged(std::string_view path);

}  // namespace moat::policy
