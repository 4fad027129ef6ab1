// The rules test themselves: every built-in rule compiles, every example
// matches with the expected capture, every negative example stays silent.
// Plus the loader and validator on broken rule files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "rules/secrets/cli.h"
#include "rules/secrets/engine.h"
#include "rules/secrets/rules.h"
#include "tests/secrets/shared.h"

namespace moat::secrets {
namespace {

using test_support::builtin_scanner;

std::vector<std::string> builtin_ids() {
  std::vector<std::string> ids;
  auto set = load_builtin_rules();
  if (set.ok())
    for (const auto& r : set->rules) ids.push_back(r.id);
  return ids;
}

class RuleExamples : public ::testing::TestWithParam<std::string> {};

TEST_P(RuleExamples, ExamplesMatchAndNegativesDoNot) {
  const auto& sc = builtin_scanner();
  const SecretRule* rule = nullptr;
  for (const auto& r : sc.rules().rules)
    if (r.id == GetParam()) rule = &r;
  ASSERT_NE(rule, nullptr);
  for (const auto& p : check_rule_examples(sc, *rule)) ADD_FAILURE() << p;
}

// Test names may only hold [A-Za-z0-9_].
std::string param_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  for (auto& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(Builtin, RuleExamples, ::testing::ValuesIn(builtin_ids()), param_name);

TEST(BuiltinRules, ValidateAndCount) {
  auto set = load_builtin_rules();
  ASSERT_TRUE(set.ok()) << set.error().describe();
  for (const auto& p : validate(*set)) ADD_FAILURE() << p;
  EXPECT_GE(set->rules.size(), 100u);
  EXPECT_FALSE(set->global_allow.empty());
}

// Every vendor and family issue 5 names has at least one rule.
TEST(BuiltinRules, CoverTheIssueVendors) {
  std::set<std::string> ids;
  for (const auto& id : builtin_ids()) ids.insert(id);
  for (const char* want :
       {"aws.access-key-id", "aws.secret-access-key", "aws.session-token", "gcp.service-account.private-key",
        "gcp.api-key", "azure.storage.account-key", "azure.storage.connection-string", "azure.ad.client-secret",
        "github.pat.classic", "github.pat.fine-grained", "github.oauth", "github.app.installation", "github.app.refresh",
        "gitlab.pat", "gitlab.deploy-token", "gitlab.runner-auth-token", "gitlab.pipeline-trigger-token",
        "bitbucket.app-password", "slack.bot-token", "slack.webhook", "discord.bot-token", "telegram.bot-token",
        "twilio.api-key", "sendgrid.api-key", "mailgun.api-key", "mailchimp.api-key", "stripe.secret-key.live",
        "square.access-token", "paypal.client-secret", "braintree.access-token", "shopify.access-token",
        "npm.access-token", "pypi.upload-token", "rubygems.api-key", "nuget.api-key", "docker.config-auth",
        "heroku.api-key", "digitalocean.pat", "databricks.pat", "atlassian.api-token", "linear.api-key",
        "grafana.service-account-token", "datadog.api-key", "newrelic.user-api-key", "sentry.user-token",
        "dynatrace.api-token", "jfrog.api-key", "vault.service-token", "terraform.cloud-token", "openai.api-key",
        "anthropic.api-key", "huggingface.token", "private-key.rsa", "private-key.ec", "private-key.dsa",
        "private-key.pkcs8", "private-key.pkcs8-encrypted", "private-key.openssh", "private-key.pgp",
        "private-key.putty", "jwt", "url.credentials", "db.postgres-url", "kubernetes.secret-manifest",
        "htpasswd.hash", "git-credentials", "generic.password-assignment", "generic.secret-assignment"})
    EXPECT_TRUE(ids.count(want)) << "no rule " << want;
}

TEST(BuiltinRules, RulesCheckCommandPasses) {
  std::ostringstream out, err;
  EXPECT_EQ(rules_check({}, out, err), 0) << out.str() << err.str();
  std::ostringstream lout, lerr;
  EXPECT_EQ(rules_list({}, lout, lerr), 0);
  EXPECT_NE(lout.str().find("github.pat.classic"), std::string::npos);
}

// ---- loader and validator on hand-made rule files ----

const char* kGood = R"({"rules": [{
  "id": "test.token", "title": "t", "category": "secret", "severity": "high",
  "pattern": "\\b(tok_[a-z0-9]{12})\\b",
  "examples": [{"text": "x = tok_a1b2c3d4e5f6", "secret": "tok_a1b2c3d4e5f6"}],
  "negative_examples": ["x = tok_short"], "references": ["https://moat.test"]}]})";

std::string with(const std::string& from, const std::string& to) {
  std::string s = kGood;
  auto p = s.find(from);
  if (p != std::string::npos) s.replace(p, from.size(), to);
  return s;
}

std::vector<std::string> problems_of(const std::string& json) {
  auto set = parse_rule_file(json, "test.json");
  if (!set.ok()) return {set.error().describe()};
  return validate(*set);
}

TEST(Loader, GoodFileIsValid) { EXPECT_TRUE(problems_of(kGood).empty()); }

TEST(Loader, RejectsBrokenRules) {
  EXPECT_FALSE(problems_of("{not json").empty());
  EXPECT_FALSE(problems_of(with("\"title\": \"t\", ", "")).empty());                       // missing title
  EXPECT_FALSE(problems_of(with("(tok_[a-z0-9]{12})", "(tok_)([a-z0-9]{12})")).empty());  // two groups
  EXPECT_FALSE(problems_of(with("(tok_[a-z0-9]{12})", "tok_[a-z0-9]{12}")).empty());      // no group
  EXPECT_FALSE(problems_of(with("{12}", "+")).empty());                                   // unbounded width
  EXPECT_FALSE(problems_of(with("(tok_[a-z0-9]{12})", "(tok_(?=x)[a-z]{3})")).empty());   // no RE2 lookahead
  EXPECT_FALSE(problems_of(with("\"severity\": \"high\"", "\"severity\": \"urgent\"")).empty());
  EXPECT_FALSE(problems_of(with("\"negative_examples\": [\"x = tok_short\"], ", "")).empty());
  EXPECT_FALSE(problems_of(with("\"negative_examples\"", "\"negative_example\"")).empty());  // typo'd key
  // Duplicate ids across two files.
  auto a = parse_rule_file(kGood, "a.json");
  auto b = parse_rule_file(kGood, "b.json");
  ASSERT_TRUE(a.ok() && b.ok());
  a->rules.push_back(b->rules[0]);
  auto p = validate(*a);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NE(p[0].find("duplicate id"), std::string::npos);
}

TEST(Loader, UserDirMergesOverridesAndDisables) {
  auto dir = std::filesystem::temp_directory_path() / ("moat-rules-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "mine.json") << kGood;
  // Overrides a built-in rule by id.
  std::ofstream(dir / "override.json") << with("test.token", "github.pat.classic");
  auto set = load_rules({dir.string()}, {"aws.access-key-id"});
  ASSERT_TRUE(set.ok()) << set.error().describe();
  int gh = 0;
  bool mine = false, aws = false;
  for (const auto& r : set->rules) {
    gh += r.id == "github.pat.classic";
    mine |= r.id == "test.token";
    aws |= r.id == "aws.access-key-id";
    if (r.id == "github.pat.classic") {
      EXPECT_NE(r.origin.find("override.json"), std::string::npos);
    }
  }
  EXPECT_EQ(gh, 1);
  EXPECT_TRUE(mine);
  EXPECT_FALSE(aws);
  EXPECT_FALSE(load_rules({dir.string()}, {"no.such.rule"}).ok());
  EXPECT_FALSE(load_rules({(dir / "missing").string()}, {}).ok());
  // The rules version changes when the rule set does.
  auto base = load_rules({}, {});
  ASSERT_TRUE(base.ok());
  EXPECT_NE(base->version(), set->version());
  EXPECT_EQ(base->version(), load_rules({}, {})->version());
  std::filesystem::remove_all(dir);
}

// `rules check` on a user rule whose negative example matches: exit 2 and a
// FAIL line naming the rule; `--disable` of that rule makes it pass again.
TEST(Loader, RulesCheckReportsBrokenUserRule) {
  auto dir = std::filesystem::temp_directory_path() / ("moat-rules-bad-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "bad.json") << with("\"x = tok_short\"", "\"y = tok_0a1b2c3d4e5f\"");
  RulesOptions o;
  o.rule_dirs = {dir.string()};
  o.builtin = false;
  std::ostringstream out, err;
  EXPECT_EQ(rules_check(o, out, err), 2);
  EXPECT_NE(out.str().find("FAIL test.token: negative example 1 matches"), std::string::npos) << out.str();
  o.disabled = {"test.token"};
  std::ofstream(dir / "good.json") << with("test.token", "test.other");
  std::ostringstream out2, err2;
  EXPECT_EQ(rules_check(o, out2, err2), 0) << out2.str() << err2.str();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace moat::secrets
