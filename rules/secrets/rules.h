// Secret rules: the data model, the loader and the validator.
//
// Rules are data (one JSON file per vendor or family under rules/secrets/data/,
// embedded into the binary at build time, see CMakeLists.txt); users add their
// own files with `--rules DIR` and switch rules off by id. Nothing here knows
// about Vectorscan, files or reports: the engine (engine.h) compiles a RuleSet,
// the CLI helpers (cli.h) print and check it. The schema is documented in
// rules/secrets/README.md and enforced by validate().
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "storage/result.h"

namespace moat::secrets {

// One example of a rule: text that must (or must not) produce a finding.
// `secret`, when set, is the exact capture the rule must extract from `text`.
struct RuleExample {
  std::string text;
  std::string secret;  // empty: any capture will do
};

struct SecretRule {
  std::string id;        // unique, [a-z0-9][a-z0-9.-]*, e.g. "github.pat.classic"
  std::string title;     // one line for humans
  std::string category;  // always "secret" for now; kept so reports can group
  std::string severity;  // critical | high | medium | low | info
  // RE2 syntax, exactly one capture group: the secret. The engine compiles it
  // with multi-line anchors (^/$ at line ends) in both engines.
  std::string pattern;
  // Optional Vectorscan form when `pattern` is not Vectorscan-compatible; it
  // must match everything `pattern` matches (a superset is fine: RE2 decides).
  std::string prefilter;
  std::vector<std::string> keywords;  // if set, the whole match must contain one (case-insensitive)
  double min_entropy = 0;             // Shannon bits per byte of the capture; 0 = no minimum
  std::vector<std::string> allow;     // RE2 patterns; a capture matching any is not reported
  // RE2 patterns tested against the whole match (group 0), for context that
  // marks documentation: "user:pass@example.com" is an example whatever the password.
  std::vector<std::string> allow_match;
  // Generic rules (password=..., URLs with credentials) yield to a specific rule
  // that captured the same bytes, so one secret is reported once.
  bool generic = false;
  // A rule for a block of text (a PEM private key) sets the literal that ends
  // the block ("-----END"). Another rule's finding between this rule's
  // finding and the end is dropped: base64 key material is not a token.
  std::string block_end;
  std::vector<RuleExample> examples;
  std::vector<RuleExample> negative_examples;
  std::vector<std::string> references;
  std::string origin;  // "builtin:github.json" or the user file path: for error messages
};

struct RuleSet {
  std::vector<SecretRule> rules;
  // Allow patterns applied to every rule (documentation keys, placeholders).
  std::vector<std::string> global_allow;

  // Removes rules by id. An unknown id is an error: a typo in --disable must
  // not silently keep a noisy rule on.
  Status disable(const std::vector<std::string>& ids);
  // A stable digest of every enabled rule (canonical JSON) and the engine
  // version: the "rules version" half of the per-layer result cache key.
  std::string version() const;
};

// sha256 (hex) of everything about one rule that matching and validation
// read: two rules with the same digest behave the same. The shipped
// Vectorscan database (database.h) names its rules by these digests.
std::string rule_digest(const SecretRule& rule);

// Lower-case hex of the SHA-256 of `text` (rule digests, versions, fingerprints).
std::string sha256_hex(std::string_view text);

// The rules compiled into the binary (rules/secrets/data/*.json).
Result<RuleSet> load_builtin_rules();
// Parses one rule file; `origin` names it in errors.
Result<RuleSet> parse_rule_file(std::string_view json_text, const std::string& origin);
// Reads every *.json file in `dir` (not recursive, sorted by name).
Result<RuleSet> load_rule_dir(const std::string& dir);
// Merges `extra` into `base`: a rule whose id already exists replaces it
// (so a user can fix a noisy built-in rule), new ids are appended, global
// allow lists are concatenated.
void merge_rules(RuleSet& base, RuleSet extra);

// Builtin rules, then each --rules DIR in order, then --disable ids.
Result<RuleSet> load_rules(const std::vector<std::string>& rule_dirs, const std::vector<std::string>& disabled,
                           bool builtin = true);

// Everything wrong with a rule set, one message per problem ("id: what"):
// required fields, unique ids, one capture group, RE2 and Vectorscan compile,
// bounded match width, allow patterns compile. Examples are checked by
// check_examples() in engine.h, which runs them through the real engine.
// compile_each=false skips the Vectorscan checks (compiling every rule alone
// is the slow part): SecretScanner::create() compiles them together anyway,
// checks widths itself, and runs the full check only to name a failing rule.
std::vector<std::string> validate(const RuleSet& set, bool compile_each = true);

// The longest match (bytes) a rule may have: it bounds the confirmation window
// and the carry-over between streamed chunks, hence the engine's memory.
inline constexpr unsigned kMaxRuleWidth = 8192;

}  // namespace moat::secrets
