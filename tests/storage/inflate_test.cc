// gzip layer inflate (storage/unpack.cc, ISA-L igzip or zlib, whichever the
// build uses): several gzip members are one stream, a member may end anywhere
// in a read (down to one byte before the next member's magic), and a bad
// CRC-32, a bad length, a truncated member or a damaged header are errors,
// while zero padding after the last member is hashed but not unpacked.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "storage/digest.h"
#include "storage/fd.h"
#include "storage/fsutil.h"
#include "storage/image.h"
#include "storage/unpack.h"

namespace moat {
namespace {

// A tar of `files` regular files with pseudo-random, compressible content.
std::string make_tar(int files, size_t size) {
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
  std::mt19937 rng(7);
  for (int i = 0; i < files; ++i) {
    std::string data;
    while (data.size() < size) data += "line " + std::to_string(rng() % 1000) + " of file " + std::to_string(i) + "\n";
    data.resize(size);
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, ("f" + std::to_string(i)).c_str());
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

}  // namespace
}  // namespace moat
