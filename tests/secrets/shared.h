// The built-in scanner shared by every test of this binary: compiling 200+
// rules takes seconds, so it is built once, and the compiled database is
// cached in the build tree for the next run (MOAT_SECRETS_TEST_CACHE).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include "rules/secrets/engine.h"
#include "rules/secrets/rules.h"

namespace moat::secrets::test_support {

inline const SecretScanner& builtin_scanner() {
  static std::unique_ptr<SecretScanner> s = [] {
    auto set = load_builtin_rules();
    if (!set.ok()) {
      ADD_FAILURE() << set.error().describe();
      std::abort();
    }
    SecretScanner::Options opts;
#ifdef MOAT_SECRETS_TEST_CACHE
    std::error_code ec;
    std::filesystem::create_directories(MOAT_SECRETS_TEST_CACHE, ec);
    if (!ec) opts.cache_dir = MOAT_SECRETS_TEST_CACHE;
#endif
    auto sc = SecretScanner::create(std::move(set).value(), opts);
    if (!sc.ok()) {
      ADD_FAILURE() << sc.error().describe();
      std::abort();
    }
    return std::move(sc).value();
  }();
  return *s;
}

}  // namespace moat::secrets::test_support
