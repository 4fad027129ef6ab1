#include "storage/sources/containers_storage/tar_split.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "storage/base64.h"
#include "storage/fsutil.h"
#include "storage/json_check.h"
#include "storage/sources/containers_storage/config.h"

namespace moat::cstorage {

using json = nlohmann::json;

Result<ReadLock> ReadLock::acquire(const std::string& path) {
  ReadLock l;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return l;
    return sys_error("open the podman lock " + path);
  }
  l.fd_.reset(fd);
  struct flock fl {};
  fl.l_type = F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;  // the whole file, as c/storage locks it
  while (fcntl(fd, F_OFD_SETLKW, &fl) != 0) {
    if (errno != EINTR) return sys_error("read-lock " + path);
  }
  return l;
}

namespace {

struct Crc64Table {
  uint64_t t[256];
  Crc64Table() {
    const uint64_t poly = 0xD800000000000000ULL;  // ISO 3309, reversed (Go's crc64.ISO)
    for (uint64_t i = 0; i < 256; ++i) {
      uint64_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
      t[i] = c;
    }
  }
};
const Crc64Table kCrc;

constexpr size_t kMaxLine = 64u << 20;
constexpr size_t kGzChunk = 1 << 16;

}  // namespace

uint64_t crc64_iso(uint64_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = kCrc.t[static_cast<uint8_t>(crc) ^ p[i]] ^ (crc >> 8);
  return ~crc;
}

bool beneath_path(const std::string& name, std::string& out) {
  out.clear();
  for (const auto& c : split_path(name)) {
    if (c == ".") continue;
    if (c == "..") return false;
    if (!out.empty()) out += '/';
    out += c;
  }
  return true;
}

struct TarSplitReader::Impl {
  Fd gz_fd, dir_fd;
  std::string label;
  std::vector<ReadLock> locks;
  z_stream z{};
  bool z_init = false, gz_eof = false, z_end = false;
  std::unique_ptr<char[]> in{new char[kGzChunk]};
  std::string lines;     // decompressed bytes not yet consumed
  size_t lines_pos = 0;
  std::string pending;   // a segment's bytes not yet handed out
  size_t pending_pos = 0;
  Fd file;               // the current entry's content
  std::string file_name;
  uint64_t file_left = 0, file_crc = 0, want_crc = 0;
  bool have_crc = false;
  uint64_t entries = 0;
  bool done = false;

  Error err(const std::string& what) const { return Error{label + ": " + what}; }

  // Decompresses more of the tar-split into `lines`; false at its end.
  Result<bool> inflate_more() {
    if (z_end) return false;
    if (z.avail_in == 0 && !gz_eof) {
      ssize_t n;
      do n = ::read(gz_fd.get(), in.get(), kGzChunk);
      while (n < 0 && errno == EINTR);
      if (n < 0) return sys_error(label + ": read tar-split");
      if (n == 0) gz_eof = true;
      z.next_in = reinterpret_cast<Bytef*>(in.get());
      z.avail_in = static_cast<uInt>(n);
    }
    if (z.avail_in == 0 && gz_eof) return err("the tar-split is truncated");
    char out[kGzChunk];
    z.next_out = reinterpret_cast<Bytef*>(out);
    z.avail_out = sizeof out;
    int r = inflate(&z, Z_NO_FLUSH);
    if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR)
      return err(std::string("the tar-split is not valid gzip: ") + (z.msg ? z.msg : "error"));
    lines.append(out, sizeof out - z.avail_out);
    if (r == Z_STREAM_END) {
      if (z.avail_in > 0 || !gz_eof) {
        // Another gzip member, or trailing bytes.
        if (z.avail_in == 0) {
          MOAT_ASSIGN_OR_RETURN(bool more, refill_check());
          if (!more) {
            z_end = true;
            return true;
          }
        }
        inflateReset(&z);
      } else {
        z_end = true;
      }
    }
    return true;
  }

  Result<bool> refill_check() {
    ssize_t n;
    do n = ::read(gz_fd.get(), in.get(), kGzChunk);
    while (n < 0 && errno == EINTR);
    if (n < 0) return sys_error(label + ": read tar-split");
    if (n == 0) {
      gz_eof = true;
      return false;
    }
    z.next_in = reinterpret_cast<Bytef*>(in.get());
    z.avail_in = static_cast<uInt>(n);
    return true;
  }

  // The next JSON line, or false at the end of the tar-split.
  Result<bool> next_line(std::string& line) {
    for (;;) {
      size_t nl = lines.find('\n', lines_pos);
      if (nl != std::string::npos) {
        line.assign(lines, lines_pos, nl - lines_pos);
        lines_pos = nl + 1;
        if (lines_pos > (1u << 20)) {
          lines.erase(0, lines_pos);
          lines_pos = 0;
        }
        return true;
      }
      if (lines.size() - lines_pos > kMaxLine) return err("a tar-split line is longer than 64 MiB");
      MOAT_ASSIGN_OR_RETURN(bool more, inflate_more());
      if (!more) {
        line.assign(lines, lines_pos, std::string::npos);
        lines.clear();
        lines_pos = 0;
        return !line.empty() && line.find_first_not_of(" \t\r") != std::string::npos;
      }
    }
  }

  // Reads tar-split lines until there are bytes to hand out; false at the end.
  Result<bool> advance() {
    std::string line;
    for (;;) {
      MOAT_ASSIGN_OR_RETURN(bool got, next_line(line));
      if (!got) return false;
      ++entries;
      json e;
      if (size_t at = json_too_deep_at(line); at != std::string_view::npos)
        return err("tar-split line " + std::to_string(entries) + " nests arrays or objects more than " +
                   std::to_string(kMaxJsonDepth) + " deep");
      try {
        e = json::parse(line);
      } catch (const json::exception& x) {
        return err("tar-split line " + std::to_string(entries) + " is not valid JSON: " + x.what());
      }
      if (!e.is_object() || !e.contains("type") || !e["type"].is_number_integer())
        return err("tar-split line " + std::to_string(entries) + " has no type");
      int type = e["type"].get<int>();
      std::string payload;
      if (e.contains("payload") && !e["payload"].is_null()) {
        if (!e["payload"].is_string()) return err("tar-split line " + std::to_string(entries) + ": payload is not a string");
        auto p = base64_decode(e["payload"].get_ref<const std::string&>());
        if (!p) return err("tar-split line " + std::to_string(entries) + ": payload is not valid base64");
        payload = std::move(p).value();
      }
      if (type == 2) {
        if (payload.empty()) continue;
        pending = std::move(payload);
        pending_pos = 0;
        return true;
      }
      if (type != 1) return err("tar-split line " + std::to_string(entries) + " has unknown type " + std::to_string(type));
      std::string name;
      if (e.contains("name_raw") && e["name_raw"].is_string()) {
        auto p = base64_decode(e["name_raw"].get_ref<const std::string&>());
        if (!p) return err("tar-split line " + std::to_string(entries) + ": name_raw is not valid base64");
        name = std::move(p).value();
      } else if (e.contains("name") && e["name"].is_string()) {
        name = e["name"].get<std::string>();
      }
      int64_t size = 0;
      if (e.contains("size")) {
        if (!e["size"].is_number_integer() || e["size"].get<int64_t>() < 0)
          return err("tar-split entry \"" + printable(name) + "\" has an invalid size");
        size = e["size"].get<int64_t>();
      }
      std::string rel;
      if (!beneath_path(name, rel))
        return err("tar-split entry \"" + printable(name) + "\" names a path outside the layer").with_hint(
            "the podman store was tampered with; remove the image with `podman rmi` and pull it again");
      if (size == 0) continue;  // directories, links, empty files: no content
      if (rel.empty()) return err("tar-split entry \"" + printable(name) + "\" has content but no name");
      // O_NONBLOCK: a FIFO in the layer named with a size would block open()
      // forever (found by tests/fuzz/tar_split); it fails the S_ISREG check below.
      auto fd = open_beneath(dir_fd.get(), rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
      if (!fd) {
        Error failed = err("entry \"" + printable(name) + "\": " + fd.error().describe() + " in the layer's files");
        if (fd.error().sys_errno == EACCES) return std::move(failed).with_hint(subid_hint());
        return std::move(failed).with_hint(
            "the podman store is damaged or was changed behind podman's back; `podman rmi` the image and pull it again");
      }
      struct stat st;
      if (fstat(fd->get(), &st) != 0) return sys_error(label + ": stat entry \"" + printable(name) + "\"");
      if (!S_ISREG(st.st_mode))
        return err("entry \"" + printable(name) + "\" is not a regular file in the layer's files");
      if (st.st_size != size)
        return err("entry \"" + printable(name) + "\" is " + std::to_string(st.st_size) +
                   " bytes in the layer's files but " + std::to_string(size) + " in its tar-split: the file was changed")
            .with_hint("the podman store was changed behind podman's back; `podman rmi` the image and pull it again");
      posix_fadvise(fd->get(), 0, 0, POSIX_FADV_SEQUENTIAL);
      file = std::move(fd).value();
      file_name = name;
      file_left = static_cast<uint64_t>(size);
      file_crc = 0;
      have_crc = payload.size() == 8;
      want_crc = 0;
      for (unsigned char c : payload.substr(0, 8)) want_crc = (want_crc << 8) | c;
      return true;
    }
  }
};

TarSplitReader::TarSplitReader(Fd tar_split_gz, Fd layer_dir_fd, std::string label, std::vector<ReadLock> locks)
    : impl_(new Impl) {
  impl_->gz_fd = std::move(tar_split_gz);
  impl_->dir_fd = std::move(layer_dir_fd);
  impl_->label = std::move(label);
  impl_->locks = std::move(locks);
  impl_->z_init = inflateInit2(&impl_->z, 15 + 16) == Z_OK;
}

TarSplitReader::~TarSplitReader() {
  if (impl_->z_init) inflateEnd(&impl_->z);
}

Result<size_t> TarSplitReader::read(char* buf, size_t n) {
  Impl& s = *impl_;
  if (!s.z_init) return s.err("zlib: cannot initialise");
  for (;;) {
    if (s.done || n == 0) return size_t{0};
    if (s.pending_pos < s.pending.size()) {
      size_t k = std::min(n, s.pending.size() - s.pending_pos);
      std::memcpy(buf, s.pending.data() + s.pending_pos, k);
      s.pending_pos += k;
      return k;
    }
    if (s.file_left > 0) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(n, s.file_left));
      ssize_t got;
      do got = ::read(s.file.get(), buf, want);
      while (got < 0 && errno == EINTR);
      if (got < 0) return sys_error(s.label + ": read entry \"" + printable(s.file_name) + "\"");
      if (got == 0) return s.err("entry \"" + printable(s.file_name) + "\" ended early: the file was changed while moat read it");
      s.file_crc = crc64_iso(s.file_crc, buf, static_cast<size_t>(got));
      s.file_left -= static_cast<uint64_t>(got);
      if (s.file_left == 0) {
        s.file.reset();
        if (s.have_crc && s.file_crc != s.want_crc)
          return s.err("entry \"" + printable(s.file_name) + "\" differs from what podman recorded (crc64 of its content)")
              .with_hint("the file was changed behind podman's back; `podman rmi` the image and pull it again");
      }
      return static_cast<size_t>(got);
    }
    MOAT_ASSIGN_OR_RETURN(bool more, s.advance());
    if (!more) {
      s.done = true;
      s.locks.clear();  // the layer is read: podman may change the store again
      return size_t{0};
    }
  }
}

}  // namespace moat::cstorage
