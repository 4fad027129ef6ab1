// Fuzz target: a user's secret rule file (`--rules DIR`) through
// parse_rule_file() and validate() without the per-rule Vectorscan compile
// (rules/secrets/rules.h), then version() and merge into the built-in set.
#include "rules/secrets/rules.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto set = secrets::parse_rule_file(std::string_view(reinterpret_cast<const char*>(data), size), "/fuzz/rules.json");
  if (!set.ok()) return 0;
  (void)secrets::validate(*set, false);
  (void)set->version();
  std::vector<std::string> ids;
  for (const auto& r : set->rules) ids.push_back(r.id);
  secrets::RuleSet copy = *set;
  (void)copy.disable(ids);
  return 0;
}
