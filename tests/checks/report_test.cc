#include "scanner/report/report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>

#include "test_util.h"

namespace moat {
namespace {

using json = nlohmann::ordered_json;

TEST(Utf8, Validation) {
  EXPECT_TRUE(is_valid_utf8("plain/ascii"));
  EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x8d"));
  EXPECT_FALSE(is_valid_utf8("caf\xe9"));
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xe2\x82"));          // truncated
}

TEST(Utf8, JsonTextEscapesOnlyInvalidStrings) {
  EXPECT_EQ(json_text("a\\b"), "a\\b");  // valid: unchanged
  EXPECT_EQ(json_text("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(json_text("caf\xe9\\x"), "caf\\xE9\\\\x");
  EXPECT_EQ(json_text("\xff\xfe"), "\\xFF\\xFE");
}

TEST(Json, EmptyReportKeepsTheOldShape) {
  Report r;
  r.reference = "dir:/tmp/x";
  std::string out = report_json(r);
  auto j = json::parse(out);
  EXPECT_EQ(j["schema"], "moat.report/v1");
  EXPECT_TRUE(j["findings"].empty());
  EXPECT_EQ(j["summary"].dump(), R"({"critical":0,"high":0,"medium":0,"low":0,"info":0})");
  EXPECT_TRUE(j["image"]["manifest_digest"].is_null());
}

TEST(Json, FindingsContractShape) {
  Report r = testing::sample_report();
  std::string out = report_json(r);
  auto j = json::parse(out);  // throws (fails) if the invalid path broke the JSON
  // Top-level and finding key order are fixed.
  std::vector<std::string> keys;
  for (auto& [k, v] : j.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"schema", "moat_version", "image", "scan", "findings", "summary", "errors"}));
  const auto& f0 = j["findings"][0];
  keys.clear();
  for (auto& [k, v] : f0.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"rule_id", "category", "severity", "title", "message", "target", "path",
                                            "config_field", "layer", "deleted", "owner", "mode", "package", "secret",
                                            "fingerprint"}));
  EXPECT_EQ(j["summary"].dump(), R"({"critical":1,"high":2,"medium":1,"low":1,"info":1})");
  ASSERT_EQ(j["findings"].size(), 6u);
  // Sorted: the critical secret first, the info setuid-expected last.
  EXPECT_EQ(f0["rule_id"], "secret-github-pat");
  EXPECT_EQ(f0["secret"]["redacted"], "ghp_****Ab");
  EXPECT_EQ(j["findings"][5]["rule_id"], "setuid-expected");
  EXPECT_EQ(j["findings"][5]["package"], "passwd");
  for (const auto& f : j["findings"]) {
    if (f["rule_id"] == "setuid-unpackaged") {
      EXPECT_EQ(f["mode"], "4755");
      EXPECT_EQ(f["owner"]["user"], "root");
      EXPECT_EQ(f["layer"]["index"], 2);
      EXPECT_TRUE(f["package"].is_null());
      EXPECT_TRUE(f["config_field"].is_null());
    }
    if (f["rule_id"] == "config-runs-as-root") {
      EXPECT_TRUE(f["path"].is_null());
      EXPECT_EQ(f["config_field"], "User");
      EXPECT_TRUE(f["layer"].is_null());
      EXPECT_TRUE(f["owner"].is_null());
    }
    if (f["rule_id"] == "unknown-owner") {
      EXPECT_EQ(f["path"], "/srv/caf\\xE9\\\\data");
      EXPECT_TRUE(f["owner"]["user"].is_null());
      EXPECT_EQ(f["owner"]["uid"], 4242);
      EXPECT_EQ(f["deleted"], true);
    }
  }
  EXPECT_EQ(j["errors"][0], "/var/lib/dpkg/info/foo.list: unreadable \\xFF");
}

TEST(Json, ByteIdenticalAcrossRunsAndInputOrder) {
  Report r = testing::sample_report();
  std::string a = report_json(r);
  EXPECT_EQ(report_json(r), a);
  std::mt19937 rng(7);
  for (int i = 0; i < 10; ++i) {
    std::shuffle(r.findings.begin(), r.findings.end(), rng);
    EXPECT_EQ(report_json(r), a);
  }
}

// Validates reports against docs/report.schema.json with python3-jsonschema.
void validate(const std::string& schema, const std::string& doc_text) {
  if (std::string(MOAT_PYTHON).empty()) GTEST_SKIP() << "no python3";
  char path[] = "/tmp/moat-report-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  testing::spit(path, doc_text);
  int st = testing::run(std::string(MOAT_PYTHON) + " " + MOAT_VALIDATE_JSON + " " + schema + " " + path);
  std::remove(path);
  if (st == 77) GTEST_SKIP() << "python3-jsonschema is not installed";
  EXPECT_EQ(st, 0) << "schema validation failed (details on stderr)";
}

TEST(Json, ValidatesAgainstTheSchema) {
  validate(MOAT_REPORT_SCHEMA, report_json(testing::sample_report()));
  Report empty;
  validate(MOAT_REPORT_SCHEMA, report_json(empty));
}

TEST(Json, SchemaRejectsBrokenReports) {
  // The schema is not vacuous: a report with a bad severity must fail it.
  auto j = json::parse(report_json(testing::sample_report()));
  j["findings"][0]["severity"] = "severe";
  if (std::string(MOAT_PYTHON).empty()) GTEST_SKIP();
  char path[] = "/tmp/moat-report-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  testing::spit(path, j.dump());
  int st = testing::run(std::string(MOAT_PYTHON) + " " + MOAT_VALIDATE_JSON + " " + MOAT_REPORT_SCHEMA + " " + path +
                        " 2>/dev/null");
  std::remove(path);
  if (st == 77) GTEST_SKIP();
  EXPECT_EQ(st, 1);
}

TEST(Table, GroupedBySeverityWithin100Columns) {
  Report r = testing::sample_report();
  // A very long path must be cut, not wrap the table.
  r.findings[0].path = "/" + std::string(300, 'p');
  finalize_finding(r.findings[0]);
  std::string t = report_table(r, false);
  EXPECT_EQ(t.find('\033'), std::string::npos);
  size_t pos = 0;
  while (pos < t.size()) {
    size_t nl = t.find('\n', pos);
    std::string line = t.substr(pos, nl - pos);
    EXPECT_LE(line.size(), 100u) << line;
    pos = nl + 1;
  }
  size_t crit = t.find("CRITICAL (1)"), high = t.find("HIGH (2)"), info = t.find("INFO (1)");
  ASSERT_NE(crit, std::string::npos) << t;
  ASSERT_NE(high, std::string::npos);
  ASSERT_NE(info, std::string::npos);
  EXPECT_LT(crit, high);
  EXPECT_LT(high, info);
  EXPECT_NE(t.find("/srv/caf\\xe9"), std::string::npos) << t;  // printable(), never raw bytes
  EXPECT_NE(t.find("owner 4242:4242"), std::string::npos);
  EXPECT_NE(t.find("package passwd"), std::string::npos);
  EXPECT_NE(t.find("6 findings: 1 critical, 2 high, 1 medium, 1 low, 1 info"), std::string::npos) << t;
  EXPECT_EQ(report_table(r, false), t);
}

TEST(Table, ColourOnlyWhenAsked) {
  Report r = testing::sample_report();
  EXPECT_NE(report_table(r, true).find("\033[1;31m"), std::string::npos);
  TableOptions v;
  v.verbose = true;
  std::string t = report_table(r, v);
  EXPECT_NE(t.find("fix: "), std::string::npos);
  EXPECT_EQ(t.find('\033'), std::string::npos);
  size_t pos = 0;
  while (pos < t.size()) {
    size_t nl = t.find('\n', pos);
    EXPECT_LE(nl - pos, 100u) << t.substr(pos, nl - pos);
    pos = nl + 1;
  }
}

TEST(Table, NoFindingsMessagesUnchanged) {
  Report r;
  EXPECT_NE(report_table(r, false).find("No checks ran"), std::string::npos);
  r.scan.checks = {"setuid"};
  EXPECT_NE(report_table(r, false).find("No findings."), std::string::npos);
  r.suppressed = 2;
  EXPECT_NE(report_table(r, false).find("2 findings suppressed"), std::string::npos);
}

}  // namespace
}  // namespace moat
