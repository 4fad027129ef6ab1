// The body of the unpack_tar and unpack_compressed targets: a layer blob
// through moat's real unpacker (storage/unpack.h) into a scratch directory.
//
// Invariants checked beyond "no crash": nothing but the layer's directory
// appears in the scratch directory (no write outside the layer), and every
// metadata-index line the unpacker produced parses back to the same entry.
#include <dirent.h>

#include "tests/fuzz/unpack_common.h"

#include "storage/layer_index.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

namespace {

void check_only_child(const std::string& dir, const char* name) {
  DIR* d = opendir(dir.c_str());
  MOAT_FUZZ_ASSERT(d, "scratch directory vanished");
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    MOAT_FUZZ_ASSERT(n == name, "the unpacker wrote outside the layer directory");
  }
  closedir(d);
}

void check_index_roundtrip(const std::vector<IndexEntry>& index) {
  for (const auto& e : index) {
    std::string line = format_index_line(e);
    auto back = parse_index_line(line);
    MOAT_FUZZ_ASSERT(back.ok(), "an index line moat wrote does not parse");
    MOAT_FUZZ_ASSERT(back->path == e.path && back->link == e.link && back->type == e.type && back->mode == e.mode &&
                         back->uid == e.uid && back->gid == e.gid && back->size == e.size &&
                         back->xattrs == e.xattrs && back->mtime == e.mtime,
                     "an index line does not read back as written");
  }
}

}  // namespace

int moat::fuzz::unpack(const uint8_t* data, size_t size, Compression declared) {
  const std::string& scratch = fuzz::scratch_dir();
  Fd root(open(scratch.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  MOAT_FUZZ_ASSERT(root.get() >= 0, "cannot open the scratch directory");
  if (mkdirat(root.get(), "diff", 0700) != 0) std::abort();
  {
    Fd diff(openat(root.get(), "diff", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    fuzz::MemReader blob(std::string(reinterpret_cast<const char*>(data), size));
    LayerDesc expect;
    expect.compression = declared;
    UnpackOptions opt;
    // Small limits keep each run fast; a bomb must stop at them, not hang.
    opt.limits.max_layer_entries = 20000;
    opt.limits.max_image_bytes = 16u << 20;
    std::atomic<uint64_t> budget{0};
    opt.image_bytes = &budget;
    auto r = unpack_layer(blob, expect, diff.get(), opt);
    if (r.ok()) {
      check_index_roundtrip(r->index);
      check_index_roundtrip(r->pending_links);
    } else {
      MOAT_FUZZ_ASSERT(!r.error().describe().empty(), "an error without a message");
    }
  }
  check_only_child(scratch, "diff");
  auto st = remove_tree(root.get(), "diff");
  MOAT_FUZZ_ASSERT(st.ok(), "the unpacked layer cannot be removed");
  return 0;
}

