// `moat rules list|check`. See cli.h.
#include "rules/secrets/cli.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "rules/secrets/engine.h"
#include "rules/secrets/rules.h"

namespace moat::secrets {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 2;

int fail(std::ostream& err, const Error& e) {
  err << "moat: error: " << e.describe() << "\n";
  if (!e.hint.empty()) err << "moat: hint: " << e.hint << "\n";
  return kExitFailed;
}

}  // namespace

int rules_list(const RulesOptions& opts, std::ostream& out, std::ostream& err) {
  auto set = load_rules(opts.rule_dirs, opts.disabled, opts.builtin);
  if (!set.ok()) return fail(err, set.error());
  if (opts.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : set->rules)
      arr.push_back({{"id", r.id},
                     {"title", r.title},
                     {"category", r.category},
                     {"severity", r.severity},
                     {"pattern", r.pattern},
                     {"keywords", r.keywords},
                     {"min_entropy", r.min_entropy},
                     {"references", r.references},
                     {"origin", r.origin}});
    out << nlohmann::json{{"rules_version", set->version()}, {"rules", arr}}.dump(2) << "\n";
    return kExitOk;
  }
  size_t w = 2;
  for (const auto& r : set->rules) w = std::max(w, r.id.size());
  for (const auto& r : set->rules) {
    out << r.id << std::string(w - r.id.size() + 2, ' ') << r.severity << std::string(10 - std::min<size_t>(9, r.severity.size()), ' ')
        << r.title << "\n";
  }
  out << set->rules.size() << " secret rules, version " << set->version() << "\n";
  return kExitOk;
}

int rules_check(const RulesOptions& opts, std::ostream& out, std::ostream& err) {
  auto set = load_rules(opts.rule_dirs, opts.disabled, opts.builtin);
  if (!set.ok()) return fail(err, set.error());
  size_t n = set->rules.size();
  size_t examples = 0;
  for (const auto& r : set->rules) examples += r.examples.size() + r.negative_examples.size();
  auto problems = validate(*set);
  if (problems.empty()) {
    auto scanner = SecretScanner::create(std::move(set).value());
    if (!scanner.ok()) return fail(err, scanner.error());
    problems = check_examples(**scanner);
  }
  for (const auto& p : problems) out << "FAIL " << p << "\n";
  if (!problems.empty()) {
    out << problems.size() << " problem(s) in " << n << " secret rules\n";
    return kExitFailed;
  }
  out << "ok: " << n << " secret rules compile, " << examples << " examples and negative examples behave\n";
  return kExitOk;
}

}  // namespace moat::secrets
