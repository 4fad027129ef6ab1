#include "scanner/report/sarif.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <set>

#include "scanner/checks/checks.h"
#include "test_util.h"

namespace moat {
namespace {

using json = nlohmann::json;

TEST(Sarif, PercentEncoding) {
  EXPECT_EQ(percent_encode("usr/bin/su", true), "usr/bin/su");
  EXPECT_EQ(percent_encode("a b/c", false), "a%20b%2Fc");
  EXPECT_EQ(percent_encode("caf\xe9", true), "caf%E9");
  EXPECT_EQ(percent_encode("oci:/x:latest", true), "oci%3A/x%3Alatest");
}

TEST(Sarif, ShapeForGitHubCodeScanning) {
  Report r = testing::sample_report();
  auto j = json::parse(report_sarif(r));
  EXPECT_EQ(j["version"], "2.1.0");
  const auto& run = j["runs"][0];
  const auto& rules = run["tool"]["driver"]["rules"];
  EXPECT_EQ(run["tool"]["driver"]["name"], "moat");
  // Every registry check plus the one unknown (secret) rule.
  EXPECT_EQ(rules.size(), all_checks().size() + 1);
  std::set<std::string> ids;
  for (const auto& rule : rules) {
    ids.insert(rule["id"].get<std::string>());
    EXPECT_FALSE(rule["help"]["text"].get<std::string>().empty());
    EXPECT_FALSE(rule["shortDescription"]["text"].get<std::string>().empty());
    std::string sev = rule["properties"]["moat-severity"];
    if (sev == "info") {
      EXPECT_FALSE(rule["properties"].contains("security-severity"));
    } else {
      double ss = std::stod(rule["properties"]["security-severity"].get<std::string>());
      EXPECT_GT(ss, 0.0);
      EXPECT_LE(ss, 10.0);
    }
  }
  EXPECT_EQ(ids.size(), rules.size());
  const auto& results = run["results"];
  ASSERT_EQ(results.size(), r.findings.size());
  for (const auto& res : results) {
    // ruleIndex points at the rule with that id.
    EXPECT_EQ(rules[res["ruleIndex"].get<size_t>()]["id"], res["ruleId"]);
    ASSERT_EQ(res["locations"].size(), 1u);
    const auto& loc = res["locations"][0];
    std::string uri = loc["physicalLocation"]["artifactLocation"]["uri"];
    EXPECT_FALSE(uri.empty());
    EXPECT_NE(uri[0], '/');
    EXPECT_EQ(res["partialFingerprints"]["moat/v1"].get<std::string>().size(), 64u);
    if (res["ruleId"] == "config-runs-as-root") {
      EXPECT_EQ(loc["logicalLocations"][0]["name"], "User");
      EXPECT_EQ(uri, "oci%3A/tmp/planted%3Alatest");
    }
    if (res["ruleId"] == "unknown-owner") {
      EXPECT_EQ(uri, "srv/caf%E9%5Cdata");
    }
    if (res["ruleId"] == "secret-github-pat") {
      EXPECT_EQ(loc["physicalLocation"]["region"]["startLine"], 3);
    }
  }
  EXPECT_EQ(results[0]["level"], "error");  // critical
  EXPECT_EQ(run["invocations"][0]["toolExecutionNotifications"].size(), 1u);
  EXPECT_EQ(report_sarif(r), report_sarif(r));
}

std::string write_temp(const std::string& text) {
  char path[] = "/tmp/moat-sarif-XXXXXX.sarif";
  int fd = mkstemps(path, 6);
  EXPECT_GE(fd, 0);
  close(fd);
  testing::spit(path, text);
  return path;
}

TEST(Sarif, ValidatesAgainstTheOfficialSchema) {
  if (std::string(MOAT_PYTHON).empty()) GTEST_SKIP() << "no python3";
  // data/sarif-2.1.0.json is the schema shipped in npm @microsoft/sarif-multitool 5.7.0.
  std::string path = write_temp(report_sarif(testing::sample_report()));
  int st = testing::run(std::string(MOAT_PYTHON) + " " + MOAT_VALIDATE_JSON + " " + testing::data_path("sarif-2.1.0.json") +
                        " " + path);
  std::remove(path.c_str());
  if (st == 77) GTEST_SKIP() << "python3-jsonschema is not installed";
  EXPECT_EQ(st, 0);
}

TEST(Sarif, MultitoolValidate) {
  std::string tool = MOAT_SARIF_MULTITOOL;
  if (tool.empty()) GTEST_SKIP() << "sarif-multitool not found (npm install @microsoft/sarif-multitool)";
  Report empty;
  for (const Report& r : {testing::sample_report(), empty}) {
    std::string path = write_temp(report_sarif(r));
    std::string out = path + ".validation.sarif";
    // validate exits non-zero on errors; its own log lists them.
    int st = testing::run(tool + " validate --output " + out + " " + path + " > " + out + ".log 2>&1");
    auto log = testing::slurp(out + ".log");
    auto res = testing::slurp(out);
    EXPECT_EQ(st, 0) << (log ? *log : "");
    if (res) {
      // No error and no warning either, except SARIF2005 (no informationUri:
      // moat has no public home page yet).
      auto v = json::parse(*res);
      for (const auto& run : v["runs"])
        for (const auto& x : run.value("results", json::array()))
          EXPECT_EQ(x.value("ruleId", ""), "SARIF2005") << x.dump();
    }
    std::remove(path.c_str());
    std::remove(out.c_str());
    std::remove((out + ".log").c_str());
  }
}

}  // namespace
}  // namespace moat
