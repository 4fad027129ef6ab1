// Safe, streaming, verified layer unpacking.
//
// One pass over a layer blob does everything: the compressed bytes are hashed
// (blob digest), decompressed (gzip or zstd, chosen by media type and confirmed
// by magic bytes), hashed again (diffID) and fed to libarchive's tar reader,
// whose entries are written beneath the layer's diff/ directory. Nothing is
// read twice and memory stays flat whatever the layer's size (a ring of 4 MiB).
// Three threads share the work of one layer: a producer reads, hashes and
// decompresses, a hasher computes the diffID, and the calling thread parses
// the tar and writes the entries (unpack.cc says who owns what when).
//
// The written form is the one the kernel's overlayfs mounts without privilege
// (userxattr mode): `.wh.NAME` becomes a 0:0 character device NAME,
// `.wh..wh..opq` the xattr user.overlay.opaque=y on its directory, the layer's
// own *.overlay.* and user.containers.* xattrs are dropped, device nodes are
// recorded but not created (an empty placeholder file stands in), and
// directories get their final mode only after their contents are written.
// The truth about every entry goes to the metadata index (layer_index.h) and,
// where the file on disk cannot carry it, to user.containers.override_stat.
//
// Every path is resolved beneath the layer root without following symlinks;
// absolute names, "..", symlinked parents and hardlinks leaving the layer are
// refused with an error naming the entry. The caller unpacks into a private
// temporary directory and renames it into place only after success, so a
// failure or a kill leaves nothing a later scan would use.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "storage/image.h"
#include "storage/layer_index.h"
#include "storage/limits.h"
#include "storage/result.h"
#include "storage/tree.h"

namespace moat {

// What inflates gzip layers in this build: "ISA-L igzip 2.30.0" or "zlib 1.2.13".
std::string gzip_inflater();

struct UnpackOptions {
  bool chown = false;  // try to give files their real owners (root, or a full id mapping)
  Limits limits;
  std::atomic<uint64_t>* image_bytes = nullptr;  // shared uncompressed-byte budget of the image
  std::function<void(uint64_t)> progress;        // called with each chunk of compressed bytes read
  const std::atomic<bool>* cancel = nullptr;     // set when a sibling layer failed: stop early
  // Called on the unpacking thread as each regular file is complete (content,
  // owner, xattrs and mode written), with its index entry: its bytes can be
  // read while the rest of the layer is still arriving. A later entry of the
  // same tar may still replace or remove it; only the returned index is final.
  std::function<void(const IndexEntry&)> on_file;
};

struct UnpackResult {
  std::string diff_id;      // sha256 of the uncompressed tar (for dir: the tree's content digest)
  std::string blob_digest;  // sha256 of the blob as read
  uint64_t blob_size = 0;
  uint64_t tar_size = 0;
  uint64_t entries = 0;
  Compression compression = Compression::Unknown;
  std::vector<IndexEntry> index;
  std::vector<IndexEntry> pending_links;  // hardlinks to files of lower layers, to be copied
  std::vector<std::string> implicit_dirs; // parents the tar did not list (made 0755), sorted
};

// Unpacks `blob` into `diff_dirfd` (an empty directory) and verifies it against
// `expect` (blob digest and size where known, diff_id always). Errors name the
// entry; the caller adds the image and layer.
Result<UnpackResult> unpack_layer(Reader& blob, const LayerDesc& expect, int diff_dirfd, const UnpackOptions& opt);

// Copies an unpacked root filesystem (dir: transport) into `diff_dirfd` through
// the same entry writer, never following a symlink. The diff_id is a digest of
// the tree's index and contents.
Result<UnpackResult> import_rootfs(const std::string& path, int diff_dirfd, const UnpackOptions& opt);

// Materializes a hardlink whose target lives in a lower layer as a copy:
// `src_root` is that layer's diff/, `src` its index entry for the target.
// Gives a directory the tar did not list (a parent made implicitly) the
// attributes of the lower layer's directory at the same path, so the kernel's
// merged view shows what applying the layer onto its lowers would.
Status apply_lower_dir(int root, const std::string& path, const IndexEntry& lower, bool chown);

Status copy_from_lower(int dst_root, const IndexEntry& link, int src_root, const IndexEntry& src, bool chown);

}  // namespace moat
