// The containers-storage: transport: an image in podman's or buildah's own
// store, read directly (no daemon, no export), verified layer by layer.
//
// open_store_image() finds the store (config.h), takes c/storage's read locks
// (layers.lock, then images.lock) just long enough to read its metadata
// (store_db.h), resolves the name, and returns a StoreTree: a BlobTree serving
// the image's manifest and config from its big data, so image.cc parses and
// verifies them exactly as for a layout. bind_layers() then maps the config's
// diffIDs onto the store's layer chain and checks each layer is verifiable.
// Opening a layer takes the read locks again, re-reads layers.json to confirm
// the layer is still there, and streams the tar reassembled from its tar-split
// (tar_split.h); the locks go when the layer has been read, so a parallel
// `podman pull`, `rmi` or `build` waits at most for one layer. moat never
// writes to the podman store.
//
// Rootless stores belong to the user's subordinate ids: moat reads them as
// root of a user namespace with podman's mapping (scanner/session/namespace.h's
// maybe_enter_userns runs every store command that way). Real root never
// reads a store that belongs to another user.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "storage/image.h"
#include "storage/limits.h"
#include "storage/reference.h"
#include "storage/result.h"
#include "storage/sources/containers_storage/config.h"
#include "storage/sources/containers_storage/store_db.h"
#include "storage/tree.h"

namespace moat::cstorage {

// Splits the location of containers-storage:[SPEC]NAME into spec and name.
Result<std::pair<StoreSpec, std::string>> parse_location(const std::string& loc);

class StoreTree : public BlobTree {
 public:
  bool exists(const std::string& path) override;
  Result<std::string> read_small(const std::string& path, size_t max_bytes) override;
  Result<std::unique_ptr<Reader>> open(const std::string& path) override;

  const std::string& manifest_digest() const { return manifest_digest_; }
  size_t manifest_size() const { return manifest_.size(); }
  const std::string& canonical() const { return canonical_; }

 private:
  friend Result<std::unique_ptr<StoreTree>> open_store_image(const Reference&, const Limits&, bool*);
  friend Status bind_layers(ImageDesc&, StoreTree&, const Limits&);
  friend Result<size_t> use_local_layers(ImageDesc&, std::unique_ptr<BlobTree>&, const Limits&);
  struct ChainLayer {
    size_t store;
    std::string id, diff_digest;
    bool unverifiable = false;
    std::string why;  // why it cannot be verified
    bool generated = false;  // --allow-unverified without tar-split: a tar made from the files (diff_tar.h)
  };
  Result<std::unique_ptr<Reader>> open_layer(size_t i);

  std::vector<StoreDb> stores_;
  size_t image_store_ = 0;
  CsImage image_;
  std::string manifest_, manifest_digest_, canonical_;
  std::vector<ChainLayer> chain_;  // bottom first
  Limits limits_;
};

// Finds the image of a containers-storage reference. *not_found is set when the
// store has no such image (a bare name then goes on to a registry).
Result<std::unique_ptr<StoreTree>> open_store_image(const Reference& ref, const Limits& limits, bool* not_found);

// After image.cc loaded the manifest and config from the tree: maps layer i to
// the store's layer chain, checks diff-digests against the config's diffIDs and
// that each layer has a tar-split, and points blob_path at it.
Status bind_layers(ImageDesc& d, StoreTree& tree, const Limits& limits);

// A registry pull (docker://, already resolved into `d`): each layer the
// user's podman store has (same diffID, with a tar-split) is read from there
// instead of being downloaded, verified against the diffID all the same.
// `tree` is wrapped so its other paths still reach the registry. Returns how
// many layers will come from the store; no store, or nothing usable in it, is 0.
Result<size_t> use_local_layers(ImageDesc& d, std::unique_ptr<BlobTree>& tree, const Limits& limits);

}  // namespace moat::cstorage
