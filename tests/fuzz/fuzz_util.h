// Helpers shared by the libFuzzer targets in tests/fuzz/: in-memory Readers
// and BlobTrees, splitting one input into several documents, a scratch
// directory. Harness code only: every target calls moat's real parsers.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "storage/digest.h"
#include "storage/fsutil.h"
#include "storage/tree.h"

namespace moat::fuzz {

// Aborts (a crash libFuzzer keeps) when an invariant of moat's contract fails.
#define MOAT_FUZZ_ASSERT(cond, msg)                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", msg, __FILE__, __LINE__); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

// One input holding several documents: parts are separated by the line
// "\n@@@@\n" (the dictionaries and seeds use it).
inline std::vector<std::string> split_parts(std::string_view in, size_t max_parts = 16) {
  static constexpr std::string_view kSep = "\n@@@@\n";
  std::vector<std::string> out;
  while (out.size() + 1 < max_parts) {
    size_t p = in.find(kSep);
    if (p == std::string_view::npos) break;
    out.emplace_back(in.substr(0, p));
    in.remove_prefix(p + kSep.size());
  }
  out.emplace_back(in);
  return out;
}

// A Reader over bytes in memory, handing them out in chunks of varying size
// (as a pipe or a socket would).
class MemReader : public Reader {
 public:
  explicit MemReader(std::string data) : data_(std::move(data)) {}
  Result<size_t> read(char* buf, size_t n) override {
    size_t left = data_.size() - pos_;
    size_t k = std::min({n, left, chunk_});
    std::copy(data_.data() + pos_, data_.data() + pos_ + k, buf);
    pos_ += k;
    chunk_ = chunk_ == 4096 ? 65536 : chunk_ == 65536 ? 7 : 4096;
    return k;
  }

 private:
  std::string data_;
  size_t pos_ = 0, chunk_ = 4096;
};

// A BlobTree in memory: path -> bytes.
class MemTree : public BlobTree {
 public:
  std::map<std::string, std::string> files;
  bool exists(const std::string& path) override { return files.count(path) != 0; }
  Result<std::string> read_small(const std::string& path, size_t max_bytes) override {
    auto it = files.find(path);
    if (it == files.end()) return Error{"no such file " + printable(path), ENOENT};
    if (it->second.size() > max_bytes) return Error{printable(path) + " is too large"};
    return it->second;
  }
  Result<std::unique_ptr<Reader>> open(const std::string& path) override {
    auto it = files.find(path);
    if (it == files.end()) return Error{"no such file " + printable(path), ENOENT};
    return std::unique_ptr<Reader>(new MemReader(it->second));
  }
};

// Replaces "@N" by the digest, "%N" by the hex and "#N" by the size of part N
// (N = 1..9), so a fuzzer can write documents that reference each other by
// digest. Parts may only reference later parts: digests are computed from the
// last part to the first. Returns each part's digest (empty for part 0).
inline std::vector<std::string> link_parts(std::vector<std::string>& parts) {
  std::vector<std::string> digest(parts.size());
  for (size_t i = parts.size(); i-- > 0;) {
    std::string& s = parts[i];
    std::string out;
    out.reserve(s.size());
    for (size_t k = 0; k < s.size(); ++k) {
      char c = s[k];
      if ((c == '@' || c == '%' || c == '#') && k + 1 < s.size() && s[k + 1] >= '1' && s[k + 1] <= '9') {
        size_t j = static_cast<size_t>(s[k + 1] - '0');
        if (j > i && j < parts.size()) {
          if (c == '@') out += digest[j];
          else if (c == '%') out += digest[j].substr(7);
          else out += std::to_string(parts[j].size());
          ++k;
          continue;
        }
      }
      out += c;
    }
    s = std::move(out);
    if (i > 0) digest[i] = sha256_digest(s);
  }
  return digest;
}

// A private scratch directory for the whole fuzzing process (on tmpfs when
// /dev/shm is there: the unpack target writes every input to disk).
inline const std::string& scratch_dir() {
  static std::string dir = [] {
    const char* base = std::getenv("MOAT_FUZZ_TMP");
    std::string tmpl = std::string(base ? base : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp")) +
                       "/moat-fuzz-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    std::string d = buf.data();
    // Removed at exit so thousands of runs leave nothing behind.
    static std::string for_exit = d;
    std::atexit([] {
      int fd = open("/", O_RDONLY | O_DIRECTORY);
      (void)remove_tree(fd, for_exit.substr(1));
      close(fd);
    });
    return d;
  }();
  return dir;
}

}  // namespace moat::fuzz
