// The built-in secret rules' scanner, made once per fuzzing process (the
// targets that scan or redact: secret_scan, image_config). Harness code only.
#pragma once

#include <memory>

#include "rules/secrets/engine.h"
#include "rules/secrets/rules.h"
#include "tests/fuzz/fuzz_util.h"

namespace moat::fuzz {

inline const secrets::SecretScanner& builtin_scanner() {
  static std::unique_ptr<secrets::SecretScanner> s = [] {
    auto rules = secrets::load_builtin_rules();
    MOAT_FUZZ_ASSERT(rules.ok(), "built-in rules do not load");
    auto sc = secrets::SecretScanner::create(std::move(*rules));
    MOAT_FUZZ_ASSERT(sc.ok(), "built-in rules do not compile");
    return std::move(*sc);
  }();
  return *s;
}

}  // namespace moat::fuzz
