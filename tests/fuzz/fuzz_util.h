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
#include <cstring>
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

// A BlobTree in memory: path -> bytes, in `files` or in a map several trees
// share (a target opening the same documents under several references builds
// them once instead of copying every part for each).
class MemTree : public BlobTree {
 public:
  using Files = std::map<std::string, std::string>;
  MemTree() = default;
  explicit MemTree(std::shared_ptr<const Files> shared) : shared_(std::move(shared)) {}
  Files files;
  bool exists(const std::string& path) override { return find(path) != nullptr; }
  Result<std::string> read_small(const std::string& path, size_t max_bytes) override {
    const std::string* f = find(path);
    if (!f) return Error{"no such file " + printable(path), ENOENT};
    if (f->size() > max_bytes) return Error{printable(path) + " is too large"};
    return *f;
  }
  Result<std::unique_ptr<Reader>> open(const std::string& path) override {
    const std::string* f = find(path);
    if (!f) return Error{"no such file " + printable(path), ENOENT};
    return std::unique_ptr<Reader>(new MemReader(*f));
  }

 private:
  const std::string* find(const std::string& path) const {
    auto it = files.find(path);
    if (it != files.end()) return &it->second;
    if (shared_) {
      auto s = shared_->find(path);
      if (s != shared_->end()) return &s->second;
    }
    return nullptr;
  }
  std::shared_ptr<const Files> shared_;
};

// Replaces "@N" by the digest, "%N" by the hex and "#N" by the size of part N
// (N = 1..9), so a fuzzer can write documents that reference each other by
// digest. Parts may only reference later parts: digests are computed from the
// last part to the first. Returns each part's digest (empty for part 0).
inline std::vector<std::string> link_parts(std::vector<std::string>& parts) {
  std::vector<std::string> digest(parts.size());
  for (size_t i = parts.size(); i-- > 0;) {
    std::string& s = parts[i];
    // Markers are found with memchr (not instrumented) and the text between
    // them copied whole: a byte-by-byte loop was a quarter of a JSON target's time.
    std::string out;
    size_t from = 0, k = 0;
    while (k < s.size()) {
      size_t next = s.size();
      for (char m : {'@', '%', '#'}) {
        const void* p = std::memchr(s.data() + k, m, next - k);
        if (p) next = static_cast<size_t>(static_cast<const char*>(p) - s.data());
      }
      if (next + 1 >= s.size()) break;
      char c = s[next], d = s[next + 1];
      k = next + 1;
      if (d < '1' || d > '9') continue;
      size_t j = static_cast<size_t>(d - '0');
      if (j <= i || j >= parts.size()) continue;
      if (from == 0 && out.empty()) out.reserve(s.size() + 64);
      out.append(s, from, next - from);
      if (c == '@') out += digest[j];
      else if (c == '%') out += digest[j].substr(7);
      else out += std::to_string(parts[j].size());
      from = k = next + 2;
    }
    if (from > 0) {
      out.append(s, from, std::string::npos);
      s = std::move(out);
    }
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
