// The shipped built-in Vectorscan database (rules/secrets/database.h): the
// built-in rules load without a compile or a cache file, --disable drops
// matches by id without recompiling, and user rules (new or replacing a
// built-in id) are compiled into a second database that is scanned alongside.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "rules/secrets/database.h"
#include "rules/secrets/engine.h"
#include "rules/secrets/rules.h"

namespace moat::secrets {
namespace {

// Built by concatenation so this file holds no token-shaped string.
std::string pat_text() { return "token=" + std::string("gh") + "p_MoatFake" + "0123456789abcdefghijklmnopqr" + "\n"; }

struct TempDir {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("moat-shipped-" + std::to_string(::getpid()) + "-" +
                                                std::to_string(counter++));
  TempDir() { std::filesystem::create_directories(path); }
  ~TempDir() { std::filesystem::remove_all(path); }
  size_t files() const {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(path)) ++n;
    return n;
  }
  static inline int counter = 0;
};

size_t count(const SecretScanner& sc, const std::string& text, const std::string& rule) {
  size_t n = 0;
  auto st = sc.scan_buffer(text.data(), text.size(), [&](const SecretFinding& f) {
    n += f.rule_id == rule;
    return SinkAction::kContinue;
  });
  EXPECT_TRUE(st.ok());
  return n;
}

RuleSet user_rules(const std::string& id, const std::string& pattern) {
  std::string json = R"({"rules": [{"id": ")" + id + R"(", "title": "test rule", "category": "secret",
    "severity": "high", "pattern": ")" + pattern + R"(",
    "examples": ["k=moatuser_abcdefghij0123456789"], "negative_examples": ["k=moatuser_short"],
    "references": ["https://example.invalid/"]}]})";
  auto set = parse_rule_file(json, "test.json");
  EXPECT_TRUE(set.ok()) << set.error().describe();
  return set.ok() ? std::move(set).value() : RuleSet{};
}

TEST(ShippedDatabase, IsUsableOnThisHost) {
  EXPECT_NE(shipped_database_status().find("loads on this host"), std::string::npos) << shipped_database_status();
}

TEST(ShippedDatabase, BuiltinRulesNeedNoCompileAndNoCache) {
  TempDir cache;
  auto set = load_builtin_rules();
  ASSERT_TRUE(set.ok());
  const size_t n = set->rules.size();
  auto sc = SecretScanner::create(std::move(set).value(), {cache.path.string()});
  ASSERT_TRUE(sc.ok()) << sc.error().describe();
  EXPECT_EQ((*sc)->database_note(), std::to_string(n) + " rule(s) from the shipped database");
  EXPECT_EQ(cache.files(), 0u);
  EXPECT_EQ(count(**sc, pat_text(), "github.pat.classic"), 1u);
}

TEST(ShippedDatabase, DisableDropsMatchesWithoutRecompiling) {
  TempDir cache;
  auto set = load_builtin_rules();
  ASSERT_TRUE(set.ok());
  ASSERT_TRUE(set->disable({"github.pat.classic"}).ok());
  auto sc = SecretScanner::create(std::move(set).value(), {cache.path.string()});
  ASSERT_TRUE(sc.ok()) << sc.error().describe();
  EXPECT_EQ((*sc)->database_note().find("compiled"), std::string::npos) << (*sc)->database_note();
  EXPECT_EQ(cache.files(), 0u);
  EXPECT_EQ(count(**sc, pat_text(), "github.pat.classic"), 0u);
  // The other rules still match (the AWS key id rule, say).
  std::string akid = "id=" + std::string("AKIA") + "MOATFAKEQ7W2E4R5\n";
  EXPECT_EQ(count(**sc, akid, "aws.access-key-id"), 1u);
}

TEST(ShippedDatabase, UserRulesCompileIntoASecondDatabase) {
  TempDir cache;
  auto set = load_builtin_rules();
  ASSERT_TRUE(set.ok());
  merge_rules(*set, user_rules("user.moat", "moatuser_([a-z0-9]{20})"));
  auto sc = SecretScanner::create(std::move(set).value(), {cache.path.string()});
  ASSERT_TRUE(sc.ok()) << sc.error().describe();
  EXPECT_NE((*sc)->database_note().find("1 rule(s) compiled"), std::string::npos) << (*sc)->database_note();
  EXPECT_EQ(cache.files(), 1u);  // only the user rule's database is cached
  std::string both = "a=moatuser_abcdefghij0123456789\n" + pat_text();
  EXPECT_EQ(count(**sc, both, "user.moat"), 1u);
  EXPECT_EQ(count(**sc, both, "github.pat.classic"), 1u);
  EXPECT_TRUE(check_examples(**sc).empty());

  // Again: the user part now comes from the cache.
  auto set2 = load_builtin_rules();
  ASSERT_TRUE(set2.ok());
  merge_rules(*set2, user_rules("user.moat", "moatuser_([a-z0-9]{20})"));
  auto sc2 = SecretScanner::create(std::move(set2).value(), {cache.path.string()});
  ASSERT_TRUE(sc2.ok()) << sc2.error().describe();
  EXPECT_NE((*sc2)->database_note().find("from the store's cache"), std::string::npos) << (*sc2)->database_note();
  EXPECT_EQ(count(**sc2, both, "user.moat"), 1u);
}

TEST(ShippedDatabase, ReplacedBuiltinRuleMatchesOnlyItsNewPattern) {
  auto set = load_builtin_rules();
  ASSERT_TRUE(set.ok());
  merge_rules(*set, user_rules("github.pat.classic", "moatuser_([a-z0-9]{20})"));
  auto sc = SecretScanner::create(std::move(set).value());
  ASSERT_TRUE(sc.ok()) << sc.error().describe();
  EXPECT_EQ(count(**sc, pat_text(), "github.pat.classic"), 0u);
  EXPECT_EQ(count(**sc, "a=moatuser_abcdefghij0123456789\n", "github.pat.classic"), 1u);
}

TEST(ShippedDatabase, InvalidUserRuleIsStillAnError) {
  auto set = load_builtin_rules();
  ASSERT_TRUE(set.ok());
  merge_rules(*set, user_rules("user.bad", "moatuser_[a-z0-9]{20}"));  // no capture group
  auto sc = SecretScanner::create(std::move(set).value());
  ASSERT_FALSE(sc.ok());
  EXPECT_NE(sc.error().describe().find("user.bad"), std::string::npos) << sc.error().describe();
}

// scan_fd's size hint (the file's fstat size) only saves the final empty
// read: a file scanned with a right, a too small or no hint gives the same
// findings, whether it fits one 64 KiB chunk or not.
TEST(ScanFd, SizeHintChangesNothingFound) {
  for (size_t size : {size_t{3000}, size_t{200000}}) {
    std::string text = pat_text();
    while (text.size() < size) text += "filler line of text, nothing secret here at all\n";
    text += "x" + pat_text();
    char path[] = "/tmp/moat-sizehint-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    const SecretScanner& sc = *[] {
      static auto s = SecretScanner::create(std::move(load_builtin_rules()).value());
      return s->get();
    }();
    for (uint64_t hint : {uint64_t{text.size()}, uint64_t{text.size() / 2}, uint64_t{1}, UINT64_MAX}) {
      ASSERT_EQ(::lseek(fd, 0, SEEK_SET), 0);
      size_t n = 0;
      auto st = sc.scan_fd(fd, UINT64_MAX, [&](const SecretFinding& f) {
        n += f.rule_id == "github.pat.classic";
        return SinkAction::kContinue;
      }, hint);
      ASSERT_TRUE(st.ok());
      EXPECT_EQ(st->bytes, text.size()) << "size " << size << " hint " << hint;
      EXPECT_EQ(n, 2u) << "size " << size << " hint " << hint;
    }
    ::close(fd);
    ::unlink(path);
  }
}

}  // namespace
}  // namespace moat::secrets
