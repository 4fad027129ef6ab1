// `moat mount` and the mount step of `moat scan`: choosing between the kernel
// overlay (namespace.h) and the userspace merge (merged_view.h).
//
// --mount auto      try the overlay; when the kernel refuses, print ONE line
//                   on stderr (why, and how to enable the overlay path) and
//                   use the userspace merge.
// --mount overlay   the overlay or exit 2 with the explanation.
// --mount userspace the userspace merge, without trying the kernel.
//
// `moat mount` in userspace mode materialises the merged view as a private
// temporary tree under STORE/tmp (copies, reflinked where the filesystem
// can, never hardlinks into the store: the command could write through a
// hardlink and corrupt a layer) and removes it when the command exits. A
// SIGKILL leaves that tree behind; `moat image prune` removes it. Files in
// that tree belong to the caller: ownership is not shown in userspace mode.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "scanner/session/merged_view.h"
#include "scanner/session/namespace.h"
#include "storage/result.h"
#include "storage/store.h"

namespace moat {

struct MountCmdOptions {
  std::string image;
  std::string mode = "auto";  // auto | overlay | userspace
  std::vector<std::string> argv;  // empty: $SHELL, else /bin/sh
  std::string store_dir;
  bool quiet = false, verbose = false;
  // Set: what moat prints that can name an image's path (errors, the first
  // file the userspace view could not copy) passes through it first, since
  // a token can be a file name. It redacts every secret rule's match.
  std::function<std::string(const std::string&, const Store&)> redact;
};

// Brings the image into the store (the CLI's pull logic, with its options and progress).
using PullFn = std::function<Result<ImageRecord>(Store&)>;

// Runs the command in the image's merged view; returns its exit status, or 2
// when moat itself failed (after printing why).
int cmd_mount(const MountCmdOptions& o, const PullFn& pull);

struct ScanMount {
  std::string mode;        // overlay | userspace
  std::string id_mapping;  // subuid | single | none
  // overlay: the live session; session->root_fd() is the merged root until it ends.
  std::optional<Session> session;
  // userspace: the merged view (metadata from the indexes, content via MergedView::open).
  std::optional<MergedView> view;
};

// The mount step of `moat scan`, after the pull: mounts (or merges) the
// image and proves the view is readable. The result holds the mount (or the
// view) for the filesystem checks; the namespace ends when it is destroyed.
Result<ScanMount> run_scan_mount(const Store& store, const ImageRecord& img, const std::string& mode, bool quiet,
                                 bool verbose);

}  // namespace moat
