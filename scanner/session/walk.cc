#include "scanner/session/walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <tbb/parallel_for_each.h>

#include <memory>
#include <mutex>

#include "storage/fd.h"

namespace moat {

namespace {
// A directory still to read: its parent's fd (shared by all pending siblings)
// and its name. Opening happens when the item is taken, so the fds held at
// once are bounded by depth x threads, not by the width of the tree.
struct DirItem {
  std::shared_ptr<Fd> parent;
  std::string name;
  std::string path;
  size_t depth;
};
}  // namespace

namespace {
// The file type bits of a dirent's d_type, or 0 when it says nothing.
mode_t type_of(unsigned char d_type) {
  switch (d_type) {
    case DT_REG: return S_IFREG;
    case DT_DIR: return S_IFDIR;
    case DT_LNK: return S_IFLNK;
    case DT_CHR: return S_IFCHR;
    case DT_BLK: return S_IFBLK;
    case DT_FIFO: return S_IFIFO;
    case DT_SOCK: return S_IFSOCK;
    default: return 0;
  }
}
}  // namespace

std::vector<WalkError> parallel_walk(int root_fd, const WalkVisitor& visit, size_t max_depth, WalkStat stat_mode) {
  std::vector<WalkError> errors;
  std::mutex mu;
  auto fail = [&](const std::string& path, Error e) {
    std::lock_guard<std::mutex> g(mu);
    errors.push_back({path, std::move(e)});
  };
  struct stat rst;
  if (fstat(root_fd, &rst) != 0) {
    errors.push_back({"/", sys_error("stat the root")});
    return errors;
  }
  visit(WalkEntry{"/", rst, root_fd, "."});
  int dup = fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) {
    errors.push_back({"/", sys_error("dup")});
    return errors;
  }
  std::vector<DirItem> start{{std::make_shared<Fd>(dup), ".", "/", 0}};
  tbb::parallel_for_each(start.begin(), start.end(), [&](const DirItem& item, tbb::feeder<DirItem>& feeder) {
    // O_NOFOLLOW and O_DIRECTORY: a directory swapped for a symlink or a FIFO is never opened.
    int sfd = openat(item.parent->get(), item.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (sfd < 0) {
      fail(item.path, sys_error("open directory"));
      return;
    }
    auto self = std::make_shared<Fd>(sfd);
    int rfd = fcntl(sfd, F_DUPFD_CLOEXEC, 0);
    DIR* d = rfd >= 0 ? fdopendir(rfd) : nullptr;
    if (!d) {
      if (rfd >= 0) close(rfd);
      fail(item.path, sys_error("read directory"));
      return;
    }
    std::string prefix = item.path == "/" ? "/" : item.path + "/";
    errno = 0;
    while (dirent* e = readdir(d)) {
      const char* n = e->d_name;
      if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0))) continue;
      struct stat st;
      std::string path = prefix + n;
      const mode_t type = stat_mode == WalkStat::TypeOnly ? type_of(e->d_type) : 0;
      if (type) {
        st = {};
        st.st_mode = type;
      } else if (fstatat(sfd, n, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        fail(path, sys_error("stat"));
        continue;
      }
      visit(WalkEntry{path, st, sfd, n});
      if (S_ISDIR(st.st_mode)) {
        if (item.depth + 1 > max_depth) {
          fail(path, Error{"directory tree deeper than " + std::to_string(max_depth)});
          continue;
        }
        feeder.add(DirItem{self, n, std::move(path), item.depth + 1});
      }
    }
    closedir(d);
  });
  return errors;
}

}  // namespace moat
