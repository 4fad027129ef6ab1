#include "rules/policy/policy.h"

#include <gtest/gtest.h>

namespace moat::policy {
namespace {

const Policy& builtin() {
  const auto& p = builtin_policy();
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().describe());
  return p.value();
}

TEST(Policy, BuiltinLoadsAndSelfTests) {
  const Policy& p = builtin();
  EXPECT_FALSE(p.severities.empty());
  EXPECT_FALSE(p.distributions.empty());
  EXPECT_FALSE(p.sensitive.empty());
  EXPECT_FALSE(p.protected_files.empty());
}

// Every example and negative example, run through the Policy lookups (not just
// the pattern that owns them): another pattern must not claim a negative example.
TEST(Policy, ExamplesThroughLookups) {
  const Policy& p = builtin();
  for (const auto& s : p.sensitive) {
    bool dir = s.kind == Kind::Dir;
    for (const auto& e : s.examples) {
      const SensitivePattern* m = p.match_sensitive(e, dir);
      ASSERT_NE(m, nullptr) << e;
      EXPECT_EQ(m->rule, s.rule) << e;
    }
    for (const auto& e : s.negative_examples) {
      const SensitivePattern* m = p.match_sensitive(e, dir);
      EXPECT_TRUE(m == nullptr || m->rule != s.rule) << e << " matched " << (m ? m->rule : "");
    }
  }
  for (const auto& pf : p.protected_files)
    for (const auto& e : pf.examples) EXPECT_EQ(p.match_protected(e)->rule, pf.rule) << e;
}

TEST(Policy, SensitiveContentAndKind) {
  const Policy& p = builtin();
  EXPECT_EQ(p.match_sensitive("/app/.git", false), nullptr);  // a .git file (submodule link) is no repo
  const SensitivePattern* npmrc = p.match_sensitive("/root/.npmrc", false);
  ASSERT_TRUE(npmrc);
  EXPECT_TRUE(npmrc->needs_content());
  EXPECT_FALSE(npmrc->matches_content("registry=https://registry.npmjs.org/\n"));
  EXPECT_TRUE(npmrc->matches_content("//registry.npmjs.org/:_authToken=npm_abc\n"));
  const SensitivePattern* hist = p.match_sensitive("/root/.bash_history", false);
  ASSERT_TRUE(hist);
  EXPECT_EQ(hist->min_size, 1u);
  EXPECT_EQ(p.match_sensitive("/usr/lib/python3/dist-packages/foo/.env", true), nullptr);  // a venv dir
}

TEST(Policy, DebianExpectations) {
  const Policy& p = builtin();
  const Distribution* d = p.distribution_for({"ubuntu", "debian"});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->name, "debian");
  EXPECT_TRUE(d->expects("/usr/bin/su", false));
  EXPECT_TRUE(d->expects("/bin/su", false));  // merged-/usr spelling
  EXPECT_TRUE(d->expects("/usr/sbin/unix_chkpwd", true));
  EXPECT_TRUE(d->expects("/sbin/unix_chkpwd", true));
  EXPECT_FALSE(d->expects("/usr/sbin/unix_chkpwd", false));  // setgid, not setuid
  EXPECT_FALSE(d->expects("/usr/local/bin/su", false));
  EXPECT_EQ(p.distribution_for({"gentoo"}), nullptr);
  EXPECT_EQ(p.distribution_for({"alpine"})->name, "alpine");
}

TEST(Policy, FedoraExpectations) {
  const Policy& p = builtin();
  for (const char* id : {"fedora", "rhel", "centos", "rocky", "almalinux", "amzn"}) {
    const Distribution* d = p.distribution_for({id});
    ASSERT_TRUE(d) << id;
    EXPECT_EQ(d->name, "fedora");
  }
  const Distribution* d = p.distribution_for({"fedora"});
  EXPECT_TRUE(d->expects("/usr/bin/su", false));
  EXPECT_TRUE(d->expects("/bin/su", false));
  EXPECT_TRUE(d->expects("/usr/sbin/unix_chkpwd", false));  // setuid root on Fedora, setgid shadow on Debian
  EXPECT_FALSE(d->expects("/usr/sbin/unix_chkpwd", true));
  EXPECT_TRUE(d->expects("/usr/bin/write", true));
  EXPECT_TRUE(d->expects("/usr/libexec/openssh/ssh-keysign", true));
  EXPECT_FALSE(d->expects("/usr/bin/newuidmap", false));  // file capabilities on Fedora
  // UBI's ID_LIKE names fedora after rhel: the first known ID wins either way.
  EXPECT_EQ(p.distribution_for({"rhel", "fedora"})->name, "fedora");
}

TEST(Policy, UsrMerged) {
  EXPECT_EQ(usr_merged("/bin/su"), "/usr/bin/su");
  EXPECT_EQ(usr_merged("/lib64/ld-linux-x86-64.so.2"), "/usr/lib64/ld-linux-x86-64.so.2");
  EXPECT_EQ(usr_merged("/bin"), "/usr/bin");
  EXPECT_EQ(usr_merged("/binary/x"), "/binary/x");
  EXPECT_EQ(usr_merged("/usr/bin/su"), "/usr/bin/su");
  EXPECT_EQ(usr_merged("/library"), "/library");
}

TEST(Policy, ValidatorRejectsBadPolicies) {
  auto bad = [](const std::string& text) { return !parse_policy({{"t.json", text}}).ok(); };
  EXPECT_TRUE(bad("not json"));
  EXPECT_TRUE(bad(R"({"schema": "moat.policy.other/v1"})"));
  EXPECT_TRUE(bad(R"({"severities": {}})"));  // no schema
  EXPECT_TRUE(bad(R"({"schema": "moat.policy.severities/v1", "severities": {"x": "severe"}})"));
  EXPECT_TRUE(bad(R"({"schema": "moat.policy.severities/v1", "severites": {}})"));  // typo'd key
  EXPECT_TRUE(bad(R"({"schema": "moat.policy.setuid/v1", "distributions": [{"name": "d", "os_release_ids": ["d"],
                       "setuid": ["usr/bin/su"]}]})"));  // relative path
  const char* pat = R"({"schema": "moat.policy.sensitive/v1", "patterns": [{"rule": "r", "kind": "file",
                       "names": [".env"], "examples": [%s], "negative_examples": [%s]}]})";
  auto with = [&](const char* ex, const char* neg) {
    char buf[512];
    std::snprintf(buf, sizeof buf, pat, ex, neg);
    return std::string(buf);
  };
  EXPECT_FALSE(bad(with(R"("/a/.env")", R"("/a/env")")));
  EXPECT_TRUE(bad(with(R"("/a/env")", "")));        // example does not match
  EXPECT_TRUE(bad(with(R"("/a/.env")", R"("/b/.env")")));  // negative example matches
  EXPECT_TRUE(bad(with("", "")));                    // no example at all
  EXPECT_TRUE(bad(R"({"schema": "moat.policy.sensitive/v1", "patterns": [{"rule": "r", "kind": "socket",
                       "names": ["x"], "examples": ["/x"]}]})"));
}

TEST(Policy, LaterFilesOverride) {
  auto p = parse_policy({{"a.json", R"({"schema": "moat.policy.severities/v1", "severities": {"r": "low"}})"},
                         {"b.json", R"({"schema": "moat.policy.severities/v1", "severities": {"r": "high"}})"}});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->severity_of("r"), "high");
  EXPECT_EQ(p->severity_of("s"), std::nullopt);
}

}  // namespace
}  // namespace moat::policy
