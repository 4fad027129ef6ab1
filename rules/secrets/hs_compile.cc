// compile_database(): one rule list into one streaming Vectorscan database.
// Used at run time (database.cc) and at build time (dbgen.cc). See database.h.
#include <cstdlib>

#include "rules/secrets/database.h"

namespace moat::secrets {

Result<hs_database_t*> compile_database(const std::vector<const SecretRule*>& rules,
                                        const hs_platform_info_t* platform, std::vector<uint32_t>& widths) {
  std::vector<const char*> exprs;
  std::vector<unsigned> flags, ids;
  widths.assign(rules.size(), 0);
  std::string bad_width;
  hs_compile_error_t* err = nullptr;
  for (const SecretRule* r : rules) {
    const std::string& hs_pat = r->prefilter.empty() ? r->pattern : r->prefilter;
    hs_expr_info_t* info = nullptr;
    if (hs_expression_info(hs_pat.c_str(), HS_FLAG_MULTILINE, &info, &err) != HS_SUCCESS) {
      hs_free_compile_error(err);
      err = nullptr;
      bad_width += "\n  " + r->id + ": Vectorscan cannot analyse the pattern";
      continue;
    }
    widths[exprs.size()] = info->max_width;
    if (info->max_width > kMaxRuleWidth || info->min_width == 0)
      bad_width += "\n  " + r->id + ": unbounded, too wide (> " + std::to_string(kMaxRuleWidth) +
                   " bytes) or empty match";
    free(info);  // NOLINT: allocated by Vectorscan with malloc
    exprs.push_back(hs_pat.c_str());
    flags.push_back(HS_FLAG_MULTILINE);
    ids.push_back(static_cast<unsigned>(ids.size()));
  }
  if (!bad_width.empty()) return Error{"invalid secret rule(s):" + bad_width, 0, "`moat rules check` explains"};
  hs_database_t* db = nullptr;
  if (hs_compile_multi(exprs.data(), flags.data(), ids.data(), static_cast<unsigned>(exprs.size()), HS_MODE_STREAM,
                       platform, &db, &err) != HS_SUCCESS) {
    std::string m = err && err->message ? err->message : "unknown error";
    int bad = err ? err->expression : -1;
    hs_free_compile_error(err);
    return Error{"cannot compile the secret rules into one Vectorscan database: " + m +
                     (bad >= 0 ? " (rule " + rules[static_cast<size_t>(bad)]->id + ")" : ""),
                 0, {}};
  }
  return db;
}

}  // namespace moat::secrets
