#include "scanner/session/mount_cmd.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "scanner/session/merged_view.h"
#include "scanner/session/namespace.h"
#include "scanner/session/view_tree.h"
#include "storage/fsutil.h"

namespace moat {

namespace {

constexpr int kExitFailed = 2;

int fail(const Error& e) {
  std::fprintf(stderr, "moat: error: %s\n", e.describe().c_str());
  if (!e.hint.empty()) std::fprintf(stderr, "moat: hint: %s\n", e.hint.c_str());
  return kExitFailed;
}

Status check_mode(const std::string& mode) {
  if (mode == "auto" || mode == "overlay" || mode == "userspace") return ok_status();
  return Error{"--mount must be one of auto, overlay, userspace"};
}

// Tries the kernel overlay. Returns a running Session, nothing when `auto`
// falls back (after its one line on stderr), or the error for `overlay`.
Result<std::optional<Session>> try_overlay(const Store& store, const ImageRecord& img, const std::string& mode,
                                           std::vector<std::string> argv, bool quiet, bool verbose) {
  if (mode == "userspace") return std::optional<Session>();
  auto start = [&]() -> Result<Session> {
    if (img.layers.size() > kMaxOverlayLayers)
      return Error{"the image has " + std::to_string(img.layers.size()) +
                   " layers and the kernel's overlayfs stacks at most " + std::to_string(kMaxOverlayLayers), E2BIG}
          .with_hint("use --mount userspace (or auto) for images with more than 500 layers");
    SessionSpec spec;
    for (const auto& l : img.layers) spec.lowers.push_back(store.diff_dir(l.diff_id));
    spec.target = store.root() + "/mnt";
    spec.argv = std::move(argv);
    spec.verbose = verbose;
    // The mount point is a persistent empty directory of the store: each
    // session mounts its own tmpfs over it in its own namespace, so sessions
    // never collide and a killed one leaves no directory behind.
    if (mkdir(spec.target.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("create " + spec.target);
    return Session::start(spec);
  };
  Result<Session> s = start();
  if (s) return std::optional<Session>(std::move(s).value());
  Error e = std::move(s).error();
  if (mode == "overlay") return std::move(e).context("overlay mount refused (--mount overlay does not fall back)");
  // Exactly one line: why, and how to enable the overlay path (-q: nothing but errors).
  if (!quiet)
    std::fprintf(stderr, "moat: overlay mount unavailable (%s); using the userspace merge%s%s\n", e.describe().c_str(),
               e.hint.empty() ? "" : ". To enable the overlay: ", e.hint.c_str());
  return std::optional<Session>();
}

}  // namespace

int cmd_mount(const MountCmdOptions& o, const PullFn& pull) {
  if (auto st = check_mode(o.mode); !st) return fail(st.error());
  std::vector<std::string> argv = o.argv;
  if (argv.empty()) {
    const char* sh = getenv("SHELL");
    argv = {sh && *sh ? sh : "/bin/sh"};
  }
  // Locked until the command exits: prune and rm must not take layers from under it.
  auto store = Store::open(o.store_dir, Store::Lock::Shared);
  if (!store) return fail(store.error());
  auto redact = [&](const std::string& text) { return o.redact ? o.redact(text, *store) : text; };
  // From here an error can name an image's entry or file.
  auto fail_image = [&](Error e) {
    e.message = redact(e.message);
    return fail(e);
  };
  // Pulling (threads) happens before any namespace work; the session is a fresh process.
  auto rec = pull(*store);
  if (!rec) return fail_image(rec.error());

  auto sess = try_overlay(*store, *rec, o.mode, argv, o.quiet, o.verbose);
  if (!sess) return fail_image(sess.error());
  if (*sess) {
    Session& s = **sess;
    if (o.verbose)
      std::fprintf(stderr, "moat: overlay of %zu layers mounted with %s, id mapping %s\n", rec->layers.size(),
                   s.ready().method.c_str(), s.ready().id_mapping.c_str());
    if (!o.quiet && s.ready().id_mapping == "single")
      std::fprintf(stderr,
                   "moat: single id mapping (no subordinate ids for you in /etc/subuid, /etc/subgid): owners other "
                   "than root are not mapped; `moat scan` reports the image's true owners\n");
    auto st = s.wait();
    if (!st) return fail_image(st.error());
    return *st;
  }

  auto view = MergedView::build(*store, *rec);
  if (!view) return fail_image(view.error());
  auto tree = ViewTree::create(*view, store->root() + "/tmp");
  if (!tree) return fail_image(std::move(tree).error().context("userspace view"));
  if (!o.quiet) {
    std::fprintf(stderr,
                 "moat: userspace view (a private copy, not a mount): files belong to you, the image's owners are "
                 "not shown; `moat scan` reports them\n");
    if (tree->skipped())
      std::fprintf(stderr, "moat: the content of %zu files could not be copied, they are empty here (first: %s)\n", tree->skipped(),
                   redact(tree->first_skip()).c_str());
  }
  auto st = run_command_in(tree->root(), argv);
  if (!st) return fail_image(st.error());
  return *st;
}

Result<ScanMount> run_scan_mount(const Store& store, const ImageRecord& img, const std::string& mode, bool quiet,
                                 bool verbose) {
  MOAT_TRY(check_mode(mode));
  MOAT_ASSIGN_OR_RETURN(std::optional<Session> sess, try_overlay(store, img, mode, {}, quiet, verbose));
  ScanMount out;
  if (sess) {
    // The merged root, handed over by the session, must be a readable directory here too.
    struct stat st;
    if (fstat(sess->root_fd(), &st) != 0 || !S_ISDIR(st.st_mode)) return sys_error("stat the merged root");
    if (verbose) {
      // What this (host-side) process sees through the handed-over fd, beside what the session saw.
      long long here = 0;
      if (DIR* d = fdopendir(openat(sess->root_fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC))) {
        while (dirent* e = readdir(d)) here += e->d_name[0] != '.' || (e->d_name[1] && std::strcmp(e->d_name, ".."));
        closedir(d);
      }
      std::fprintf(stderr, "moat: overlay mounted with %s (id mapping %s): %lld entries at the root (%lld seen here)\n",
                   sess->ready().method.c_str(), sess->ready().id_mapping.c_str(),
                   static_cast<long long>(sess->ready().root_entries), here);
    }
    out.mode = "overlay";
    out.id_mapping = sess->ready().id_mapping;
    out.session = std::move(sess);
    return out;
  }
  MOAT_ASSIGN_OR_RETURN(MergedView view, MergedView::build(store, img));
  // The view must be readable: its root opens from the layer that provides it.
  MOAT_ASSIGN_OR_RETURN(Fd root, view.open("/", O_RDONLY | O_DIRECTORY));
  if (verbose) std::fprintf(stderr, "moat: userspace merge: %zu entries\n", view.entries().size());
  out.mode = "userspace";
  out.id_mapping = "none";
  out.view = std::move(view);
  return out;
}

}  // namespace moat
