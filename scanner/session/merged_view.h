// MergedView: the userspace merge of an image's layers, the fallback for when
// the kernel will not mount an overlay (no user namespaces, AppArmor, more than
// 500 layers) and the view the later checks can walk in either mode.
//
// It is computed from the per-layer metadata indexes only (never from what is
// on disk, which an unprivileged unpack could not make exact), bottom-up, with
// the OCI layer rules the kernel's overlay implements for whiteouts:
//  - a layer's opaque markers and whiteouts apply to the lower layers first
//    (an opaque directory drops everything below it from lower layers; a
//    whiteout drops the path and its subtree);
//  - then its entries apply in tar order: a directory meeting a directory
//    takes the new attributes and keeps its children; anything else replaces
//    the old entry and its whole subtree.
// Each path maps to the entry of the layer that provides it, so checks get the
// image's true owner, mode and xattrs, and know which layer to blame.
//
// Content is read from that layer's diff/ directory with open_beneath()
// (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS): a path of the image never
// leads moat out of the store, whatever symlinks the layers hold.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "storage/fd.h"
#include "storage/layer_index.h"
#include "storage/result.h"
#include "storage/store.h"

namespace moat {

struct ViewEntry {
  size_t layer = 0;    // index (bottom = 0) of the layer providing the entry
  IndexEntry entry;    // its metadata; for a hardlink, type/mode/owner are the target's
  std::string hardlink_to;  // non-empty for hardlinks: the target's path in the image
};

class MergedView {
 public:
  // Loads every layer's index of `img` and merges them. Refuses a view larger than max_entries.
  static Result<MergedView> build(const Store& store, const ImageRecord& img, size_t max_entries = 50'000'000);
  // The same from already-loaded indexes and diff dirs (bottom first); used by tests.
  static Result<MergedView> from_layers(std::vector<std::vector<IndexEntry>> indexes,
                                        std::vector<std::string> diff_dirs, size_t max_entries = 50'000'000);

  // Every visible path ("/" included), sorted: a parent always precedes its children.
  const std::map<std::string, ViewEntry>& entries() const { return entries_; }
  const ViewEntry* find(const std::string& path) const;
  size_t layers() const { return diff_dirs_.size(); }
  const std::string& diff_dir(size_t layer) const { return diff_dirs_[layer]; }
  // A layer's index as the view was built from it. Kept, because the scan
  // reads it again (what later layers removed, the secret findings' owners),
  // and parsing a base layer's index again cost 10 ms of CPU each time.
  const std::vector<IndexEntry>& layer_index(size_t layer) const { return *indexes_[layer]; }

  // Opens the visible file at `path` from its layer's diff dir, beneath it,
  // never following a symlink. flags as for openat (O_RDONLY, O_PATH, ...).
  Result<Fd> open(const std::string& path, int flags) const;

 private:
  using SharedIndex = std::shared_ptr<const std::vector<IndexEntry>>;
  static Result<MergedView> from_shared(std::vector<SharedIndex> indexes, std::vector<std::string> diff_dirs,
                                        size_t max_entries);
  Status apply_layer(size_t layer, const std::vector<IndexEntry>& idx);
  void erase_subtree(const std::string& path, bool keep_self);
  std::map<std::string, ViewEntry> entries_;
  std::vector<std::string> diff_dirs_;
  std::vector<SharedIndex> indexes_;  // one per layer, bottom first (shared with the Store's memo)
  size_t max_entries_ = 0;
};

}  // namespace moat
