// Where a SecretScanner's Vectorscan databases come from: the shipped
// built-in database, the store's cache, or a compile. See database.h.
#include "rules/secrets/database.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "rules/secrets/engine.h"
#include "storage/fd.h"

namespace moat::secrets {
namespace {

// The shipped blob, parsed once: its per-rule table and where the
// serialized database starts.
struct Shipped {
  std::unordered_map<std::string, uint32_t> by_digest;  // hex rule digest -> expression id
  std::vector<uint32_t> widths;                         // per expression id
  const char* db = nullptr;
  size_t db_len = 0;
  std::string info;   // hs_serialized_database_info
  std::string error;  // why it cannot be used, empty if it can
};

const Shipped& shipped() {
  static const Shipped s = [] {
    Shipped out;
    auto blob = shipped_database();
    const size_t magic = sizeof kShippedMagic - 1;
    if (blob.empty()) {
      out.error = "this build has no shipped database";
      return out;
    }
    const char* p = reinterpret_cast<const char*>(blob.data());
    uint32_t n = 0;
    if (blob.size() < magic + 4 || std::memcmp(p, kShippedMagic, magic) != 0) {
      out.error = "the shipped database is damaged";
      return out;
    }
    std::memcpy(&n, p + magic, 4);
    size_t head = magic + 4 + size_t{n} * 36;
    if (blob.size() <= head) {
      out.error = "the shipped database is damaged";
      return out;
    }
    static const char* hex = "0123456789abcdef";
    for (uint32_t i = 0; i < n; ++i) {
      const char* e = p + magic + 4 + size_t{i} * 36;
      uint32_t w;
      std::memcpy(&w, e, 4);
      out.widths.push_back(w);
      std::string d;
      for (int k = 0; k < 32; ++k) {
        auto b = static_cast<unsigned char>(e[4 + k]);
        d += hex[b >> 4];
        d += hex[b & 15];
      }
      out.by_digest.emplace(std::move(d), i);
    }
    out.db = p + head;
    out.db_len = blob.size() - head;
    char* info = nullptr;
    if (hs_serialized_database_info(out.db, out.db_len, &info) == HS_SUCCESS && info) {
      out.info = info;
      free(info);  // NOLINT: Vectorscan's default allocator
    } else {
      out.error = "Vectorscan cannot read the shipped database";
    }
    return out;
  }();
  return s;
}

// Deserializes the shipped database, or says why it cannot be used here.
Result<hs_database_t*> load_shipped() {
  const Shipped& s = shipped();
  if (!s.error.empty()) return Error{s.error};
  hs_database_t* db = nullptr;
  hs_error_t e = hs_deserialize_database(s.db, s.db_len, &db);
  if (e == HS_SUCCESS) return db;
  if (e == HS_DB_VERSION_ERROR)
    return Error{"the shipped database (" + s.info + ") was built with another Vectorscan than this one (" +
                 hs_version() + ")"};
  if (e == HS_DB_PLATFORM_ERROR) return Error{"the shipped database (" + s.info + ") does not run on this CPU"};
  return Error{"Vectorscan cannot load the shipped database (error " + std::to_string(e) + ")"};
}

std::string cache_path(const std::string& dir, const RuleSet& set) {
  // The rules version already hashes every pattern; add the Vectorscan
  // version so an upgraded library never loads an old layout.
  std::string v = set.version();
  return dir + "/secrets-" + fingerprint(hs_version(), v).substr(0, 32) + ".hsdb";
}

// Cache file: "moat-hsdb-1\n", the rule count, each rule's max width
// (uint32, host order: the file is only valid on this machine anyway), then
// Vectorscan's serialized database.
constexpr char kCacheMagic[] = "moat-hsdb-1\n";

hs_database_t* load_cached(const std::string& path, std::vector<uint32_t>& widths) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return nullptr;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || st.st_size <= 0 || st.st_size > (256 << 20)) return nullptr;
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t r = ::read(fd.get(), bytes.data() + off, bytes.size() - off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return nullptr;
    off += static_cast<size_t>(r);
  }
  const size_t magic = sizeof kCacheMagic - 1;
  uint32_t n = 0;
  if (bytes.size() < magic + 4 || bytes.compare(0, magic, kCacheMagic) != 0) return nullptr;
  std::memcpy(&n, bytes.data() + magic, 4);
  size_t head = magic + 4 + size_t{n} * 4;
  if (n != widths.size() || bytes.size() <= head) return nullptr;
  std::memcpy(widths.data(), bytes.data() + magic + 4, size_t{n} * 4);
  hs_database_t* db = nullptr;
  // Vectorscan checks the layout, version and platform of a serialized database.
  if (hs_deserialize_database(bytes.data() + head, bytes.size() - head, &db) != HS_SUCCESS) return nullptr;
  return db;
}

// Best effort: a cache that cannot be written only costs the next run a compile.
void store_cached(const std::string& path, const hs_database_t* db, const std::vector<uint32_t>& widths) {
  char* bytes = nullptr;
  size_t n = 0;
  if (hs_serialize_database(db, &bytes, &n) != HS_SUCCESS) return;
  std::string head(kCacheMagic);
  uint32_t count = static_cast<uint32_t>(widths.size());
  head.append(reinterpret_cast<const char*>(&count), 4);
  head.append(reinterpret_cast<const char*>(widths.data()), widths.size() * 4);
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  bool ok = fd.valid();
  for (size_t off = 0; ok && off < head.size();) {
    ssize_t w = ::write(fd.get(), head.data() + off, head.size() - off);
    if (w < 0 && errno == EINTR) continue;
    ok = w > 0;
    if (ok) off += static_cast<size_t>(w);
  }
  for (size_t off = 0; ok && off < n;) {
    ssize_t w = ::write(fd.get(), bytes + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    ok = w > 0;
    if (ok) off += static_cast<size_t>(w);
  }
  free(bytes);  // NOLINT: allocated by Vectorscan's default allocator
  ok = ok && ::fsync(fd.get()) == 0;
  fd.reset();
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) ::unlink(tmp.c_str());
}

Error invalid(const std::vector<std::string>& problems) {
  std::string msg = std::to_string(problems.size()) + " invalid secret rule(s):";
  for (const auto& p : problems) msg += "\n  " + p;
  return Error{msg, 0, "`moat rules check` lists the same problems"};
}

}  // namespace

CompiledRules::CompiledRules(CompiledRules&& o) noexcept
    : parts(std::move(o.parts)), widths(std::move(o.widths)), note(std::move(o.note)) {
  o.parts.clear();
}

CompiledRules& CompiledRules::operator=(CompiledRules&& o) noexcept {
  std::swap(parts, o.parts);  // o frees what this held
  widths = std::move(o.widths);
  note = std::move(o.note);
  return *this;
}

CompiledRules::~CompiledRules() {
  for (auto& p : parts)
    if (p.db) hs_free_database(p.db);
}

Result<CompiledRules> compile_rules(const RuleSet& set, const std::string& cache_dir) {
  const size_t n = set.rules.size();
  CompiledRules out;
  out.widths.assign(n, 0);

  // 1. Built-in rules from the shipped database.
  std::vector<bool> shipped_rule(n, false);
  const Shipped& sh = shipped();
  if (sh.error.empty()) {
    DbPart part;
    part.to_rule.assign(sh.widths.size(), -1);
    size_t hits = 0;
    for (size_t i = 0; i < n; ++i) {
      auto it = sh.by_digest.find(rule_digest(set.rules[i]));
      if (it == sh.by_digest.end() || part.to_rule[it->second] >= 0) continue;
      part.to_rule[it->second] = static_cast<int32_t>(i);
      out.widths[i] = sh.widths[it->second];
      shipped_rule[i] = true;
      ++hits;
    }
    if (hits > 0) {
      if (auto db = load_shipped(); db.ok()) {
        part.db = *db;
        out.parts.push_back(std::move(part));
        out.note = std::to_string(hits) + " rule(s) from the shipped database";
      } else {
        shipped_rule.assign(n, false);
        out.note = "shipped database not used: " + db.error().describe();
      }
    }
  } else {
    out.note = "shipped database not used: " + sh.error;
  }

  // 2. Everything else: compiled here, or from the store's cache.
  RuleSet rest;
  rest.global_allow = set.global_allow;
  std::vector<size_t> rest_idx;
  for (size_t i = 0; i < n; ++i)
    if (!shipped_rule[i]) {
      rest.rules.push_back(set.rules[i]);
      rest_idx.push_back(i);
    }
  if (rest.rules.empty()) {
    // Only the global allow list is left to check: a few RE2 compiles.
    if (auto problems = validate(rest, /*compile_each=*/false); !problems.empty()) return invalid(problems);
    return out;
  }
  const std::string cached = cache_dir.empty() ? std::string() : cache_path(cache_dir, rest);
  std::vector<uint32_t> widths(rest.rules.size());
  DbPart part;
  part.db = cached.empty() ? nullptr : load_cached(cached, widths);
  std::string how = "from the store's cache";
  if (!part.db) {
    if (auto problems = validate(rest, /*compile_each=*/false); !problems.empty()) return invalid(problems);
    std::vector<const SecretRule*> ptrs;
    for (const auto& r : rest.rules) ptrs.push_back(&r);
    auto t0 = std::chrono::steady_clock::now();
    auto db = compile_database(ptrs, nullptr, widths);
    if (!db.ok()) {
      // The full validation names the rule and the reason.
      Error e = std::move(db).error();
      for (const auto& p : validate(rest, /*compile_each=*/true)) e.message += "\n  " + p;
      return e;
    }
    part.db = *db;
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.2f",
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    how = std::string("compiled in ") + secs + " s";
    if (!cached.empty()) store_cached(cached, part.db, widths);
  }
  part.to_rule.resize(rest_idx.size());
  for (size_t k = 0; k < rest_idx.size(); ++k) {
    part.to_rule[k] = static_cast<int32_t>(rest_idx[k]);
    out.widths[rest_idx[k]] = widths[k];
  }
  out.parts.push_back(std::move(part));
  out.note += (out.note.empty() ? "" : "; ") + std::to_string(rest_idx.size()) + " rule(s) " + how;
  return out;
}

std::string shipped_database_status() {
  const Shipped& s = shipped();
  if (!s.error.empty()) return "not available: " + s.error;
  auto db = load_shipped();
  if (!db.ok()) return "not usable here (rules compile at run time): " + db.error().describe();
  hs_free_database(*db);
  return std::to_string(s.widths.size()) + " built-in rules, " + std::to_string(s.db_len / 1024) +
         " KiB, generic target, loads on this host (" + s.info + ")";
}

}  // namespace moat::secrets
