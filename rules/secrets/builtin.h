// The rule files compiled into the binary. builtin_data.cc is generated at
// build time from rules/secrets/data/*.json by embed.cmake, so the rules stay
// data (edited as JSON, reviewed as JSON) and moat still runs from any path.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace moat::secrets {

struct EmbeddedRuleFile {
  std::string_view name;     // file name, e.g. "github.json"
  std::string_view content;  // the JSON text
};

std::span<const EmbeddedRuleFile> builtin_rule_files();

}  // namespace moat::secrets
