// The image's package database: which package owns a path, and the digest
// the package recorded for it. Read from the image's own files through a
// callback, so this code knows nothing of mounts or walks and is tested on
// plain strings.
//
// dpkg (Debian, Ubuntu):
//   /var/lib/dpkg/status            stanzas; a package counts unless its status
//                                   is not-installed or config-files
//   /var/lib/dpkg/info/<pkg>.list   absolute paths the package installed;
//     or <pkg>:<arch>.list          (Multi-Arch: same packages), tried first
//   /var/lib/dpkg/info/<pkg>[:<arch>].md5sums
//                                   "<md5 hex>  <path without leading />";
//                                   conffiles are not in it (admins edit them)
//   /var/lib/dpkg/diversions        triples: path, diverted-to path, diverting
//                                   package (":" = local). A path that package
//                                   P lists but another package diverted lives
//                                   at the diverted-to path, so that is the path
//                                   P owns (dash diverts /bin/sh to
//                                   /bin/sh.distrib on Debian 12).
// apk (Alpine): /lib/apk/db/installed, blocks separated by blank lines with
//   P: name, V: version, A: arch, F: directory (relative), R: file in the last
//   F:, Z: checksum of the last R: ("Q1" + base64 SHA-1, "Q2" + base64 SHA-256).
// rpm (Fedora, RHEL/UBI, CentOS, Amazon Linux, SUSE): rpmdb.sqlite (rpm
//   4.16+), the BerkeleyDB hash Packages (RHEL/CentOS 7-8, Amazon Linux 2) or
//   the ndb Packages.db (SLES 15, openSUSE Leap 15) in /var/lib/rpm or
//   /usr/lib/sysimage/rpm, one rpm header per package; see scanner/image/rpmdb.h.
//
// Merged /usr: on Debian 12 and later /bin, /sbin and /lib are symlinks into
// /usr, but packages still list /bin/su. The walker sees /usr/bin/su. With
// set_merged_usr(true) (the caller saw /bin as a symlink to usr/bin) a lookup
// that misses tries the other spelling (/usr/bin/su <-> /bin/su); without it,
// lookups are exact, since on an unmerged image /bin/su and /usr/bin/su are
// different files. An exact match always wins.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "storage/result.h"

namespace moat {

// Sha224/384/512: rpm's FILEDIGESTALGO allows them (no distribution uses them yet).
enum class DigestAlgo { Md5, Sha1, Sha256, Sha224, Sha384, Sha512 };
std::string_view digest_algo_name(DigestAlgo a);  // "md5", "sha1", "sha256", "sha224" ...

struct ExpectedDigest {
  DigestAlgo algo = DigestAlgo::Md5;
  std::string hex;  // lowercase
  std::string package;
};

struct PackageInfo {
  std::string name, version, arch;
  std::string manager;  // "dpkg" | "apk" | "rpm"
};

// Reads a file of the image by absolute path: nullopt when it does not exist,
// an Error when it exists but cannot be read or exceeds the caller's limit.
// load_package_db() calls it from several threads at once.
using ReadImageFile = std::function<Result<std::optional<std::string>>(const std::string& path)>;

// Paths and package names are held once: the paths of dpkg's .list and
// .md5sums files stay in the texts they were read from and the maps point
// into them, and each package name is stored once. A Debian image has tens of
// thousands of packaged paths; a string per path and per owner was most of
// the fixed cost of every scan (benchmarks/README.md, "First run").
// Movable, not copyable (the maps point into its own storage).
class PackageDb {
 public:
  PackageDb() = default;
  PackageDb(PackageDb&&) = default;
  PackageDb& operator=(PackageDb&&) = default;
  PackageDb(const PackageDb&) = delete;
  PackageDb& operator=(const PackageDb&) = delete;

  std::vector<PackageInfo> packages;  // in database order
  std::vector<std::string> errors;    // per-package problems (missing .list ...)

  bool empty() const { return packages.empty(); }
  // Every manager present, joined with '+' in the order dpkg, apk, rpm:
  // "dpkg", "rpm", "dpkg+apk" ..., or "" (no database found).
  std::string managers() const;

  void set_merged_usr(bool merged) { merged_usr_ = merged; }
  // The package that owns path, or null. The first package (database order) wins.
  const std::string* owner_of(std::string_view path) const;
  // The digest the package recorded, or null (not recorded, or a conffile).
  const ExpectedDigest* digest_of(std::string_view path) const;

  void add_owner(std::string path, const std::string& package);
  void add_digest(std::string path, ExpectedDigest d);
  size_t owned_paths() const { return owners_.size(); }
  size_t digests() const { return digests_.size(); }

  // For the loaders: `text` kept for as long as the database lives (the
  // returned string never moves; a loader may rewrite bytes in it), a name
  // stored once, and entries whose path points into kept text.
  std::string& keep(std::string text);
  const std::string* intern(std::string_view name);
  void add_owner_kept(std::string_view path, const std::string* package);
  void add_digest_kept(std::string_view path, ExpectedDigest d);
  void reserve(size_t owners, size_t digests);

 private:
  template <typename Map>
  const typename Map::mapped_type* lookup(const Map& m, std::string_view path) const;
  std::deque<std::string> kept_;
  std::unordered_set<std::string> names_;
  std::unordered_map<std::string_view, const std::string*> owners_;
  std::unordered_map<std::string_view, ExpectedDigest> digests_;
  bool merged_usr_ = false;
};

// dpkg's diversions file: diverted path -> {to, by}.
struct Diversion {
  std::string to, by;
};
std::unordered_map<std::string, Diversion> parse_dpkg_diversions(std::string_view text);

// Parsers over text, for the loader and for tests.
// dpkg status: the installed packages (name, version, arch, multi_arch_same).
struct DpkgPackage {
  std::string name, version, arch;
  bool multi_arch_same = false;
};
std::vector<DpkgPackage> parse_dpkg_status(std::string_view text);
// Adds the paths of one package's .list (diversions applied).
void add_dpkg_list(PackageDb& db, const std::string& package, std::string_view list,
                   const std::unordered_map<std::string, Diversion>& diversions);
// Adds one package's md5sums; malformed lines go to db.errors.
void add_dpkg_md5sums(PackageDb& db, const std::string& package, std::string_view md5sums,
                      const std::unordered_map<std::string, Diversion>& diversions);
// Adds an apk installed database (packages, owners, digests).
void add_apk_installed(PackageDb& db, std::string_view text);

// Reads whatever package databases the image has. An unreadable main
// database (status, installed, an rpm database that is not one) is an
// Error: guessing "no packages" would turn every setuid file into a false
// high finding. A package's missing or unreadable .list / .md5sums, or a
// malformed rpm header, is an entry in db.errors.
Result<PackageDb> load_package_db(const ReadImageFile& read);

// /etc/os-release ID then ID_LIKE words, lowercased, unquoted: {"ubuntu", "debian"}.
std::vector<std::string> os_release_ids(std::string_view text);

// Decodes apk's "Q1<base64>" / "Q2<base64>" checksum to an ExpectedDigest.
std::optional<ExpectedDigest> parse_apk_checksum(std::string_view z);

// Streaming digest for integrity checks (OpenSSL EVP).
class FileHasher {
 public:
  explicit FileHasher(DigestAlgo algo);
  ~FileHasher();
  FileHasher(const FileHasher&) = delete;
  FileHasher& operator=(const FileHasher&) = delete;
  void update(const void* data, size_t n);
  std::string finish_hex();  // the hasher must not be used afterwards

 private:
  void* ctx_;
};
std::string digest_hex(DigestAlgo algo, std::string_view data);

}  // namespace moat
