// Fuzz target: a .moatignore file through parse_ignore() and
// apply_ignores() (scanner/report/ignore.h) over a few findings.
#include "scanner/report/ignore.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto list = parse_ignore(std::string_view(reinterpret_cast<const char*>(data), size), ".moatignore");
  if (!list.ok()) {
    MOAT_FUZZ_ASSERT(!list.error().describe().empty(), "an error without a message");
    return 0;
  }
  std::vector<Finding> fs(3);
  fs[0].rule_id = "setuid-unpackaged";
  fs[0].category = Category::Setuid;
  fs[0].path = "/usr/bin/su";
  fs[1].rule_id = "config-user-root";
  fs[1].target = Target::Config;
  fs[1].config_field = "User";
  fs[2].rule_id = "secret";
  fs[2].path = "/opt/app/.env";
  for (auto& f : fs) finalize_finding(f);
  auto out = apply_ignores(fs, *list, "2026-06-01");
  MOAT_FUZZ_ASSERT(out.kept.size() + out.suppressed.size() == fs.size(), "apply_ignores lost a finding");
  for (const auto& e : list->entries) (void)e.describe();
  return 0;
}
