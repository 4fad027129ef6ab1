// The unverified fallback (--allow-unverified): a tar stream generated from
// an overlay layer's diff/ directory when the store has no tar-split for it.
//
// Nothing checks such a stream against the image's diffIDs, so its content
// is only as trustworthy as the store; the report says so. The walk opens
// every entry relative to its parent's fd with O_NOFOLLOW (symlinks are
// recorded, never followed) and converts the driver's forms back to the
// image's: a 0:0 character device is the whiteout `.wh.NAME`, a directory with
// trusted.overlay.opaque or user.overlay.opaque = y gets `.wh..wh..opq`,
// fuse-overlayfs' literal `.wh.` files stay as they are, and
// user.containers.override_stat (force_mask stores) gives owner and mode.
// Entries are in sorted order, parents first, hardlinks by inode.
// vfs layers hold their parent's files too, so they cannot be done this way.
#pragma once

#include <memory>
#include <string>

#include "storage/fd.h"
#include "storage/limits.h"
#include "storage/result.h"
#include "storage/tree.h"

namespace moat::cstorage {

class DiffTarReader : public Reader {
 public:
  DiffTarReader(Fd diff_dir, std::string label, const Limits& limits);
  ~DiffTarReader() override;
  Result<size_t> read(char* buf, size_t n) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moat::cstorage
