// Fuzz target: an image's BerkeleyDB hash `Packages` (the file's bytes)
// through add_rpm_bdb() (scanner/image/rpmdb.h): pages, items, overflow chains,
// then every header blob parsed by moat.
#include "scanner/image/rpmdb.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  PackageDb db;
  (void)add_rpm_bdb(db, std::string_view(reinterpret_cast<const char*>(data), size), "/var/lib/rpm/Packages");
  return 0;
}
