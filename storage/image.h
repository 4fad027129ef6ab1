// ImageSource: one image found through a Reference, with its manifest and
// config read, validated and verified, and its layers ready to be streamed.
//
// open_image() does all document work up front: it validates every digest
// before use, verifies every document blob against its digest, selects a
// manifest from an index by tag and platform, and checks that the config's
// diff_ids match the layers. Layer blobs are verified later, on the same pass
// that unpacks them (see unpack.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "storage/limits.h"
#include "storage/reference.h"
#include "storage/result.h"
#include "storage/tree.h"

namespace moat {

enum class Compression { Unknown, None, Gzip, Zstd };
const char* compression_name(Compression c);

struct LayerDesc {
  size_t index = 0;
  std::string blob_digest;  // digest of the stored blob; empty where the transport names none
  std::string media_type;   // empty where the transport gives none (docker-archive)
  Compression compression = Compression::Unknown;  // from the media type; Unknown: by magic bytes
  int64_t size = -1;        // blob size from the manifest, -1 if unknown
  std::string diff_id;      // from the config's rootfs.diff_ids, validated
  std::string created_by;   // from the config's history
  std::string blob_path;    // location inside the image's BlobTree
  // containers-storage: the stream is the layer's uncompressed tar, reassembled
  // from the store; blob_digest names the original blob and is not checked
  // against the stream (the diffID is).
  bool stream_is_tar = false;
};

struct ImageDesc {
  std::string reference;        // canonical reference text
  std::string manifest_digest;  // empty where the transport has no manifest blob
  std::string config_digest;
  std::string manifest;         // the selected manifest's exact bytes (verified against manifest_digest)
  std::string config;           // the config document's bytes, verified
  std::string platform;         // "os/arch[/variant]" from the config
  std::vector<LayerDesc> layers;
  std::vector<std::string> notes;  // what the report must say about this image (unverified layers)
  std::vector<std::string> notes_verbose;  // what -v says about how it was brought in
  bool rootfs = false;          // dir: with an unpacked tree (no blobs)
  std::string rootfs_path;
};

struct Platform {
  std::string os = "linux", arch, variant;  // arch empty: the host's
  static Result<Platform> parse(const std::string& s);
  std::string text() const;
};
Platform host_platform();

class ImageSource {
 public:
  const ImageDesc& desc() const { return desc_; }
  Result<std::unique_ptr<Reader>> open_layer(size_t i) const;

 private:
  friend Result<std::unique_ptr<ImageSource>> open_image(const Reference&, const Platform&, const Limits&);
  friend Result<std::unique_ptr<ImageSource>> open_image_tree(std::unique_ptr<BlobTree>, const Reference&,
                                                              const Platform&, const Limits&);
  friend Result<std::unique_ptr<ImageSource>> open_registry_tree(std::unique_ptr<BlobTree>, const Reference&,
                                                                 const std::string&, const std::string&, int64_t,
                                                                 const Platform&, const Limits&);
  ImageDesc desc_;
  std::unique_ptr<BlobTree> tree_;
};

Result<std::unique_ptr<ImageSource>> open_image(const Reference& ref, const Platform& platform, const Limits& limits);

// The same over an already-open BlobTree, read as ref.transport says (oci:
// and oci-archive: as an OCI layout, docker-archive:, dir: in skopeo's
// format; ref.path only names the image in messages). open_image() opens the
// tree from ref.path and calls this; the fuzz targets (tests/fuzz/) serve the
// documents from memory through it.
Result<std::unique_ptr<ImageSource>> open_image_tree(std::unique_ptr<BlobTree> tree, const Reference& ref,
                                                     const Platform& platform, const Limits& limits);

// The document work of a docker:// image once its tag's manifest was fetched
// (registry::open_registry_image): `tree` serves manifests/sha256:HEX and
// blobs/sha256:HEX (a registry::RegistryTree, or memory in the fuzz target
// registry_manifest), `top_*` describe the tag's manifest as the client
// returned it. An index is followed to `platform`; a layer without a size is
// refused (the size bounds its download).
Result<std::unique_ptr<ImageSource>> open_registry_tree(std::unique_ptr<BlobTree> tree, const Reference& ref,
                                                        const std::string& top_digest, const std::string& top_media_type,
                                                        int64_t top_size, const Platform& platform, const Limits& limits);

}  // namespace moat
