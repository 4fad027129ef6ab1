#include "scanner/session/view_tree.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

#include "storage/fsutil.h"

namespace moat {

namespace {

Status copy_content(int src, int dst) {
  if (ioctl(dst, FICLONE, src) == 0) return ok_status();
  for (;;) {
    ssize_t n = copy_file_range(src, nullptr, dst, nullptr, 1 << 30, 0);
    if (n == 0) return ok_status();
    if (n > 0) continue;
    if (errno == EINTR) continue;
    if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP) return sys_error("copy");
    break;
  }
  char buf[65536];
  for (;;) {
    ssize_t n = read(src, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("read");
    if (n == 0) return ok_status();
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(dst, buf + off, static_cast<size_t>(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return sys_error("write");
      off += w;
    }
  }
}

std::string rel_of(const std::string& image_path) { return image_path == "/" ? "" : image_path.substr(1); }

}  // namespace

ViewTree::ViewTree(ViewTree&& o) noexcept
    : parent_(std::move(o.parent_)), name_(std::move(o.name_)), root_(std::move(o.root_)),
      skipped_(o.skipped_), first_skip_(std::move(o.first_skip_)) {
  o.name_.clear();
}

ViewTree::~ViewTree() {
  if (name_.empty()) return;
  int fd = ::open(parent_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  Fd owner(fd);
  (void)remove_tree(fd, name_);
}

Result<ViewTree> ViewTree::create(const MergedView& view, const std::string& parent) {
  std::random_device rd;
  ViewTree t;
  t.parent_ = parent;
  std::string name = "view." + std::to_string(getpid()) + "." + std::to_string(rd() % 1000000000);
  if (mkdir((parent + "/" + name).c_str(), 0700) != 0) return sys_error("create " + parent + "/" + name);
  t.name_ = name;  // from here on the destructor removes it
  t.root_ = parent + "/" + name + "/root";
  if (mkdir(t.root_.c_str(), 0700) != 0) return sys_error("create " + t.root_);
  int rfd = ::open(t.root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rfd < 0) return sys_error("open " + t.root_);
  Fd root(rfd);

  auto skip = [&](const std::string& path, const Error& e) {
    if (t.skipped_++ == 0) t.first_skip_ = printable(path) + ": " + e.describe();
  };
  std::vector<std::pair<std::string, const IndexEntry*>> dirs;
  std::string cached_parent = "\x01";
  Fd pfd;
  for (const auto& [path, v] : view.entries()) {
    const IndexEntry& e = v.entry;
    if (path == "/") {
      dirs.emplace_back("", &e);
      continue;
    }
    size_t slash = path.rfind('/');
    std::string prel = rel_of(slash == 0 ? "/" : path.substr(0, slash));
    std::string name_in = path.substr(slash + 1);
    if (prel != cached_parent) {
      auto p = open_beneath(root.get(), prel, O_RDONLY | O_DIRECTORY);
      if (!p) {
        skip(path, p.error());
        continue;
      }
      pfd = std::move(p).value();
      cached_parent = prel;
    }
    int dfd = pfd.get();
    const char* n = name_in.c_str();
    struct timespec ts[2] = {{e.mtime, 0}, {e.mtime, 0}};
    switch (e.type) {
      case EntryType::Dir:
        if (mkdirat(dfd, n, 0700) != 0) skip(path, sys_error("mkdir"));
        else dirs.emplace_back(rel_of(path), &e);
        break;
      case EntryType::Symlink:
        if (symlinkat(e.link.c_str(), dfd, n) != 0) skip(path, sys_error("symlink"));
        else utimensat(dfd, n, ts, AT_SYMLINK_NOFOLLOW);
        break;
      case EntryType::Fifo:
        if (mkfifoat(dfd, n, e.mode & 07777) != 0) skip(path, sys_error("mkfifo"));
        else utimensat(dfd, n, ts, AT_SYMLINK_NOFOLLOW);
        break;
      case EntryType::Char:
      case EntryType::Block: {
        int fd = openat(dfd, n, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0);
        if (fd < 0) skip(path, sys_error("create placeholder"));
        else close(fd);
        break;
      }
      case EntryType::File:
      case EntryType::Hardlink: {
        // A hardlink whose target is already in the tree links to the copy (inside the tree only).
        if (!v.hardlink_to.empty() && view.find(v.hardlink_to)) {
          if (linkat(root.get(), rel_of(v.hardlink_to).c_str(), dfd, n, 0) == 0) break;
        }
        int fd = openat(dfd, n, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
          skip(path, sys_error("create"));
          break;
        }
        Fd dst(fd);
        // Content the caller cannot read (beneath a 0000 directory of the
        // store, without a namespace's capabilities) leaves an empty file:
        // the entry and its mode are still the image's.
        auto src = view.open(path, O_RDONLY);
        Status st = src ? copy_content(src->get(), fd) : Status(src.error());
        if (!st) skip(path, st.error());
        // The mode after the content: setuid/setgid survive (no chown follows).
        fchmod(fd, e.mode & 07777);
        futimens(fd, ts);
        break;
      }
      case EntryType::Whiteout:
      case EntryType::Opaque:
        break;  // never in a merged view
    }
  }
  pfd.reset();
  // Final directory modes, deepest first: a 0000 directory is filled before it closes.
  std::stable_sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) {
    return std::count(a.first.begin(), a.first.end(), '/') + !a.first.empty() >
           std::count(b.first.begin(), b.first.end(), '/') + !b.first.empty();
  });
  for (const auto& [rel, e] : dirs) {
    const char* p = rel.empty() ? "." : rel.c_str();
    struct timespec ts[2] = {{e->mtime, 0}, {e->mtime, 0}};
    if (fchmodat(root.get(), p, e->mode & 07777, 0) != 0) skip("/" + rel, sys_error("chmod"));
    utimensat(root.get(), p, ts, AT_SYMLINK_NOFOLLOW);
  }
  return t;
}

}  // namespace moat
