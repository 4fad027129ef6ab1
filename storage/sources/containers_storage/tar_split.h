// Reassembling a layer's original tar stream from containers/storage's
// tar-split and the layer's files, as `podman image save` does, streamed.
//
// DRIVER-layers/ID.tar-split.gz is vbatts/tar-split's storage format, gzip'd:
// one JSON object per line,
//   {"type":2,"payload":BASE64,"position":N}           raw bytes of the tar
//                                                      (headers, padding, trailer)
//   {"type":1,"name":PATH|"name_raw":BASE64,"size":S,  one entry; its S content bytes
//    "payload":BASE64(crc64-ISO, big-endian)|null,     are the file PATH of the layer's
//    "position":N}                                     directory (overlay/ID/diff, vfs/dir/ID)
// Concatenating segments and file contents in order gives the tar exactly as
// it was pulled, so it hashes to the layer's diff-digest and the config's
// diffID, and its headers carry the true owners, modes and xattrs whatever
// the driver did on disk (whiteout devices, override_stat, fuse-overlayfs).
//
// Everything is untrusted: a line is at most 64 MiB, names are resolved
// beneath the layer directory with openat2(RESOLVE_BENEATH|NO_SYMLINKS), a
// name with ".." is an error, a file must be regular and exactly S bytes, and
// its crc64 must match (an edited file is named in the error; the diffID
// check in the unpacker catches everything else).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "storage/fd.h"
#include "storage/result.h"
#include "storage/tree.h"

namespace moat::cstorage {

// A read lock on one of c/storage's lock files (layers.lock, images.lock):
// an open file description lock (F_OFD_SETLKW, F_RDLCK) on the whole file,
// which conflicts with c/storage's POSIX write locks both ways. The file is
// opened read-only and never created: moat never writes to the podman store.
class ReadLock {
 public:
  // A missing lock file (a read-only additional store) gives an empty lock.
  static Result<ReadLock> acquire(const std::string& path);
  ReadLock(ReadLock&&) = default;
  ReadLock& operator=(ReadLock&&) = default;

 private:
  ReadLock() = default;
  Fd fd_;
};

uint64_t crc64_iso(uint64_t crc, const void* data, size_t n);

// Streams the reassembled tar. `layer_dir_fd` is the layer's file directory;
// `label` names the layer in errors; `locks` are held until the reader is gone.
class TarSplitReader : public Reader {
 public:
  TarSplitReader(Fd tar_split_gz, Fd layer_dir_fd, std::string label, std::vector<ReadLock> locks);
  ~TarSplitReader() override;
  Result<size_t> read(char* buf, size_t n) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Normalises a tar-split entry name to a path beneath the layer directory
// ("./a//b" -> "a/b", leading '/' dropped); false for a name with "..".
bool beneath_path(const std::string& name, std::string& out);


}  // namespace moat::cstorage
