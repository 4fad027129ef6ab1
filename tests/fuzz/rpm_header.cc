// Fuzz target: one rpm header blob (il, dl, index, data; no magic), the
// value of every row of rpmdb.sqlite and every BerkeleyDB item, through
// parse_rpm_header() and add_rpm_header() (scanner/image/rpmdb.h).
#include "scanner/image/rpmdb.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view blob(reinterpret_cast<const char*>(data), size);
  size_t budget = 1 << 20;
  auto h = parse_rpm_header(blob, &budget);
  if (!h.ok()) return 0;
  MOAT_FUZZ_ASSERT(budget <= (1u << 20), "the path budget grew");
  for (const auto& f : h->files) MOAT_FUZZ_ASSERT(f.path.size() <= rpm::kMaxPathBytes + 1, "a path over the cap");
  PackageDb db;
  add_rpm_header(db, *h);
  return 0;
}
