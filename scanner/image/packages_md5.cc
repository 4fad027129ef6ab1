// MD5 of many files at once. See packages_md5.h for why; RFC 1321 for MD5.
#include "scanner/image/packages_md5.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace moat {

namespace {

constexpr uint32_t kK[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};
constexpr int kS[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                        5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                        4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                        6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};
// The message word each step adds.
constexpr int kG[64] = {0, 1, 2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                        1, 6, 11, 0,  5,  10, 15, 4,  9,  14, 3,  8,  13, 2,  7,  12,
                        5, 8, 11, 14, 1,  4,  7,  10, 13, 0,  3,  6,  9,  12, 15, 2,
                        0, 7, 14, 5,  12, 3,  10, 1,  8,  15, 6,  13, 4,  11, 2,  9};
constexpr uint32_t kInit[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};

inline uint32_t rotl(uint32_t x, int s) { return (x << s) | (x >> (32 - s)); }
inline uint32_t le32(const unsigned char* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

void block_scalar(uint32_t st[4], const unsigned char* p) {
  uint32_t m[16];
  for (int i = 0; i < 16; ++i) m[i] = le32(p + 4 * i);
  uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
  for (int i = 0; i < 64; ++i) {
    uint32_t f;
    if (i < 16) f = (b & c) | (~b & d);
    else if (i < 32) f = (d & b) | (~d & c);
    else if (i < 48) f = b ^ c ^ d;
    else f = c ^ (b | ~d);
    f += a + kK[i] + m[kG[i]];
    a = d;
    d = c;
    c = b;
    b += rotl(f, kS[i]);
  }
  st[0] += a, st[1] += b, st[2] += c, st[3] += d;
}

// The last partial block (n < 64 bytes) and the padding; total is the message length.
std::string finish(uint32_t st[4], const unsigned char* tail, size_t n, uint64_t total) {
  unsigned char b[128] = {};
  std::memcpy(b, tail, n);
  b[n] = 0x80;
  size_t len = n + 1 + 8 <= 64 ? 64 : 128;
  uint64_t bits = total * 8;
  for (int i = 0; i < 8; ++i) b[len - 8 + i] = static_cast<unsigned char>(bits >> (8 * i));
  for (size_t off = 0; off < len; off += 64) block_scalar(st, b + off);
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(32);
  for (int w = 0; w < 4; ++w)
    for (int k = 0; k < 4; ++k) {
      unsigned v = (st[w] >> (8 * k)) & 0xff;
      out += hex[v >> 4];
      out += hex[v & 15];
    }
  return out;
}

#if defined(__x86_64__)
// GCC 12's AVX-512 headers trip its own -Wmaybe-uninitialized (the
// _mm512_undefined_* placeholders of set1 and gather): a known false positive.
#pragma GCC diagnostic push
#if !defined(__clang__)  // clang has no such warning, and -Werror refuses the unknown name
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// `blocks` blocks of every active lane: lane l's next block is at base + off[l]
// (an inactive lane's off[l] must point at 64 readable bytes too).
// st[w][l] is word w of lane l's state; inactive lanes keep theirs.
__attribute__((target("avx512f"))) void blocks_x16(uint32_t st[4][16], const char* base, const uint32_t off[16],
                                                    uint16_t active, size_t blocks) {
  const __mmask16 m = active;
  __m512i A = _mm512_loadu_si512(st[0]), B = _mm512_loadu_si512(st[1]), C = _mm512_loadu_si512(st[2]),
          D = _mm512_loadu_si512(st[3]);
  const char* p[16];
  for (int l = 0; l < 16; ++l) p[l] = base + off[l];
  for (size_t n = 0; n < blocks; ++n) {
    // Lane l's block is row l; M[w] is column w, word w of every lane's block:
    // a 16x16 transpose in four rounds of shuffles (cheaper than 16 gathers).
    __m512i M[16], t[16];
    for (int l = 0; l < 16; ++l) M[l] = _mm512_loadu_si512(p[l]);
    for (int l = 0; l < 16; l += 2) {
      t[l] = _mm512_unpacklo_epi32(M[l], M[l + 1]);
      t[l + 1] = _mm512_unpackhi_epi32(M[l], M[l + 1]);
    }
    for (int g = 0; g < 16; g += 4) {  // 128-bit lane k of M[g + j] is word 4k + j of rows g..g+3
      M[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
      M[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
      M[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
      M[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    for (int j = 0; j < 4; ++j) {
      __m512i x0 = _mm512_shuffle_i32x4(M[j], M[4 + j], 0x44), x1 = _mm512_shuffle_i32x4(M[j], M[4 + j], 0xee);
      __m512i y0 = _mm512_shuffle_i32x4(M[8 + j], M[12 + j], 0x44), y1 = _mm512_shuffle_i32x4(M[8 + j], M[12 + j], 0xee);
      t[j] = _mm512_shuffle_i32x4(x0, y0, 0x88);
      t[4 + j] = _mm512_shuffle_i32x4(x0, y0, 0xdd);
      t[8 + j] = _mm512_shuffle_i32x4(x1, y1, 0x88);
      t[12 + j] = _mm512_shuffle_i32x4(x1, y1, 0xdd);
    }
    for (int w = 0; w < 16; ++w) M[w] = t[w];
    __m512i a = A, b = B, c = C, d = D;
#define MOAT_MD5_ROUND(r, F)                                                                         \
  for (int j = 0; j < 16; ++j) {                                                                     \
    const int i = (r) * 16 + j;                                                                      \
    __m512i f = F;                                                                                   \
    f = _mm512_add_epi32(f, _mm512_add_epi32(a, _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(kK[i])), M[kG[i]]))); \
    a = d;                                                                                           \
    d = c;                                                                                           \
    c = b;                                                                                           \
    b = _mm512_add_epi32(b, _mm512_rolv_epi32(f, _mm512_set1_epi32(kS[i])));                         \
  }
    // ternarylogic truth tables: 0xca is "x ? y : z", 0x96 x^y^z, 0x39 y ^ (x | ~z).
    MOAT_MD5_ROUND(0, _mm512_ternarylogic_epi32(b, c, d, 0xca))
    MOAT_MD5_ROUND(1, _mm512_ternarylogic_epi32(d, b, c, 0xca))
    MOAT_MD5_ROUND(2, _mm512_ternarylogic_epi32(b, c, d, 0x96))
    MOAT_MD5_ROUND(3, _mm512_ternarylogic_epi32(b, c, d, 0x39))
#undef MOAT_MD5_ROUND
    A = _mm512_mask_add_epi32(A, m, A, a);
    B = _mm512_mask_add_epi32(B, m, B, b);
    C = _mm512_mask_add_epi32(C, m, C, c);
    D = _mm512_mask_add_epi32(D, m, D, d);
    for (int l = 0; l < 16; ++l)
      if (active & (1u << l)) p[l] += 64;
  }
  _mm512_storeu_si512(st[0], A);
  _mm512_storeu_si512(st[1], B);
  _mm512_storeu_si512(st[2], C);
  _mm512_storeu_si512(st[3], D);
}
#pragma GCC diagnostic pop

bool have_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}
#else
bool have_avx512() { return false; }
#endif

// A source of message bytes per lane: start(lane, job) (false: that job
// failed), read(lane, buf, n) (<0 on error, 0 at the end), stop(lane).
template <class Src>
std::vector<std::optional<std::string>> run_scalar(size_t count, Src& src) {
  std::vector<std::optional<std::string>> out(count);
  constexpr size_t kBuf = 64 * 1024;
  std::unique_ptr<unsigned char[]> buf(new unsigned char[kBuf]);
  for (size_t j = 0; j < count; ++j) {
    if (!src.start(0, j)) continue;
    uint32_t st[4] = {kInit[0], kInit[1], kInit[2], kInit[3]};
    size_t have = 0;
    uint64_t total = 0;
    bool ok = true;
    for (;;) {
      ssize_t r = src.read(0, reinterpret_cast<char*>(buf.get()) + have, kBuf - have);
      if (r < 0) {
        ok = false;
        break;
      }
      if (r == 0) break;
      have += static_cast<size_t>(r);
      total += static_cast<uint64_t>(r);
      size_t full = have / 64 * 64;
      for (size_t o = 0; o < full; o += 64) block_scalar(st, buf.get() + o);
      std::memmove(buf.get(), buf.get() + full, have - full);
      have -= full;
    }
    src.stop(0);
    if (ok) out[j] = finish(st, buf.get(), have, total);
  }
  return out;
}

#if defined(__x86_64__)
template <class Src>
std::vector<std::optional<std::string>> run_x16(size_t count, Src& src) {
  std::vector<std::optional<std::string>> out(count);
  constexpr size_t kLanes = 16, kBuf = 64 * 1024;
  std::unique_ptr<char[]> buf(new char[kLanes * kBuf]);
  struct Lane {
    size_t job = SIZE_MAX;
    size_t pos = 0, len = 0;
    uint64_t total = 0;
    bool eof = false;
  };
  Lane lanes[kLanes];
  alignas(64) uint32_t st[4][16];
  alignas(64) uint32_t off[16];
  size_t next = 0;
  auto assign = [&](size_t l) {
    lanes[l] = Lane{};
    while (next < count) {
      size_t j = next++;
      if (!src.start(l, j)) continue;  // out[j] stays empty
      lanes[l].job = j;
      for (int w = 0; w < 4; ++w) st[w][l] = kInit[w];
      return;
    }
  };
  for (size_t l = 0; l < kLanes; ++l) assign(l);
  for (;;) {
    uint16_t active = 0;
    size_t blocks = SIZE_MAX;
    for (size_t l = 0; l < kLanes; ++l) {
      Lane& ln = lanes[l];
      char* mine = buf.get() + l * kBuf;
      while (ln.job != SIZE_MAX) {
        if (ln.len - ln.pos < 64 && !ln.eof) {
          std::memmove(mine, mine + ln.pos, ln.len - ln.pos);
          ln.len -= ln.pos;
          ln.pos = 0;
          ssize_t r = src.read(l, mine + ln.len, kBuf - ln.len);
          if (r < 0) {  // out[job] stays empty
            src.stop(l);
            assign(l);
            continue;
          }
          if (r == 0) ln.eof = true;
          ln.len += static_cast<size_t>(r);
          ln.total += static_cast<uint64_t>(r);
          continue;
        }
        if (ln.len - ln.pos < 64) {  // at the end: the tail and the padding, alone
          uint32_t s[4] = {st[0][l], st[1][l], st[2][l], st[3][l]};
          out[ln.job] = finish(s, reinterpret_cast<unsigned char*>(mine + ln.pos), ln.len - ln.pos, ln.total);
          src.stop(l);
          assign(l);
          continue;
        }
        break;
      }
      if (ln.job == SIZE_MAX) {
        off[l] = static_cast<uint32_t>(l * kBuf);
        continue;
      }
      active = static_cast<uint16_t>(active | (1u << l));
      off[l] = static_cast<uint32_t>(l * kBuf + ln.pos);
      blocks = std::min(blocks, (ln.len - ln.pos) / 64);
    }
    if (!active) break;
    blocks_x16(st, buf.get(), off, active, blocks);
    for (size_t l = 0; l < kLanes; ++l)
      if (active & (1u << l)) lanes[l].pos += blocks * 64;
  }
  return out;
}
#endif

template <class Src>
std::vector<std::optional<std::string>> run(size_t count, Src& src, bool force_scalar) {
#if defined(__x86_64__)
  if (!force_scalar && have_avx512()) return run_x16(count, src);
#endif
  return run_scalar(count, src);
}

struct FileSrc {
  const Md5Opener& open;
  Fd fds[16];
  uint64_t size[16], got[16];
  bool ended[16];
  bool start(size_t lane, size_t job) {
    auto in = open(job);
    if (!in) return false;
    fds[lane] = std::move(in->fd);
    size[lane] = in->size;
    got[lane] = 0;
    ended[lane] = false;
    return true;
  }
  ssize_t read(size_t lane, char* p, size_t n) {
    if (ended[lane]) return 0;
    ssize_t r;
    do r = ::read(fds[lane].get(), p, n);
    while (r < 0 && errno == EINTR);
    if (r > 0) got[lane] += static_cast<uint64_t>(r);
    // Short at the fstat size: the end (a file still growing gave a full read).
    if (r >= 0 && static_cast<size_t>(r) < n && got[lane] == size[lane]) ended[lane] = true;
    return r;
  }
  void stop(size_t lane) { fds[lane] = Fd(); }
};

struct BufferSrc {
  const std::vector<std::string>& data;
  size_t piece;
  size_t job[16] = {}, pos[16] = {};
  bool start(size_t lane, size_t j) {
    job[lane] = j;
    pos[lane] = 0;
    return true;
  }
  ssize_t read(size_t lane, char* p, size_t n) {
    const std::string& s = data[job[lane]];
    size_t k = std::min({n, piece, s.size() - pos[lane]});
    std::memcpy(p, s.data() + pos[lane], k);
    pos[lane] += k;
    return static_cast<ssize_t>(k);
  }
  void stop(size_t) {}
};

}  // namespace

bool md5_files_multi_buffer() { return have_avx512(); }

std::vector<std::optional<std::string>> md5_files(size_t count, const Md5Opener& open) {
  FileSrc src{open, {}};
  return run(count, src, false);
}

std::vector<std::string> md5_buffers_for_test(const std::vector<std::string>& data, size_t piece, bool force_scalar) {
  BufferSrc src{data, std::max<size_t>(piece, 1)};
  auto r = run(data.size(), src, force_scalar);
  std::vector<std::string> out;
  for (auto& h : r) out.push_back(h.value_or(""));
  return out;
}

}  // namespace moat
