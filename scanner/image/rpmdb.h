// rpm's package database (Fedora, RHEL/UBI, CentOS, Rocky, Alma, Amazon
// Linux): which package owns a path and the digest rpm recorded for it, for
// scanner/image/packages.h.
//
// rpmdb.sqlite: the SQLite database rpm 4.16+ writes, at
// /var/lib/rpm/rpmdb.sqlite or /usr/lib/sysimage/rpm/rpmdb.sqlite (Fedora 36+
// moved it; /var/lib/rpm is then a symlink the image read follows). Table
// `Packages (hnum INTEGER PRIMARY KEY, blob BLOB)`: one rpm header per row, as
// rpm's headerExport writes it (no magic):
//   int32 il, int32 dl          big-endian, like everything below
//   il x {int32 tag, uint32 type, int32 offset, uint32 count}
//   dl bytes of data            each entry's value at its offset
// The first entry is usually a region tag (HEADERIMMUTABLE 63, or 61/62): a
// 16-byte BIN entry whose offset points at a trailer entry in the data, whose
// negated offset / 16 is the number of index entries in the region (the
// package's signed, original header). Entries after the region ("dribbles",
// added at install time) replace region entries of the same tag, as rpm's
// headerImport does. Checks follow rpm's hdrblobInit/hdrblobVerifyRegion/
// hdrblobVerifyInfo: il < 65536, dl < 256 MiB, 8 + 16 il + dl == blob size,
// tag >= 100, type 0..9, offset aligned and inside the data, value length > 0
// and inside the data, strings NUL-terminated inside the data.
//
// Tags read: NAME, VERSION, RELEASE, ARCH; the file list as DIRNAMES +
// DIRINDEXES + BASENAMES (OLDFILENAMES for rpm v3 headers); FILEDIGESTS (hex,
// empty for directories, symlinks and ghosts) with FILEDIGESTALGO (1 md5, 2
// sha1, 8 sha256, 9 sha384, 10 sha512, 11 sha224; md5 when absent; anything
// else: no digests, a db error);
// FILEMODES, FILEFLAGS, FILESTATES and FILEVERIFYFLAGS decide which digests
// count (see add_rpm_header).
//
// The database file is hostile input: it is read through the ReadImageFile
// callback (never a host path), opened as an in-memory, read-only SQLite image
// (sqlite3_deserialize: no file, no journal), with defensive mode, an untrusted
// schema, views and triggers off, an authorizer that allows only reading, tight
// limits, a bound on virtual-machine steps and a deadline; `Packages` must be
// a plain table without generated columns. Headers are parsed here, not by
// SQLite. A database SQLite cannot read is an Error (as an unreadable dpkg
// status is); a malformed header is a db.errors entry naming its hnum (the
// first 20, then a count), and the other packages still load.
//
// BerkeleyDB `Packages` (rpm <= 4.15: RHEL/CentOS 7 and 8, Amazon Linux 2),
// when there is no rpmdb.sqlite: a hash database whose values are the same
// header blobs, read page by page here (see add_rpm_bdb in rpmdb.cc).
//
// ndb `Packages.db` (SUSE: SLES 15, openSUSE Leap 15), when there is neither:
// rpm's own slot-and-blob file holding the same header blobs, each with an
// adler32 checksum (see add_rpm_ndb in rpmdb.cc). A non-empty
// rpmdb.sqlite-wal (changes not yet checkpointed) is not replayed: a
// db.errors entry says so.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "scanner/image/packages.h"
#include "storage/result.h"

namespace moat {

namespace rpm {
// Header tags (rpm's rpmtag.h).
inline constexpr int32_t kTagHeaderImage = 61, kTagHeaderSignatures = 62, kTagHeaderImmutable = 63;
inline constexpr int32_t kTagName = 1000, kTagVersion = 1001, kTagRelease = 1002, kTagArch = 1022;
inline constexpr int32_t kTagOldFilenames = 1027, kTagFileModes = 1030, kTagFileStates = 1029;
inline constexpr int32_t kTagFileDigests = 1035, kTagFileFlags = 1037, kTagFileVerifyFlags = 1045;
inline constexpr int32_t kTagDirIndexes = 1116, kTagBasenames = 1117, kTagDirnames = 1118;
inline constexpr int32_t kTagFileDigestAlgo = 5011;
// Value types (rpm's rpmTagType).
inline constexpr uint32_t kChar = 1, kInt8 = 2, kInt16 = 3, kInt32 = 4, kInt64 = 5, kString = 6, kBin = 7,
                          kStringArray = 8, kI18nString = 9;
// FILEFLAGS bits, FILESTATES values, FILEVERIFYFLAGS bits, digest algorithms.
inline constexpr uint32_t kFileConfig = 1u << 0, kFileGhost = 1u << 6;
inline constexpr int kStateNormal = 0, kStateReplaced = 1, kStateNotInstalled = 2, kStateNetShared = 3,
                     kStateWrongColor = 4;
inline constexpr uint32_t kVerifyDigest = 1u << 0;
inline constexpr uint32_t kAlgoMd5 = 1, kAlgoSha1 = 2, kAlgoSha256 = 8, kAlgoSha384 = 9, kAlgoSha512 = 10,
                          kAlgoSha224 = 11;
// Caps, as rpm's header.c: index entries, data bytes.
inline constexpr uint32_t kMaxIndexEntries = 0xffff, kMaxDataBytes = 0x0fffffff;
inline constexpr size_t kMaxPathBytes = 4096;
}  // namespace rpm

struct RpmFile {
  std::string path;
  std::string digest;           // hex as recorded; empty for dirs, symlinks, ghosts
  uint16_t mode = 0;            // FILEMODES; 0 when the header has none
  uint32_t flags = 0;           // FILEFLAGS
  int state = rpm::kStateNormal;  // FILESTATES
  uint32_t verify = ~0u;        // FILEVERIFYFLAGS (all checks when absent)
};

struct RpmHeader {
  std::string name, version, release, arch;
  uint32_t digest_algo = rpm::kAlgoMd5;  // FILEDIGESTALGO, md5 when absent
  bool has_modes = false;
  std::vector<RpmFile> files;
};

// Parses one header blob (il, dl, index, data; no magic). Every structural
// problem is an Error; `path_budget` caps the bytes of file paths the header
// may expand to (DIRNAMES are shared, so a small blob can name long paths) and
// is decremented by what was used.
Result<RpmHeader> parse_rpm_header(std::string_view blob, size_t* path_budget = nullptr);

// Adds one parsed package: PackageInfo{name, version-release, arch, "rpm"},
// an owner for every file rpm installed (states normal and replaced), and a
// digest for every regular file whose state is normal, that is not %config or
// %ghost, whose %verify keeps the digest and that has a well-formed digest.
// Malformed digests and an unsupported algorithm are db.errors entries.
void add_rpm_header(PackageDb& db, const RpmHeader& h);

// Reads an rpmdb.sqlite image (the file's bytes; `where` names it in
// messages) into db. Error when SQLite cannot read it as an rpm database.
Status add_rpm_sqlite(PackageDb& db, std::string bytes, const std::string& where);

// Reads a BerkeleyDB hash `Packages` (the file's bytes) into db. Error when
// it is not a BerkeleyDB hash database; malformed pages, items and headers
// are db.errors entries.
Status add_rpm_bdb(PackageDb& db, std::string_view bytes, const std::string& where);

// Reads an ndb `Packages.db` (the file's bytes) into db. Error when it is not
// an ndb database or its slot pages are broken (rpm cannot read it either);
// a bad slot, blob or header is a db.errors entry.
Status add_rpm_ndb(PackageDb& db, std::string_view bytes, const std::string& where);

// Reads the image's rpm database, if any (see the top): rpmdb.sqlite in
// /var/lib/rpm then /usr/lib/sysimage/rpm, else Packages, else Packages.db,
// each in the same order.
Status load_rpm_db(PackageDb& db, const ReadImageFile& read);

}  // namespace moat
