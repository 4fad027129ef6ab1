// The metadata of a containers/storage store, read strictly as untrusted input:
// DRIVER-images/images.json, DRIVER-layers/layers.json and an image's
// big-data files (its manifest and config), and name resolution as
// c/storage and podman do it.
//
//   GRAPHROOT/
//     DRIVER-images/images.json     [{id, digest, names, layer, big-data-names, ...}]
//     DRIVER-images/images.lock     c/storage's lock of the image store
//     DRIVER-images/ID/KEY          big data; KEY made of [.0-9a-z] is the file name,
//                                   any other key is "=" + base64(KEY)
//     DRIVER-layers/layers.json     [{id, parent, diff-digest, diff-size, flags, ...}]
//     DRIVER-layers/layers.lock     c/storage's lock of the layer store
//     DRIVER-layers/ID.tar-split.gz the layer's tar headers and padding (tar_split.h)
//     overlay/ID/diff/  vfs/dir/ID/ the layer's files
//
// Every id is checked to be 64 lowercase hex before it names a file; every
// digest is validated; a layer flagged `incomplete` (being written) is refused.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "storage/result.h"

namespace moat::cstorage {

struct CsImage {
  std::string id;               // 64 hex
  std::string digest;           // manifest digest ("" when unknown)
  std::vector<std::string> digests;
  std::vector<std::string> names;
  std::string top_layer;        // 64 hex or "" (an image without layers)
  std::vector<std::string> big_data_names;
};

struct CsLayer {
  std::string id, parent;       // 64 hex; parent "" at the bottom
  std::string diff_digest;      // "" when c/storage does not know it (zstd:chunked partial pulls)
  int64_t diff_size = -1;
  std::string compressed_digest;
  bool incomplete = false;
};

// One store (the primary graphroot or an additional image store).
struct StoreDb {
  std::string graphroot, driver;
  bool read_only = false;
  std::vector<CsImage> images;
  std::map<std::string, CsLayer> layers;  // by id

  std::string images_dir() const { return graphroot + "/" + driver + "-images"; }
  std::string layers_dir() const { return graphroot + "/" + driver + "-layers"; }
  // The directory holding a layer's files: overlay/ID/diff, vfs/dir/ID.
  std::string layer_files(const std::string& id) const;
};

bool is_hex64(const std::string& s);

Result<std::vector<CsImage>> parse_images_json(const std::string& text, const std::string& file);
Result<std::map<std::string, CsLayer>> parse_layers_json(const std::string& text, const std::string& file);

// Reads images.json and layers.json of `graphroot` for `driver` (the caller holds
// the store's read locks, or accepts that c/storage writes these files atomically).
Result<StoreDb> load_store(const std::string& graphroot, const std::string& driver, bool read_only);

// The driver a graphroot uses: the one configured, else the one whose
// DRIVER-layers directory exists (as c/storage keeps a store's driver).
Result<std::string> detect_driver(const std::string& graphroot, const std::string& configured);

// The file name c/storage gives a big-data key.
std::string big_data_file(const std::string& key);

// Reads one big-data item of an image (capped), beneath DRIVER-images/ID.
Result<std::string> read_big_data(const StoreDb& db, const CsImage& img, const std::string& key, size_t max_bytes);

// Name resolution: what a podman user means by NAME. `what` is a full id, a
// unique id prefix (at least 3 hex digits), NAME[:TAG], NAME@sha256:DIGEST or
// NAME@ID. A short name is tried as given, as localhost/NAME and as
// docker.io/[library/]NAME, ":latest" added when it has no tag; last, a name
// whose repository path ends in /NAME. More than one image: an error listing them.
struct Match {
  size_t store = 0;           // index into the stores given
  const CsImage* image = nullptr;
  std::string matched_name;   // the image name that matched, or "" when found by id
};
Result<Match> resolve_image(const std::vector<StoreDb>& stores, const std::string& what);

// docker.io normalisation of a reference name: "alpine" -> "docker.io/library/alpine:latest",
// "quay.io/x/y" -> "quay.io/x/y:latest"; "" when `name` is not a valid reference.
std::string normalize_name(const std::string& name);

}  // namespace moat::cstorage
