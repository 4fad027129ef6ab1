// Micro benchmarks for the hot paths of getting a layer in: SHA-256 (every
// blob is hashed twice, compressed and uncompressed), the metadata index
// (written once per layer, read by every scan) and unpack_layer() itself on an
// in-memory gzip tar.
//
// The unpack family is split so a regression can be placed: BM_Inflate is
// zlib alone over the same blob, BM_ArchiveParse adds libarchive's tar reader
// (data read, not written), and BM_UnpackLayer is the whole pipeline with
// both digests and the files written to disk. The difference between
// neighbours is what each stage costs.
//
// These are measurements, never ctest assertions. Run:
//   build-bench/benchmarks/moat_bench                       # all
//   build-bench/benchmarks/moat_bench --benchmark_filter=Unpack
// MOAT_BENCH_TMP picks where layers are unpacked (default /dev/shm, else /tmp):
// tmpfs keeps filesystem quirks out (a journal-less ext4, for one, makes
// re-creating just-deleted files slow; see README.md) and leaves moat's own
// cost plus the kernel's VFS and page cache work.
#include <archive.h>
#include <archive_entry.h>
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "storage/digest.h"
#include "storage/fd.h"
#include "storage/fsutil.h"
#include "storage/image.h"
#include "storage/layer_index.h"
#include "storage/tree.h"
#include "storage/unpack.h"

namespace {

// ---- deterministic test data -------------------------------------------------

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed ? seed : 1) {}
  uint64_t next() {
    s_ ^= s_ << 13;
    s_ ^= s_ >> 7;
    s_ ^= s_ << 17;
    return s_;
  }

 private:
  uint64_t s_;
};

// Text-like bytes that gzip -6 shrinks about 3x, as it does real /usr content.
std::string make_data(size_t n, uint64_t seed) {
  static const char* const kWords[] = {
      "lib",   "usr",    "share", "the",   "config", "moat",  "layer", "0x7f",  "ELF",  "\x00\x00\x00\x00",
      "data",  "struct", "int",   "void",  "return", "if",    "else",  "static", "const", "\n",
      "sha256", "digest", "file",  "path", "mode",   "owner", "group", "entry", "tar",   "gzip"};
  constexpr size_t kNumWords = sizeof kWords / sizeof kWords[0];
  Rng r(seed);
  std::string s;
  s.reserve(n + 16);
  while (s.size() < n) {
    uint64_t x = r.next();
    const char* w = kWords[x % kNumWords];
    // The one word with NULs is written by length, the others as C strings.
    s.append(w, x % kNumWords == 9 ? 4 : std::strlen(w));
    if ((x >> 32) % 5 == 0) s.push_back(static_cast<char>('A' + (x >> 40) % 26));
    if ((x >> 48) % 9 == 0) s.push_back(' ');
  }
  s.resize(n);
  return s;
}

// ---- SHA-256 -----------------------------------------------------------------

void BM_Sha256(benchmark::State& state) {
  const size_t chunk = static_cast<size_t>(state.range(0));
  const std::string data = make_data(8u << 20, 1);
  for (auto _ : state) {
    moat::Sha256 h;
    for (size_t off = 0; off < data.size(); off += chunk) h.update(data.data() + off, std::min(chunk, data.size() - off));
    std::string d = h.finish();
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(data.size()));
}
// 4 KiB: a small tar entry; 128 KiB: moat's read size (kInBuf); 256 KiB: its inflate output (kOutBuf).
BENCHMARK(BM_Sha256)->Arg(4 << 10)->Arg(128 << 10)->Arg(256 << 10)->Unit(benchmark::kMillisecond);

// ---- the metadata index ------------------------------------------------------

std::vector<moat::IndexEntry> make_entries(size_t n) {
  std::vector<moat::IndexEntry> v;
  v.reserve(n);
  Rng r(7);
  for (size_t i = 0; i < n; ++i) {
    moat::IndexEntry e;
    e.path = "/usr/lib/x86_64-linux-gnu/pkg";
    e.path += std::to_string(i / 50);
    e.path += "/file-";
    e.path += std::to_string(i);
    switch (i % 10) {
      case 0:
        e.type = moat::EntryType::Dir;
        e.mode = 0755;
        break;
      case 1:
        e.type = moat::EntryType::Symlink;
        e.mode = 0777;
        e.link = "../lib/libexample.so.1.2.3";
        break;
      case 2:  // names with bytes that need escaping
        e.path += "\twith tab\\and backslash";
        e.mode = 0644;
        break;
      case 3:  // a file capability, as on /usr/bin/ping
        e.mode = 0755;
        e.xattrs.emplace_back("security.capability", std::string("\x01\x00\x00\x02\x00\x20\x00\x00", 8));
        break;
      default:
        e.mode = (i % 97 == 0) ? 04755 : 0644;
        break;
    }
    e.uid = (i % 13 == 0) ? 1000 : 0;
    e.gid = e.uid;
    e.size = r.next() % (1 << 20);
    e.mtime = 1700000000 + static_cast<int64_t>(i);
    v.push_back(std::move(e));
  }
  return v;
}

void BM_SerializeIndex(benchmark::State& state) {
  const auto entries = make_entries(static_cast<size_t>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string s = moat::serialize_index(entries);
    bytes = s.size();
    benchmark::DoNotOptimize(s);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_SerializeIndex)->Arg(1000)->Arg(100000)->Unit(benchmark::kMillisecond);

void BM_ParseIndexLine(benchmark::State& state) {
  const std::string text = moat::serialize_index(make_entries(static_cast<size_t>(state.range(0))));
  std::vector<std::string_view> lines;
  for (size_t pos = text.find('\n') + 1; pos < text.size();) {  // skip the header line
    size_t end = text.find('\n', pos);
    lines.emplace_back(text.data() + pos, end - pos);
    pos = end + 1;
  }
  for (auto _ : state) {
    for (auto l : lines) {
      auto e = moat::parse_index_line(l);
      if (!e.ok()) {
        state.SkipWithError("parse_index_line failed");
        return;
      }
      benchmark::DoNotOptimize(e);
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * lines.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_ParseIndexLine)->Arg(1000)->Arg(100000)->Unit(benchmark::kMillisecond);

// ---- an in-memory gzip layer -------------------------------------------------

struct Layer {
  std::string tar, gz;
  moat::LayerDesc desc;
  size_t files = 0;
};

la_ssize_t append_cb(archive*, void* client, const void* buf, size_t n) {
  static_cast<std::string*>(client)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

std::string gzip6(const std::string& in) {
  z_stream z{};
  if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) throw std::runtime_error("deflateInit2");
  std::string out(deflateBound(&z, static_cast<uLong>(in.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("deflate");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// `files` regular files of `file_size` bytes in directories of 100, with a
// symlink and a hardlink every 100 files: the shape of a /usr tree.
Layer make_layer(size_t files, size_t file_size) {
  Layer l;
  l.files = files;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open(a, &l.tar, nullptr, append_cb, nullptr);
  archive_entry* e = archive_entry_new();
  auto header = [&](const std::string& path, mode_t type, mode_t perm, int64_t size) {
    archive_entry_clear(e);
    archive_entry_set_pathname(e, path.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, perm);
    archive_entry_set_size(e, size);
    archive_entry_set_mtime(e, 1700000000, 0);
  };
  std::string dir;
  for (size_t i = 0; i < files; ++i) {
    if (i % 100 == 0) {
      dir = "usr/lib/d";
      dir += std::to_string(i / 100);
      header(dir, AE_IFDIR, 0755, 0);
      archive_write_header(a, e);
    }
    std::string path = dir;
    path += "/f";
    path += std::to_string(i);
    const std::string data = make_data(file_size, i + 1);
    header(path, AE_IFREG, 0644, static_cast<int64_t>(data.size()));
    archive_write_header(a, e);
    archive_write_data(a, data.data(), data.size());
    if (i % 100 == 1) {
      std::string link = path;
      link += ".so";
      header(link, AE_IFLNK, 0777, 0);
      archive_entry_set_symlink(e, "f1");
      archive_write_header(a, e);
      std::string hard = path;
      hard += ".hard";
      header(hard, AE_IFREG, 0644, 0);
      archive_entry_set_hardlink(e, path.c_str());
      archive_write_header(a, e);
    }
  }
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  l.gz = gzip6(l.tar);
  l.desc.compression = moat::Compression::Gzip;
  l.desc.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
  l.desc.blob_digest = moat::sha256_digest(l.gz);
  l.desc.diff_id = moat::sha256_digest(l.tar);
  l.desc.size = static_cast<int64_t>(l.gz.size());
  return l;
}

// A Reader over a buffer, handing out at most what the caller asks for.
class MemReader : public moat::Reader {
 public:
  explicit MemReader(std::string_view data) : data_(data) {}
  moat::Result<size_t> read(char* buf, size_t n) override {
    size_t k = std::min(n, data_.size() - pos_);
    std::memcpy(buf, data_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

const Layer& layer_for(int64_t files, int64_t file_size) {
  // Built once per shape and kept: every benchmark of a shape sees the same bytes.
  static std::map<std::pair<int64_t, int64_t>, Layer> cache;
  auto key = std::make_pair(files, file_size);
  auto it = cache.find(key);
  if (it == cache.end())
    it = cache.emplace(key, make_layer(static_cast<size_t>(files), static_cast<size_t>(file_size))).first;
  return it->second;
}

void set_counters(benchmark::State& state, const Layer& l) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * l.tar.size()));  // uncompressed bytes
  state.counters["files/s"] = benchmark::Counter(static_cast<double>(state.iterations() * l.files),
                                                 benchmark::Counter::kIsRate);
  state.counters["ratio"] = static_cast<double>(l.tar.size()) / static_cast<double>(l.gz.size());
}

// zlib inflate alone over the blob, in moat's buffer sizes.
void BM_Inflate(benchmark::State& state) {
  const Layer& l = layer_for(state.range(0), state.range(1));
  std::vector<char> out(1 << 18);
  for (auto _ : state) {
    z_stream z{};
    inflateInit2(&z, 15 + 16);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(l.gz.data()));
    z.avail_in = static_cast<uInt>(l.gz.size());
    int r = Z_OK;
    while (r == Z_OK) {
      z.next_out = reinterpret_cast<Bytef*>(out.data());
      z.avail_out = static_cast<uInt>(out.size());
      r = inflate(&z, Z_NO_FLUSH);
    }
    if (r != Z_STREAM_END) state.SkipWithError("inflate failed");
    inflateEnd(&z);
  }
  set_counters(state, l);
}

// libarchive's gzip+tar reader over the blob, reading every file's data and
// writing nothing: the floor for any libarchive-based unpacker.
void BM_ArchiveParse(benchmark::State& state) {
  const Layer& l = layer_for(state.range(0), state.range(1));
  for (auto _ : state) {
    archive* a = archive_read_new();
    archive_read_support_filter_gzip(a);
    archive_read_support_format_tar(a);
    archive_read_open_memory(a, l.gz.data(), l.gz.size());
    archive_entry* e;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
      const void* buf;
      size_t len;
      la_int64_t off;
      while (archive_read_data_block(a, &buf, &len, &off) == ARCHIVE_OK) benchmark::DoNotOptimize(buf);
    }
    archive_read_free(a);
  }
  set_counters(state, l);
}

std::string bench_tmp() {
  const char* t = std::getenv("MOAT_BENCH_TMP");
  if (t && *t) return t;
  struct stat st;
  return stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
}

// The whole pipeline: both digests, inflate, libarchive, files written.
void BM_UnpackLayer(benchmark::State& state) {
  const Layer& l = layer_for(state.range(0), state.range(1));
  std::string parent = bench_tmp();
  parent += "/moat-bench-XXXXXX";
  if (!mkdtemp(parent.data())) {
    state.SkipWithError("mkdtemp failed (set MOAT_BENCH_TMP)");
    return;
  }
  moat::Fd pfd(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  moat::UnpackOptions opt;
  for (auto _ : state) {
    state.PauseTiming();
    if (mkdirat(pfd.get(), "diff", 0700) != 0) {
      state.SkipWithError("mkdir failed");
      break;
    }
    moat::Fd dfd(openat(pfd.get(), "diff", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    MemReader reader(l.gz);
    state.ResumeTiming();
    auto r = moat::unpack_layer(reader, l.desc, dfd.get(), opt);
    state.PauseTiming();
    if (!r.ok()) {
      state.SkipWithError(r.error().describe().c_str());
      break;
    }
    dfd.reset();
    if (!moat::remove_tree(pfd.get(), "diff").ok()) {
      state.SkipWithError("cleanup failed");
      break;
    }
    state.ResumeTiming();
  }
  pfd.reset();
  rmdir(parent.c_str());
  set_counters(state, l);
}

// {files, bytes per file}: many small files (per-entry cost) and a few large (throughput).
#define MOAT_LAYER_SHAPES ->Args({2000, 4 << 10})->Args({64, 1 << 20})->Unit(benchmark::kMillisecond)
BENCHMARK(BM_Inflate) MOAT_LAYER_SHAPES;
BENCHMARK(BM_ArchiveParse) MOAT_LAYER_SHAPES;
BENCHMARK(BM_UnpackLayer) MOAT_LAYER_SHAPES;
#undef MOAT_LAYER_SHAPES

}  // namespace

BENCHMARK_MAIN();
