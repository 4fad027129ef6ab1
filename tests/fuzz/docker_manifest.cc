// Fuzz target: docker-archive's manifest.json and the config it names,
// through open_image_tree() (storage/image.h) with Transport::DockerArchive.
//
// Input: parts separated by "\n@@@@\n": part 0 is manifest.json; parts 1..
// are stored as blobs/sha256/<hex> (Docker 25+), <hex>.json and <hex>/layer.tar
// (classic). "@N", "%N", "#N" become part N's digest, hex and size.
#include "storage/image.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data), size), 10);
  auto digests = fuzz::link_parts(parts);
  Limits limits;
  limits.max_json_bytes = 1 << 20;
  auto files = std::make_shared<fuzz::MemTree::Files>();
  (*files)["manifest.json"] = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) {
    std::string hex = digests[i].substr(7);
    (*files)["blobs/sha256/" + hex] = parts[i];
    (*files)[hex + ".json"] = parts[i];
    (*files)[hex + "/layer.tar"] = parts[i];
  }
  for (const char* tag : {"", "@0", "@1", "busybox:latest", "localhost/app"}) {
    auto tree = std::make_unique<fuzz::MemTree>(files);
    Reference ref{Transport::DockerArchive, "/fuzz/img.tar", tag, std::string("docker-archive:/fuzz/img.tar:") + tag};
    auto img = open_image_tree(std::move(tree), ref, Platform{"linux", "amd64", ""}, limits);
    if (img.ok()) {
      for (size_t i = 0; i < (*img)->desc().layers.size(); ++i) {
        auto r = (*img)->open_layer(i);
        MOAT_FUZZ_ASSERT(r.ok(), "a layer open_image_tree accepted cannot be opened");
      }
    }
  }
  return 0;
}
