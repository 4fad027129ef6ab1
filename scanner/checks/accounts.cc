#include "scanner/checks/accounts.h"

#include <map>

#include "scanner/checks/checks.h"
#include "storage/fsutil.h"

namespace moat {

std::vector<Finding> account_findings(const Identity& id, const AccountSources& src, const policy::Policy& p) {
  std::vector<Finding> out;
  auto add = [&](const char* rule, const char* path, const std::optional<LayerRef>& layer, std::string detail,
                 std::string message) {
    auto f = make_finding(rule, p);
    if (!f.ok()) return;  // registry and this file disagree: a test catches it
    Finding fi = std::move(f).value();
    fi.path = path;
    fi.layer = layer;
    fi.detail = std::move(detail);
    fi.message = std::move(message);
    finalize_finding(fi);
    out.push_back(std::move(fi));
  };

  for (const auto& u : id.users) {
    if (u.uid == 0 && u.name != "root")
      add("account-extra-uid0", "/etc/passwd", src.passwd, u.name,
          "account " + printable(u.name) + " has uid 0 (line " + std::to_string(u.line) + ")");
    if (u.password.empty())
      add("account-empty-password", "/etc/passwd", src.passwd, u.name,
          "account " + printable(u.name) + " has an empty password field in /etc/passwd (line " +
              std::to_string(u.line) + ")");
  }
  for (const auto& s : id.shadow)
    if (s.password.empty())
      add("account-empty-password", "/etc/shadow", src.shadow, s.name,
          "account " + printable(s.name) + " has an empty password field in /etc/shadow (line " +
              std::to_string(s.line) + ")");

  // Duplicates: one finding per duplicated name or id, naming every line.
  // std::map keeps the output order independent of hash seeds.
  auto dups = [&](const char* path, const std::optional<LayerRef>& layer, const char* what, auto entries,
                  auto key_of) {
    std::map<std::string, std::vector<std::string>> seen;  // key -> "name (line N)"
    for (const auto& e : entries) seen[key_of(e)].push_back(printable(e.name) + " (line " + std::to_string(e.line) + ")");
    for (const auto& [key, list] : seen) {
      if (list.size() < 2) continue;
      std::string joined;
      for (const auto& l : list) joined += (joined.empty() ? "" : ", ") + l;
      add("account-duplicate", path, layer, key, std::string(what) + " " + printable(key.substr(key.find(':') + 1)) + " is used by " + joined);
    }
  };
  dups("/etc/passwd", src.passwd, "user name", id.users, [](const PasswdEntry& e) { return "name:" + e.name; });
  dups("/etc/passwd", src.passwd, "uid", id.users, [](const PasswdEntry& e) { return "uid:" + std::to_string(e.uid); });
  dups("/etc/group", src.group, "group name", id.groups, [](const GroupEntry& e) { return "name:" + e.name; });
  dups("/etc/group", src.group, "gid", id.groups, [](const GroupEntry& e) { return "gid:" + std::to_string(e.gid); });
  return out;
}

}  // namespace moat
