#include "storage/sources/containers_storage/diff_tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <vector>

#include "storage/fsutil.h"

namespace moat::cstorage {

namespace {

std::string get_xattr(int fd, const char* name) {
  char buf[256];
  ssize_t n = fgetxattr(fd, name, buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// The xattrs an image layer carries (security.capability, user.*), not the driver's own.
std::vector<std::pair<std::string, std::string>> image_xattrs(int fd) {
  std::vector<std::pair<std::string, std::string>> out;
  char names[4096];
  ssize_t n = flistxattr(fd, names, sizeof names);
  for (ssize_t i = 0; i > -1 && i < n;) {
    std::string name(names + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    if (name.find(".overlay.") != std::string::npos || name.rfind("user.containers.", 0) == 0 ||
        name.rfind("user.fuseoverlayfs.", 0) == 0 || name.rfind("trusted.", 0) == 0)
      continue;
    if (name.rfind("security.", 0) != 0 && name.rfind("user.", 0) != 0) continue;
    char val[65536];
    ssize_t v = fgetxattr(fd, name.c_str(), val, sizeof val);
    if (v >= 0) out.emplace_back(name, std::string(val, static_cast<size_t>(v)));
  }
  return out;
}

}  // namespace

struct DiffTarReader::Impl {
  std::string label;
  Limits limits;
  archive* a = nullptr;
  std::string out;  // bytes libarchive wrote, not yet handed out
  size_t out_pos = 0;
  struct Dir {
    Fd fd;
    std::string path;  // "" for the root, else "a/b"
    std::vector<std::string> names;
    size_t next = 0;
  };
  std::vector<Dir> stack;
  Fd file;  // content of the entry being written
  uint64_t file_left = 0;
  std::map<std::pair<dev_t, ino_t>, std::string> links;
  uint64_t entries = 0;
  bool closed = false;
  std::optional<Error> err;

  static la_ssize_t on_write(archive*, void* self, const void* buf, size_t n) {
    static_cast<Impl*>(self)->out.append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  }

  Status check(int r, const std::string& what) {
    if (r < ARCHIVE_WARN) return Error{label + ": " + what + ": " + archive_error_string(a)};
    return ok_status();
  }

  Result<std::vector<std::string>> list(int fd) {
    std::vector<std::string> names;
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    DIR* d = fdopendir(dup);
    if (!d) {
      close(dup);
      return sys_error(label + ": list a directory");
    }
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    closedir(d);
    std::sort(names.begin(), names.end());
    return names;
  }

  Status header(const std::string& path, const struct stat& st, int fd, const std::string& link, bool hardlink) {
    if (++entries > limits.max_layer_entries) return Error{label + ": more entries than --max-layer-entries"};
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(), archive_entry_free);
    archive_entry_set_pathname(e.get(), path.c_str());
    uint32_t uid = st.st_uid, gid = st.st_gid, mode = st.st_mode & 07777;
    if (fd >= 0) {
      // force_mask stores: "uid:gid:mode[:type]" holds the truth.
      std::string ov = get_xattr(fd, "user.containers.override_stat");
      unsigned u = 0, g = 0, m = 0;
      if (!ov.empty() && std::sscanf(ov.c_str(), "%u:%u:%o", &u, &g, &m) == 3) {
        uid = u;
        gid = g;
        mode = m & 07777;
      }
      for (const auto& [k, v] : image_xattrs(fd)) archive_entry_xattr_add_entry(e.get(), k.c_str(), v.data(), v.size());
    }
    archive_entry_set_uid(e.get(), uid);
    archive_entry_set_gid(e.get(), gid);
    archive_entry_set_mtime(e.get(), st.st_mtim.tv_sec, 0);
    if (hardlink) {
      archive_entry_set_filetype(e.get(), AE_IFREG);
      archive_entry_set_perm(e.get(), mode);
      archive_entry_set_hardlink(e.get(), link.c_str());
      archive_entry_set_size(e.get(), 0);
    } else {
      archive_entry_set_filetype(e.get(), st.st_mode & S_IFMT);
      archive_entry_set_perm(e.get(), mode);
      if (S_ISLNK(st.st_mode)) archive_entry_set_symlink(e.get(), link.c_str());
      if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) archive_entry_set_rdev(e.get(), st.st_rdev);
      archive_entry_set_size(e.get(), S_ISREG(st.st_mode) ? st.st_size : 0);
    }
    return check(archive_write_header(a, e.get()), "entry \"" + printable(path) + "\"");
  }

  Status whiteout(const std::string& path) {
    struct stat st {};
    st.st_mode = S_IFREG;
    return header(path, st, -1, "", false);
  }

  // Emits the next entry (or the end); false when everything is written.
  Result<bool> step() {
    while (!stack.empty()) {
      Dir& d = stack.back();
      if (d.next >= d.names.size()) {
        stack.pop_back();
        continue;
      }
      std::string name = d.names[d.next++];
      std::string path = d.path.empty() ? name : d.path + "/" + name;
      struct stat st;
      if (fstatat(d.fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        return sys_error(label + ": stat \"" + printable(path) + "\"");
      if (S_ISCHR(st.st_mode) && major(st.st_rdev) == 0 && minor(st.st_rdev) == 0) {
        std::string parent = d.path.empty() ? "" : d.path + "/";
        MOAT_TRY(whiteout(parent + ".wh." + name));
        return true;
      }
      if (S_ISLNK(st.st_mode)) {
        char buf[4097];
        ssize_t n = readlinkat(d.fd.get(), name.c_str(), buf, sizeof buf - 1);
        if (n < 0) return sys_error(label + ": readlink \"" + printable(path) + "\"");
        MOAT_TRY(header(path, st, -1, std::string(buf, static_cast<size_t>(n)), false));
        return true;
      }
      if (S_ISDIR(st.st_mode)) {
        Fd sub(openat(d.fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub.valid()) return sys_error(label + ": open \"" + printable(path) + "\"");
        MOAT_TRY(header(path + "/", st, sub.get(), "", false));
        bool opaque = get_xattr(sub.get(), "trusted.overlay.opaque") == "y" ||
                      get_xattr(sub.get(), "user.overlay.opaque") == "y";
        if (opaque) MOAT_TRY(whiteout(path + "/.wh..wh..opq"));
        if (stack.size() > limits.max_path_depth) return Error{label + ": directories nest deeper than --max-path-depth"};
        MOAT_ASSIGN_OR_RETURN(auto names, list(sub.get()));
        stack.push_back(Dir{std::move(sub), path, std::move(names), 0});
        return true;
      }
      if (S_ISREG(st.st_mode)) {
        if (st.st_nlink > 1) {
          auto key = std::make_pair(st.st_dev, st.st_ino);
          auto it = links.find(key);
          if (it != links.end()) {
            MOAT_TRY(header(path, st, -1, it->second, true));
            return true;
          }
          links.emplace(key, path);
        }
        // O_NONBLOCK and the fstat: a file replaced by a FIFO since the stat must not block open().
        Fd f(openat(d.fd.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
        if (!f.valid()) return sys_error(label + ": open \"" + printable(path) + "\"");
        struct stat now;
        if (fstat(f.get(), &now) != 0 || !S_ISREG(now.st_mode) || now.st_ino != st.st_ino)
          return Error{label + ": \"" + printable(path) + "\" changed while moat read the layer"};
        MOAT_TRY(header(path, st, f.get(), "", false));
        file = std::move(f);
        file_left = static_cast<uint64_t>(st.st_size);
        return true;
      }
      // Other devices, FIFOs, sockets: headers only.
      MOAT_TRY(header(path, st, -1, "", false));
      return true;
    }
    if (!closed) {
      closed = true;
      MOAT_TRY(check(archive_write_close(a), "end of the tar"));
      return true;
    }
    return false;
  }
};

DiffTarReader::DiffTarReader(Fd diff_dir, std::string label, const Limits& limits) : impl_(new Impl) {
  Impl& s = *impl_;
  s.label = std::move(label);
  s.limits = limits;
  s.a = archive_write_new();
  archive_write_set_format_pax_restricted(s.a);
  archive_write_set_bytes_per_block(s.a, 0);
  if (archive_write_open2(s.a, &s, nullptr, &Impl::on_write, nullptr, nullptr) != ARCHIVE_OK)
    s.err = Error{s.label + ": cannot start a tar writer"};
  auto names = s.list(diff_dir.get());
  if (!names) s.err = std::move(names).error();
  else s.stack.push_back(Impl::Dir{std::move(diff_dir), "", std::move(names).value(), 0});
}

DiffTarReader::~DiffTarReader() {
  if (impl_->a) archive_write_free(impl_->a);
}

Result<size_t> DiffTarReader::read(char* buf, size_t n) {
  Impl& s = *impl_;
  if (s.err) return *s.err;
  for (;;) {
    if (s.out_pos < s.out.size()) {
      size_t k = std::min(n, s.out.size() - s.out_pos);
      std::memcpy(buf, s.out.data() + s.out_pos, k);
      s.out_pos += k;
      if (s.out_pos == s.out.size()) {
        s.out.clear();
        s.out_pos = 0;
      }
      return k;
    }
    if (s.file_left > 0) {
      char chunk[1 << 16];
      size_t want = static_cast<size_t>(std::min<uint64_t>(sizeof chunk, s.file_left));
      ssize_t got;
      do got = ::read(s.file.get(), chunk, want);
      while (got < 0 && errno == EINTR);
      if (got <= 0) return Error{s.label + ": a layer file changed size while moat read it"};
      s.file_left -= static_cast<uint64_t>(got);
      if (archive_write_data(s.a, chunk, static_cast<size_t>(got)) < 0)
        return Error{s.label + ": " + archive_error_string(s.a)};
      if (s.file_left == 0) s.file.reset();
      continue;
    }
    MOAT_ASSIGN_OR_RETURN(bool more, s.step());
    if (!more) return size_t{0};
  }
}

}  // namespace moat::cstorage
