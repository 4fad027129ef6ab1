// The read-only overlay mount of an image's layers, run inside the session's
// namespace (namespace.h) by the helper process.
//
// Mount plan: lowers top layer first, `userxattr` (the store keeps opaque
// markers in user.overlay.opaque and whiteouts as 0:0 character devices, the
// form the kernel merges without privilege), read-only, nosuid, nodev, noexec,
// no upperdir. A single-layer image gets an empty bottom layer: a lowerdir-only
// overlay needs two lowers.
//
// Two ways to pass up to 500 lowers:
//  - fsopen("overlay") + one fsconfig("lowerdir+", path) per layer (Linux
//    6.8+): no option string at all, so no page limit and no escaping of
//    ',' ':' '\' in store paths.
//  - mount(2) on older kernels: the options must fit in one page, and 500
//    absolute store paths (~90 bytes each) do not. The helper makes numbered
//    symlinks 0..N-1 to the layers in its private tmpfs and mounts with
//    `lowerdir=N-1:...:0` relative to that directory (~4 bytes a layer), as
//    containers/storage does with its l/<id> links -- but nothing persists.
#pragma once

#include <string>
#include <vector>

#include "storage/result.h"

namespace moat {

struct OverlayPlan {
  std::vector<std::string> lowers_top_first;  // absolute paths
  std::string scratch;  // a private, writable directory (the session's tmpfs) for links and the empty layer
  std::string target;   // the mount point
  bool force_legacy = false;  // test seam: skip fsconfig
};

// Mounts the overlay; returns the method used ("fsconfig" or "mount").
// Errors keep the kernel's errno and, with fsconfig, the kernel's own message.
Result<std::string> mount_overlay(const OverlayPlan& plan);

// Escapes ',' ':' and '\' for an overlay option value, as bubblewrap does.
std::string escape_overlay_path(const std::string& p);

}  // namespace moat
