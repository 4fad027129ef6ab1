// Fuzz target: a manifest, index or config body as a registry serves it,
// through what the docker:// source does with it: manifest_from_body()
// (storage/sources/registry/responses.h: the digest computed, checked against
// a digest reference, the media type from the body or Content-Type), then
// open_registry_tree() (storage/image.h: media-type dispatch, schema 1
// refused, platform selection in an index, descriptors and sizes validated,
// every document verified against its digest, diffIDs matched to layers).
//
// Input: the first line is the Content-Type header; the rest are documents
// separated by "\n@@@@\n": part 0 the tag's manifest, parts 1.. served by
// digest as manifests/sha256:HEX and blobs/sha256:HEX (as RegistryTree does).
// "@N", "%N", "#N" are part N's digest, hex and size (N later than the part).
#include "storage/image.h"
#include "storage/sources/registry/responses.h"
#include "storage/sources/registry/source.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

namespace {

// RegistryTree::exists(): every document and blob path "exists" until fetched.
class RegistryMemTree : public fuzz::MemTree {
 public:
  using MemTree::MemTree;
  bool exists(const std::string& path) override {
    return path.rfind("blobs/sha256:", 0) == 0 || path.rfind("manifests/sha256:", 0) == 0;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t nl = in.find('\n');
  std::string content_type(nl == std::string_view::npos ? in : in.substr(0, nl));
  in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  auto parts = fuzz::split_parts(in, 10);
  auto digests = fuzz::link_parts(parts);
  digests[0] = sha256_digest(parts[0]);

  Limits limits;
  limits.max_json_bytes = 1 << 20;
  limits.max_layers = 64;
  const std::string what = "registry.example/fuzz/image";
  // By tag, by its own digest and by another digest (refused): the same
  // bytes give the same Manifest, so the documents are read once per platform.
  auto m = registry::manifest_from_body(parts[0], content_type, "latest", what + ":latest");
  auto by_digest = registry::manifest_from_body(parts[0], content_type, digests[0], what + "@" + digests[0]);
  MOAT_FUZZ_ASSERT(m.ok() == by_digest.ok(), "a manifest reads differently by tag and by its digest");
  const std::string other = "sha256:" + std::string(64, '0');
  if (digests[0] != other)
    MOAT_FUZZ_ASSERT(!registry::manifest_from_body(parts[0], content_type, other, what + "@" + other).ok(),
                     "a manifest was accepted under another digest");
  if (!m.ok()) return 0;
  MOAT_FUZZ_ASSERT(m->digest == digests[0] && by_digest->media_type == m->media_type, "the manifest digest is not of its bytes");
  // The platform matters only to an index (a document with "manifests").
  std::vector<Platform> platforms{Platform{"linux", "amd64", ""}};
  if (in.find("manifests") != std::string_view::npos) platforms.push_back(Platform{"linux", "arm64", "v8"});
  auto files = std::make_shared<fuzz::MemTree::Files>();
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string hex = digests[i].substr(7);
    (*files)[registry::registry_manifest_path(hex)] = parts[i];
    (*files)[registry::registry_blob_path(hex)] = parts[i];
  }
  for (const Platform& want : platforms) {
    auto tree = std::make_unique<RegistryMemTree>(files);
    Reference r{Transport::Docker, "registry.example/fuzz/image", "", "docker://registry.example/fuzz/image:latest"};
    auto img = open_registry_tree(std::move(tree), r, m->digest, m->media_type, static_cast<int64_t>(m->bytes.size()),
                                  want, limits);
    if (!img.ok()) {
      MOAT_FUZZ_ASSERT(!img.error().describe().empty(), "an error without a message");
      continue;
    }
    const ImageDesc& d = (*img)->desc();
    MOAT_FUZZ_ASSERT(sha256_digest(d.manifest) == d.manifest_digest, "the selected manifest is not verified");
    MOAT_FUZZ_ASSERT(sha256_digest(d.config) == d.config_digest, "the config is not verified");
    for (const auto& l : d.layers) MOAT_FUZZ_ASSERT(l.size >= 0, "a registry layer without a size was accepted");
  }
  return 0;
}
