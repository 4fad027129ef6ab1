// Fuzz target: dpkg's status, diversions, .list and .md5sums files through
// load_package_db() (scanner/image/packages.h), as a scan reads them from an image.
//
// Input: parts separated by "\n@@@@\n": status, diversions, then the .list and
// .md5sums of the first, second ... package the status names.
#include "scanner/image/packages.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data), size), 12);
  std::map<std::string, std::string> files;
  files["/var/lib/dpkg/status"] = parts[0];
  if (parts.size() > 1) files["/var/lib/dpkg/diversions"] = parts[1];
  size_t k = 2;
  for (const auto& p : parse_dpkg_status(parts[0])) {
    if (k >= parts.size()) break;
    std::string stem = "/var/lib/dpkg/info/" + p.name + (p.multi_arch_same ? ":" + p.arch : "");
    files.emplace(stem + ".list", parts[k++]);
    if (k < parts.size()) files.emplace(stem + ".md5sums", parts[k++]);
  }
  ReadImageFile read = [&](const std::string& path) -> Result<std::optional<std::string>> {
    auto it = files.find(path);
    if (it == files.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  };
  auto db = load_package_db(read);
  if (!db.ok()) return 0;
  for (bool merged : {false, true}) {
    db->set_merged_usr(merged);
    for (const char* p : {"/bin/su", "/usr/bin/su", "/", "/bin", "", "/etc/passwd"}) {
      (void)db->owner_of(p);
      (void)db->digest_of(p);
    }
  }
  (void)db->managers();
  return 0;
}
