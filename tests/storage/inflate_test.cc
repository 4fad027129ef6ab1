// gzip layer inflate (storage/unpack.cc, ISA-L igzip or zlib, whichever the
// build uses): several gzip members are one stream, a member may end anywhere
// in a read (down to one byte before the next member's magic), and a bad
// CRC-32, a bad length, a truncated member or a damaged header are errors,
// while zero padding after the last member is hashed but not unpacked.
// Pipeline.*: the threads around the tar reader (producer, hasher, reader) on
// layers bigger than their ring, a reader that stops early, and producer
// errors arriving after the bytes before them.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "storage/digest.h"
#include "storage/fd.h"
#include "storage/fsutil.h"
#include "storage/image.h"
#include "storage/unpack.h"

namespace moat {
namespace {

// A pax tar of regular files (name, content), mode 0644.
std::string write_tar(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_open(
      a, &out, nullptr,
      [](archive*, void* c, const void* b, size_t n) -> la_ssize_t {
        static_cast<std::string*>(c)->append(static_cast<const char*>(b), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
  for (const auto& [name, data] : files) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
    archive_write_header(a, e);
    archive_write_data(a, data.data(), data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

// A tar of `files` regular files with pseudo-random, compressible content.
std::string make_tar(int files, size_t size) {
  std::mt19937 rng(7);
  std::vector<std::pair<std::string, std::string>> entries;
  for (int i = 0; i < files; ++i) {
    std::string data;
    while (data.size() < size) data += "line " + std::to_string(rng() % 1000) + " of file " + std::to_string(i) + "\n";
    data.resize(size);
    entries.emplace_back("f" + std::to_string(i), std::move(data));
  }
  return write_tar(entries);
}

// One gzip member of `data` (zlib's deflate with a gzip wrapper).
std::string gzip_member(std::string_view data) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, data.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// Hands out the blob in reads of 1 to `max` bytes, so member ends fall at
// every position of a read.
class ChoppyReader : public Reader {
 public:
  ChoppyReader(std::string data, size_t max) : data_(std::move(data)), max_(max) {}
  Result<size_t> read(char* buf, size_t n) override {
    size_t k = std::min({n, data_.size() - pos_, size_t{1} + rng_() % max_});
    std::memcpy(buf, data_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  std::string data_;
  size_t max_;
  size_t pos_ = 0;
  std::mt19937 rng_{3};
};

struct TempDir {
  std::string path;
  Fd fd;
  TempDir() {
    char t[] = "/tmp/moat-inflate-XXXXXX";
    path = mkdtemp(t);
    fd = Fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  ~TempDir() {
    fd.reset();
    std::string cmd = "rm -rf '" + path + "'";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
  }
};

Result<UnpackResult> unpack(const std::string& blob, const std::string& tar, size_t max_read) {
  TempDir d;
  ChoppyReader r(blob, max_read);
  LayerDesc desc;
  desc.compression = Compression::Gzip;
  desc.diff_id = sha256_digest(tar);
  return unpack_layer(r, desc, d.fd.get(), UnpackOptions{});
}

// Splits `tar` into `n` gzip members.
std::string members(const std::string& tar, int n) {
  std::string blob;
  size_t step = tar.size() / static_cast<size_t>(n) + 1;
  for (size_t off = 0; off < tar.size(); off += step) blob += gzip_member(std::string_view(tar).substr(off, step));
  return blob;
}

TEST(Inflate, ReportsItsLibrary) {
  std::string name = gzip_inflater();
  EXPECT_TRUE(name.starts_with("ISA-L igzip ") || name.starts_with("zlib ")) << name;
}

TEST(Inflate, MultiMemberBlobInAnyReadSizes) {
  const std::string tar = make_tar(40, 20000);
  for (int n : {1, 2, 7}) {
    const std::string blob = members(tar, n);
    for (size_t max_read : {size_t{3}, size_t{61}, size_t{1} << 20}) {
      auto r = unpack(blob, tar, max_read);
      ASSERT_TRUE(r.ok()) << n << " members, reads up to " << max_read << ": " << r.error().describe();
      EXPECT_EQ(r->tar_size, tar.size());
      EXPECT_EQ(r->blob_size, blob.size());
      EXPECT_EQ(r->blob_digest, sha256_digest(blob));
      EXPECT_EQ(r->entries, 40u);
    }
  }
}

TEST(Inflate, ZeroPaddingAfterTheLastMemberIsIgnored) {
  const std::string tar = make_tar(3, 5000);
  const std::string blob = members(tar, 2) + std::string(1000, '\0');
  auto r = unpack(blob, tar, 4096);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->blob_size, blob.size());
}

TEST(Inflate, BadTrailersAndTruncationAreErrors) {
  const std::string tar = make_tar(10, 30000);
  const std::string first = gzip_member(std::string_view(tar).substr(0, tar.size() / 2));
  const std::string second = gzip_member(std::string_view(tar).substr(tar.size() / 2));
  struct Case {
    const char* what;
    std::string blob;
  };
  std::string bad_crc = first, bad_len = first, bad_header = first;
  bad_crc[bad_crc.size() - 8] ^= 0x01;   // CRC-32 of the first member
  bad_len[bad_len.size() - 1] ^= 0x01;   // ISIZE of the first member
  bad_header[2] = 7;                     // compression method 7 is not deflate
  std::vector<Case> cases = {
      {"bad CRC-32", bad_crc + second},
      {"bad ISIZE", bad_len + second},
      {"bad header", bad_header + second},
      {"truncated", first + second.substr(0, second.size() - 5)},
  };
  for (const auto& c : cases)
    for (size_t max_read : {size_t{5}, size_t{1} << 20}) {
      auto r = unpack(c.blob, tar, max_read);
      EXPECT_FALSE(r.ok()) << c.what << ", reads up to " << max_read;
    }
}

// ---- the pipeline around the tar reader (producer, hasher and reader threads) ----

// A tar of the named regular files, each `size` bytes of compressible text;
// `contents` receives them in order.
std::string make_named_tar(const std::vector<std::string>& names, size_t size, std::vector<std::string>* contents) {
  std::mt19937 rng(11);
  std::vector<std::pair<std::string, std::string>> entries;
  for (const auto& name : names) {
    std::string data;
    while (data.size() < size) data += "row " + std::to_string(rng() % 100000) + " of " + name + "\n";
    data.resize(size);
    if (contents) contents->push_back(data);
    entries.emplace_back(name, std::move(data));
  }
  return write_tar(entries);
}

std::vector<std::string> numbered(int n) {
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) names.push_back("big" + std::to_string(i));
  return names;
}

std::string zstd_frame(const std::string& data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Result<UnpackResult> unpack_into(const TempDir& d, const std::string& blob, Compression c, const std::string& tar,
                                 size_t max_read, const UnpackOptions& opt = {}) {
  ChoppyReader r(blob, max_read);
  LayerDesc desc;
  desc.compression = c;
  desc.diff_id = sha256_digest(tar);
  desc.blob_digest = sha256_digest(blob);
  desc.size = static_cast<int64_t>(blob.size());
  return unpack_layer(r, desc, d.fd.get(), opt);
}

// Many more bytes than the ring holds (4 chunks of 1 MiB): every compression,
// reads of any size; the digests, sizes and every file's bytes come out whole.
TEST(Pipeline, LayersLargerThanTheRingArriveWhole) {
  std::vector<std::string> contents;
  const std::string tar = make_named_tar(numbered(12), (1 << 20) + 333, &contents);
  struct Case {
    const char* what;
    Compression c;
    std::string blob;
  };
  std::vector<Case> cases = {{"gzip", Compression::Gzip, members(tar, 3)},
                             {"zstd", Compression::Zstd, zstd_frame(tar)},
                             {"uncompressed", Compression::None, tar}};
  for (const auto& c : cases)
    for (size_t max_read : {size_t{4093}, size_t{3} << 20}) {
      TempDir d;
      auto r = unpack_into(d, c.blob, c.c, tar, max_read);
      ASSERT_TRUE(r.ok()) << c.what << ", reads up to " << max_read << ": " << r.error().describe();
      EXPECT_EQ(r->tar_size, tar.size()) << c.what;
      EXPECT_EQ(r->blob_size, c.blob.size()) << c.what;
      EXPECT_EQ(r->blob_digest, sha256_digest(c.blob)) << c.what;
      EXPECT_EQ(r->diff_id, sha256_digest(tar)) << c.what;
      EXPECT_EQ(r->entries, 12u) << c.what;
      for (size_t i = 0; i < contents.size(); ++i)
        ASSERT_EQ(slurp(d.path + "/big" + std::to_string(i)), contents[i]) << c.what << ", file " << i;
    }
}

// A bad entry at the start of a big layer: the reader stops while the
// producer waits for a free slot. The error names the entry, the call returns
// (no thread left waiting) and nothing escapes the layer directory.
TEST(Pipeline, BadEntryWhileTheRingIsFullStopsCleanly) {
  std::vector<std::string> names = {"../escape"};
  for (const auto& n : numbered(10)) names.push_back(n);
  const std::string tar = make_named_tar(names, 1 << 20, nullptr);
  for (Compression c : {Compression::Gzip, Compression::None}) {
    TempDir d;
    auto r = unpack_into(d, c == Compression::Gzip ? members(tar, 1) : tar, c, tar, 1 << 16);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("\"../escape\""), std::string::npos) << r.error().describe();
    EXPECT_NE(r.error().message.find(".."), std::string::npos) << r.error().describe();
    struct stat st;
    EXPECT_NE(lstat((d.path + "/../escape").c_str(), &st), 0);
  }
}

// Errors found by the producer after many chunks reach the reader after the
// bytes before them: a truncated stream, the image's size budget and a
// sibling layer's cancel each fail the unpack with their own message.
TEST(Pipeline, ProducerErrorsArriveAfterTheBytesBeforeThem) {
  constexpr size_t kFile = 256 << 10;  // a quarter of a chunk: a lost chunk would show
  const std::string tar = make_named_tar(numbered(36), kFile, nullptr);
  const std::string blob = members(tar, 1);
  {
    const std::string cut = blob.substr(0, blob.size() * 3 / 4);
    // How much tar the cut blob still holds, and so the entry it ends in
    // (each entry: a 512-byte header and its data).
    z_stream z{};
    ASSERT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
    std::string sink(tar.size(), '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(cut.data()));
    z.avail_in = static_cast<uInt>(cut.size());
    z.next_out = reinterpret_cast<Bytef*>(sink.data());
    z.avail_out = static_cast<uInt>(sink.size());
    inflate(&z, Z_SYNC_FLUSH);
    size_t whole = z.total_out;
    inflateEnd(&z);
    size_t k = whole / (512 + kFile);
    TempDir d;
    auto r = unpack_into(d, cut, Compression::Gzip, tar, 1 << 20);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("truncated"), std::string::npos) << r.error().describe();
    EXPECT_NE(r.error().message.find("entry \"big" + std::to_string(k) + "\""), std::string::npos)
        << "the cut is in entry " << k << ": " << r.error().describe();
    // Everything before the cut was written: the files before that entry are whole.
    struct stat st;
    ASSERT_EQ(stat((d.path + "/big" + std::to_string(k - 1)).c_str(), &st), 0);
    EXPECT_EQ(static_cast<size_t>(st.st_size), kFile);
  }
  {
    TempDir d;
    std::atomic<uint64_t> image_bytes{0};
    UnpackOptions opt;
    opt.image_bytes = &image_bytes;
    opt.limits.max_image_bytes = 5 << 20;
    auto r = unpack_into(d, blob, Compression::Gzip, tar, 1 << 20, opt);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("passes the limit"), std::string::npos) << r.error().describe();
  }
  {
    TempDir d;
    std::atomic<bool> cancel{true};
    UnpackOptions opt;
    opt.cancel = &cancel;
    auto r = unpack_into(d, blob, Compression::Gzip, tar, 1 << 20, opt);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("cancelled"), std::string::npos) << r.error().describe();
  }
}

}  // namespace
}  // namespace moat
