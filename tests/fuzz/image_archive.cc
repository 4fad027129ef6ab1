// Fuzz target: an image archive (oci-archive or docker-archive tar) as a
// file, through TarTree's index of the archive (names, symlinks and hardlinks
// among its entries, long names, sparse and damaged entries) and
// open_image_tree() on it, then every layer stream read to its end.
#include "storage/image.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string file = fuzz::scratch_dir() + "/archive.tar";
  {
    Fd fd(open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    MOAT_FUZZ_ASSERT(fd.get() >= 0, "cannot write the scratch archive");
    size_t off = 0;
    while (off < size) {
      ssize_t n = write(fd.get(), data + off, size - off);
      MOAT_FUZZ_ASSERT(n > 0, "cannot write the scratch archive");
      off += static_cast<size_t>(n);
    }
  }
  Limits limits;
  limits.max_archive_entries = 10000;
  limits.max_json_bytes = 1 << 20;
  for (Transport t : {Transport::OciArchive, Transport::DockerArchive}) {
    auto tree = TarTree::open_archive(file, limits);
    if (!tree.ok()) return 0;  // the same index either way
    Reference ref{t, file, "", std::string(transport_name(t)) + ":" + file};
    auto img = open_image_tree(std::move(*tree), ref, Platform{"linux", "amd64", ""}, limits);
    if (!img.ok()) continue;
    for (size_t i = 0; i < (*img)->desc().layers.size(); ++i) {
      auto r = (*img)->open_layer(i);
      if (!r.ok()) continue;
      char buf[4096];
      uint64_t total = 0;
      for (;;) {
        auto n = (*r)->read(buf, sizeof buf);
        if (!n.ok() || *n == 0) break;
        total += *n;
        if (total > (16u << 20)) break;  // sparse entries may expand; the unpacker bounds them
      }
    }
  }
  return 0;
}
