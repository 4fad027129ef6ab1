// The Vectorscan databases a SecretScanner matches with.
//
// The built-in rules' database is compiled when moat is built (dbgen.cc, a
// host tool run by CMake, for a generic x86-64 target: no AVX2 or AVX-512
// needed, so it loads on any host of the architecture) and shipped inside the
// binary in Vectorscan's serialized form. Compiling it at run time took 1-2 s
// of every scan in a fresh store and every test that scans.
//
// A rule set is split into at most two parts:
//  - the rules that are byte-for-byte built-in rules (by rule_digest()): they
//    use the shipped database; built-in rules missing from the set (--disable,
//    or replaced by a user rule of the same id) stay in the database and their
//    matches are dropped by id, so disabling never recompiles;
//  - every other rule (a user's --rules) is compiled at run time into a second
//    database, cached in the store by the digest of those rules.
// If the shipped form cannot be loaded (another Vectorscan version, a build
// without it), the whole set is compiled at run time and cached, as before.
//
// The rules of the shipped database were validated when it was built; rules
// compiled at run time are validated here (validate() in rules.h) unless
// their compiled form comes from the cache, which only a validating compile
// writes.
#pragma once

#include <hs/hs.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "rules/secrets/rules.h"
#include "storage/result.h"

namespace moat::secrets {

// One Vectorscan database and what its expression ids mean.
struct DbPart {
  hs_database_t* db = nullptr;     // owned
  std::vector<int32_t> to_rule;    // expression id -> index in the rule set; -1: not in the set
};

struct CompiledRules {
  std::vector<DbPart> parts;       // 1 or 2
  std::vector<uint32_t> widths;    // per rule of the set: Vectorscan's max_width
  std::string note;                // how each part was obtained, for -v
  CompiledRules() = default;
  CompiledRules(CompiledRules&&) noexcept;
  CompiledRules& operator=(CompiledRules&&) noexcept;
  CompiledRules(const CompiledRules&) = delete;
  ~CompiledRules();
};

// Builds the databases for `set` as described above. cache_dir may be empty
// (no cache).
Result<CompiledRules> compile_rules(const RuleSet& set, const std::string& cache_dir);

// Compiles `rules` into one streaming database with expression ids 0..n-1
// for `platform` (nullptr: this host). widths[i] receives rule i's max_width.
// Rejects unbounded, too wide or empty-matching rules. Shared with dbgen.cc.
Result<hs_database_t*> compile_database(const std::vector<const SecretRule*>& rules,
                                        const hs_platform_info_t* platform, std::vector<uint32_t>& widths);

// The serialized built-in database blob (written by dbgen.cc; empty when the
// build could not make one). Layout: kShippedMagic, uint32 rule count, per
// rule {uint32 width, 32-byte rule digest}, then hs_serialize_database's bytes.
std::span<const unsigned char> shipped_database();
inline constexpr char kShippedMagic[] = "moat-hsdb-shipped-1\n";

// One line for `moat version --verbose`: whether the shipped database loads
// on this host and what it was built for.
std::string shipped_database_status();

}  // namespace moat::secrets
