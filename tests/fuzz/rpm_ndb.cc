// Fuzz target: an image's ndb `Packages.db` (SUSE; the file's bytes) through
// add_rpm_ndb() (scanner/image/rpmdb.h): the header, slot pages, blob heads,
// tails and checksums, then every header blob parsed by moat.
//
// Invariant: a slot yields at most one package, so there are never more
// packages than 16-byte slots in the file.
#include "scanner/image/rpmdb.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  PackageDb db;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (!add_rpm_ndb(db, bytes, "/usr/lib/sysimage/rpm/Packages.db").ok()) return 0;
  MOAT_FUZZ_ASSERT(db.packages.size() <= size / 16, "more packages than slots");
  return 0;
}
