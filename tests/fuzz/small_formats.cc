// Fuzz target: the small image-controlled formats: a file's
// security.capability xattr (decode_file_caps, scanner/checks/caps.h), a line of
// the per-layer metadata index (parse_index_line, storage/layer_index.h),
// which must read back what format_index_line writes, and an ELF file's
// section header table (elf_code_ranges, rules/secrets/elf_code.h: the secret
// scan skips the code ranges it returns, which must lie inside the file).
#include "rules/secrets/elf_code.h"
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
  if (auto t = secrets::elf_section_table(in, in.size())) {
    MOAT_FUZZ_ASSERT(t->begin <= t->end && t->end <= in.size(), "the section table is not inside the file");
    uint64_t last_end = 0;
    for (const auto& r : secrets::elf_code_ranges(in, in.substr(t->begin, t->end - t->begin), in.size())) {
      MOAT_FUZZ_ASSERT(r.begin >= last_end && r.end <= in.size(), "code ranges overlap or leave the file");
      MOAT_FUZZ_ASSERT(r.end - r.begin >= secrets::kMinCodeToSkip, "a code range below the minimum");
      last_end = r.end;
    }
  }
  auto u = unescape_field(in);
  if (u.ok()) {
    auto back = unescape_field(escape_field(*u));
    MOAT_FUZZ_ASSERT(back.ok() && *back == *u, "escape_field does not round-trip");
  }
  return 0;
}
