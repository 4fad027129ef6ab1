// Where an ELF file keeps its machine code, which the secret scan does not
// read (engine.h, SecretScanner::scan_fd).
//
// Why skipping it loses no secret: a compiler keeps a string literal in a
// data section (.rodata, .data); in machine code it can only appear as
// immediates of at most 8 bytes, each between opcode bytes that are not
// printable, so no rule could match it there anyway (binary input is scanned
// as printable runs). Machine code is a third of the bytes of a typical
// image (311 of 987 MB in benchmarks/first-run.sh's image), so the scan reads
// and matches a third less.
//
// What counts as code: SHT_PROGBITS sections with the SHF_EXECINSTR flag, as
// the section header table says (ELF32 and ELF64, either byte order). The
// table is image-controlled: every offset and size is checked against the
// file, and any doubt (no table, extended numbering, an entry size that is
// not the standard one, a table over 1 MiB) means no range, so the whole
// file is scanned as before. An image author who marks data as code hides it
// from this scan; one who wants to hide a secret can compress it anyway:
// secret scanning is about accidental leaks.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace moat::secrets {

struct ByteRange {
  uint64_t begin = 0, end = 0;  // [begin, end) in the file
};

// Only files at least this large are looked at (smaller code is not worth
// the extra reads), and only code sections at least this large are skipped.
constexpr uint64_t kMinElfToSkip = 64 * 1024;
constexpr uint64_t kMinCodeToSkip = 4096;

// `ehdr`: the file's first bytes (64 suffice). Where its section header
// table is, when it is an ELF file with a usable one; nullopt otherwise.
std::optional<ByteRange> elf_section_table(std::string_view ehdr, uint64_t file_size);

// The code ranges given the table's bytes (as elf_section_table() located
// them): sorted, merged, each inside the file and at least kMinCodeToSkip.
std::vector<ByteRange> elf_code_ranges(std::string_view ehdr, std::string_view table, uint64_t file_size);

}  // namespace moat::secrets
