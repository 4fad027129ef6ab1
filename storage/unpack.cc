#include "storage/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>
#ifdef MOAT_HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <memory>
#include <unordered_map>

#include "storage/digest.h"
#include "storage/archive_error.h"
#include "storage/fsutil.h"

namespace moat {

namespace {

constexpr size_t kInBuf = 1 << 17;
// The uncompressed tar travels from the producer thread to the tar reader and
// the diffID hasher in chunks of kChunk bytes, kSlots of them (4 MiB a layer;
// 1 MiB chunks cost a little less CPU than 256 KiB ones: fewer wakeups).
constexpr size_t kChunk = 1 << 20;
constexpr size_t kSlots = 4;

// gzip layers are inflated by ISA-L's igzip where the build has it (about 3x
// zlib's speed on this project's benchmark image, benchmarks/README.md), by
// zlib otherwise. Both check every member's CRC-32 and ISIZE; the blob digest
// and diffID are computed the same way around either.

#ifdef MOAT_HAVE_ISAL
// ISA-L's inflate state holds its 32 KiB window and tables: heap, not stack.
struct IsalState {
  inflate_state st;
};
#endif

// ---- the byte pipeline: blob -> hash -> decompress -> hash -> libarchive ----
//
// Three threads per layer, two of them owned by the Pipeline. The producer
// reads the blob, hashes it (blob digest) and decompresses it into a ring of
// kSlots chunks; the hasher hashes each chunk (diffID); the caller's thread
// takes the chunks in order for libarchive and writes the entries. The
// largest layer bounds a pull's wall time: this way its inflate and hashing
// (about half of its CPU time) no longer wait for its file writes, nor the
// writes for them, and the two halves are about even (benchmarks/README.md).
//
// Ownership: a chunk belongs to the producer until published; then the reader
// holds it until it asks for the next one (libarchive reads a block until its
// next read callback) and the hasher until hashed; the slot is the producer's
// again once both are past it. The blob digest and sizes are read by the
// caller only after the end of the stream was published, the diffID after the
// hasher said it is done, both under the same mutex. A producer error
// (corrupt data, truncated stream, a limit, cancel) is published after the
// chunks before it, so the reader meets it where it met it before: at the
// entry being read. If the caller stops early (a bad entry), the destructor
// stops and joins both threads.
class Pipeline {
 public:
  Pipeline(Reader& src, Compression declared, const UnpackOptions& opt)
      : src_(src), declared_(declared), opt_(opt), in_(new char[kInBuf]) {
    for (auto& s : slots_) s.reset(new char[kChunk]);
  }
  ~Pipeline() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    space_.notify_all();
    data_.notify_all();
    if (producer_.joinable()) producer_.join();  // a chunk being produced is finished first
    if (hasher_.joinable()) hasher_.join();
    if (z_init_) inflateEnd(&z_);
    if (zs_) ZSTD_freeDStream(zs_);
#ifdef MOAT_HAVE_ISAL
    delete isal_;
#endif
  }
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Reads the first bytes, decides the decompressor and starts the producer.
  Status start() {
    MOAT_TRY(fill());
    const unsigned char* b = reinterpret_cast<const unsigned char*>(in_.get());
    Compression magic = Compression::None;
    if (in_len_ >= 2 && b[0] == 0x1f && b[1] == 0x8b) magic = Compression::Gzip;
    else if (in_len_ >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd) magic = Compression::Zstd;
    if (declared_ != Compression::Unknown && declared_ != magic)
      return Error{std::string("media type says ") + compression_name(declared_) + " but the blob is " +
                   compression_name(magic)};
    comp_ = magic;
    if (comp_ == Compression::Gzip) {
#ifdef MOAT_HAVE_ISAL
      isal_ = new IsalState;
      isal_inflate_init(&isal_->st);
      isal_->st.crc_flag = ISAL_GZIP;  // parse the header, verify CRC-32 and ISIZE
#else
      if (inflateInit2(&z_, 15 + 16) != Z_OK) return Error{"zlib: cannot initialise"};
      z_init_ = true;
#endif
    } else if (comp_ == Compression::Zstd) {
      zs_ = ZSTD_createDStream();
      if (!zs_) return Error{"zstd: cannot initialise"};
      ZSTD_initDStream(zs_);
      // Bound the window an image can make us allocate (zstd --long=27 is the largest in use).
      ZSTD_DCtx_setParameter(zs_, ZSTD_d_windowLogMax, 27);
    }
    producer_ = std::thread([this] { produce(); });
    hasher_ = std::thread([this] { hash_chunks(); });
    return ok_status();
  }

  // Next chunk of uncompressed tar; 0 at the end. The previous chunk is given
  // back to the producer.
  Result<size_t> next(const char** buf) {
    std::unique_lock<std::mutex> l(mu_);
    if (held_) {
      held_ = false;
      space_.notify_one();
    }
    data_.wait(l, [this] { return published_ > consumed_ || done_; });
    if (published_ > consumed_) {
      size_t k = consumed_++ % kSlots;
      held_ = true;
      *buf = slots_[k].get();
      return lens_[k];
    }
    if (err_) return *err_;
    return size_t{0};
  }

  // Reads whatever follows the tar's end marker so both digests cover every byte.
  Status drain() {
    const char* b;
    for (;;) {
      MOAT_ASSIGN_OR_RETURN(size_t n, next(&b));
      if (n == 0) return ok_status();
    }
  }

  // Valid once next() returned 0 (the producer is done with them).
  std::string blob_digest() { return blob_hash_.finish(); }
  std::string diff_id() {
    std::unique_lock<std::mutex> l(mu_);
    data_.wait(l, [this] { return hash_done_; });
    return diff_hash_.finish();
  }
  uint64_t blob_size() const { return blob_size_; }
  uint64_t tar_size() const { return tar_size_; }
  Compression compression() const { return comp_; }

 private:
  // The producer thread: fills free slots until the end, an error or stop.
  void produce() {
    for (;;) {
      {
        std::unique_lock<std::mutex> l(mu_);
        // A slot is free once both the tar reader and the hasher are past it.
        space_.wait(l, [this] { return stop_ || published_ - std::min(consumed_ - (held_ ? 1 : 0), hashed_) < kSlots; });
        if (stop_) return;
      }
      size_t k = published_ % kSlots;  // only this thread changes published_
      Result<size_t> r = Error{"internal error"};
      try {
        r = produce_chunk(slots_[k].get());
      } catch (const std::exception& e) {
        r = Error{std::string("internal error: ") + e.what()};
      }
      std::lock_guard<std::mutex> g(mu_);
      if (!r) {
        err_ = std::move(r).error();
        done_ = true;
      } else if (*r == 0) {
        done_ = true;
      } else {
        lens_[k] = *r;
        ++published_;
      }
      data_.notify_all();
      if (done_) return;
    }
  }

  // The hasher thread: the diffID over every published chunk, in order.
  void hash_chunks() {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      data_.wait(l, [this] { return stop_ || hashed_ < published_ || done_; });
      if (stop_) return;
      if (hashed_ == published_) {  // done_: every chunk is hashed
        hash_done_ = true;
        data_.notify_all();
        return;
      }
      size_t k = hashed_ % kSlots;
      size_t n = lens_[k];
      l.unlock();
      diff_hash_.update(slots_[k].get(), n);
      l.lock();
      ++hashed_;
      space_.notify_one();
    }
  }

  // One chunk of tar into `dst` (up to kChunk bytes, 0 at the end), counted
  // against the image's budget. An error after some bytes is kept for the next
  // call, so the bytes before it reach the tar reader first.
  Result<size_t> produce_chunk(char* dst) {
    if (pending_err_) return *pending_err_;
    size_t n = 0;
    Status st = inflate_chunk(dst, n);
    if (!st) {
      if (n == 0) return std::move(st).error();
      pending_err_ = std::move(st).error();
    }
    if (n == 0) return size_t{0};
    tar_size_ += n;
    if (opt_.cancel && opt_.cancel->load()) return Error{"cancelled"};
    if (opt_.image_bytes) {
      uint64_t total = opt_.image_bytes->fetch_add(n) + n;
      if (total > opt_.limits.max_image_bytes)
        return Error{"the image's uncompressed size passes the limit of " + human_bytes(opt_.limits.max_image_bytes)}
            .with_hint("raise it with --max-image-bytes if the image is trusted to be this large");
    }
    return n;
  }

  // Decompresses (or, uncompressed, reads) up to kChunk bytes into `dst`;
  // `len` says how many, also when it fails part-way.
  Status inflate_chunk(char* dst, size_t& len) {
    if (comp_ == Compression::None) {
      // Whatever start() read ahead for the magic bytes, then straight into the chunk.
      if (in_pos_ < in_len_) {
        len = std::min(in_len_ - in_pos_, kChunk);
        std::memcpy(dst, in_.get() + in_pos_, len);
        in_pos_ += len;
      }
      while (len < kChunk && !src_eof_) {
        MOAT_ASSIGN_OR_RETURN(size_t n, src_.read(dst + len, kChunk - len));
        if (n == 0) {
          src_eof_ = true;
          break;
        }
        blob_size_ += n;
        blob_hash_.update(dst + len, n);
        if (opt_.progress) opt_.progress(n);
        len += n;
      }
      return ok_status();
    }
    while (len < kChunk) {
      // A gzip member may end one byte before the buffer does: keep that
      // byte so the next member's two magic bytes are seen together.
      while (!src_eof_ && (in_pos_ == in_len_ || (stream_done_ && in_len_ - in_pos_ < 2))) MOAT_TRY(fill());
      if (in_pos_ == in_len_ && src_eof_) {
        if (!stream_done_) return Error{"the compressed stream is truncated"};
        break;
      }
      MOAT_ASSIGN_OR_RETURN(size_t n, decompress(dst + len, kChunk - len));
      len += n;
    }
    return ok_status();
  }

  // Reads the next bytes of the blob after what is still unconsumed (moved
  // to the front of the buffer).
  Status fill() {
    size_t keep = in_len_ - in_pos_;
    if (keep) std::memmove(in_.get(), in_.get() + in_pos_, keep);
    in_pos_ = 0;
    in_len_ = keep;
    if (src_eof_) return ok_status();
    MOAT_ASSIGN_OR_RETURN(size_t n, src_.read(in_.get() + keep, kInBuf - keep));
    if (n == 0) src_eof_ = true;
    in_len_ = keep + n;
    blob_size_ += n;
    blob_hash_.update(in_.get() + keep, n);
    if (opt_.progress && n) opt_.progress(n);
    return ok_status();
  }

#ifdef MOAT_HAVE_ISAL
  Result<size_t> inflate_isal(char* dst, size_t cap) {
    inflate_state& st = isal_->st;
    if (stream_done_) {
      if (in_len_ - in_pos_ >= 2 && static_cast<unsigned char>(in_[in_pos_]) == 0x1f &&
          static_cast<unsigned char>(in_[in_pos_ + 1]) == 0x8b) {
        isal_inflate_reset(&st);
        st.crc_flag = ISAL_GZIP;
        stream_done_ = false;
      } else {
        in_pos_ = in_len_;  // trailing padding after the last member: hashed, not unpacked
        return size_t{0};
      }
    }
    st.next_in = reinterpret_cast<uint8_t*>(in_.get() + in_pos_);
    st.avail_in = static_cast<uint32_t>(in_len_ - in_pos_);
    st.next_out = reinterpret_cast<uint8_t*>(dst);
    st.avail_out = static_cast<uint32_t>(cap);
    int r = isal_inflate(&st);
    in_pos_ = in_len_ - st.avail_in;  // at a member's end, ISA-L hands back the bytes after its trailer
    if (r != ISAL_DECOMP_OK) {
      const char* why = r == ISAL_INCORRECT_CHECKSUM ? "CRC-32 or length mismatch"
                        : r == ISAL_INVALID_WRAPPER  ? "bad gzip header"
                        : r == ISAL_UNSUPPORTED_METHOD ? "not deflate"
                                                       : "invalid deflate data";
      return Error{std::string("gzip data is corrupt: ") + why};
    }
    if (st.block_state == ISAL_BLOCK_FINISH) stream_done_ = true;
    return cap - st.avail_out;
  }
#endif

  Result<size_t> decompress(char* dst, size_t cap) {
#ifdef MOAT_HAVE_ISAL
    if (comp_ == Compression::Gzip) return inflate_isal(dst, cap);
#endif
    if (comp_ == Compression::Gzip) {
      if (stream_done_) {
        // Concatenated gzip members are one stream (as gzip -dc reads them).
        if (in_len_ - in_pos_ >= 2 && static_cast<unsigned char>(in_[in_pos_]) == 0x1f) {
          inflateReset(&z_);
          stream_done_ = false;
        } else {
          in_pos_ = in_len_;  // trailing padding after the last member: hashed, not unpacked
          return size_t{0};
        }
      }
      z_.next_in = reinterpret_cast<Bytef*>(in_.get() + in_pos_);
      z_.avail_in = static_cast<uInt>(in_len_ - in_pos_);
      z_.next_out = reinterpret_cast<Bytef*>(dst);
      z_.avail_out = static_cast<uInt>(cap);
      int r = inflate(&z_, Z_NO_FLUSH);
      in_pos_ = in_len_ - z_.avail_in;
      if (r == Z_STREAM_END) stream_done_ = true;
      else if (r != Z_OK && r != Z_BUF_ERROR) return Error{std::string("gzip data is corrupt: ") + (z_.msg ? z_.msg : "error")};
      return cap - z_.avail_out;
    }
    ZSTD_inBuffer in{in_.get(), in_len_, in_pos_};
    ZSTD_outBuffer out{dst, cap, 0};
    size_t r = ZSTD_decompressStream(zs_, &out, &in);
    if (ZSTD_isError(r)) return Error{std::string("zstd data is corrupt: ") + ZSTD_getErrorName(r)};
    in_pos_ = in.pos;
    stream_done_ = (r == 0);
    return out.pos;
  }

  Reader& src_;
  Compression declared_, comp_ = Compression::None;
  const UnpackOptions& opt_;
  // Producer's state (start() sets it up before the thread exists).
  std::unique_ptr<char[]> in_;
  size_t in_pos_ = 0, in_len_ = 0;
  bool src_eof_ = false, stream_done_ = false;
  z_stream z_{};
  bool z_init_ = false;
  ZSTD_DStream* zs_ = nullptr;
#ifdef MOAT_HAVE_ISAL
  IsalState* isal_ = nullptr;  // owned
#endif
  Sha256 blob_hash_, diff_hash_;
  uint64_t blob_size_ = 0, tar_size_ = 0;
  std::optional<Error> pending_err_;
  // The ring, under mu_: published_ and consumed_ count chunks since the start.
  std::unique_ptr<char[]> slots_[kSlots];
  size_t lens_[kSlots] = {};
  std::mutex mu_;
  std::condition_variable space_;  // the producer waits for a free slot
  std::condition_variable data_;   // the reader and the hasher wait for a chunk (or the end)
  uint64_t published_ = 0, consumed_ = 0, hashed_ = 0;
  bool held_ = false;  // the consumer holds chunk consumed_ - 1
  bool done_ = false, stop_ = false, hash_done_ = false;
  std::optional<Error> err_;
  std::thread producer_, hasher_;  // last: joined in the destructor before anything they use goes
};

struct PipeClient {
  Pipeline* pipe;
  std::optional<Error> err;
};

la_ssize_t pipe_read(archive* a, void* client, const void** buf) {
  auto* c = static_cast<PipeClient*>(client);
  const char* b = nullptr;
  auto r = c->pipe->next(&b);
  if (!r) {
    c->err = std::move(r).error();
    archive_set_error(a, EIO, "%s", c->err->message.c_str());
    return -1;
  }
  *buf = b;
  return static_cast<la_ssize_t>(*r);
}

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};

// ---- the entry writer ----

bool keep_xattr(const std::string& name) {
  if (name.find(".overlay.") != std::string::npos) return false;  // only .wh. entries decide what is hidden
  if (name.rfind("user.containers.", 0) == 0) return false;      // a forged override_stat
  return name.rfind("user.", 0) == 0 || name.rfind("security.", 0) == 0;
}

class EntryWriter {
 public:
  EntryWriter(int root, const UnpackOptions& opt) : root_(root), opt_(opt), euid_(geteuid()), egid_(getegid()) {}

  // Applies one archive entry; `a` is positioned at its data.
  Status apply(archive* a, archive_entry* e, const std::string& raw_name) {
    if (++entries_ > opt_.limits.max_layer_entries)
      return Error{"more than " + std::to_string(opt_.limits.max_layer_entries) + " entries"}.with_hint(
          "raise the limit with --max-layer-entries if the layer is trusted");
    if (raw_name.size() > opt_.limits.max_path_length)
      return Error{"path is longer than " + std::to_string(opt_.limits.max_path_length) + " bytes"};
    if (!raw_name.empty() && raw_name[0] == '/') return Error{"absolute path refused"};
    std::string rel;
    if (!normalize_relative(raw_name, rel)) return Error{"path with \"..\" refused"};
    if (std::count(rel.begin(), rel.end(), '/') + 1 > static_cast<long>(opt_.limits.max_path_depth))
      return Error{"path is deeper than " + std::to_string(opt_.limits.max_path_depth) + " components"};

    IndexEntry ie;
    ie.mode = archive_entry_perm(e) & 07777;
    ie.uid = static_cast<uint32_t>(archive_entry_uid(e));
    ie.gid = static_cast<uint32_t>(archive_entry_gid(e));
    ie.mtime = archive_entry_mtime(e);
    ie.size = archive_entry_size_is_set(e) ? static_cast<uint64_t>(archive_entry_size(e)) : 0;
    archive_entry_xattr_reset(e);
    const char* xn;
    const void* xv;
    size_t xs;
    while (archive_entry_xattr_next(e, &xn, &xv, &xs) == ARCHIVE_OK) {
      if (!xn || !keep_xattr(xn)) continue;
      // libarchive-written tars carry each xattr twice (LIBARCHIVE.xattr and SCHILY.xattr): the last one wins.
      std::string v(static_cast<const char*>(xv), xs);
      auto same = std::find_if(ie.xattrs.begin(), ie.xattrs.end(), [&](const auto& p) { return p.first == xn; });
      if (same != ie.xattrs.end()) same->second = std::move(v);
      else ie.xattrs.emplace_back(xn, std::move(v));
    }

    if (rel.empty()) {  // the layer's root directory itself
      ie.path = "/";
      ie.type = EntryType::Dir;
      record(ie);
      root_fix_ = ie;
      return ok_status();
    }
    size_t slash = rel.rfind('/');
    std::string parent = slash == std::string::npos ? "" : rel.substr(0, slash);
    std::string name = slash == std::string::npos ? rel : rel.substr(slash + 1);
    MOAT_ASSIGN_OR_RETURN(int pfd, parent_fd(parent));

    if (name.rfind(".wh.", 0) == 0) {
      if (name == ".wh..wh..opq") {
        if (fsetxattr(pfd, "user.overlay.opaque", "y", 1, 0) != 0) return sys_error("mark directory opaque");
        ie.type = EntryType::Opaque;
        ie.path = "/" + parent;
        ie.mode = 0;
        ie.size = 0;
        record(ie);
        return ok_status();
      }
      if (name.rfind(".wh..wh.", 0) == 0) return ok_status();  // aufs bookkeeping (.wh..wh.plnk), not content
      std::string hidden = name.substr(4);
      if (hidden.empty() || hidden == "." || hidden == "..") return Error{"bad whiteout name"};
      MOAT_TRY(clear(pfd, parent, hidden, false));
      if (mknodat(pfd, hidden.c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0)
        return sys_error("create whiteout").with_hint(
            "the store's filesystem must allow 0:0 character devices (Linux 5.8+); try --store on ext4, xfs or btrfs");
      ie.type = EntryType::Whiteout;
      ie.path = join(parent, hidden);
      ie.mode = 0;
      ie.size = 0;
      record(ie);
      return ok_status();
    }

    ie.path = join(parent, name);
    if (const char* hl = archive_entry_hardlink(e)) {
      return hardlink(pfd, parent, name, hl, std::move(ie));
    }
    mode_t ft = archive_entry_filetype(e);
    bool is_dir = ft == AE_IFDIR;
    // Files, most of the entries, are created first and cleared for only if
    // the name is taken (O_EXCL never follows or opens what is there).
    if (ft != AE_IFREG) MOAT_TRY(clear(pfd, parent, name, is_dir));
    switch (ft) {
      case AE_IFREG: {
        ie.type = EntryType::File;
        constexpr int kCreate = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
        int fd = openat(pfd, name.c_str(), kCreate, 0600);
        if (fd < 0 && errno == EEXIST) {
          MOAT_TRY(clear(pfd, parent, name, false));
          fd = openat(pfd, name.c_str(), kCreate, 0600);
        }
        if (fd < 0) return sys_error("create file");
        Fd owner(fd);
        MOAT_TRY(write_data(a, fd, ie.size));
        MOAT_TRY(finish_fd(fd, ie, false));
        record(ie);
        if (opt_.on_file) opt_.on_file(ie);
        return ok_status();
      }
      case AE_IFDIR: {
        ie.type = EntryType::Dir;
        if (mkdirat(pfd, name.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("create directory");
        struct stat st;
        if (fstatat(pfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
          return Error{"directory was replaced while unpacking"};
        // Its final mode comes after its contents are written (a 0500 dir stays writable until then).
        dir_fix_[rel] = ie;
        implicit_.erase(rel);
        break;
      }
      case AE_IFLNK: {
        ie.type = EntryType::Symlink;
        const char* target = archive_entry_symlink(e);
        ie.link = target ? target : "";
        if (ie.link.empty()) return Error{"symlink with an empty target"};
        if (ie.link.size() > opt_.limits.max_path_length) return Error{"symlink target too long"};
        if (symlinkat(ie.link.c_str(), pfd, name.c_str()) != 0) return sys_error("create symlink");
        if (opt_.chown && (ie.uid != euid_ || ie.gid != egid_))
          fchownat(pfd, name.c_str(), ie.uid, ie.gid, AT_SYMLINK_NOFOLLOW);
        struct timespec ts[2] = {{ie.mtime, 0}, {ie.mtime, 0}};
        utimensat(pfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW);
        break;
      }
      case AE_IFIFO: {
        ie.type = EntryType::Fifo;
        if (mkfifoat(pfd, name.c_str(), 0600) != 0) return sys_error("create fifo");
        // Opening a FIFO would block or read from a writer: only ever O_PATH here.
        MOAT_TRY(finish_path(pfd, name, ie));
        break;
      }
      case AE_IFCHR:
      case AE_IFBLK: {
        ie.type = ft == AE_IFCHR ? EntryType::Char : EntryType::Block;
        ie.dev_major = archive_entry_rdevmajor(e);
        ie.dev_minor = archive_entry_rdevminor(e);
        ie.size = 0;
        // Recorded, not created: an empty placeholder carries the truth in override_stat.
        int fd = openat(pfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) return sys_error("create device placeholder");
        Fd owner(fd);
        MOAT_TRY(finish_fd(fd, ie, true));
        break;
      }
      default:
        return Error{"unsupported entry type " + std::to_string(ft)};
    }
    record(ie);
    return ok_status();
  }

  // Gives directories their final attributes, deepest first.
  Status finish() {
    std::vector<std::pair<std::string, IndexEntry*>> dirs;
    for (auto& [rel, ie] : dir_fix_) dirs.emplace_back(rel, &ie);
    std::sort(dirs.begin(), dirs.end(), [](const auto& x, const auto& y) {
      auto dx = std::count(x.first.begin(), x.first.end(), '/');
      auto dy = std::count(y.first.begin(), y.first.end(), '/');
      return dx != dy ? dx > dy : x.first > y.first;
    });
    cached_.reset();
    cached_path_.clear();
    for (auto& [rel, ie] : dirs) {
      auto fd = open_beneath(root_, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      if (!fd) return std::move(fd).error().context("directory \"" + printable(rel) + "\"");
      MOAT_TRY(finish_fd(fd->get(), *ie, false));
    }
    if (root_fix_) {
      MOAT_TRY(finish_fd(root_, *root_fix_, false));
    }
    return ok_status();
  }

  std::vector<IndexEntry> take_index() {
    std::vector<IndexEntry> out;
    out.reserve(index_.size());
    for (auto& e : index_)
      if (!e.path.empty()) out.push_back(std::move(e));
    // Directories carry their final attributes (an explicit entry may come after implicit creation).
    for (auto& e : out)
      if (e.type == EntryType::Dir && e.path != "/") {
        auto it = dir_fix_.find(e.path.substr(1));
        if (it != dir_fix_.end()) e = it->second;
      }
    return out;
  }
  std::vector<IndexEntry> take_pending() { return std::move(pending_); }
  std::vector<std::string> take_implicit() {
    std::vector<std::string> out;
    for (const auto& rel : implicit_) out.push_back("/" + rel);
    return out;
  }
  uint64_t entries() const { return entries_; }

 private:
  static std::string join(const std::string& parent, const std::string& name) {
    return parent.empty() ? "/" + name : "/" + parent + "/" + name;
  }

  void record(const IndexEntry& ie) {
    // A directory and its opaque marker share a path: both are kept.
    std::string key = ie.type == EntryType::Opaque ? "\x01opaque" + ie.path : ie.path;
    auto it = pos_.find(key);
    if (it != pos_.end()) {
      index_[it->second] = ie;
    } else {
      pos_[key] = index_.size();
      index_.push_back(ie);
    }
  }

  // The directory fd for `parent`, creating missing parents as 0755 root dirs (as docker does).
  Result<int> parent_fd(const std::string& parent) {
    if (cached_.valid() && cached_path_ == parent) return cached_.get();
    cached_.reset();
    auto r = open_beneath(root_, parent, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!r) {
      if (r.error().sys_errno != ENOENT) return explain_parent(parent, r.error());
      MOAT_TRY(create_parents(parent));
      r = open_beneath(root_, parent, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      if (!r) return explain_parent(parent, r.error());
    }
    cached_ = std::move(r).value();
    cached_path_ = parent;
    return cached_.get();
  }

  // Says which component of `parent` blocked the walk: a symlink (refused, never
  // followed) or something that is not a directory.
  Error explain_parent(const std::string& parent, const Error& e) {
    if (e.sys_errno != ELOOP && e.sys_errno != EXDEV && e.sys_errno != ENOTDIR) return Error{e.message, e.sys_errno};
    Fd cur(fcntl(root_, F_DUPFD_CLOEXEC, 0));
    std::string sofar;
    for (const auto& c : split_path(parent)) {
      if (!cur.valid()) break;
      sofar += (sofar.empty() ? "" : "/") + c;
      struct stat st;
      if (fstatat(cur.get(), c.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) break;
      if (S_ISLNK(st.st_mode))
        return Error{"parent directory \"" + printable(sofar) + "\" is a symlink: refused (never followed)"};
      if (!S_ISDIR(st.st_mode)) return Error{"parent \"" + printable(sofar) + "\" is not a directory"};
      cur.reset(openat(cur.get(), c.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    }
    return Error{"parent \"" + printable(parent) + "\" cannot be used", e.sys_errno};
  }

  Status create_parents(const std::string& parent) {
    Fd cur(fcntl(root_, F_DUPFD_CLOEXEC, 0));
    std::string sofar;
    for (const auto& c : split_path(parent)) {
      sofar += (sofar.empty() ? "" : "/") + c;
      int fd = openat(cur.get(), c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT) {
        if (mkdirat(cur.get(), c.c_str(), 0700) != 0) return sys_error("create directory \"" + printable(sofar) + "\"");
        // Not in the tar: the store gives it the attributes of the lower layer's
        // directory once the lowers are present (see Store::pull), and the index
        // does not record it, since it says only what the tar said.
        IndexEntry d;
        d.path = "/" + sofar;
        d.type = EntryType::Dir;
        d.mode = 0755;
        dir_fix_[sofar] = d;
        implicit_.insert(sofar);
        fd = openat(cur.get(), c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      }
      if (fd < 0) return explain_parent(sofar, sys_error("open"));
      cur.reset(fd);
    }
    return ok_status();
  }

  // Makes room for `name`: a later entry replaces an earlier one, except that a
  // directory meeting a directory keeps its contents.
  Status clear(int pfd, const std::string& parent, const std::string& name, bool new_is_dir) {
    struct stat st;
    if (fstatat(pfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return ok_status();
      return sys_error("stat");
    }
    if (S_ISDIR(st.st_mode)) {
      if (new_is_dir) return ok_status();
      MOAT_TRY(remove_tree(pfd, name));
      std::string prefix = join(parent, name);
      for (size_t k = 0; k < index_.size(); ++k) {
        const std::string& p = index_[k].path;
        if (p == prefix || (p.size() > prefix.size() && p.compare(0, prefix.size(), prefix) == 0 && p[prefix.size()] == '/')) {
          pos_.erase(p);
          index_[k].path.clear();  // tombstone
        }
      }
      std::string rel = prefix.substr(1);
      for (auto it = dir_fix_.begin(); it != dir_fix_.end();) {
        if (it->first == rel || it->first.rfind(rel + "/", 0) == 0) {
          implicit_.erase(it->first);
          it = dir_fix_.erase(it);
        }
        else ++it;
      }
      if (cached_path_ == rel || cached_path_.rfind(rel + "/", 0) == 0) {
        cached_.reset();
        cached_path_.clear();
      }
      return ok_status();
    }
    if (unlinkat(pfd, name.c_str(), 0) != 0) return sys_error("replace existing entry");
    return ok_status();
  }

  Status write_data(archive* a, int fd, uint64_t size) {
    const void* buf;
    size_t len;
    la_int64_t off;
    uint64_t end = 0;  // past the last byte written
    for (;;) {
      int r = archive_read_data_block(a, &buf, &len, &off);
      if (r == ARCHIVE_EOF) break;
      if (r < ARCHIVE_WARN) return Error{std::string("reading file data: ") + archive_message(a)};
      const char* p = static_cast<const char*>(buf);
      while (len > 0) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0) {
          if (errno == EINTR) continue;
          return sys_error("write file");
        }
        p += n;
        off += n;
        len -= static_cast<size_t>(n);
      }
      end = std::max<uint64_t>(end, static_cast<uint64_t>(off));
    }
    // Sparse files end in a hole: give the file its full size.
    if (end != size && ftruncate(fd, static_cast<off_t>(size)) != 0) return sys_error("set file size");
    return ok_status();
  }

  // Owner, xattrs, mode and time, in the order that keeps each: chown clears
  // setuid and file capabilities, and a read-only mode would forbid xattrs.
  Status finish_fd(int fd, const IndexEntry& ie, bool device) {
    bool chowned = false;
    if (opt_.chown) {
      // What we create is ours (no parent is setgid while we unpack: directories
      // get their modes last): skip a chown that would change nothing.
      chowned = (ie.uid == euid_ && ie.gid == egid_) || fchown(fd, ie.uid, ie.gid) == 0;
      if (!chowned) chown_failed_ = true;
    }
    for (const auto& [n, v] : ie.xattrs) {
      // user.* as written; security.capability only where we may (root); others are recorded only.
      if (n.rfind("user.", 0) == 0 || n == "security.capability") fsetxattr(fd, n.c_str(), v.data(), v.size(), 0);
    }
    if (device || !chowned) {
      if (device || ie.uid != 0 || ie.gid != 0) {
        std::string ov = override_stat_value(ie);
        if (fsetxattr(fd, "user.containers.override_stat", ov.data(), ov.size(), 0) != 0 && errno != ENOTSUP)
          return sys_error("record override_stat");
      }
    }
    if (fchmod(fd, device ? 0 : static_cast<mode_t>(ie.mode)) != 0) return sys_error("chmod");
    struct timespec ts[2] = {{ie.mtime, 0}, {ie.mtime, 0}};
    futimens(fd, ts);
    return ok_status();
  }

  Status finish_path(int pfd, const std::string& name, const IndexEntry& ie) {
    if (opt_.chown) fchownat(pfd, name.c_str(), ie.uid, ie.gid, AT_SYMLINK_NOFOLLOW);
    if (fchmodat(pfd, name.c_str(), ie.mode, 0) != 0) return sys_error("chmod");
    struct timespec ts[2] = {{ie.mtime, 0}, {ie.mtime, 0}};
    utimensat(pfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW);
    return ok_status();
  }

  Status hardlink(int pfd, const std::string& parent, const std::string& name, const std::string& target_raw,
                  IndexEntry ie) {
    if (!target_raw.empty() && target_raw[0] == '/') return Error{"hardlink to an absolute path refused"};
    std::string target;
    if (!normalize_relative(target_raw, target) || target.empty())
      return Error{"hardlink to \"" + printable(target_raw) + "\" leaves the layer: refused"};
    ie.type = EntryType::Hardlink;
    ie.link = "/" + target;
    size_t slash = target.rfind('/');
    std::string tparent = slash == std::string::npos ? "" : target.substr(0, slash);
    std::string tname = slash == std::string::npos ? target : target.substr(slash + 1);
    auto tfd = open_beneath(root_, tparent, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    struct stat st;
    bool here = tfd.ok() && fstatat(tfd->get(), tname.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (!tfd.ok() && tfd.error().sys_errno != ENOENT) return explain_parent(tparent, tfd.error());
    if (here && S_ISDIR(st.st_mode)) return Error{"hardlink to a directory refused"};
    if (ie.path == ie.link) return Error{"hardlink to itself"};
    MOAT_TRY(clear(pfd, parent, name, false));
    if (!here) {
      // The target is in a lower layer: the store copies it in once the lowers are present.
      pending_.push_back(ie);
      record(ie);
      return ok_status();
    }
    if (linkat(tfd->get(), tname.c_str(), pfd, name.c_str(), 0) != 0) return sys_error("create hardlink");
    // A hardlink shares its target's inode: the index says what that inode is,
    // whatever the link's own header claims.
    if (auto it = pos_.find(ie.link); it != pos_.end()) {
      const IndexEntry& t = index_[it->second];
      ie.mode = t.mode;
      ie.uid = t.uid;
      ie.gid = t.gid;
      ie.size = t.size;
      ie.mtime = t.mtime;
      ie.xattrs = t.xattrs;
    }
    record(ie);
    return ok_status();
  }

  int root_;
  const UnpackOptions& opt_;
  uid_t euid_;  // the owner of what we create
  gid_t egid_;
  uint64_t entries_ = 0;
  bool chown_failed_ = false;
  std::vector<IndexEntry> index_;
  std::unordered_map<std::string, size_t> pos_;
  std::map<std::string, IndexEntry> dir_fix_;
  std::optional<IndexEntry> root_fix_;
  std::vector<IndexEntry> pending_;
  std::set<std::string> implicit_;  // parents created because the tar had no entry for them
  Fd cached_;
  std::string cached_path_;
};

}  // namespace

std::string gzip_inflater() {
#ifdef MOAT_HAVE_ISAL
  return std::string("ISA-L igzip ") + MOAT_ISAL_VERSION;
#else
  return std::string("zlib ") + zlibVersion();
#endif
}

Result<UnpackResult> unpack_layer(Reader& blob, const LayerDesc& expect, int diff_dirfd, const UnpackOptions& opt) {
  Pipeline pipe(blob, expect.compression, opt);
  MOAT_TRY(pipe.start());
  PipeClient client{&pipe, std::nullopt};
  std::unique_ptr<archive, ArchiveDeleter> a(archive_read_new());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  if (archive_read_open(a.get(), &client, nullptr, pipe_read, nullptr) != ARCHIVE_OK) {
    if (client.err) return *client.err;
    return Error{std::string("not a tar archive: ") + archive_message(a.get())};
  }
  EntryWriter w(diff_dirfd, opt);
  archive_entry* e;
  uint64_t n = 0;
  for (;;) {
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      if (client.err) return std::move(*client.err).context("after entry " + std::to_string(n));
      return Error{"tar data is damaged after entry " + std::to_string(n) + ": " + archive_message(a.get())};
    }
    ++n;
    const char* p = archive_entry_pathname(e);
    std::string name = p ? p : "";
    Status st = w.apply(a.get(), e, name);
    if (!st) {
      if (client.err) return std::move(*client.err).context("entry \"" + printable(name) + "\"");
      return std::move(st).error().context("entry \"" + printable(name) + "\"");
    }
  }
  MOAT_TRY(pipe.drain());
  MOAT_TRY(w.finish());
  UnpackResult res;
  res.blob_digest = pipe.blob_digest();
  res.diff_id = pipe.diff_id();
  res.blob_size = pipe.blob_size();
  res.tar_size = pipe.tar_size();
  res.compression = pipe.compression();
  res.entries = w.entries();
  if (!expect.stream_is_tar && !expect.blob_digest.empty() && res.blob_digest != expect.blob_digest)
    return Error{"blob does not match its digest " + expect.blob_digest + " (got " + res.blob_digest + ")"}.with_hint(
        "the image was altered or damaged; fetch it again from a trusted source");
  if (expect.size >= 0 && res.blob_size != static_cast<uint64_t>(expect.size))
    return Error{"blob is " + std::to_string(res.blob_size) + " bytes, the manifest says " + std::to_string(expect.size)};
  if (!expect.diff_id.empty() && res.diff_id != expect.diff_id)
    return Error{"content does not match diff_id " + expect.diff_id + " from the config (got " + res.diff_id + ")"}
        .with_hint("the image was altered or damaged; fetch it again from a trusted source");
  res.index = w.take_index();
  res.pending_links = w.take_pending();
  res.implicit_dirs = w.take_implicit();
  return res;
}

Result<UnpackResult> import_rootfs(const std::string& path, int diff_dirfd, const UnpackOptions& opt) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_disk_new(), archive_read_free);
  archive_read_disk_set_symlink_physical(a.get());
  // No owner-name lookups: the host's user database says nothing about the tree.
  if (archive_read_disk_open(a.get(), path.c_str()) != ARCHIVE_OK)
    return Error{"cannot read " + path + ": " + archive_message(a.get())};
  EntryWriter w(diff_dirfd, opt);
  Sha256 content;
  std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(), archive_entry_free);
  std::unique_ptr<archive_entry_linkresolver, decltype(&archive_entry_linkresolver_free)> links(
      archive_entry_linkresolver_new(), archive_entry_linkresolver_free);
  // Tar's strategy: the first name carries the data, later names link to it (never deferred).
  archive_entry_linkresolver_set_strategy(links.get(), ARCHIVE_FORMAT_TAR_PAX_RESTRICTED);
  for (;;) {
    archive_entry_clear(e.get());
    int r = archive_read_next_header2(a.get(), e.get());
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return Error{"reading " + path + ": " + archive_message(a.get())};
    const char* p = archive_entry_pathname(e.get());
    std::string full = p ? p : "";
    std::string rel = full.size() > path.size() ? full.substr(path.size()) : "";
    while (!rel.empty() && rel[0] == '/') rel.erase(0, 1);
    archive_read_disk_descend(a.get());
    // The disk reader reports every name of a multiply-linked file as a file:
    // the resolver turns the second and later names into hardlinks to the first.
    archive_entry* linked = e.get();
    archive_entry* spare = nullptr;
    archive_entry_linkify(links.get(), &linked, &spare);
    // The disk reader names hardlinks by full path; make them relative to the tree.
    if (const char* hl = archive_entry_hardlink(e.get())) {
      std::string h = hl;
      if (h.rfind(path, 0) == 0) h = h.substr(path.size());
      while (!h.empty() && h[0] == '/') h.erase(0, 1);
      archive_entry_copy_hardlink(e.get(), h.c_str());
    }
    std::string line = rel + "\t" + std::to_string(archive_entry_mode(e.get())) + "\t" +
                       std::to_string(archive_entry_uid(e.get())) + ":" + std::to_string(archive_entry_gid(e.get())) +
                       "\t" + std::to_string(archive_entry_size(e.get())) + "\n";
    content.update(line.data(), line.size());
    Status st = w.apply(a.get(), e.get(), rel);
    if (!st) return std::move(st).error().context("\"" + printable(rel) + "\"");
  }
  MOAT_TRY(w.finish());
  UnpackResult res;
  res.index = w.take_index();
  res.pending_links = w.take_pending();
  res.entries = w.entries();
  // Content digest: entry metadata plus each file's sha256, hashed from the written copy.
  for (const auto& ie : res.index) {
    if (ie.type != EntryType::File) continue;
    auto fd = open_beneath(diff_dirfd, ie.path.substr(1), O_RDONLY | O_NOFOLLOW);
    if (!fd) continue;
    Sha256 f;
    char buf[1 << 16];
    ssize_t n;
    while ((n = ::read(fd->get(), buf, sizeof buf)) > 0) f.update(buf, static_cast<size_t>(n));
    std::string d = f.finish();
    content.update(d.data(), d.size());
    res.tar_size += ie.size;
  }
  res.diff_id = content.finish();
  res.blob_digest = res.diff_id;
  return res;
}

// Rootless, a lower layer's file may deny its own owner: a 0000 /etc/shadow, or
// a file under a 0000/0500 directory (the unpacker owns them all, but without
// CAP_DAC_OVERRIDE the modes apply). Opens such a file by adding the owner's
// read (and search, for directories) bits along the path for the moment of the
// open, then puts every mode back. Only entries the caller owns are touched,
// never through a symlink (each component is checked with AT_SYMLINK_NOFOLLOW).
static Result<Fd> open_lower_owned(int src_root, const std::string& rel) {
  struct Undo {
    Fd dir;
    std::string name;
    mode_t mode;
  };
  std::vector<Undo> undo;
  Fd cur(fcntl(src_root, F_DUPFD_CLOEXEC, 0));
  std::vector<std::string> parts = split_path(rel);
  for (size_t k = 0; k < parts.size() && cur.valid(); ++k) {
    const std::string& c = parts[k];
    bool last = k + 1 == parts.size();
    struct stat st;
    if (fstatat(cur.get(), c.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) break;
    mode_t need = last ? S_IRUSR : (S_IRUSR | S_IXUSR);
    bool kind_ok = last ? S_ISREG(st.st_mode) : S_ISDIR(st.st_mode);
    if (!kind_ok) break;
    if (st.st_uid == geteuid() && (st.st_mode & need) != need &&
        fchmodat(cur.get(), c.c_str(), (st.st_mode & 07777) | need, 0) == 0)
      undo.push_back({Fd(fcntl(cur.get(), F_DUPFD_CLOEXEC, 0)), c, static_cast<mode_t>(st.st_mode & 07777)});
    if (last) break;
    cur.reset(openat(cur.get(), c.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  }
  auto r = open_beneath(src_root, rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  for (auto it = undo.rbegin(); it != undo.rend(); ++it) fchmodat(it->dir.get(), it->name.c_str(), it->mode, 0);
  return r;
}

Status apply_lower_dir(int root, const std::string& path, const IndexEntry& lower, bool chown) {
  MOAT_ASSIGN_OR_RETURN(Fd fd, open_beneath(root, path.substr(1), O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
  bool chowned = chown && fchown(fd.get(), lower.uid, lower.gid) == 0;
  if (!chowned && (lower.uid != 0 || lower.gid != 0)) {
    std::string ov = override_stat_value(lower);
    if (fsetxattr(fd.get(), "user.containers.override_stat", ov.data(), ov.size(), 0) != 0 && errno != ENOTSUP)
      return sys_error("record override_stat");
  }
  if (fchmod(fd.get(), lower.mode) != 0) return sys_error("chmod");
  struct timespec ts[2] = {{lower.mtime, 0}, {lower.mtime, 0}};
  futimens(fd.get(), ts);
  return ok_status();
}

Status copy_from_lower(int dst_root, const IndexEntry& link, int src_root, const IndexEntry& src, bool chown) {
  std::string rel = link.path.substr(1);
  size_t slash = rel.rfind('/');
  std::string parent = slash == std::string::npos ? "" : rel.substr(0, slash);
  std::string name = slash == std::string::npos ? rel : rel.substr(slash + 1);
  MOAT_ASSIGN_OR_RETURN(Fd pfd, open_beneath(dst_root, parent, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
  auto opened = open_beneath(src_root, src.path.substr(1), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (!opened && opened.error().sys_errno == EACCES) opened = open_lower_owned(src_root, src.path.substr(1));
  MOAT_ASSIGN_OR_RETURN(Fd in, std::move(opened));
  struct stat st;
  if (fstat(in.get(), &st) != 0 || !S_ISREG(st.st_mode)) return Error{"hardlink target is not a regular file"};
  int out = openat(pfd.get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0) return sys_error("create copy of hardlink target");
  Fd owner(out);
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(in.get(), buf, sizeof buf);
    if (n < 0) return sys_error("read hardlink target");
    if (n == 0) break;
    if (::write(out, buf, static_cast<size_t>(n)) != n) return sys_error("write copy");
  }
  if (chown) fchown(out, src.uid, src.gid);
  if (!chown && (src.uid != 0 || src.gid != 0)) {
    std::string ov = override_stat_value(src);
    fsetxattr(out, "user.containers.override_stat", ov.data(), ov.size(), 0);
  }
  for (const auto& [n, v] : src.xattrs)
    if (n.rfind("user.", 0) == 0 || n == "security.capability") fsetxattr(out, n.c_str(), v.data(), v.size(), 0);
  fchmod(out, src.mode);
  struct timespec ts[2] = {{src.mtime, 0}, {src.mtime, 0}};  // the image's time, as for every other file
  futimens(out, ts);
  return ok_status();
}

}  // namespace moat
