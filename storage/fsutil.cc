#include "storage/fsutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <vector>

namespace moat {

Result<Fd> open_beneath(int dirfd, const std::string& path, int flags, mode_t mode) {
  struct open_how how {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  const char* p = path.empty() ? "." : path.c_str();
  for (;;) {
    long fd = syscall(SYS_openat2, dirfd, p, &how, sizeof how);
    if (fd >= 0) return Fd(static_cast<int>(fd));
    if (errno == EINTR || errno == EAGAIN) continue;
    int err = errno;
    if (err == ELOOP) return Error{"\"" + printable(path) + "\" goes through a symlink", err};
    if (err == EXDEV) return Error{"\"" + printable(path) + "\" leaves its root", err};
    return Error{"cannot open \"" + printable(path) + "\"", err};
  }
}

Result<std::string> read_all(int fd, size_t max_bytes) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("read");
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes)
      return Error{"larger than the limit of " + human_bytes(max_bytes)};
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<std::string> read_file_beneath(int dirfd, const std::string& path, size_t max_bytes) {
  MOAT_ASSIGN_OR_RETURN(Fd fd, open_beneath(dirfd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK));
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return sys_error("stat \"" + printable(path) + "\"");
  if (!S_ISREG(st.st_mode)) return Error{"\"" + printable(path) + "\" is not a regular file"};
  if (static_cast<uint64_t>(st.st_size) > max_bytes)
    return Error{"\"" + printable(path) + "\" is larger than the limit of " + human_bytes(max_bytes)};
  auto r = read_all(fd.get(), max_bytes);
  if (!r) return std::move(r).error().context("\"" + printable(path) + "\"");
  return r;
}

Status write_file_atomic(int dirfd, const std::string& name, std::string_view data, mode_t mode) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string tmp = "." + name + ".tmp." + std::to_string(getpid()) + "." + std::to_string(rng() % 1000000);
  int fd = openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return sys_error("create " + tmp);
  Fd owner(fd);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      unlinkat(dirfd, tmp.c_str(), 0);
      return sys_error("write " + name, err);
    }
    off += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0 || renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) {
    int err = errno;
    unlinkat(dirfd, tmp.c_str(), 0);
    return sys_error("write " + name, err);
  }
  return ok_status();
}

namespace {
// Removes the contents of the directory open at fd, depth first.
Status remove_contents(int fd, int depth) {
  if (depth > 4096) return Error{"directory tree too deep to remove"};
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return sys_error("dup");
  DIR* d = fdopendir(dup);
  if (!d) {
    close(dup);
    return sys_error("opendir");
  }
  std::vector<std::string> dirs;
  Status st;
  while (struct dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    if (unlinkat(fd, n.c_str(), 0) == 0) continue;
    if (errno == EISDIR || errno == EPERM) {
      dirs.push_back(n);
      continue;
    }
    if (errno != ENOENT) {
      st = sys_error("remove " + printable(n));
      break;
    }
  }
  closedir(d);
  if (!st) return st;
  for (const auto& n : dirs) {
    // A 0000 directory cannot be listed: open it up first (never through a symlink).
    fchmodat(fd, n.c_str(), 0700, 0);
    int sub = openat(fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) return sys_error("open " + printable(n));
    Fd owner(sub);
    MOAT_TRY(remove_contents(sub, depth + 1));
    if (unlinkat(fd, n.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) return sys_error("rmdir " + printable(n));
  }
  return ok_status();
}
}  // namespace

Status remove_tree(int dirfd, const std::string& name) {
  struct stat st;
  if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return ok_status();
    return sys_error("stat " + name);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) return sys_error("remove " + name);
    return ok_status();
  }
  fchmodat(dirfd, name.c_str(), 0700, 0);
  int fd = openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return sys_error("open " + name);
  Fd owner(fd);
  MOAT_TRY(remove_contents(fd, 0));
  if (unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) return sys_error("rmdir " + name);
  return ok_status();
}

Status make_dirs(const std::string& path, mode_t mode) {
  if (path.empty()) return ok_status();
  std::string cur;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    cur = path.substr(0, j);
    if (!cur.empty() && mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) return sys_error("create directory " + cur);
    i = j + 1;
  }
  return ok_status();
}

std::string printable(std::string_view s, size_t max_len) {
  std::string out;
  size_t i = 0;
  auto hex = [&](unsigned char c) {
    char b[5];
    std::snprintf(b, sizeof b, "\\x%02x", c);
    out += b;
  };
  while (i < s.size()) {
    if (out.size() >= max_len) {
      out += "...";
      break;
    }
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f || c == '\\') {
      if (c == '\\') out += "\\\\"; else hex(c);
      ++i;
      continue;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // Validate one UTF-8 sequence; anything else is shown as bytes.
    size_t len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = len && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) >> 6) == 2;
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      hex(c);
      ++i;
    }
  }
  return out;
}

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  char b[32];
  if (u == 0) std::snprintf(b, sizeof b, "%llu B", static_cast<unsigned long long>(n));
  else std::snprintf(b, sizeof b, "%.1f %s", v, units[u]);
  return b;
}

}  // namespace moat
