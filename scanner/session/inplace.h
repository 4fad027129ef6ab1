// In-place scan of an unpacked tree (`moat scan dir:PATH`): the tree is
// walked where it is, never copied into the store.
//
// The walk (walk.h) opens only directories, each relative to its parent with
// O_NOFOLLOW|O_DIRECTORY, and lstat()s every entry: no symlink is followed and
// nothing outside the root is read. Its result is the metadata index a layer
// would have (path, type, mode, owner, size, mtime, symlink target, the
// user.* and security.* xattrs), as found on disk: the owners in the report
// are the tree's own uids and gids, not an image's. Regular files with more
// than one link become one file and hardlinks to it (the first path in sorted
// order is the file), as in a tar.
//
// The merged view of the scan is built from that index with the tree as its
// only "layer" directory, so every check and the secret scan read content
// through MergedView::open / open_beneath (RESOLVE_BENEATH, no symlinks) from
// the tree itself. Nothing is cached: the tree may change between scans.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "scanner/session/merged_view.h"
#include "scanner/session/mount_cmd.h"
#include "storage/layer_index.h"
#include "storage/limits.h"
#include "storage/result.h"
#include "storage/store.h"

namespace moat {

struct InPlaceTree {
  ImageRecord record;              // one layer: the tree (diff_id: digest of the walk's metadata)
  std::vector<IndexEntry> index;   // sorted by path
  std::string root;                // the tree's absolute path
  std::vector<std::string> errors; // directories the walk could not read
};

// Walks `path`. Errors: not a directory, more entries than the limits allow.
Result<InPlaceTree> walk_in_place(const std::string& path, const Limits& limits);

// For `moat scan IMAGE`: the walked tree when IMAGE is dir: of an unpacked
// tree (not skopeo's dir: format), nullopt for every other reference.
Result<std::optional<InPlaceTree>> in_place_target(const std::string& image, const Limits& limits);

// True for `moat scan ... dir:PATH ...` where PATH is an unpacked tree (no
// skopeo dir: files in it), decided from argv before the command line is
// parsed: main() then does not re-execute in the subuid user namespace.
bool is_in_place_scan(int argc, char** argv);

// The scan's "mount" of an in-place tree: mode "in-place", the view built
// from the walk with the tree as its one layer directory.
Result<ScanMount> in_place_mount(const InPlaceTree& tree);

}  // namespace moat
