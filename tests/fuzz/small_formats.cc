// Fuzz target: the small image-controlled formats: a file's
// security.capability xattr (decode_file_caps, scanner/checks/caps.h) and a line of
// the per-layer metadata index (parse_index_line, storage/layer_index.h),
// which must read back what format_index_line writes.
#include "scanner/checks/caps.h"
#include "storage/layer_index.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto caps = decode_file_caps(in);
  if (caps.ok()) (void)caps->text();
  auto e = parse_index_line(in);
  if (e.ok()) {
    auto again = parse_index_line(format_index_line(*e));
    MOAT_FUZZ_ASSERT(again.ok(), "a formatted index line does not parse");
    MOAT_FUZZ_ASSERT(again->path == e->path && again->link == e->link && again->xattrs == e->xattrs &&
                         again->mode == e->mode && again->size == e->size,
                     "an index line does not round-trip");
  }
  auto u = unescape_field(in);
  if (u.ok()) {
    auto back = unescape_field(escape_field(*u));
    MOAT_FUZZ_ASSERT(back.ok() && *back == *u, "escape_field does not round-trip");
  }
  return 0;
}
