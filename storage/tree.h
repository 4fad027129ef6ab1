// BlobTree: the read-only place an image is stored in, either a directory
// (an OCI layout, skopeo's dir: format) or a tar archive (oci-archive,
// docker-archive). Transports parse their documents from a BlobTree and open
// layer blobs from it as sequential Readers; nothing else knows the difference.
//
// Paths are untrusted (they come from the image's own documents). DirTree opens
// them beneath the directory without following any symlink. TarTree indexes the
// archive once, resolves symlinks among its own entries (bounded, never leaving
// the archive) and streams one entry per Reader, seeking past the others.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "storage/fd.h"
#include "storage/limits.h"
#include "storage/result.h"

namespace moat {

// A sequential byte stream. read() returns 0 at the end.
class Reader {
 public:
  virtual ~Reader() = default;
  virtual Result<size_t> read(char* buf, size_t n) = 0;
};

// A Reader over a file descriptor it owns.
class FdReader : public Reader {
 public:
  explicit FdReader(Fd fd) : fd_(std::move(fd)) {}
  Result<size_t> read(char* buf, size_t n) override;

 private:
  Fd fd_;
};

class BlobTree {
 public:
  virtual ~BlobTree() = default;
  virtual bool exists(const std::string& path) = 0;
  virtual Result<std::string> read_small(const std::string& path, size_t max_bytes) = 0;
  virtual Result<std::unique_ptr<Reader>> open(const std::string& path) = 0;
};

class DirTree : public BlobTree {
 public:
  static Result<std::unique_ptr<DirTree>> open_dir(const std::string& dir);
  bool exists(const std::string& path) override;
  Result<std::string> read_small(const std::string& path, size_t max_bytes) override;
  Result<std::unique_ptr<Reader>> open(const std::string& path) override;

 private:
  Fd root_;
};

class TarTree : public BlobTree {
 public:
  static Result<std::unique_ptr<TarTree>> open_archive(const std::string& file, const Limits& limits);
  bool exists(const std::string& path) override;
  Result<std::string> read_small(const std::string& path, size_t max_bytes) override;
  Result<std::unique_ptr<Reader>> open(const std::string& path) override;

 private:
  struct Entry {
    uint64_t ordinal;
    char type;  // 'f' file, 'd' dir, 'l' symlink, 'h' hardlink
    int64_t size;
    std::string link;
  };
  Result<const Entry*> resolve(const std::string& path);
  std::string file_;
  std::map<std::string, Entry> entries_;
};

// The components of a '/'-separated path, empty ones dropped ("a//b/" -> a, b).
std::vector<std::string> split_path(std::string_view path);

// "a/./b//c/" -> "a/b/c"; returns false for ".." or absolute names.
bool normalize_relative(const std::string& in, std::string& out);

}  // namespace moat
