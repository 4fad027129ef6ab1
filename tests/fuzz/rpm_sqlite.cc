// Fuzz target: an image's rpmdb.sqlite (the file's bytes) through
// add_rpm_sqlite() (scanner/image/rpmdb.h): SQLite opened in memory, read-only and
// defensive, then every header blob parsed by moat.
#include "scanner/image/rpmdb.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  PackageDb db;
  (void)add_rpm_sqlite(db, std::string(reinterpret_cast<const char*>(data), size), "/var/lib/rpm/rpmdb.sqlite");
  return 0;
}
