#include "storage/tree.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <vector>

#include "storage/archive_error.h"
#include "storage/fsutil.h"

namespace moat {

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) out.emplace_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

bool normalize_relative(const std::string& in, std::string& out) {
  out.clear();
  if (!in.empty() && in[0] == '/') return false;
  for (const auto& c : split_path(in)) {
    if (c == "..") return false;
    if (c == ".") continue;
    if (!out.empty()) out += '/';
    out += c;
  }
  return true;
}

Result<size_t> FdReader::read(char* buf, size_t n) {
  for (;;) {
    ssize_t r = ::read(fd_.get(), buf, n);
    if (r >= 0) return static_cast<size_t>(r);
    if (errno != EINTR) return sys_error("read");
  }
}

// ---- DirTree -------------------------------------------------------------

Result<std::unique_ptr<DirTree>> DirTree::open_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return sys_error("cannot open directory " + dir);
  auto t = std::unique_ptr<DirTree>(new DirTree());
  t->root_.reset(fd);
  return t;
}

bool DirTree::exists(const std::string& path) {
  std::string norm;
  if (!normalize_relative(path, norm)) return false;
  return open_beneath(root_.get(), norm, O_PATH | O_NOFOLLOW).ok();
}

Result<std::string> DirTree::read_small(const std::string& path, size_t max_bytes) {
  std::string norm;
  if (!normalize_relative(path, norm)) return Error{"\"" + printable(path) + "\" leaves the image directory"};
  return read_file_beneath(root_.get(), norm, max_bytes);
}

Result<std::unique_ptr<Reader>> DirTree::open(const std::string& path) {
  std::string norm;
  if (!normalize_relative(path, norm)) return Error{"\"" + printable(path) + "\" leaves the image directory"};
  MOAT_ASSIGN_OR_RETURN(Fd fd, open_beneath(root_.get(), norm, O_RDONLY | O_NOFOLLOW | O_NONBLOCK));
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return sys_error("stat " + printable(path));
  if (!S_ISREG(st.st_mode)) return Error{"\"" + printable(path) + "\" is not a regular file"};
  // Blocking reads from here on (O_NONBLOCK only kept a FIFO from hanging the open).
  fcntl(fd.get(), F_SETFL, 0);
  return std::unique_ptr<Reader>(new FdReader(std::move(fd)));
}

// ---- TarTree -------------------------------------------------------------

namespace {
struct ArchiveDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;

Result<ArchivePtr> open_outer(const std::string& file) {
  ArchivePtr a(archive_read_new());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  archive_read_support_filter_gzip(a.get());
  archive_read_support_filter_zstd(a.get());
  if (archive_read_open_filename(a.get(), file.c_str(), 1 << 16) != ARCHIVE_OK)
    return Error{"cannot read archive " + file + ": " + archive_message(a.get())};
  return a;
}

// Streams one entry's data; owns the archive handle positioned at it.
class TarEntryReader : public Reader {
 public:
  TarEntryReader(ArchivePtr a, std::string name) : a_(std::move(a)), name_(std::move(name)) {}
  Result<size_t> read(char* buf, size_t n) override {
    la_ssize_t r = archive_read_data(a_.get(), buf, n);
    if (r < 0) return Error{"reading \"" + printable(name_) + "\" from the archive: " + archive_message(a_.get())};
    return static_cast<size_t>(r);
  }

 private:
  ArchivePtr a_;
  std::string name_;
};
}  // namespace

Result<std::unique_ptr<TarTree>> TarTree::open_archive(const std::string& file, const Limits& limits) {
  struct stat st;
  if (stat(file.c_str(), &st) != 0) return sys_error("cannot open archive " + file);
  if (!S_ISREG(st.st_mode)) return Error{file + " is not a regular file"};
  MOAT_ASSIGN_OR_RETURN(ArchivePtr a, open_outer(file));
  auto t = std::unique_ptr<TarTree>(new TarTree());
  t->file_ = file;
  archive_entry* e;
  uint64_t ordinal = 0;
  for (;;) {
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN)
      return Error{"archive " + file + " is damaged after entry " + std::to_string(ordinal) + ": " +
                   archive_message(a.get())};
    if (++ordinal > limits.max_archive_entries)
      return Error{"archive " + file + " has more than " + std::to_string(limits.max_archive_entries) + " entries"};
    const char* p = archive_entry_pathname(e);
    std::string norm;
    if (p && normalize_relative(p, norm) && !norm.empty()) {
      Entry en{ordinal, 'f', archive_entry_size(e), {}};
      if (const char* h = archive_entry_hardlink(e)) {
        en.type = 'h';
        en.link = h;
      } else {
        switch (archive_entry_filetype(e)) {
          case AE_IFDIR: en.type = 'd'; break;
          case AE_IFLNK: en.type = 'l'; en.link = archive_entry_symlink(e) ? archive_entry_symlink(e) : ""; break;
          case AE_IFREG: en.type = 'f'; break;
          default: en.type = '?';
        }
      }
      t->entries_[norm] = std::move(en);
    }
    archive_read_data_skip(a.get());
  }
  return t;
}

Result<const TarTree::Entry*> TarTree::resolve(const std::string& path) {
  std::string cur;
  if (!normalize_relative(path, cur)) return Error{"\"" + printable(path) + "\" leaves the archive"};
  for (int hops = 0; hops < 16; ++hops) {
    auto it = entries_.find(cur);
    if (it == entries_.end()) return Error{"\"" + printable(path) + "\" is not in archive " + file_};
    const Entry& e = it->second;
    if (e.type == 'f') return &e;
    std::string next;
    if (e.type == 'h') {
      if (!normalize_relative(e.link, next)) return Error{"\"" + printable(path) + "\" links outside the archive"};
    } else if (e.type == 'l') {
      // Relative to the symlink's directory; ".." may climb, but never above the archive root.
      if (e.link.empty() || e.link[0] == '/') return Error{"\"" + printable(path) + "\" links outside the archive"};
      std::vector<std::string> parts;
      auto push = [&](const std::string& s) -> bool {
        for (auto& c : split_path(s)) {
          if (c == "..") {
            if (parts.empty()) return false;
            parts.pop_back();
          } else if (c != ".") {
            parts.push_back(std::move(c));
          }
        }
        return true;
      };
      size_t slash = cur.rfind('/');
      push(slash == std::string::npos ? std::string() : cur.substr(0, slash));
      if (!push(e.link)) return Error{"\"" + printable(path) + "\" links outside the archive"};
      for (auto& c : parts) next += (next.empty() ? "" : "/") + c;
    } else {
      return Error{"\"" + printable(path) + "\" in archive " + file_ + " is not a regular file"};
    }
    cur = next;
  }
  return Error{"\"" + printable(path) + "\": too many links in archive " + file_};
}

bool TarTree::exists(const std::string& path) {
  std::string norm;
  return normalize_relative(path, norm) && entries_.count(norm) > 0;
}

Result<std::unique_ptr<Reader>> TarTree::open(const std::string& path) {
  MOAT_ASSIGN_OR_RETURN(const Entry* target, resolve(path));
  MOAT_ASSIGN_OR_RETURN(ArchivePtr a, open_outer(file_));
  archive_entry* e;
  for (uint64_t n = 1;; ++n) {
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF || r < ARCHIVE_WARN)
      return Error{"archive " + file_ + " changed while being read"};
    if (n == target->ordinal) break;
    archive_read_data_skip(a.get());
  }
  return std::unique_ptr<Reader>(new TarEntryReader(std::move(a), path));
}

Result<std::string> TarTree::read_small(const std::string& path, size_t max_bytes) {
  MOAT_ASSIGN_OR_RETURN(const Entry* target, resolve(path));
  if (target->size < 0 || static_cast<uint64_t>(target->size) > max_bytes)
    return Error{"\"" + printable(path) + "\" is larger than the limit of " + human_bytes(max_bytes)};
  MOAT_ASSIGN_OR_RETURN(auto rd, open(path));
  std::string out;
  char buf[65536];
  for (;;) {
    MOAT_ASSIGN_OR_RETURN(size_t n, rd->read(buf, sizeof buf));
    if (n == 0) break;
    if (out.size() + n > max_bytes) return Error{"\"" + printable(path) + "\" is larger than its header says"};
    out.append(buf, n);
  }
  return out;
}

}  // namespace moat
