#include "scanner/report/findings.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "test_util.h"

namespace moat {
namespace {

TEST(Severity, NamesRoundTripAndOrder) {
  for (Severity s : kSeverities) EXPECT_EQ(parse_severity(severity_name(s)), s);
  EXPECT_FALSE(parse_severity("HIGH"));
  EXPECT_FALSE(parse_severity("none"));
  EXPECT_FALSE(parse_severity(""));
  EXPECT_GT(Severity::Critical, Severity::High);
  EXPECT_GT(Severity::Low, Severity::Info);
}

TEST(Category, ContractNames) {
  const char* names[] = {"setuid", "setgid", "capability", "permission", "ownership", "device",
                         "account", "secret", "sensitive-file", "integrity", "config"};
  for (const char* n : names) {
    auto c = parse_category(n);
    ASSERT_TRUE(c) << n;
    EXPECT_EQ(category_name(*c), n);
  }
  EXPECT_FALSE(parse_category("sensitive_file"));
}

TEST(Finding, ModeString) {
  EXPECT_EQ(mode_string(04755), "4755");
  EXPECT_EQ(mode_string(0644), "0644");
  EXPECT_EQ(mode_string(01777), "1777");
  EXPECT_EQ(mode_string(0100755), "0755");  // file-type bits are not mode
}

TEST(Fingerprint, MatchesTheDocumentedFormula) {
  // Reference values computed independently with Python's hashlib (see findings.h).
  Finding f;
  f.rule_id = "setuid-unpackaged";
  f.path = "/usr/local/bin/rootsh";
  f.layer = LayerRef{2, testing::fake_digest('3'), "RUN x"};
  EXPECT_EQ(compute_fingerprint(f), "33da75601d045d4688353aae4fb6bab2a4f2e65d1a6785b5efe0748eecc4651a");
  Finding c;
  c.rule_id = "config-runs-as-root";
  c.target = Target::Config;
  c.config_field = "User";
  EXPECT_EQ(compute_fingerprint(c), "5eba06ee5035a10aeea7b35903ac158c8c93715889074244cffa6fab26c1722c");
}

TEST(Fingerprint, IgnoresMetadataButNotIdentity) {
  Finding f;
  f.rule_id = "setuid-packaged";
  f.path = "/usr/bin/su";
  f.layer = LayerRef{0, testing::fake_digest('1'), "ADD"};
  std::string base = compute_fingerprint(f);
  Finding g = f;
  g.severity = Severity::Critical;
  g.owner = Owner{0, 0, "root", "root"};
  g.mode = 04755;
  g.package = "util-linux";
  g.layer->index = 7;  // a new base layer shifts indexes, not the finding
  g.message = "other text";
  EXPECT_EQ(compute_fingerprint(g), base);
  Finding h = f;
  h.layer->diff_id = testing::fake_digest('2');
  EXPECT_NE(compute_fingerprint(h), base);
  Finding i = f;
  i.detail = "x";
  EXPECT_NE(compute_fingerprint(i), base);
  // Fields are NUL-separated, so moving bytes between fields changes the input.
  Finding j = f;
  j.rule_id = "setuid-packaged/usr";
  j.path = "/bin/su";
  EXPECT_NE(compute_fingerprint(j), base);
}

TEST(Sort, TotalDeterministicOrder) {
  auto rep = testing::sample_report();
  std::vector<Finding> a = rep.findings;
  sort_findings(a);
  // Severity descending first.
  for (size_t k = 1; k < a.size(); ++k) EXPECT_GE(a[k - 1].severity, a[k].severity);
  EXPECT_EQ(a.front().severity, Severity::Critical);
  EXPECT_EQ(a.back().rule_id, "setuid-expected");
  // Any input permutation gives the same order.
  std::mt19937 rng(42);
  for (int round = 0; round < 20; ++round) {
    std::vector<Finding> b = rep.findings;
    std::shuffle(b.begin(), b.end(), rng);
    sort_findings(b);
    for (size_t k = 0; k < a.size(); ++k) EXPECT_EQ(a[k].fingerprint, b[k].fingerprint);
  }
}

TEST(FailOn, Thresholds) {
  auto rep = testing::sample_report();  // has critical .. info
  EXPECT_EQ(*fail_on_status(rep.findings, "critical"), 1);
  EXPECT_EQ(*fail_on_status(rep.findings, "info"), 1);
  EXPECT_EQ(*fail_on_status(rep.findings, "none"), 0);
  EXPECT_EQ(*fail_on_status({}, "info"), 0);
  std::vector<Finding> low_only;
  for (const auto& f : rep.findings)
    if (f.severity <= Severity::Low) low_only.push_back(f);
  ASSERT_FALSE(low_only.empty());
  EXPECT_EQ(*fail_on_status(low_only, "high"), 0);
  EXPECT_EQ(*fail_on_status(low_only, "medium"), 0);
  EXPECT_EQ(*fail_on_status(low_only, "info"), 1);
  EXPECT_FALSE(fail_on_status(low_only, "severe").ok());
  EXPECT_FALSE(fail_on_status(low_only, "High").ok());
}

TEST(Counts, BySeverity) {
  auto c = count_by_severity(testing::sample_report().findings);
  EXPECT_EQ(c.critical, 1u);
  EXPECT_EQ(c.high, 2u);
  EXPECT_EQ(c.medium, 1u);
  EXPECT_EQ(c.low, 1u);
  EXPECT_EQ(c.info, 1u);
}

// A check written against the sink contract: stops on Stop, propagates an Error.
Status emit_all(FindingSink& sink, int n, int* emitted) {
  for (int i = 0; i < n; ++i) {
    Finding f;
    f.rule_id = "device-node";
    f.path = "/dev/x" + std::to_string(i);
    MOAT_ASSIGN_OR_RETURN(Flow flow, sink.on_finding(std::move(f)));
    ++*emitted;
    if (flow == Flow::Stop) break;
  }
  return {};
}

class FailingSink final : public FindingSink {
 public:
  Result<Flow> on_finding(Finding) override { return Error{"disk full"}; }
  void on_error(std::string) override {}
};

TEST(Sink, ContinueStopFail) {
  VectorSink all;
  int n = 0;
  ASSERT_TRUE(emit_all(all, 5, &n).ok());
  EXPECT_EQ(all.findings.size(), 5u);
  VectorSink limited(2);
  n = 0;
  ASSERT_TRUE(emit_all(limited, 5, &n).ok());
  EXPECT_EQ(limited.findings.size(), 2u);  // the third was refused with Stop
  FailingSink bad;
  n = 0;
  auto st = emit_all(bad, 5, &n);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message, "disk full");
  EXPECT_EQ(n, 0);
  all.on_error("unreadable dir");
  limited.merge(std::move(all));
  EXPECT_EQ(limited.findings.size(), 7u);
  EXPECT_EQ(limited.errors.size(), 1u);
  EXPECT_TRUE(all.findings.empty());
}

}  // namespace
}  // namespace moat
