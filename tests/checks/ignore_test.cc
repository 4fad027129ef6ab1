#include "scanner/report/ignore.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace moat {
namespace {

TEST(Ignore, ParsesTheDocumentedFormat) {
  auto l = parse_ignore(
      "# accepted findings\n"
      "\n"
      "rule=setuid-expected reason=distribution defaults\n"
      "  rule=setuid-packaged path=/usr/bin/* expires=2026-12-31 reason=needed by the app, see TICKET-1\n"
      "path=\"/opt/my app/*\"\n"
      "fingerprint=33da75601d04\r\n",
      ".moatignore");
  ASSERT_TRUE(l.ok()) << l.error().describe();
  ASSERT_EQ(l->entries.size(), 4u);
  EXPECT_EQ(l->entries[0].reason, "distribution defaults");
  EXPECT_EQ(l->entries[1].path_glob, "/usr/bin/*");
  EXPECT_EQ(l->entries[1].expires, "2026-12-31");
  EXPECT_EQ(l->entries[1].reason, "needed by the app, see TICKET-1");
  EXPECT_EQ(l->entries[1].line, 4u);
  EXPECT_EQ(l->entries[2].path_glob, "/opt/my app/*");
  EXPECT_EQ(l->entries[3].fingerprint, "33da75601d04");
  EXPECT_EQ(l->entries[1].describe(),
            ".moatignore:4 rule=setuid-packaged path=/usr/bin/* expires=2026-12-31 (needed by the app, see TICKET-1)");
}

TEST(Ignore, ErrorsNameTheLine) {
  for (const char* bad : {"rule", "colour=red", "reason=only a reason", "rule=a rule=b", "expires=2026-02-30 rule=x",
                          "expires=tomorrow rule=x", "fingerprint=ABCDEF123456", "fingerprint=abc", "path=\"/open",
                          "rule="}) {
    auto l = parse_ignore(std::string("# ok\n") + bad + "\n", "f");
    ASSERT_FALSE(l.ok()) << bad;
    EXPECT_EQ(l.error().message.rfind("f:2: ", 0), 0u) << l.error().message;
  }
  EXPECT_TRUE(parse_ignore("expires=2028-02-29 rule=x\n", "f").ok());  // leap day
}

TEST(Ignore, ApplyMatchesExpiresAndReportsUnused) {
  Report r = testing::sample_report();
  std::string fp;
  for (const auto& f : r.findings) {
    if (f.rule_id == "config-runs-as-root") fp = f.fingerprint;
  }
  auto l = parse_ignore(
      "rule=setuid-expected\n"
      "path=/srv/* rule=unknown-owner\n"            // '*' crosses '/'... and the path has odd bytes
      "fingerprint=" + fp.substr(0, 12) + "\n"
      "rule=setuid-unpackaged expires=2026-01-01\n"  // expired on 2026-06-01
      "path=/nowhere/*\n"                            // matches nothing
      "path=* rule=config-runs-as-root\n",           // config findings have no path: never matches
      ".moatignore");
  ASSERT_TRUE(l.ok()) << l.error().describe();
  auto out = apply_ignores(r.findings, *l, "2026-06-01");
  std::set<std::string> kept, gone;
  for (const auto& f : out.kept) kept.insert(f.rule_id);
  for (const auto& f : out.suppressed) gone.insert(f.rule_id);
  EXPECT_EQ(gone, (std::set<std::string>{"setuid-expected", "unknown-owner", "config-runs-as-root"}));
  EXPECT_EQ(kept, (std::set<std::string>{"setuid-unpackaged", "account-empty-password", "secret-github-pat"}));
  ASSERT_EQ(out.expired.size(), 1u);
  EXPECT_EQ(out.expired[0].line, 4u);
  ASSERT_EQ(out.unused.size(), 2u);
  EXPECT_EQ(out.unused[0].line, 5u);
  // The expiry day itself still applies.
  auto same_day = apply_ignores(r.findings, *l, "2026-01-01");
  EXPECT_TRUE(same_day.expired.empty());
  // Gating sees only what is kept.
  EXPECT_EQ(*fail_on_status(out.kept, "high"), 1);
  EXPECT_EQ(*fail_on_status(out.suppressed, "low"), 1);
}

TEST(Ignore, MissingDefaultFileIsEmptyButGivenFileMustExist) {
  auto a = load_ignore_file("/nonexistent/.moatignore", false);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->entries.empty());
  EXPECT_FALSE(load_ignore_file("/nonexistent/.moatignore", true).ok());
}

TEST(Ignore, TodayIsADate) {
  std::string t = today_utc();
  ASSERT_EQ(t.size(), 10u);
  EXPECT_TRUE(parse_ignore("rule=x expires=" + t + "\n", "f").ok());
}

}  // namespace
}  // namespace moat
