// MD5 of many files at once, for the integrity check of dpkg images (every
// file a package lists has an MD5 in its .md5sums).
//
// Why: one MD5 is a chain of 64 dependent steps per 64-byte block, so a
// single stream runs at about 4.5 cycles per byte whatever the CPU; it was a
// third of the CPU time of a first full `moat scan` of a Debian image
// (benchmarks/README.md, "First run"). With AVX-512, sixteen files are hashed
// side by side, one per 32-bit lane of a vector register (the multi-buffer
// technique of ISA-L crypto, which Debian does not package), at a fraction of
// the cost per byte. Without AVX-512 the files are hashed one after another
// with OpenSSL, as before.
//
// Each lane reads its file in chunks into its own slice of one buffer;
// whenever a lane runs dry it is refilled, finished (its last partial block
// and the padding are hashed alone) or handed the next file, so lanes stay
// busy while files of any size come and go.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "storage/fd.h"
#include "storage/result.h"

namespace moat {

// The i-th file, opened for reading (a regular file: the caller checks),
// and its size from the caller's fstat: a read that stops short at that size
// is the last, so a small file takes one read() instead of two (UINT64_MAX:
// unknown, read to the empty read at the end).
struct Md5Input {
  Fd fd;
  uint64_t size = UINT64_MAX;
};
using Md5Opener = std::function<Result<Md5Input>(size_t i)>;

// The lowercase hex MD5 of each of `count` files, nullopt for a file that
// could not be opened or read (the caller then reads it its own way and
// reports the error there). Hashes on the calling thread.
std::vector<std::optional<std::string>> md5_files(size_t count, const Md5Opener& open);

// True when md5_files() hashes sixteen files at a time on this CPU.
bool md5_files_multi_buffer();

// For tests: the MD5 of in-memory buffers through the same lanes, each
// buffer fed in pieces of at most `piece` bytes (to exercise refills).
std::vector<std::string> md5_buffers_for_test(const std::vector<std::string>& data, size_t piece, bool force_scalar);

}  // namespace moat
