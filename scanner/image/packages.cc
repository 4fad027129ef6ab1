#include "scanner/image/packages.h"

#include <openssl/evp.h>

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cctype>

#include "rules/policy/policy.h"
#include "scanner/image/rpmdb.h"
#include "storage/base64.h"

namespace moat {

std::string_view digest_algo_name(DigestAlgo a) {
  switch (a) {
    case DigestAlgo::Md5: return "md5";
    case DigestAlgo::Sha1: return "sha1";
    case DigestAlgo::Sha256: return "sha256";
    case DigestAlgo::Sha224: return "sha224";
    case DigestAlgo::Sha384: return "sha384";
    case DigestAlgo::Sha512: return "sha512";
  }
  return "md5";
}

namespace {

template <typename Fn>
void for_each_line(std::string_view text, Fn fn) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    fn(line);
  }
}

bool is_hex(std::string_view s, size_t len) {
  return s.size() == len && std::all_of(s.begin(), s.end(), [](unsigned char c) {
           return std::isdigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
         });
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// /usr/bin/x -> /bin/x for the merged-/usr reverse lookup; "" when not a /usr alias.
std::string usr_unmerged(std::string_view path) {
  static constexpr std::string_view kDirs[] = {"/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib32", "/usr/lib64",
                                               "/usr/libx32"};
  for (auto d : kDirs)
    if (path.substr(0, d.size()) == d && (path.size() == d.size() || path[d.size()] == '/'))
      return std::string(path.substr(4));
  return {};
}

}  // namespace

std::string PackageDb::managers() const {
  // The known managers in a fixed order, then any other in database order.
  std::vector<std::string> seen;
  for (const char* m : {"dpkg", "apk", "rpm"})
    if (std::any_of(packages.begin(), packages.end(), [&](const PackageInfo& p) { return p.manager == m; }))
      seen.emplace_back(m);
  for (const auto& p : packages)
    if (!p.manager.empty() && std::find(seen.begin(), seen.end(), p.manager) == seen.end()) seen.push_back(p.manager);
  std::string out;
  for (const auto& m : seen) out += (out.empty() ? "" : "+") + m;
  return out;
}

template <typename Map>
const typename Map::mapped_type* PackageDb::lookup(const Map& m, std::string_view path) const {
  if (auto it = m.find(path); it != m.end()) return &it->second;
  if (!merged_usr_) return nullptr;
  // Only these trees have another spelling; most misses (/usr/share, /etc ...)
  // stop here without building one.
  static constexpr std::string_view kAliased[] = {"/bin",     "/sbin",     "/lib",     "/lib32",     "/lib64",
                                                  "/libx32",  "/usr/bin",  "/usr/sbin", "/usr/lib",   "/usr/lib32",
                                                  "/usr/lib64", "/usr/libx32"};
  if (std::none_of(std::begin(kAliased), std::end(kAliased), [&](std::string_view d) {
        return path.substr(0, d.size()) == d && (path.size() == d.size() || path[d.size()] == '/');
      }))
    return nullptr;
  std::string alt = policy::usr_merged(path);
  if (alt == path) alt = usr_unmerged(path);
  if (alt.empty() || alt == path) return nullptr;
  if (auto it = m.find(std::string_view(alt)); it != m.end()) return &it->second;
  return nullptr;
}

const std::string* PackageDb::owner_of(std::string_view path) const {
  const std::string* const* p = lookup(owners_, path);
  return p ? *p : nullptr;
}
const ExpectedDigest* PackageDb::digest_of(std::string_view path) const { return lookup(digests_, path); }

std::string& PackageDb::keep(std::string text) { return kept_.emplace_back(std::move(text)); }
const std::string* PackageDb::intern(std::string_view name) { return &*names_.emplace(name).first; }
void PackageDb::add_owner_kept(std::string_view path, const std::string* package) { owners_.try_emplace(path, package); }
void PackageDb::add_digest_kept(std::string_view path, ExpectedDigest d) { digests_.try_emplace(path, std::move(d)); }
void PackageDb::reserve(size_t owners, size_t digests) {
  owners_.reserve(owners);
  digests_.reserve(digests);
}

// The first entry for a path wins: nothing is kept for a path already there.
void PackageDb::add_owner(std::string path, const std::string& package) {
  if (owners_.count(path)) return;
  add_owner_kept(keep(std::move(path)), intern(package));
}
void PackageDb::add_digest(std::string path, ExpectedDigest d) {
  if (digests_.count(path)) return;
  add_digest_kept(keep(std::move(path)), std::move(d));
}

std::unordered_map<std::string, Diversion> parse_dpkg_diversions(std::string_view text) {
  std::vector<std::string> lines;
  for_each_line(text, [&](std::string_view l) { lines.emplace_back(l); });
  std::unordered_map<std::string, Diversion> out;
  // A trailing partial triple (truncated file) is ignored rather than guessed at.
  for (size_t i = 0; i + 2 < lines.size(); i += 3)
    out[lines[i]] = Diversion{lines[i + 1], lines[i + 2]};
  return out;
}

std::vector<DpkgPackage> parse_dpkg_status(std::string_view text) {
  std::vector<DpkgPackage> out;
  DpkgPackage cur;
  std::string status;
  auto flush = [&] {
    // Status: want flag status. Only these two states have no files on disk.
    std::string state = status.substr(status.rfind(' ') == std::string::npos ? 0 : status.rfind(' ') + 1);
    if (!cur.name.empty() && !status.empty() && state != "not-installed" && state != "config-files")
      out.push_back(cur);
    cur = DpkgPackage{};
    status.clear();
  };
  for_each_line(text, [&](std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      flush();
      return;
    }
    if (line[0] == ' ' || line[0] == '\t') return;  // continuation of a multi-line field
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return;
    std::string_view key = line.substr(0, colon), value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
    if (key == "Package") cur.name = value;
    else if (key == "Version") cur.version = value;
    else if (key == "Architecture") cur.arch = value;
    else if (key == "Multi-Arch") cur.multi_arch_same = value == "same";
    else if (key == "Status") status = value;
  });
  flush();
  return out;
}

namespace {

// The diversion of `path` for package `pkg`, or null. `key` is scratch space.
const Diversion* diverted(const std::string& pkg, std::string_view path,
                          const std::unordered_map<std::string, Diversion>& div, std::string& key) {
  if (div.empty()) return nullptr;
  key.assign(path);
  auto it = div.find(key);
  return it != div.end() && it->second.by != pkg ? &it->second : nullptr;
}

// add_dpkg_list on a text the database keeps.
void add_dpkg_list_kept(PackageDb& db, const std::string& package, const std::string& list,
                        const std::unordered_map<std::string, Diversion>& diversions) {
  const std::string* pkg = db.intern(package);
  std::string key;
  for_each_line(list, [&](std::string_view line) {
    if (line.empty() || line == "/." || line[0] != '/') return;
    if (const Diversion* d = diverted(package, line, diversions, key)) db.add_owner(d->to, package);
    else db.add_owner_kept(line, pkg);
  });
}

// add_dpkg_md5sums on a text the database keeps: each line's second space
// becomes the path's leading '/', so the path is a view into the text.
void add_dpkg_md5sums_kept(PackageDb& db, const std::string& package, std::string& md5sums,
                           const std::unordered_map<std::string, Diversion>& diversions) {
  size_t bad = 0;
  std::string key;
  size_t pos = 0;
  while (pos < md5sums.size()) {
    size_t nl = md5sums.find('\n', pos);
    if (nl == std::string::npos) nl = md5sums.size();
    const size_t at = pos;
    std::string_view line(md5sums.data() + at, nl - at);
    pos = nl + 1;
    if (line.empty()) continue;
    // "<32 hex><two spaces><path>": the path may itself contain spaces.
    if (line.size() < 35 || !is_hex(line.substr(0, 32), 32) || line.substr(32, 2) != "  ") {
      ++bad;
      continue;
    }
    ExpectedDigest d{DigestAlgo::Md5, lower(line.substr(0, 32)), package};
    md5sums[at + 33] = '/';
    std::string_view path = line.substr(33);
    if (const Diversion* dv = diverted(package, path, diversions, key)) db.add_digest(dv->to, std::move(d));
    else db.add_digest_kept(path, std::move(d));
  }
  if (bad) db.errors.push_back("dpkg md5sums of " + package + ": " + std::to_string(bad) + " malformed line(s) skipped");
}

}  // namespace

void add_dpkg_list(PackageDb& db, const std::string& package, std::string_view list,
                   const std::unordered_map<std::string, Diversion>& diversions) {
  add_dpkg_list_kept(db, package, db.keep(std::string(list)), diversions);
}

void add_dpkg_md5sums(PackageDb& db, const std::string& package, std::string_view md5sums,
                      const std::unordered_map<std::string, Diversion>& diversions) {
  add_dpkg_md5sums_kept(db, package, db.keep(std::string(md5sums)), diversions);
}

namespace {

std::string to_hex(std::string_view bytes) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out;
}

}  // namespace

std::optional<ExpectedDigest> parse_apk_checksum(std::string_view z) {
  if (z.size() < 3 || z[0] != 'Q') return std::nullopt;
  DigestAlgo algo;
  size_t want;
  if (z[1] == '1') algo = DigestAlgo::Sha1, want = 20;
  else if (z[1] == '2') algo = DigestAlgo::Sha256, want = 32;
  else return std::nullopt;
  auto raw = base64_decode_lenient(z.substr(2));
  if (!raw || raw->size() != want) return std::nullopt;
  return ExpectedDigest{algo, to_hex(*raw), {}};
}

void add_apk_installed(PackageDb& db, std::string_view text) {
  PackageInfo cur;
  cur.manager = "apk";
  std::string dir, last_file;
  size_t bad = 0;
  auto flush = [&] {
    if (!cur.name.empty()) db.packages.push_back(cur);
    cur = PackageInfo{};
    cur.manager = "apk";
    dir.clear();
    last_file.clear();
  };
  for_each_line(text, [&](std::string_view line) {
    if (line.empty()) {
      flush();
      return;
    }
    if (line.size() < 2 || line[1] != ':') {
      ++bad;
      return;
    }
    std::string_view v = line.substr(2);
    switch (line[0]) {
      case 'P': cur.name = v; break;
      case 'V': cur.version = v; break;
      case 'A': cur.arch = v; break;
      case 'F':
        dir = "/" + std::string(v);
        last_file.clear();
        if (!cur.name.empty()) db.add_owner(dir, cur.name);
        break;
      case 'R':
        if (cur.name.empty() || v.empty() || v.find('/') != std::string_view::npos) {
          ++bad;
          break;
        }
        last_file = (dir == "/" || dir.empty() ? "" : dir) + "/" + std::string(v);
        db.add_owner(last_file, cur.name);
        break;
      case 'Z':
        if (last_file.empty()) break;  // a package checksum or a directory's: not a file digest
        if (auto d = parse_apk_checksum(v)) {
          d->package = cur.name;
          db.add_digest(last_file, std::move(*d));
        } else {
          ++bad;
        }
        break;
      default: break;  // C: (package checksum), a: (mode), M: (dir mode), ... not needed here
    }
  });
  flush();
  if (bad) db.errors.push_back("apk installed database: " + std::to_string(bad) + " malformed line(s) skipped");
}

Result<PackageDb> load_package_db(const ReadImageFile& read) {
  PackageDb db;
  MOAT_ASSIGN_OR_RETURN(auto status, read("/var/lib/dpkg/status"));
  if (status) {
    std::unordered_map<std::string, Diversion> div;
    MOAT_ASSIGN_OR_RETURN(auto divtext, read("/var/lib/dpkg/diversions"));
    if (divtext) div = parse_dpkg_diversions(*divtext);
    // Each package's info files, read in parallel (hundreds of small files;
    // `read` may be called from any thread), then added in database order:
    // the first package to list a path owns it.
    struct Info {
      std::vector<std::string> errors;
      std::optional<std::string> list, sums;
    };
    const std::vector<DpkgPackage> pkgs = parse_dpkg_status(*status);
    std::vector<Info> info(pkgs.size());
    tbb::parallel_for(size_t{0}, pkgs.size(), [&](size_t i) {
      const DpkgPackage& p = pkgs[i];
      Info& in = info[i];
      // Multi-Arch: same packages use "<pkg>:<arch>" info files; others
      // plain "<pkg>". Try the arch-qualified name first, then the plain one.
      std::vector<std::string> stems;
      if (!p.arch.empty()) stems.push_back("/var/lib/dpkg/info/" + p.name + ":" + p.arch);
      stems.push_back("/var/lib/dpkg/info/" + p.name);
      for (const auto& stem : stems) {
        auto list = read(stem + ".list");
        if (!list.ok()) {
          in.errors.push_back("dpkg: " + list.error().describe());
          break;
        }
        if (!*list) continue;
        in.list = std::move(**list);
        auto sums = read(stem + ".md5sums");
        if (!sums.ok()) in.errors.push_back("dpkg: " + sums.error().describe());
        else if (*sums) in.sums = std::move(**sums);
        // No .md5sums is normal for some packages (metapackages, old debs).
        break;
      }
    });
    size_t lines = 0, sum_lines = 0;
    for (const Info& in : info) {
      if (in.list) lines += static_cast<size_t>(std::count(in.list->begin(), in.list->end(), '\n'));
      if (in.sums) sum_lines += static_cast<size_t>(std::count(in.sums->begin(), in.sums->end(), '\n'));
    }
    db.reserve(lines, sum_lines);
    for (size_t i = 0; i < pkgs.size(); ++i) {
      const DpkgPackage& p = pkgs[i];
      Info& in = info[i];
      db.packages.push_back(PackageInfo{p.name, p.version, p.arch, "dpkg"});
      for (auto& e : in.errors) db.errors.push_back(std::move(e));
      if (in.list) add_dpkg_list_kept(db, p.name, db.keep(std::move(*in.list)), div);
      // (a read error of the .md5sums comes before its lines' errors, as it always did)
      if (in.sums) add_dpkg_md5sums_kept(db, p.name, db.keep(std::move(*in.sums)), div);
      if (!in.list) db.errors.push_back("dpkg: package " + p.name + " has no file list in /var/lib/dpkg/info");
    }
  }
  MOAT_ASSIGN_OR_RETURN(auto apk, read("/lib/apk/db/installed"));
  if (apk) add_apk_installed(db, *apk);
  MOAT_TRY(load_rpm_db(db, read));
  return db;
}

std::vector<std::string> os_release_ids(std::string_view text) {
  std::vector<std::string> id, like;
  for_each_line(text, [&](std::string_view line) {
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) return;
    std::string_view key = line.substr(0, eq), v = line.substr(eq + 1);
    if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) v = v.substr(1, v.size() - 2);
    auto words = [&](std::vector<std::string>& out) {
      size_t pos = 0;
      while (pos < v.size()) {
        size_t sp = v.find(' ', pos);
        if (sp == std::string_view::npos) sp = v.size();
        if (sp > pos) out.push_back(lower(v.substr(pos, sp - pos)));
        pos = sp + 1;
      }
    };
    if (key == "ID") words(id);
    else if (key == "ID_LIKE") words(like);
  });
  id.insert(id.end(), like.begin(), like.end());
  return id;
}

FileHasher::FileHasher(DigestAlgo algo) {
  auto* ctx = EVP_MD_CTX_new();
  const EVP_MD* md = EVP_sha256();
  switch (algo) {
    case DigestAlgo::Md5: md = EVP_md5(); break;
    case DigestAlgo::Sha1: md = EVP_sha1(); break;
    case DigestAlgo::Sha256: md = EVP_sha256(); break;
    case DigestAlgo::Sha224: md = EVP_sha224(); break;
    case DigestAlgo::Sha384: md = EVP_sha384(); break;
    case DigestAlgo::Sha512: md = EVP_sha512(); break;
  }
  EVP_DigestInit_ex(ctx, md, nullptr);
  ctx_ = ctx;
}

FileHasher::~FileHasher() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void FileHasher::update(const void* data, size_t n) { EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, n); }

std::string FileHasher::finish_hex() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), out, &len);
  return to_hex(std::string_view(reinterpret_cast<const char*>(out), len));
}

std::string digest_hex(DigestAlgo algo, std::string_view data) {
  FileHasher h(algo);
  h.update(data.data(), data.size());
  return h.finish_hex();
}

}  // namespace moat
