// Limits on untrusted input. Every one has a documented default and a flag
// (see README "Limits"); passing one is a clear error with exit status 2.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moat {

struct Limits {
  uint64_t max_image_bytes = 64ull << 30;  // uncompressed bytes of all layers of one image
  uint64_t max_layer_entries = 2'000'000;  // tar entries in one layer
  size_t max_path_length = 4096;           // bytes of one path inside a layer
  size_t max_path_depth = 256;             // components of one path
  size_t max_layers = 500;                 // layers of one image (the kernel stacks at most 500)
  size_t max_json_bytes = 8u << 20;        // manifest, index or config document
  uint64_t max_archive_entries = 1'000'000;  // entries of an outer image archive
  // Not a size: --allow-unverified lets a containers-storage layer that cannot be
  // checked against its diffID (no tar-split, no diff-digest) be scanned anyway.
  bool allow_unverified = false;
};

}  // namespace moat
