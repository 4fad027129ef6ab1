// docker:// as an image source: registries.conf decides where to pull from
// (mirrors, then the location; blocked refused), the first source that
// answers serves the manifest, and a RegistryTree serves the documents and
// layers to image.cc's manifest reader like any other BlobTree:
//   manifests/sha256:HEX   a manifest by digest (verified)
//   blobs/sha256:HEX       a config (verified) or a layer stream (size-capped)
// Manifests and configs are also kept by digest in the store's registry/
// folder, so a rescan of an unchanged tag costs one manifest request.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "storage/limits.h"
#include "storage/reference.h"
#include "storage/result.h"
#include "storage/sources/registry/client.h"
#include "storage/tree.h"

namespace moat::registry {

class RegistryTree : public BlobTree {
 public:
  RegistryTree(std::unique_ptr<Client> client, std::string repository, std::string cache_dir);
  bool exists(const std::string& path) override;
  Result<std::string> read_small(const std::string& path, size_t max_bytes) override;
  Result<std::unique_ptr<Reader>> open(const std::string& path) override;
  // The manifest's size for a layer blob (the stream stops beyond it).
  void expect_size(const std::string& path, int64_t size);
  // A document already fetched and verified (the tag's manifest).
  void remember(const std::string& path, std::string bytes);
  Client& client() { return *client_; }

 private:
  std::unique_ptr<Client> client_;
  std::string repository_, cache_dir_;
  std::mutex mu_;
  std::map<std::string, std::string> docs_;
  std::map<std::string, int64_t> sizes_;
};

struct OpenedRegistryImage {
  std::unique_ptr<RegistryTree> tree;
  std::string text;               // the reference actually pulled (after registries.conf)
  std::string top_digest, top_media_type;
  int64_t top_size = 0;
};

// Resolves `ref` (Transport::Docker) through registries.conf and fetches its manifest.
Result<OpenedRegistryImage> open_registry_image(const Reference& ref, const Limits& limits);

// Where the store keeps fetched documents (set by the CLI once the store is open).
void use_document_cache(const std::string& store_root);

std::string registry_blob_path(const std::string& hex);
std::string registry_manifest_path(const std::string& hex);

}  // namespace moat::registry
