// Fuzz target: Alpine's /lib/apk/db/installed (with its Q1/Q2 checksums)
// through load_package_db() (scanner/image/packages.h).
#include "scanner/image/packages.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  ReadImageFile read = [&](const std::string& path) -> Result<std::optional<std::string>> {
    if (path == "/lib/apk/db/installed") return std::optional<std::string>(text);
    return std::optional<std::string>();
  };
  auto db = load_package_db(read);
  MOAT_FUZZ_ASSERT(db.ok(), "an apk database is never a failed scan");
  for (const auto& p : db->packages) MOAT_FUZZ_ASSERT(p.manager == "apk", "a package from nowhere");
  (void)db->owner_of("/bin/busybox");
  if (size > 2) (void)parse_apk_checksum(std::string_view(text).substr(0, std::min<size_t>(size, 100)));
  return 0;
}
