// ViewTree: a MergedView written out as a private, temporary directory tree,
// for `moat mount --mount userspace` (a command needs real paths to walk).
//
// The tree is made of copies (FICLONE reflinks where the store's filesystem
// supports them, copy_file_range otherwise), never hardlinks into the store:
// a command could write through a hardlink and corrupt a layer every image
// shares. Modes (setuid/setgid/sticky included) and mtimes are the image's;
// owners are the caller's (nothing else is possible without privilege).
// Device nodes become empty mode-0 placeholders, as in the store. Directories
// get their final mode last, deepest first, so 0000/0500 dirs can be filled.
//
// One owner: the ViewTree removes its directory on destruction. A process
// killed while it exists leaves it under STORE/tmp, where prune removes it.
#pragma once

#include <string>

#include "scanner/session/merged_view.h"
#include "storage/result.h"

namespace moat {

class ViewTree {
 public:
  // Creates PARENT/view.<pid>.<n>/ and fills it. Per-file failures (a file the
  // caller cannot read) are counted in `skipped`, not fatal.
  static Result<ViewTree> create(const MergedView& view, const std::string& parent);
  ViewTree(ViewTree&& o) noexcept;
  ViewTree& operator=(ViewTree&&) = delete;
  ViewTree(const ViewTree&) = delete;
  ~ViewTree();

  const std::string& root() const { return root_; }  // the merged tree
  size_t skipped() const { return skipped_; }
  const std::string& first_skip() const { return first_skip_; }

 private:
  ViewTree() = default;
  std::string parent_, name_, root_;
  size_t skipped_ = 0;
  std::string first_skip_;
};

}  // namespace moat
