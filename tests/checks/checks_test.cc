#include "scanner/checks/checks.h"

#include <gtest/gtest.h>

#include <set>

namespace moat {
namespace {

const policy::Policy& builtin() {
  const auto& p = policy::builtin_policy();
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().describe());
  return p.value();
}

TEST(Registry, IdsUniqueAndWellFormed) {
  std::set<std::string_view> ids;
  for (const auto& c : all_checks()) {
    EXPECT_TRUE(ids.insert(c.id).second) << "duplicate " << c.id;
    EXPECT_FALSE(c.title.empty()) << c.id;
    EXPECT_LE(c.title.size(), 60u) << c.id << ": titles must fit the 100-column table";
    EXPECT_FALSE(c.description.empty()) << c.id;
    EXPECT_FALSE(c.remediation.empty()) << c.id;
    EXPECT_GE(c.version, 1) << c.id;
    // Config and account checks are not per entry; everything else has a gate.
    bool per_entry = c.category != Category::Config && c.category != Category::Account;
    EXPECT_EQ(c.gate != nullptr, per_entry) << c.id;
  }
}

TEST(Registry, HasEveryRuleTheIssueNames) {
  for (const char* id :
       {"setuid-unpackaged", "setuid-packaged", "setuid-script", "setuid-writable", "setgid-unpackaged",
        "setgid-packaged", "setgid-script", "setgid-writable", "capability", "world-writable", "shadow-readable",
        "private-key-readable", "unknown-owner", "device-node", "account-extra-uid0", "account-empty-password",
        "account-duplicate", "integrity-mismatch", "sensitive-git-dir", "sensitive-dotenv", "sensitive-history",
        "sensitive-ssh-key", "sensitive-authorized-keys", "sensitive-credentials-file", "config-runs-as-root",
        "config-ssh-port", "config-add-url", "config-sudo", "config-no-healthcheck"})
    EXPECT_NE(find_check(id), nullptr) << id;
  EXPECT_EQ(find_check("nope"), nullptr);
}

TEST(Registry, ShippedPolicyCoversExactlyTheRegistry) {
  auto m = policy_mismatches(builtin());
  EXPECT_TRUE(m.unknown_in_policy.empty()) << m.unknown_in_policy.front();
  EXPECT_TRUE(m.missing_from_policy.empty()) << m.missing_from_policy.front();
}

TEST(Registry, PolicySeverityWinsOverDefault) {
  policy::Policy p;
  const CheckInfo* c = find_check("setuid-packaged");
  ASSERT_TRUE(c);
  EXPECT_EQ(check_severity(*c, p), c->default_severity);
  p.severities["setuid-packaged"] = "critical";
  EXPECT_EQ(check_severity(*c, p), Severity::Critical);
  Finding f = make_finding(*c, p);
  EXPECT_EQ(f.severity, Severity::Critical);
  EXPECT_EQ(f.rule_id, "setuid-packaged");
  EXPECT_EQ(f.category, Category::Setuid);
  EXPECT_EQ(f.target, Target::Filesystem);
  EXPECT_EQ(make_finding("config-sudo", p)->target, Target::Config);
  EXPECT_FALSE(make_finding("no-such-rule", p).ok());
}

IndexEntry entry(EntryType t, uint32_t mode) {
  IndexEntry e;
  e.path = "/x";
  e.type = t;
  e.mode = mode;
  return e;
}

TEST(Gates, LookAlikesStaySilent) {
  auto gate = [](const char* id, const IndexEntry& e) { return find_check(id)->gate(e); };
  EXPECT_TRUE(gate("setuid-unpackaged", entry(EntryType::File, 04755)));
  EXPECT_FALSE(gate("setuid-unpackaged", entry(EntryType::File, 0755)));
  EXPECT_FALSE(gate("setuid-unpackaged", entry(EntryType::Dir, 04755)));
  EXPECT_TRUE(gate("setgid-packaged", entry(EntryType::File, 02755)));
  EXPECT_FALSE(gate("setgid-packaged", entry(EntryType::Dir, 02775)));  // setgid dirs are not findings
  EXPECT_FALSE(gate("world-writable", entry(EntryType::Dir, 01777)));   // sticky /tmp
  EXPECT_TRUE(gate("world-writable", entry(EntryType::Dir, 0777)));
  EXPECT_TRUE(gate("world-writable", entry(EntryType::File, 0666)));
  EXPECT_FALSE(gate("world-writable", entry(EntryType::Symlink, 0777)));  // symlink modes mean nothing
  EXPECT_TRUE(gate("device-node", entry(EntryType::Char, 0666)));
  EXPECT_FALSE(gate("device-node", entry(EntryType::Fifo, 0666)));
  EXPECT_TRUE(gate("shadow-readable", entry(EntryType::File, 0644)));
  EXPECT_FALSE(gate("shadow-readable", entry(EntryType::File, 0640)));
  IndexEntry cap = entry(EntryType::File, 0755);
  EXPECT_FALSE(gate("capability", cap));
  cap.xattrs.push_back({"security.capability", std::string("\x01\x00\x00\x02", 4)});
  EXPECT_TRUE(gate("capability", cap));
  EXPECT_FALSE(gate("unknown-owner", entry(EntryType::Whiteout, 0)));
}

TEST(Select, IdsCategoriesAndErrors) {
  auto all = select_checks("");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), all_checks().size());
  auto some = select_checks("config-sudo, setuid,config-sudo");
  ASSERT_TRUE(some.ok());
  // Registry order, no duplicates: the setuid checks come before config-sudo.
  ASSERT_EQ(some->size(), 6u);
  EXPECT_EQ(some->front()->id, "setuid-unpackaged");
  EXPECT_EQ(some->back()->id, "config-sudo");
  EXPECT_FALSE(select_checks("setuid,bogus").ok());
  EXPECT_FALSE(select_checks("secret").ok());  // a category with no checks yet
  EXPECT_EQ(checks_cache_key(*select_checks("device,config-sudo")), "device-node@1,config-sudo@1");
}

}  // namespace
}  // namespace moat
