// The shared body of the unpack_tar and unpack_compressed fuzz targets.
#pragma once

#include <cstddef>
#include <cstdint>

#include "storage/unpack.h"

namespace moat::fuzz {

// Unpacks `data` as a layer blob whose manifest declares `declared` into a
// fresh directory under scratch_dir(), checks the invariants, removes it.
int unpack(const uint8_t* data, size_t size, Compression declared);

}  // namespace moat::fuzz
