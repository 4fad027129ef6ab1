// Fuzz target: a layer blob through moat's real unpacker (storage/unpack.h)
// into a scratch directory: tar names, links, xattrs, PAX headers, sparse
// files, long names, whiteouts, and gzip/zstd framing chosen by magic bytes.
// The input is the blob as an image would ship it (see unpack_common.cc).
#include "tests/fuzz/unpack_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return moat::fuzz::unpack(data, size, moat::Compression::Unknown);
}
