#include "rules/secrets/elf_code.h"

#include <algorithm>
#include <cstring>

namespace moat::secrets {

namespace {

constexpr unsigned char kMagic[4] = {0x7f, 'E', 'L', 'F'};
constexpr uint32_t kProgBits = 1;     // SHT_PROGBITS
constexpr uint64_t kExecInstr = 0x4;  // SHF_EXECINSTR
constexpr uint64_t kMaxTable = 1 << 20;

struct Layout {
  bool elf64 = false, big_endian = false;
};

std::optional<Layout> layout_of(std::string_view h) {
  if (h.size() < 64 || std::memcmp(h.data(), kMagic, 4) != 0) return std::nullopt;
  const auto cls = static_cast<unsigned char>(h[4]), data = static_cast<unsigned char>(h[5]);
  if ((cls != 1 && cls != 2) || (data != 1 && data != 2)) return std::nullopt;
  return Layout{cls == 2, data == 2};
}

uint64_t get(std::string_view s, size_t off, size_t width, bool big_endian) {
  uint64_t v = 0;
  for (size_t i = 0; i < width; ++i) {
    const uint64_t b = static_cast<unsigned char>(s[off + i]);
    v |= big_endian ? b << (8 * (width - 1 - i)) : b << (8 * i);
  }
  return v;
}

}  // namespace

std::optional<ByteRange> elf_section_table(std::string_view h, uint64_t file_size) {
  auto l = layout_of(h);
  if (!l) return std::nullopt;
  // e_shoff, e_shentsize, e_shnum (the ELF32 and ELF64 headers differ in width).
  const uint64_t shoff = l->elf64 ? get(h, 0x28, 8, l->big_endian) : get(h, 0x20, 4, l->big_endian);
  const uint64_t entsize = get(h, l->elf64 ? 0x3a : 0x2e, 2, l->big_endian);
  const uint64_t num = get(h, l->elf64 ? 0x3c : 0x30, 2, l->big_endian);
  if (entsize != (l->elf64 ? 64u : 40u) || num == 0 || shoff == 0) return std::nullopt;  // (num 0: extended numbering)
  const uint64_t size = entsize * num;
  if (size > kMaxTable || shoff > file_size || file_size - shoff < size) return std::nullopt;
  return ByteRange{shoff, shoff + size};
}

std::vector<ByteRange> elf_code_ranges(std::string_view h, std::string_view table, uint64_t file_size) {
  std::vector<ByteRange> out;
  auto l = layout_of(h);
  if (!l) return out;
  const size_t entsize = l->elf64 ? 64 : 40;
  for (size_t off = 0; off + entsize <= table.size(); off += entsize) {
    const uint64_t type = get(table, off + 4, 4, l->big_endian);
    const uint64_t flags = l->elf64 ? get(table, off + 8, 8, l->big_endian) : get(table, off + 8, 4, l->big_endian);
    const uint64_t begin = l->elf64 ? get(table, off + 0x18, 8, l->big_endian) : get(table, off + 0x10, 4, l->big_endian);
    const uint64_t size = l->elf64 ? get(table, off + 0x20, 8, l->big_endian) : get(table, off + 0x14, 4, l->big_endian);
    if (type != kProgBits || !(flags & kExecInstr) || size < kMinCodeToSkip) continue;
    if (begin > file_size || file_size - begin < size) continue;  // not inside the file: scanned as it is
    out.push_back({begin, begin + size});
  }
  std::sort(out.begin(), out.end(), [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
  std::vector<ByteRange> merged;
  for (const ByteRange& r : out) {
    if (!merged.empty() && r.begin <= merged.back().end) merged.back().end = std::max(merged.back().end, r.end);
    else merged.push_back(r);
  }
  return merged;
}

}  // namespace moat::secrets
