// Fuzz target: gzip and zstd framing. The first byte picks the compression
// the manifest's media type declares (unknown, none, gzip, zstd); the rest is
// the blob, decompressed and unpacked by the real unpacker (unpack_common.cc).
#include "tests/fuzz/unpack_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const moat::Compression kDeclared[] = {moat::Compression::Unknown, moat::Compression::None,
                                                moat::Compression::Gzip, moat::Compression::Zstd};
  return moat::fuzz::unpack(data + 1, size - 1, kDeclared[data[0] % 4]);
}
