#include "scanner/image/identity.h"

#include <charconv>
#include <map>


namespace moat {

namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (true) {
    size_t next = s.find(sep, pos);
    if (next == std::string_view::npos) {
      out.push_back(s.substr(pos));
      return out;
    }
    out.push_back(s.substr(pos, next - pos));
    pos = next + 1;
  }
}

// Ids are decimal 0..2^32-2; 4294967295 is (uid_t)-1, "no id", never valid.
std::optional<uint32_t> parse_id(std::string_view s) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v >= 0xffffffffull) return std::nullopt;
  return static_cast<uint32_t>(v);
}

// Calls fn(line_number, fields) for each account line; skips what glibc skips.
template <typename Fn>
void for_each_line(std::string_view text, Fn fn) {
  size_t lineno = 0, pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line[0] == '#' || line[0] == '+' || line[0] == '-') continue;
    fn(lineno, line);
  }
}

std::string where(const char* file, size_t line) { return std::string(file) + ":" + std::to_string(line) + ": "; }

}  // namespace

std::vector<PasswdEntry> parse_passwd(std::string_view text, std::vector<std::string>* errors) {
  std::vector<PasswdEntry> out;
  for_each_line(text, [&](size_t n, std::string_view line) {
    auto f = split(line, ':');
    if (f.size() != 7 || f[0].empty()) {
      if (errors) errors->push_back(where("/etc/passwd", n) + "expected 7 ':'-separated fields, line skipped");
      return;
    }
    auto uid = parse_id(f[2]), gid = parse_id(f[3]);
    if (!uid || !gid) {
      if (errors) errors->push_back(where("/etc/passwd", n) + "bad uid or gid, line skipped");
      return;
    }
    out.push_back(PasswdEntry{std::string(f[0]), std::string(f[1]), *uid, *gid, std::string(f[4]),
                              std::string(f[5]), std::string(f[6]), n});
  });
  return out;
}

std::vector<GroupEntry> parse_group(std::string_view text, std::vector<std::string>* errors) {
  std::vector<GroupEntry> out;
  for_each_line(text, [&](size_t n, std::string_view line) {
    auto f = split(line, ':');
    if (f.size() != 4 || f[0].empty()) {
      if (errors) errors->push_back(where("/etc/group", n) + "expected 4 ':'-separated fields, line skipped");
      return;
    }
    auto gid = parse_id(f[2]);
    if (!gid) {
      if (errors) errors->push_back(where("/etc/group", n) + "bad gid, line skipped");
      return;
    }
    GroupEntry g{std::string(f[0]), std::string(f[1]), *gid, {}, n};
    if (!f[3].empty())
      for (auto m : split(f[3], ','))
        if (!m.empty()) g.members.emplace_back(m);
    out.push_back(std::move(g));
  });
  return out;
}

std::vector<ShadowEntry> parse_shadow(std::string_view text, std::vector<std::string>* errors) {
  std::vector<ShadowEntry> out;
  for_each_line(text, [&](size_t n, std::string_view line) {
    auto f = split(line, ':');
    // shadow(5) has 9 fields; accept short lines that still have the password
    // field, since the login tools only need those two.
    if (f.size() < 2 || f[0].empty()) {
      if (errors) errors->push_back(where("/etc/shadow", n) + "expected at least 2 ':'-separated fields, line skipped");
      return;
    }
    out.push_back(ShadowEntry{std::string(f[0]), std::string(f[1]), n});
  });
  return out;
}

void Identity::index() {
  uid_names_.clear();
  gid_names_.clear();
  for (const auto& u : users) uid_names_.emplace(u.uid, u.name);  // emplace keeps the first
  for (const auto& g : groups) gid_names_.emplace(g.gid, g.name);
}

std::optional<std::string> Identity::user_name(uint32_t uid) const {
  auto it = uid_names_.find(uid);
  if (it == uid_names_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> Identity::group_name(uint32_t gid) const {
  auto it = gid_names_.find(gid);
  if (it == gid_names_.end()) return std::nullopt;
  return it->second;
}

Owner Identity::owner(uint32_t uid, uint32_t gid) const { return Owner{uid, gid, user_name(uid), group_name(gid)}; }

Identity parse_identity(std::string_view passwd, std::string_view group, std::string_view shadow) {
  Identity id;
  id.users = parse_passwd(passwd, &id.errors);
  id.groups = parse_group(group, &id.errors);
  id.shadow = parse_shadow(shadow, &id.errors);
  id.index();
  return id;
}

}  // namespace moat
