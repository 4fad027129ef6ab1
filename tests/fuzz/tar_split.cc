// Fuzz target: a containers/storage tar-split stream reassembled into the
// layer's tar by TarSplitReader (storage/sources/containers_storage/
// tar_split.h), the reader `moat scan containers-storage:IMAGE` streams every
// layer through, against a small layer directory made once per process:
//
//   SCRATCH/layer/diff/a          "hello\n"
//   SCRATCH/layer/diff/dir/b      100 x "b"
//   SCRATCH/layer/diff/dir/empty  ""
//   SCRATCH/layer/diff/link       symlink to ../outside
//   SCRATCH/layer/diff/dir/up     symlink to ../../outside
//   SCRATCH/layer/diff/fifo       a FIFO (a layer may hold one)
//   SCRATCH/layer/outside         64 random bytes: must never appear in the output
//
// Input: the first byte's low bit says how the rest is the tar-split file:
// 0 = JSON lines, gzip'd here (so mutations reach the JSON), 1 = the .gz file
// itself (gzip framing, members, trailing bytes). The file is served from a
// memfd (no temporary files per input). At most 16 MiB of output is read.
#include <sys/mman.h>
#include <sys/stat.h>
#include <zlib.h>

#include "storage/sources/containers_storage/tar_split.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

namespace {

struct Layer {
  int diff_fd = -1;
  int memfd = -1;
  unsigned char outside[64];
};

void write_file(const std::string& path, const std::string& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  MOAT_FUZZ_ASSERT(f && std::fwrite(data.data(), 1, data.size(), f) == data.size() && std::fclose(f) == 0,
                   "cannot write the layer directory");
}

const Layer& layer() {
  static Layer made = [] {
    Layer l;
    std::string root = fuzz::scratch_dir() + "/layer";
    MOAT_FUZZ_ASSERT(mkdir(root.c_str(), 0700) == 0 && mkdir((root + "/diff").c_str(), 0700) == 0 &&
                         mkdir((root + "/diff/dir").c_str(), 0700) == 0,
                     "cannot make the layer directory");
    FILE* r = std::fopen("/dev/urandom", "rb");
    MOAT_FUZZ_ASSERT(r && std::fread(l.outside, 1, sizeof l.outside, r) == sizeof l.outside, "no /dev/urandom");
    std::fclose(r);
    write_file(root + "/outside", std::string(reinterpret_cast<char*>(l.outside), sizeof l.outside));
    write_file(root + "/diff/a", "hello\n");
    write_file(root + "/diff/dir/b", std::string(100, 'b'));
    write_file(root + "/diff/dir/empty", "");
    MOAT_FUZZ_ASSERT(symlink("../outside", (root + "/diff/link").c_str()) == 0 &&
                         symlink("../../outside", (root + "/diff/dir/up").c_str()) == 0 &&
                         mkfifo((root + "/diff/fifo").c_str(), 0600) == 0,
                     "cannot make the layer's links");
    l.diff_fd = open((root + "/diff").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    l.memfd = memfd_create("tar-split.gz", MFD_CLOEXEC);
    MOAT_FUZZ_ASSERT(l.diff_fd >= 0 && l.memfd >= 0, "cannot open the layer directory");
    return l;
  }();
  return made;
}

std::string gzip(std::string_view in) {
  z_stream z{};
  MOAT_FUZZ_ASSERT(deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK, "deflateInit2");
  std::string out(deflateBound(&z, in.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  MOAT_FUZZ_ASSERT(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// Byte by byte on purpose: libFuzzer intercepts memmem/memcmp and would learn the secret.
bool contains_outside(const std::string& out, const unsigned char* secret, size_t n) {
  for (size_t i = 0; i + n <= out.size(); ++i) {
    size_t k = 0;
    while (k < n && static_cast<unsigned char>(out[i + k]) == secret[k]) ++k;
    if (k == n) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Layer& l = layer();
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string file = (data[0] & 1) ? std::string(rest) : gzip(rest);
  MOAT_FUZZ_ASSERT(ftruncate(l.memfd, 0) == 0 && pwrite(l.memfd, file.data(), file.size(), 0) == ssize_t(file.size()),
                   "cannot write the memfd");
  Fd gz(open(("/proc/self/fd/" + std::to_string(l.memfd)).c_str(), O_RDONLY | O_CLOEXEC));  // its own offset
  Fd dir(dup(l.diff_fd));
  MOAT_FUZZ_ASSERT(gz.get() >= 0 && dir.get() >= 0, "cannot reopen the inputs");
  cstorage::TarSplitReader reader(std::move(gz), std::move(dir), "layer 0 (podman layer fuzz)", {});
  std::string out;
  char buf[65536];
  while (out.size() < (16u << 20)) {
    auto n = reader.read(buf, sizeof buf);
    if (!n.ok()) {
      MOAT_FUZZ_ASSERT(n.error().describe().find("layer 0") != std::string::npos, "an error that does not name the layer");
      break;
    }
    if (*n == 0) break;
    out.append(buf, *n);
  }
  MOAT_FUZZ_ASSERT(!contains_outside(out, l.outside, 16), "the reassembled tar holds bytes from outside the layer directory");
  return 0;
}
