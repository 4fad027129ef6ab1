// Small, safe filesystem primitives shared by the store and the transports.
//
// Everything that resolves a path given by an image goes through
// open_beneath(): the kernel walks the path beneath a directory fd and refuses
// symlinks, magic links, ".." escapes and mount crossings (openat2 with
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so an image can never make moat read
// or write a host file through a path it controls.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "storage/fd.h"
#include "storage/result.h"

namespace moat {

// openat2(dirfd, path, flags, RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
// RESOLVE_NO_MAGICLINKS|RESOLVE_NO_XDEV). `path` is relative to dirfd.
Result<Fd> open_beneath(int dirfd, const std::string& path, int flags, mode_t mode = 0);

// Opens a regular file beneath dirfd (no symlinks anywhere) and reads it whole,
// refusing files larger than max_bytes.
Result<std::string> read_file_beneath(int dirfd, const std::string& path, size_t max_bytes);

// Reads everything from fd, refusing more than max_bytes.
Result<std::string> read_all(int fd, size_t max_bytes);

// Writes data to dirfd/name atomically: a temporary file, fsync, rename.
Status write_file_atomic(int dirfd, const std::string& name, std::string_view data, mode_t mode = 0600);

// Removes dirfd/name and everything under it without following symlinks.
// Directories whose mode locks us out (0000) are opened up first.
Status remove_tree(int dirfd, const std::string& name);

// mkdir -p for moat's own (trusted) paths, with the given mode for new dirs.
Status make_dirs(const std::string& path, mode_t mode);

// Printable form of untrusted bytes for messages: control bytes and invalid
// UTF-8 are shown as \xHH, and the result is cut at max_len.
std::string printable(std::string_view s, size_t max_len = 200);

// Human-readable byte count (1.5 MB, 340 MB ...).
std::string human_bytes(uint64_t n);

}  // namespace moat
