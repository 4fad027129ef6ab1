#include "scanner/image/rpmdb.h"

#include <sqlite3.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <unordered_map>

#include "storage/fsutil.h"

namespace moat {

namespace {

// ---- the header blob ---------------------------------------------------------

// A package with more files is refused (the largest Fedora packages have
// ~100k); it bounds every per-file array before anything is allocated.
constexpr size_t kMaxFiles = size_t{1} << 20;
// File-path bytes one database may expand to (a real one: tens of MiB).
constexpr size_t kMaxDbPathBytes = size_t{256} << 20;

uint32_t be32(std::string_view s, size_t at) {
  auto* b = reinterpret_cast<const unsigned char*>(s.data() + at);
  return uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | uint32_t{b[3]};
}

uint16_t be16(std::string_view s, size_t at) {
  auto* b = reinterpret_cast<const unsigned char*>(s.data() + at);
  return static_cast<uint16_t>(b[0] << 8 | b[1]);
}

// Bytes per element (0: variable, strings) and alignment, per type 0..9.
constexpr uint32_t kTypeSize[10] = {0, 1, 1, 2, 4, 8, 0, 1, 0, 0};
constexpr uint32_t kTypeAlign[10] = {1, 1, 1, 2, 4, 8, 1, 1, 1, 1};

std::string tag_name(int32_t tag) {
  switch (tag) {
    case rpm::kTagName: return "NAME";
    case rpm::kTagVersion: return "VERSION";
    case rpm::kTagRelease: return "RELEASE";
    case rpm::kTagArch: return "ARCH";
    case rpm::kTagOldFilenames: return "OLDFILENAMES";
    case rpm::kTagFileModes: return "FILEMODES";
    case rpm::kTagFileStates: return "FILESTATES";
    case rpm::kTagFileDigests: return "FILEDIGESTS";
    case rpm::kTagFileFlags: return "FILEFLAGS";
    case rpm::kTagFileVerifyFlags: return "FILEVERIFYFLAGS";
    case rpm::kTagDirIndexes: return "DIRINDEXES";
    case rpm::kTagBasenames: return "BASENAMES";
    case rpm::kTagDirnames: return "DIRNAMES";
    case rpm::kTagFileDigestAlgo: return "FILEDIGESTALGO";
    default: return "tag " + std::to_string(tag);
  }
}

std::string type_name(uint32_t t) {
  static const char* kNames[10] = {"null",  "char", "int8",         "int16",      "int32",
                                   "int64", "string", "bin", "string array", "i18n string"};
  return t < 10 ? kNames[t] : "type " + std::to_string(t);
}

struct Entry {
  int32_t tag = 0;
  uint32_t type = 0, offset = 0, count = 0;
  uint32_t len = 0;  // bytes of the value in the data
};

Entry entry_at(std::string_view s, size_t at) {
  return Entry{static_cast<int32_t>(be32(s, at)), be32(s, at + 4), be32(s, at + 8), be32(s, at + 12), 0};
}

// Bytes taken by `count` NUL-terminated strings at data[off..], 0 when they
// run past the end. Each string takes at least one byte, so this is O(bytes).
uint64_t strings_len(std::string_view data, uint32_t off, uint32_t count) {
  size_t pos = off;
  for (uint32_t i = 0; i < count; ++i) {
    if (pos >= data.size()) return 0;
    const void* nul = std::memchr(data.data() + pos, 0, data.size() - pos);
    if (!nul) return 0;
    pos = static_cast<size_t>(static_cast<const char*>(nul) - data.data()) + 1;
  }
  return pos - off;
}

// The verified entries of one header, by tag (a later entry replaces an
// earlier one: dribbles replace region entries, as in rpm's headerImport).
class Tags {
 public:
  std::string_view data;
  std::unordered_map<int32_t, Entry> by_tag;

  const Entry* find(int32_t tag) const {
    auto it = by_tag.find(tag);
    return it == by_tag.end() ? nullptr : &it->second;
  }
  Status want_type(const Entry& e, uint32_t type) const {
    if (e.type == type) return {};
    return Error{tag_name(e.tag) + " has type " + type_name(e.type) + ", expected " + type_name(type)};
  }
  Result<std::optional<std::string_view>> str(int32_t tag) const {
    const Entry* e = find(tag);
    if (!e) return std::optional<std::string_view>();
    MOAT_TRY(want_type(*e, rpm::kString));
    return std::optional<std::string_view>(data.substr(e->offset, e->len - 1));
  }
  Result<std::vector<std::string_view>> strs(int32_t tag) const {
    std::vector<std::string_view> out;
    const Entry* e = find(tag);
    if (!e) return out;
    MOAT_TRY(want_type(*e, rpm::kStringArray));
    if (e->count > kMaxFiles)
      return Error{tag_name(tag) + " has " + std::to_string(e->count) + " entries, more than moat reads (" +
                   std::to_string(kMaxFiles) + ")"};
    out.reserve(e->count);
    std::string_view v = data.substr(e->offset, e->len);
    for (uint32_t i = 0; i < e->count; ++i) {
      size_t nul = v.find('\0');  // verified: count NUL-terminated strings fit in len
      out.push_back(v.substr(0, nul));
      v.remove_prefix(nul + 1);
    }
    return out;
  }
  // Integer arrays of the given type (int16/int32/char), widened to uint32.
  Result<std::vector<uint32_t>> ints(int32_t tag, std::initializer_list<uint32_t> types) const {
    std::vector<uint32_t> out;
    const Entry* e = find(tag);
    if (!e) return out;
    if (std::find(types.begin(), types.end(), e->type) == types.end()) return want_type(*e, *types.begin()).error();
    if (e->count > kMaxFiles)
      return Error{tag_name(tag) + " has " + std::to_string(e->count) + " entries, more than moat reads (" +
                   std::to_string(kMaxFiles) + ")"};
    out.reserve(e->count);
    uint32_t size = kTypeSize[e->type];
    for (uint32_t i = 0; i < e->count; ++i) {
      size_t at = e->offset + size_t{i} * size;
      out.push_back(size == 4 ? be32(data, at) : size == 2 ? be16(data, at) : static_cast<unsigned char>(data[at]));
    }
    return out;
  }
};

// il/dl, the index and the data, checked as rpm's hdrblobInit does.
Result<Tags> verify_blob(std::string_view blob) {
  if (blob.size() < 8) return Error{"header is " + std::to_string(blob.size()) + " bytes, shorter than its 8-byte intro"};
  uint32_t il = be32(blob, 0), dl = be32(blob, 4);
  if (il == 0 || il > rpm::kMaxIndexEntries)
    return Error{"header claims " + std::to_string(il) + " index entries (1 to " + std::to_string(rpm::kMaxIndexEntries) +
                 " allowed)"};
  if (dl > rpm::kMaxDataBytes)
    return Error{"header claims " + std::to_string(dl) + " data bytes (at most " + std::to_string(rpm::kMaxDataBytes) +
                 " allowed)"};
  uint64_t want = 8 + uint64_t{16} * il + dl;
  if (blob.size() != want)
    return Error{"header is " + std::to_string(blob.size()) + " bytes, but its intro (" + std::to_string(il) +
                 " entries, " + std::to_string(dl) + " data bytes) says " + std::to_string(want)};
  std::string_view index = blob.substr(8, size_t{16} * il);
  Tags t;
  t.data = blob.substr(8 + size_t{16} * il);

  size_t first = 0;
  Entry e0 = entry_at(index, 0);
  if (e0.tag == rpm::kTagHeaderImage || e0.tag == rpm::kTagHeaderSignatures || e0.tag == rpm::kTagHeaderImmutable) {
    // The region: a 16-byte bin entry pointing at its trailer in the data.
    if (e0.type != rpm::kBin || e0.count != 16)
      return Error{"region tag " + std::to_string(e0.tag) + " is " + type_name(e0.type) + " x " +
                   std::to_string(e0.count) + ", expected bin x 16"};
    if (e0.offset > dl || dl - e0.offset < 16)
      return Error{"region trailer at offset " + std::to_string(e0.offset) + " is outside the " + std::to_string(dl) +
                   " data bytes"};
    Entry tr = entry_at(t.data, e0.offset);
    // Old packages have HEADERIMAGE in the signature region's trailer (rpm fixes it up too).
    if (e0.tag == rpm::kTagHeaderSignatures && tr.tag == rpm::kTagHeaderImage) tr.tag = rpm::kTagHeaderSignatures;
    if (tr.tag != e0.tag || tr.type != rpm::kBin || tr.count != 16)
      return Error{"region trailer (tag " + std::to_string(tr.tag) + ", " + type_name(tr.type) + " x " +
                   std::to_string(tr.count) + ") does not match region tag " + std::to_string(e0.tag)};
    // The trailer's offset is minus the region's index bytes.
    int64_t rbytes = -int64_t{static_cast<int32_t>(tr.offset)};
    if (rbytes <= 0 || rbytes % 16 != 0 || rbytes / 16 > il)
      return Error{"region trailer claims " + std::to_string(rbytes) + " bytes of index, the header has " +
                   std::to_string(il) + " entries"};
    first = 1;
  }

  // Every other entry, as rpm's hdrblobVerifyInfo: a header tag, a known
  // type, an aligned offset inside the data, after the previous entry's
  // value, and a non-empty value that fits.
  uint64_t end = 0;
  for (size_t i = first; i < il; ++i) {
    Entry e = entry_at(index, i * 16);
    std::string what = "index entry " + std::to_string(i) + " (" + tag_name(e.tag) + ")";
    if (e.tag < 100) return Error{what + ": tag " + std::to_string(e.tag) + " is not a header tag"};
    if (e.type > rpm::kI18nString) return Error{what + ": unknown type " + std::to_string(e.type)};
    if (e.offset > dl)
      return Error{what + ": offset " + std::to_string(e.offset) + " is past the end of the " + std::to_string(dl) +
                   " data bytes"};
    if (e.offset % kTypeAlign[e.type] != 0)
      return Error{what + ": offset " + std::to_string(e.offset) + " is not aligned for " + type_name(e.type)};
    if (end > e.offset) return Error{what + ": its value overlaps the previous entry's"};
    uint64_t len = 0;
    switch (e.type) {
      case rpm::kString:
        if (e.count != 1) return Error{what + ": a string with count " + std::to_string(e.count)};
        len = strings_len(t.data, e.offset, 1);
        break;
      case rpm::kStringArray:
      case rpm::kI18nString:
        // Each string takes at least one byte: a larger count cannot fit.
        if (e.count > dl - e.offset)
          return Error{what + ": " + std::to_string(e.count) + " strings cannot fit in " +
                       std::to_string(dl - e.offset) + " bytes"};
        len = strings_len(t.data, e.offset, e.count);
        break;
      default:
        len = uint64_t{kTypeSize[e.type]} * e.count;
        if (len > dl - e.offset)
          return Error{what + ": " + std::to_string(e.count) + " x " + type_name(e.type) + " at offset " +
                       std::to_string(e.offset) + " runs past the end of the " + std::to_string(dl) + " data bytes"};
        break;
    }
    if (len == 0) {
      bool is_str = e.type == rpm::kString || e.type == rpm::kStringArray || e.type == rpm::kI18nString;
      if (is_str && e.count > 0) return Error{what + ": a string that is not NUL-terminated inside the data"};
      return Error{what + ": an empty value (" + type_name(e.type) + " x " + std::to_string(e.count) + ")"};
    }
    e.len = static_cast<uint32_t>(len);
    end = e.offset + len;
    t.by_tag[e.tag] = e;
  }
  return t;
}

bool is_hex(std::string_view s, size_t len) {
  return s.size() == len && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isxdigit(c) != 0; });
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

namespace {

// Everything after NAME: the other strings and the file list.
Status parse_rest(const Tags& t, RpmHeader& h, size_t* path_budget) {
  MOAT_ASSIGN_OR_RETURN(auto version, t.str(rpm::kTagVersion));
  MOAT_ASSIGN_OR_RETURN(auto release, t.str(rpm::kTagRelease));
  MOAT_ASSIGN_OR_RETURN(auto arch, t.str(rpm::kTagArch));
  if (version) h.version = *version;
  if (release) h.release = *release;
  if (arch) h.arch = *arch;

  // The file list: DIRNAMES[DIRINDEXES[i]] + BASENAMES[i], or OLDFILENAMES.
  std::vector<std::string> paths;
  size_t bytes = 0;
  size_t budget = path_budget ? *path_budget : kMaxDbPathBytes;
  auto add_bytes = [&](size_t n) -> Status {
    if (n > rpm::kMaxPathBytes)
      return Error{"a " + std::to_string(n) + "-byte file path (at most " + std::to_string(rpm::kMaxPathBytes) + ")"};
    bytes += n;
    if (bytes > budget) {
      if (path_budget) *path_budget = 0;
      return Error{"its file paths exceed the " + human_bytes(kMaxDbPathBytes) +
                   " of paths moat reads from one rpm database"};
    }
    return {};
  };
  if (t.find(rpm::kTagBasenames)) {
    MOAT_ASSIGN_OR_RETURN(auto base, t.strs(rpm::kTagBasenames));
    MOAT_ASSIGN_OR_RETURN(auto dirs, t.strs(rpm::kTagDirnames));
    MOAT_ASSIGN_OR_RETURN(auto idx, t.ints(rpm::kTagDirIndexes, {rpm::kInt32}));
    if (idx.size() != base.size())
      return Error{"DIRINDEXES has " + std::to_string(idx.size()) + " entries for " + std::to_string(base.size()) +
                   " BASENAMES"};
    for (size_t i = 0; i < base.size(); ++i) {
      if (idx[i] >= dirs.size())
        return Error{"DIRINDEXES[" + std::to_string(i) + "] is " + std::to_string(idx[i]) + ", but there are " +
                     std::to_string(dirs.size()) + " DIRNAMES"};
      MOAT_TRY(add_bytes(dirs[idx[i]].size() + base[i].size()));
    }
    paths.reserve(base.size());
    for (size_t i = 0; i < base.size(); ++i) paths.push_back(std::string(dirs[idx[i]]) + std::string(base[i]));
  } else if (t.find(rpm::kTagOldFilenames)) {
    MOAT_ASSIGN_OR_RETURN(auto old, t.strs(rpm::kTagOldFilenames));
    for (auto p : old) MOAT_TRY(add_bytes(p.size()));
    paths.assign(old.begin(), old.end());
  }
  if (path_budget) *path_budget -= bytes;

  // Per-file arrays: absent, or one element per file.
  auto per_file = [&](int32_t tag, size_t n) -> Status {
    if (n != 0 && n != paths.size())
      return Error{tag_name(tag) + " has " + std::to_string(n) + " entries for " + std::to_string(paths.size()) +
                   " files"};
    return {};
  };
  MOAT_ASSIGN_OR_RETURN(auto digests, t.strs(rpm::kTagFileDigests));
  MOAT_ASSIGN_OR_RETURN(auto modes, t.ints(rpm::kTagFileModes, {rpm::kInt16}));
  MOAT_ASSIGN_OR_RETURN(auto flags, t.ints(rpm::kTagFileFlags, {rpm::kInt32}));
  MOAT_ASSIGN_OR_RETURN(auto states, t.ints(rpm::kTagFileStates, {rpm::kChar, rpm::kInt8}));
  MOAT_ASSIGN_OR_RETURN(auto verify, t.ints(rpm::kTagFileVerifyFlags, {rpm::kInt32}));
  MOAT_TRY(per_file(rpm::kTagFileDigests, digests.size()));
  MOAT_TRY(per_file(rpm::kTagFileModes, modes.size()));
  MOAT_TRY(per_file(rpm::kTagFileFlags, flags.size()));
  MOAT_TRY(per_file(rpm::kTagFileStates, states.size()));
  MOAT_TRY(per_file(rpm::kTagFileVerifyFlags, verify.size()));
  MOAT_ASSIGN_OR_RETURN(auto algo, t.ints(rpm::kTagFileDigestAlgo, {rpm::kInt32}));
  if (!algo.empty()) h.digest_algo = algo[0];
  h.has_modes = !modes.empty();

  h.files.resize(paths.size());
  for (size_t i = 0; i < paths.size(); ++i) {
    RpmFile& f = h.files[i];
    f.path = std::move(paths[i]);
    if (!digests.empty()) f.digest = digests[i];
    if (!modes.empty()) f.mode = static_cast<uint16_t>(modes[i]);
    if (!flags.empty()) f.flags = flags[i];
    if (!states.empty()) f.state = static_cast<int8_t>(static_cast<uint8_t>(states[i]));
    if (!verify.empty()) f.verify = verify[i];
  }
  return {};
}

}  // namespace

Result<RpmHeader> parse_rpm_header(std::string_view blob, size_t* path_budget) {
  MOAT_ASSIGN_OR_RETURN(Tags t, verify_blob(blob));
  RpmHeader h;
  MOAT_ASSIGN_OR_RETURN(auto name, t.str(rpm::kTagName));
  if (!name || name->empty()) return Error{"header has no NAME"};
  h.name = *name;
  if (auto s = parse_rest(t, h, path_budget); !s) return std::move(s).error().context("package " + printable(h.name, 100));
  return h;
}

void add_rpm_header(PackageDb& db, const RpmHeader& h) {
  std::string version = h.version;
  if (!h.release.empty()) version += (version.empty() ? "" : "-") + h.release;
  db.packages.push_back(PackageInfo{h.name, version, h.arch, "rpm"});

  std::optional<DigestAlgo> algo;
  size_t hex_len = 0;
  switch (h.digest_algo) {
    case rpm::kAlgoMd5: algo = DigestAlgo::Md5, hex_len = 32; break;
    case rpm::kAlgoSha1: algo = DigestAlgo::Sha1, hex_len = 40; break;
    case rpm::kAlgoSha256: algo = DigestAlgo::Sha256, hex_len = 64; break;
    case rpm::kAlgoSha224: algo = DigestAlgo::Sha224, hex_len = 56; break;
    case rpm::kAlgoSha384: algo = DigestAlgo::Sha384, hex_len = 96; break;
    case rpm::kAlgoSha512: algo = DigestAlgo::Sha512, hex_len = 128; break;
    default: break;
  }
  size_t bad_paths = 0, bad_digests = 0, digests = 0;
  for (const RpmFile& f : h.files) {
    if (f.path.empty() || f.path[0] != '/') {
      ++bad_paths;
      continue;
    }
    std::string path = f.path;
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    // Not installed (excluded docs and languages, netshared, the other
    // multilib colour): the file on disk, if any, is not this package's.
    if (f.state == rpm::kStateNotInstalled || f.state == rpm::kStateNetShared || f.state == rpm::kStateWrongColor)
      continue;
    db.add_owner(path, h.name);
    if (f.digest.empty()) continue;  // directories, symlinks, ghosts
    ++digests;
    // Only what `rpm -V` would hold against the file: installed as is (not
    // replaced by another package's copy), not %config (admins edit it),
    // not %ghost (created at run time), %verify keeping the digest, and a
    // regular file.
    if (f.state != rpm::kStateNormal) continue;
    if (f.flags & (rpm::kFileConfig | rpm::kFileGhost)) continue;
    if (!(f.verify & rpm::kVerifyDigest)) continue;
    if (h.has_modes && (f.mode & 0170000) != 0100000) continue;
    if (!algo) continue;
    if (!is_hex(f.digest, hex_len)) {
      ++bad_digests;
      continue;
    }
    db.add_digest(std::move(path), ExpectedDigest{*algo, lower(f.digest), h.name});
  }
  std::string pkg = "rpm: package " + printable(h.name, 100);
  if (digests && !algo)
    db.errors.push_back(pkg + " records its file digests with algorithm " + std::to_string(h.digest_algo) +
                        " (moat checks 1 md5, 2 sha1, 8 sha256, 9 sha384, 10 sha512, 11 sha224): its files are not "
                        "integrity-checked");
  if (bad_paths)
    db.errors.push_back(pkg + ": skipped " + std::to_string(bad_paths) + " file path(s) that are not absolute");
  if (bad_digests)
    db.errors.push_back(pkg + ": skipped " + std::to_string(bad_digests) + " malformed " +
                        std::string(digest_algo_name(*algo)) + " file digest(s)");
}

// ---- rpmdb.sqlite ----------------------------------------------------------------

namespace {

struct DbClose {
  void operator()(sqlite3* d) const { sqlite3_close_v2(d); }
};
struct StmtFinalize {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};

// The virtual machine runs kProgressBudget x kProgressEvery steps at most
// (reading a real database takes a few per package), and stops after
// kDeadline in any case (a single step can be slow: a function building a
// large value).
constexpr int kProgressEvery = 1000;
constexpr int64_t kProgressBudget = 200000;
constexpr std::chrono::seconds kDeadline{60};
// Headers listed one by one in db.errors; the rest are counted.
constexpr size_t kMaxHeaderErrors = 20;

struct Progress {
  int64_t calls = 0;
  std::chrono::steady_clock::time_point deadline;
  bool stopped = false;
};

int on_progress(void* arg) {
  auto* p = static_cast<Progress*>(arg);
  if (++p->calls > kProgressBudget || std::chrono::steady_clock::now() > p->deadline) p->stopped = true;
  return p->stopped ? 1 : 0;
}

// Statements may only read (and list a table's columns): no functions, no
// other pragmas, no writes, no attach.
int authorize(void*, int action, const char* arg1, const char*, const char*, const char*) {
  if (action == SQLITE_SELECT || action == SQLITE_READ) return SQLITE_OK;
  if (action == SQLITE_PRAGMA && arg1 && std::strcmp(arg1, "table_xinfo") == 0) return SQLITE_OK;
  return SQLITE_DENY;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

// Parses and adds the header blobs of one database, noting malformed ones
// (the first kMaxHeaderErrors, then a count) by an id the caller picks.
class HeaderSink {
 public:
  HeaderSink(PackageDb& db, std::string where) : db_(db), where_(std::move(where)) {}
  // False when reading must stop (the database's file paths exceed the budget).
  bool add(const std::string& id, std::string_view blob) {
    auto h = parse_rpm_header(blob, &budget_);
    if (h.ok()) {
      add_rpm_header(db_, *h);
      return true;
    }
    note(id, "malformed header: " + h.error().describe());
    if (budget_ != 0) return true;
    db_.errors.push_back("rpm: " + where_ + ": stopped reading after the file paths reached " +
                         human_bytes(kMaxDbPathBytes) + "; the remaining packages are not read");
    return false;
  }
  void note(const std::string& id, const std::string& what) {
    if (++bad_ <= kMaxHeaderErrors) db_.errors.push_back("rpm: " + id + " in " + where_ + ": " + what);
  }
  ~HeaderSink() {
    if (bad_ > kMaxHeaderErrors)
      db_.errors.push_back("rpm: " + where_ + ": " + std::to_string(bad_ - kMaxHeaderErrors) +
                           " more malformed package header(s) not listed");
  }

 private:
  PackageDb& db_;
  std::string where_;
  size_t budget_ = kMaxDbPathBytes, bad_ = 0;
};

}  // namespace

Status add_rpm_sqlite(PackageDb& db, std::string bytes, const std::string& where) {
  auto fail = [&](const std::string& what) { return Error{where + ": " + what}; };
  if (bytes.empty()) {
    db.errors.push_back("rpm: " + where + " is empty: no rpm packages read");
    return {};
  }
  static constexpr char kMagic[16] = "SQLite format 3";  // with its NUL
  if (bytes.size() < 100 || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    return fail("not an SQLite database (" + std::to_string(bytes.size()) + " bytes without the SQLite header)");
  // rpm keeps the database in WAL mode (header bytes 18 and 19 are 2). An
  // in-memory image cannot use a WAL: read it as a rollback-journal database,
  // which changes nothing in the pages (the -wal file is not read; see the caller).
  if ((bytes[18] == 1 || bytes[18] == 2) && (bytes[19] == 1 || bytes[19] == 2)) bytes[18] = bytes[19] = 1;

  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(":memory:", &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<sqlite3, DbClose> conn(raw);
  if (rc != SQLITE_OK) return fail(std::string("SQLite cannot open an in-memory database: ") + sqlite3_errstr(rc));
  auto msg = [&] { return printable(sqlite3_errmsg(raw), 300); };

  // Untrusted database: defensive mode, no trust in the schema, no views or
  // triggers, no extensions, and limits far below SQLite's defaults.
  const std::pair<int, int> configs[] = {
      {SQLITE_DBCONFIG_DEFENSIVE, 1},   {SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0},
      {SQLITE_DBCONFIG_ENABLE_VIEW, 0}, {SQLITE_DBCONFIG_ENABLE_TRIGGER, 0},
      {SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0}};
  for (auto [op, v] : configs) {
    int now = -1;
    if (sqlite3_db_config(raw, op, v, &now) != SQLITE_OK || now != v)
      return fail(std::string("this SQLite (") + sqlite3_libversion() +
                  ") cannot be set up to read an untrusted database safely (sqlite3_db_config " + std::to_string(op) + ")");
  }
  sqlite3_limit(raw, SQLITE_LIMIT_LENGTH, static_cast<int>(8 + 16 * rpm::kMaxIndexEntries + rpm::kMaxDataBytes));
  sqlite3_limit(raw, SQLITE_LIMIT_SQL_LENGTH, 10000);
  sqlite3_limit(raw, SQLITE_LIMIT_COLUMN, 100);
  sqlite3_limit(raw, SQLITE_LIMIT_EXPR_DEPTH, 50);
  sqlite3_limit(raw, SQLITE_LIMIT_COMPOUND_SELECT, 2);
  sqlite3_limit(raw, SQLITE_LIMIT_VDBE_OP, 5000);
  sqlite3_limit(raw, SQLITE_LIMIT_FUNCTION_ARG, 8);
  sqlite3_limit(raw, SQLITE_LIMIT_ATTACHED, 0);
  sqlite3_limit(raw, SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 50);
  sqlite3_limit(raw, SQLITE_LIMIT_VARIABLE_NUMBER, 10);
  sqlite3_limit(raw, SQLITE_LIMIT_TRIGGER_DEPTH, 1);
  sqlite3_limit(raw, SQLITE_LIMIT_WORKER_THREADS, 0);

  // The bytes become the main database, read-only (no copy: `bytes` outlives conn).
  rc = sqlite3_deserialize(raw, "main", reinterpret_cast<unsigned char*>(bytes.data()),
                           static_cast<sqlite3_int64>(bytes.size()), static_cast<sqlite3_int64>(bytes.size()),
                           SQLITE_DESERIALIZE_READONLY);
  if (rc != SQLITE_OK) return fail("SQLite cannot load it: " + msg());
  if (sqlite3_exec(raw, "PRAGMA cell_size_check = ON", nullptr, nullptr, nullptr) != SQLITE_OK)
    return fail("SQLite: " + msg());
  Progress progress;
  progress.deadline = std::chrono::steady_clock::now() + kDeadline;
  sqlite3_progress_handler(raw, kProgressEvery, on_progress, &progress);
  sqlite3_set_authorizer(raw, authorize, nullptr);

  auto gave_up = [&] {
    return fail("reading it took more than " + std::to_string(kProgressEvery * kProgressBudget) +
                " SQLite steps or " + std::to_string(kDeadline.count()) +
                " s, far more than an rpm database needs: stopped");
  };
  auto prepare = [&](const char* sql) -> Result<std::unique_ptr<sqlite3_stmt, StmtFinalize>> {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(raw, sql, -1, &st, nullptr) != SQLITE_OK) {
      sqlite3_finalize(st);
      if (progress.stopped) return gave_up();
      return fail("not a readable rpm database: " + msg());
    }
    return std::unique_ptr<sqlite3_stmt, StmtFinalize>(st);
  };
  auto step_error = [&](int step_rc) {
    if (step_rc == SQLITE_INTERRUPT || progress.stopped) return gave_up();
    return fail("SQLite cannot read it: " + msg());
  };

  // Packages must be a plain table as rpm makes it: not a view (views are
  // off anyway), not a virtual table, no generated columns (computed on
  // every read, by functions the schema picks).
  {
    MOAT_ASSIGN_OR_RETURN(auto st,
                          prepare("SELECT type, sql FROM sqlite_master WHERE name = 'Packages' COLLATE NOCASE"));
    rc = sqlite3_step(st.get());
    if (rc == SQLITE_DONE) return fail("has no Packages table: not an rpm database");
    if (rc != SQLITE_ROW) return step_error(rc);
    auto text = [&](int col) {
      const unsigned char* v = sqlite3_column_text(st.get(), col);
      return v ? std::string(reinterpret_cast<const char*>(v)) : std::string();
    };
    std::string type = text(0), sql = text(1);
    if (type != "table") return fail("Packages is a " + printable(type, 40) + ", not a table: not an rpm database");
    if (!starts_with_nocase(sql, "create table"))
      return fail("Packages is not a plain table (" + printable(sql, 80) + "): not an rpm database");
  }
  {
    MOAT_ASSIGN_OR_RETURN(auto st, prepare("PRAGMA table_xinfo('Packages')"));
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW)
      if (sqlite3_column_int(st.get(), 6) != 0)  // "hidden": 2, 3 generated; 1 virtual-table hidden
        return fail("the Packages table has generated columns: not an rpm database");
    if (rc != SQLITE_DONE) return step_error(rc);
  }

  MOAT_ASSIGN_OR_RETURN(auto st, prepare("SELECT hnum, blob FROM Packages"));
  HeaderSink sink(db, where);
  for (;;) {
    rc = sqlite3_step(st.get());
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return step_error(rc);
    std::string id = "package #" + std::to_string(sqlite3_column_int64(st.get(), 0));
    if (sqlite3_column_type(st.get(), 1) != SQLITE_BLOB) {
      sink.note(id, "its header is not a blob");
      continue;
    }
    const void* p = sqlite3_column_blob(st.get(), 1);
    int n = sqlite3_column_bytes(st.get(), 1);
    std::string_view blob(p ? static_cast<const char*>(p) : "", p ? static_cast<size_t>(n) : 0);
    if (!sink.add(id, blob)) break;
  }
  return {};
}

// ---- BerkeleyDB Packages ------------------------------------------------------------
//
// A BerkeleyDB hash database (libdb's db_page.h; rpm's own reader is
// lib/backend/bdb_ro.c): page 0 is the metadata (magic 0x061561 at 12, in the
// writer's byte order; version 8-10 at 16; page size at 20; encryption at 24,
// must be 0; type 8 at 25; last page number at 32). Every page starts with a
// 26-byte header: its number at 8, next page at 16, item count at 20, "high
// free offset" at 22 (on overflow pages: the bytes used), type at 25. Hash
// pages (types 2 and 13) hold item offsets from 26 on, in key/value pairs;
// items sit at the end of the page, each ending where the previous one starts
// (the first at the page end). An item is a type byte then either its bytes
// (1, H_KEYDATA) or {3 pad, next page u32, total length u32} (3, H_OFFPAGE):
// the value continues on a chain of overflow pages (type 7). rpm's keys are
// the 4-byte header number; key 0 is rpm's own bookkeeping record.
//
// The pages are read in order, as go-rpmdb does (not bucket by bucket, as
// rpm's bdb_ro: a bucket page libdb never wrote is all zeros and harmless
// here). Every page number, offset, length and chain is checked; a value's
// chain may not revisit more pages than the file has, and all values
// together may not be longer than the file.

namespace {

struct Bdb {
  std::string_view bytes;
  bool swapped = false;
  uint32_t page_size = 0;
  size_t pages = 0;  // pages present in the file (0 .. pages-1)

  uint32_t u32(std::string_view s, size_t at) const {
    auto* b = reinterpret_cast<const unsigned char*>(s.data() + at);
    return swapped ? uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | b[3]
                   : uint32_t{b[3]} << 24 | uint32_t{b[2]} << 16 | uint32_t{b[1]} << 8 | b[0];
  }
  uint16_t u16(std::string_view s, size_t at) const {
    auto* b = reinterpret_cast<const unsigned char*>(s.data() + at);
    return static_cast<uint16_t>(swapped ? b[0] << 8 | b[1] : b[1] << 8 | b[0]);
  }
  std::string_view page(size_t n) const { return bytes.substr(n * page_size, page_size); }
};

constexpr size_t kBdbPageHeader = 26;
constexpr unsigned char kBdbHashUnsorted = 2, kBdbOverflow = 7, kBdbHashMeta = 8, kBdbHash = 13;
constexpr unsigned char kBdbKeyData = 1, kBdbOffPage = 3;

// The bytes of an off-page value: the chain from `pgno`, `len` bytes in all.
Result<std::string> bdb_overflow(const Bdb& b, uint32_t pgno, uint32_t len) {
  std::string out;
  size_t visited = 0;
  while (out.size() < len) {
    if (pgno == 0 || pgno >= b.pages)
      return Error{"its overflow chain points at page " + std::to_string(pgno) + ", outside the " +
                   std::to_string(b.pages) + " pages of the file"};
    if (++visited > b.pages) return Error{"its overflow chain loops"};
    std::string_view pg = b.page(pgno);
    if (static_cast<unsigned char>(pg[25]) != kBdbOverflow || b.u32(pg, 8) != pgno)
      return Error{"its overflow chain reaches page " + std::to_string(pgno) + ", which is not an overflow page"};
    uint32_t used = b.u16(pg, 22);
    if (used == 0 || kBdbPageHeader + used > b.page_size || used > len - out.size())
      return Error{"overflow page " + std::to_string(pgno) + " claims " + std::to_string(used) + " bytes"};
    out.append(pg.substr(kBdbPageHeader, used));
    pgno = b.u32(pg, 16);
  }
  return out;
}

}  // namespace

Status add_rpm_bdb(PackageDb& db, std::string_view bytes, const std::string& where) {
  auto fail = [&](const std::string& what) { return Error{where + ": " + what}; };
  if (bytes.size() < 512) return fail("not a BerkeleyDB database (" + std::to_string(bytes.size()) + " bytes)");
  Bdb b;
  b.bytes = bytes;
  uint32_t magic = b.u32(bytes, 12);
  if (magic == 0x61150600) b.swapped = true;
  else if (magic == 0x00053162 || magic == 0x62310500)
    return fail("a BerkeleyDB btree; rpm's Packages is a hash database");
  else if (magic != 0x00061561)
    return fail("not a BerkeleyDB hash database (magic " + std::to_string(magic) + ")");
  uint32_t version = b.u32(bytes, 16);
  if (version < 8 || version > 10) return fail("unsupported BerkeleyDB hash version " + std::to_string(version));
  b.page_size = b.u32(bytes, 20);
  if (b.page_size < 512 || b.page_size > 65536 || (b.page_size & (b.page_size - 1)) != 0)
    return fail("BerkeleyDB page size " + std::to_string(b.page_size) + " is not a power of two from 512 to 65536");
  if (bytes[24] != 0) return fail("an encrypted BerkeleyDB database");
  if (static_cast<unsigned char>(bytes[25]) != kBdbHashMeta) return fail("page 0 is not a BerkeleyDB hash metadata page");
  uint64_t last = b.u32(bytes, 32);
  b.pages = bytes.size() / b.page_size;
  if (last + 1 > b.pages)
    db.errors.push_back("rpm: " + where + ": the database has " + std::to_string(last + 1) + " pages, the file " +
                        std::to_string(b.pages) + " (truncated?): the packages on the missing pages are not read");
  else
    b.pages = static_cast<size_t>(last + 1);

  HeaderSink sink(db, where);
  uint64_t total = 0;  // bytes of all off-page values so far
  for (size_t p = 1; p < b.pages; ++p) {
    std::string_view pg = b.page(p);
    unsigned char type = static_cast<unsigned char>(pg[25]);
    if (type != kBdbHash && type != kBdbHashUnsorted) continue;  // overflow, free, never-written pages
    std::string at = "page " + std::to_string(p);
    if (b.u32(pg, 8) != p) {
      sink.note(at, "a hash page that says it is page " + std::to_string(b.u32(pg, 8)));
      continue;
    }
    size_t n = b.u16(pg, 20);
    size_t min_off = kBdbPageHeader + 2 * n;
    if (n % 2 != 0 || min_off > b.page_size) {
      sink.note(at, "a hash page with " + std::to_string(n) + " items");
      continue;
    }
    for (size_t i = 0; i + 1 < n; i += 2) {
      std::string id = at + " item " + std::to_string(i / 2);
      size_t koff = b.u16(pg, kBdbPageHeader + 2 * i), voff = b.u16(pg, kBdbPageHeader + 2 * i + 2);
      size_t kend = i == 0 ? b.page_size : b.u16(pg, kBdbPageHeader + 2 * i - 2);
      // Items are laid out backwards: value < key < previous item's start.
      if (voff < min_off || !(voff < koff && koff < kend && kend <= b.page_size)) {
        sink.note(id, "item offsets out of order or outside the page");
        continue;
      }
      std::string_view key = pg.substr(koff, kend - koff), val = pg.substr(voff, koff - voff);
      if (static_cast<unsigned char>(key[0]) != kBdbKeyData || key.size() != 5) {
        sink.note(id, "its key is not a 4-byte header number");
        continue;
      }
      uint32_t hnum = b.u32(key, 1);
      if (hnum == 0) continue;  // rpm's record of the next header number
      id = "package #" + std::to_string(hnum) + " (" + id + ")";
      unsigned char vtype = static_cast<unsigned char>(val[0]);
      if (vtype == kBdbKeyData) {
        if (!sink.add(id, val.substr(1))) return {};
        continue;
      }
      if (vtype != kBdbOffPage || val.size() != 12) {
        sink.note(id, "its value is an item of type " + std::to_string(vtype) + ", not data");
        continue;
      }
      uint32_t len = b.u32(val, 8);
      total += len;
      if (total > bytes.size())
        return fail("its values add up to more than the file's " + std::to_string(bytes.size()) +
                    " bytes: not a well-formed database");
      auto blob = bdb_overflow(b, b.u32(val, 4), len);
      if (!blob) {
        sink.note(id, blob.error().describe());
        continue;
      }
      if (!sink.add(id, *blob)) return {};
    }
  }
  return {};
}

// ---- ndb Packages.db ---------------------------------------------------------------
//
// rpm's own "new database" (lib/backend/ndb/rpmpkg.c), SUSE's default: all
// little-endian u32s. A 32-byte header: "RpmP" at 0, version 0 at 4, the
// number of slot pages at 12. Then that many 4 KiB slot pages (the first
// starting after the header) of 16-byte slots: "Slot", package index, block
// offset, block count, in 16-byte blocks; offset 0 is a free slot. A package's
// blocks hold a blob: head {"BlbS", package index, timestamp, length}, the
// header blob (as in rpmdb.sqlite), zero padding, tail {adler32 of head, blob
// and padding, length, "BlbE"}. As rpm: a slot without its magic, or a file
// whose size is not whole blocks, makes the database unreadable (an Error);
// a slot pointing outside the file or into the slot pages, and a blob whose
// head, tail, length or checksum is wrong, is a db.errors entry and the other
// packages still load. Blobs are views into the file: nothing is copied.

namespace {

uint32_t le32(std::string_view s, size_t at) {
  auto* b = reinterpret_cast<const unsigned char*>(s.data() + at);
  return uint32_t{b[3]} << 24 | uint32_t{b[2]} << 16 | uint32_t{b[1]} << 8 | b[0];
}
constexpr uint32_t fourcc(const char (&m)[5]) {
  return uint32_t(uint8_t(m[0])) | uint32_t(uint8_t(m[1])) << 8 | uint32_t(uint8_t(m[2])) << 16 |
         uint32_t(uint8_t(m[3])) << 24;
}
constexpr size_t kNdbHeader = 32, kNdbPage = 4096, kNdbSlot = 16, kNdbBlock = 16;
constexpr size_t kNdbBlobHead = 16, kNdbBlobTail = 12;

}  // namespace

Status add_rpm_ndb(PackageDb& db, std::string_view bytes, const std::string& where) {
  auto fail = [&](const std::string& what) { return Error{where + ": " + what}; };
  if (bytes.size() < kNdbPage || le32(bytes, 0) != fourcc("RpmP"))
    return fail("not an ndb rpm database (no \"RpmP\" header)");
  if (uint32_t v = le32(bytes, 4); v != 0) return fail("unsupported ndb version " + std::to_string(v));
  if (bytes.size() % kNdbBlock != 0)
    return fail("its size (" + std::to_string(bytes.size()) + " bytes) is not whole 16-byte blocks: truncated?");
  uint64_t pages = le32(bytes, 12);
  if (pages == 0 || pages * kNdbPage > bytes.size())
    return fail("it claims " + std::to_string(pages) + " slot pages, the file holds " +
                std::to_string(bytes.size() / kNdbPage));
  const uint64_t blocks = bytes.size() / kNdbBlock, first_blob = pages * kNdbPage / kNdbBlock;

  HeaderSink sink(db, where);
  for (size_t off = kNdbHeader; off < pages * kNdbPage; off += kNdbSlot) {
    std::string_view slot = bytes.substr(off, kNdbSlot);
    if (le32(slot, 0) != fourcc("Slot"))
      return fail("slot " + std::to_string(off / kNdbSlot) + " has no \"Slot\" magic: not a well-formed database");
    uint64_t idx = le32(slot, 4), blkoff = le32(slot, 8), blkcnt = le32(slot, 12);
    if (blkoff == 0) continue;  // free
    std::string id = "package #" + std::to_string(idx);
    if (idx == 0 || blkoff < first_blob || blkcnt < 2 || blkoff + blkcnt > blocks) {
      sink.note(id, "its slot points at blocks " + std::to_string(blkoff) + "+" + std::to_string(blkcnt) +
                        ", not between the slot pages and the end of the file (" + std::to_string(blocks) +
                        " blocks)");
      continue;
    }
    std::string_view blk = bytes.substr(blkoff * kNdbBlock, blkcnt * kNdbBlock);
    uint64_t len = le32(blk, 12);
    if (le32(blk, 0) != fourcc("BlbS") || le32(blk, 4) != idx) {
      sink.note(id, "its blocks do not start with its blob header");
      continue;
    }
    if ((kNdbBlobHead + len + kNdbBlobTail + kNdbBlock - 1) / kNdbBlock != blkcnt) {
      sink.note(id, "its blob of " + std::to_string(len) + " bytes does not fill its " + std::to_string(blkcnt) +
                        " blocks");
      continue;
    }
    std::string_view tail = blk.substr(blk.size() - kNdbBlobTail);
    uLong adler = adler32(adler32(0, nullptr, 0), reinterpret_cast<const Bytef*>(blk.data()),
                          static_cast<uInt>(blk.size() - kNdbBlobTail));
    if (le32(tail, 8) != fourcc("BlbE") || le32(tail, 4) != len || le32(tail, 0) != adler) {
      sink.note(id, "its blob's tail (length, adler32 checksum) does not match its contents");
      continue;
    }
    if (!sink.add(id, blk.substr(kNdbBlobHead, len))) return {};
  }
  return {};
}

Status load_rpm_db(PackageDb& db, const ReadImageFile& read) {
  // (Results are kept whole, not unpacked into locals: GCC 12 with the
  // sanitizers warns falsely about a moved-from optional<string> in a loop.)
  for (const char* path : {"/var/lib/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite"}) {
    auto r = read(path);
    if (!r.ok()) return std::move(r).error();
    if (!r->has_value()) continue;
    std::string wal = std::string(path) + "-wal";
    auto w = read(wal);
    if (!w.ok())
      db.errors.push_back("rpm: " + w.error().describe());
    else if (w->has_value() && !(*w)->empty())
      db.errors.push_back("rpm: " + wal + " holds " + human_bytes((*w)->size()) +
                          " of changes not yet checkpointed into rpmdb.sqlite, which moat does not replay: the "
                          "packages installed or removed last may be missing or stale");
    return add_rpm_sqlite(db, std::move(**r), path);
  }
  for (const char* path : {"/var/lib/rpm/Packages", "/usr/lib/sysimage/rpm/Packages"}) {
    auto r = read(path);
    if (!r.ok()) return std::move(r).error();
    if (r->has_value()) return add_rpm_bdb(db, **r, path);
  }
  for (const char* path : {"/var/lib/rpm/Packages.db", "/usr/lib/sysimage/rpm/Packages.db"}) {
    auto r = read(path);
    if (!r.ok()) return std::move(r).error();
    if (r->has_value()) return add_rpm_ndb(db, **r, path);
  }
  return {};
}

}  // namespace moat
