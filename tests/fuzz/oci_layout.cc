// Fuzz target: OCI index, manifest and config JSON through open_image_tree()
// (storage/image.h), the code every oci:/oci-archive: image goes through.
//
// Input: documents separated by "\n@@@@\n": part 0 is index.json, parts 1..
// are blobs stored under blobs/sha256/<their digest>. "@N", "%N" and "#N" in
// a part are replaced by part N's digest, hex and size (N later than the
// part), so mutations keep documents that reference each other valid. The
// same parts are also read as skopeo's dir: format (part 1 = manifest.json).
#include "storage/image.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

namespace {

void exercise(const ImageSource& src) {
  const ImageDesc& d = src.desc();
  for (size_t i = 0; i < d.layers.size(); ++i) {
    auto r = src.open_layer(i);
    if (!r.ok()) continue;
    char buf[512];
    (void)(*r)->read(buf, sizeof buf);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data), size), 10);
  auto digests = fuzz::link_parts(parts);
  Limits limits;
  limits.max_json_bytes = 1 << 20;
  Platform amd64{"linux", "amd64", ""};

  auto files = std::make_shared<fuzz::MemTree::Files>();
  (*files)["oci-layout"] = R"({"imageLayoutVersion":"1.0.0"})";
  (*files)["index.json"] = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) (*files)["blobs/sha256/" + digests[i].substr(7)] = parts[i];
  for (const char* tag : {"", "latest"}) {
    auto tree = std::make_unique<fuzz::MemTree>(files);
    Reference ref{Transport::OciLayout, "/fuzz/layout", tag, std::string("oci:/fuzz/layout:") + tag};
    auto img = open_image_tree(std::move(tree), ref, amd64, limits);
    if (img.ok()) exercise(**img);
  }
  if (parts.size() > 1) {
    auto tree = std::make_unique<fuzz::MemTree>();
    tree->files["version"] = "Directory Transport Version: 1.1\n";
    tree->files["manifest.json"] = parts[1];
    for (size_t i = 2; i < parts.size(); ++i) {
      tree->files[digests[i].substr(7)] = parts[i];
      tree->files[digests[i].substr(7) + ".manifest.json"] = parts[i];
    }
    Reference ref{Transport::Dir, "/fuzz/dir", "", "dir:/fuzz/dir"};
    auto img = open_image_tree(std::move(tree), ref, amd64, limits);
    if (img.ok()) exercise(**img);
  }
  return 0;
}
