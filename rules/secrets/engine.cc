// The two-stage secret engine. See engine.h for the design and what was rejected.
#include "rules/secrets/engine.h"

#include "rules/secrets/database.h"
#include "rules/secrets/elf_code.h"
#include "storage/fd.h"

#include <hs/hs.h>
#include <re2/re2.h>
#include <memory>
#include <tbb/enumerable_thread_specific.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cctype>
#include <cstring>
#include <iterator>
#include <mutex>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace moat::secrets {
namespace {

constexpr size_t kChunk = 64 * 1024;
// Context kept on each side of a candidate window: enough for RE2 to see the
// bytes around a match (\b, ^, $, a closing quote) as Vectorscan saw them.
constexpr size_t kHead = 64;
constexpr size_t kTail = 64;

// A candidate region of one rule, in absolute stream offsets: RE2 looks for
// matches starting at or after `lo` and ending by `end_max + kTail`.
struct Span {
  uint32_t rule;
  uint64_t lo;
  uint64_t end_max;
};

// What one thread reuses from scan to scan: its Vectorscan scratch space and
// stream (reset, not reopened, between files), the chunk buffer and the
// per-rule bookkeeping. Most files in an image are small, so per-scan
// allocations would otherwise cost more than the matching.
struct ThreadState {
  hs_scratch_t* scratch = nullptr;
  std::vector<hs_stream_t*> streams;  // one per database part; empty if one could not be opened
  std::vector<char> buf;
  std::vector<Span> spans;
  std::vector<int> open;
  std::vector<uint64_t> watermark;
  bool busy = false;  // a sink that scans again on the same thread gets an Error, not a corrupt scratch

  ThreadState() = default;
  ThreadState(ThreadState&& o) noexcept
      : scratch(std::exchange(o.scratch, nullptr)),
        streams(std::move(o.streams)),
        buf(std::move(o.buf)),
        spans(std::move(o.spans)),
        open(std::move(o.open)),
        watermark(std::move(o.watermark)) {}
  ThreadState& operator=(ThreadState&&) = delete;
  ThreadState(const ThreadState&) = delete;
  ThreadState& operator=(const ThreadState&) = delete;
  ~ThreadState() {
    for (hs_stream_t* st : streams) hs_close_stream(st, nullptr, nullptr, nullptr);
    if (scratch) hs_free_scratch(scratch);
  }
};

// Latin-1, not UTF-8: Vectorscan matches bytes, so RE2 must too, or the
// two engines disagree on what a class or a count such as [^\s"']{8,128}
// covers (a UTF-8 character is one repetition for RE2 but 2-4 for
// Vectorscan; a stray 0xff matches a negated class only in Latin-1), and
// (?i) in UTF-8 mode adds the Kelvin sign and the long s to every k and s.
// Byte classes also make the programs a third smaller and faster to compile.
RE2::Options re2_options() {
  RE2::Options ro;
  ro.set_log_errors(false);
  ro.set_encoding(RE2::Options::EncodingLatin1);
  return ro;
}

// The confirmation program: the rule's pattern as group 1 behind a lazy
// any-byte prefix, searched with ANCHOR_START. That is exactly RE2's own
// unanchored leftmost-first search (RE2 compiles the same prefix loop for
// it), but RE2 then needs one forward pass: an unanchored search with
// submatches runs the forward DFA to find the match's end, then compiles a
// reverse program and runs a reverse DFA to find its start. The lazy
// compile of that reverse program and the warm-up of the second DFA were
// half of the confirmation cost (benchmarks/README.md, "First run"). The
// rule's own capture becomes group 2.
std::string confirm_pattern(const std::string& pattern) { return "(?m)(?s:.)*?(" + pattern + ")"; }

// A rule's RE2 programs are compiled on its first candidate, not in create():
// compiling all 204 took about 15% of a cached `moat scan` of a 700 MB
// image (benchmarks/scan.sh), and in a given image most rules never get a
// candidate. validate() has already compiled each pattern once, so a lazy
// compile cannot fail in a way create() would have caught. std::call_once
// makes the first use from several threads at once safe.
struct CompiledRule {
  struct Programs {
    std::unique_ptr<RE2> re;
    std::vector<std::unique_ptr<RE2>> allow;
    std::vector<std::unique_ptr<RE2>> allow_match;
  };
  const SecretRule* rule = nullptr;
  std::vector<std::string> keywords;  // lowercased
  size_t width = 0;                   // Vectorscan max_width of the rule
  std::unique_ptr<std::once_flag> once = std::make_unique<std::once_flag>();
  std::unique_ptr<Programs> programs = std::make_unique<Programs>();

  const Programs& compiled() const {
    std::call_once(*once, [this] {
      const RE2::Options ro = re2_options();
      programs->re = std::make_unique<RE2>(confirm_pattern(rule->pattern), ro);
      for (const auto& a : rule->allow) programs->allow.push_back(std::make_unique<RE2>(a, ro));
      for (const auto& a : rule->allow_match) programs->allow_match.push_back(std::make_unique<RE2>(a, ro));
    });
    return *programs;
  }
};

// '\n' count in [p, p + n): line numbers need it for every byte that leaves
// the carry buffer, so it runs over all text input and must be cheap.
uint64_t count_newlines(const char* p, size_t n) {
  uint64_t c = 0;
  size_t i = 0;
#if defined(__SSE2__)
  // Per-byte counters (cmpeq gives -1, subtracting adds 1), folded with
  // SAD every 255 blocks before a byte can overflow. Baseline x86-64 has no
  // popcnt instruction, so movemask + popcount would be a libgcc call.
  const __m128i nl = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
  while (i + 16 <= n) {
    __m128i acc = zero;
    for (int k = 0; k < 255 && i + 16 <= n; ++k, i += 16)
      acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i)), nl));
    __m128i sums = _mm_sad_epu8(acc, zero);
    c += static_cast<uint64_t>(_mm_cvtsi128_si64(sums)) + static_cast<uint64_t>(_mm_extract_epi16(sums, 4));
  }
#endif
  for (; i < n; ++i) c += p[i] == '\n';
  return c;
}

// `strings`-style view of binary data, in place: every byte that is not
// printable ASCII or tab becomes '\n', so offsets stay exact and no match
// can join two printable runs.
void to_printable_runs(char* p, size_t n) {
  size_t i = 0;
#if defined(__SSE2__)
  // Signed bytes: 0x80..0xff are negative, so "> 0x1f" keeps 0x20..0x7f;
  // then drop DEL and add tab back.
  const __m128i lo = _mm_set1_epi8(0x1f), del = _mm_set1_epi8(0x7f), tab = _mm_set1_epi8('\t'),
                nl = _mm_set1_epi8('\n');
  for (; i + 16 <= n; i += 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    __m128i keep = _mm_or_si128(_mm_andnot_si128(_mm_cmpeq_epi8(v, del), _mm_cmpgt_epi8(v, lo)), _mm_cmpeq_epi8(v, tab));
    __m128i out = _mm_or_si128(_mm_and_si128(keep, v), _mm_andnot_si128(keep, nl));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p + i), out);
  }
#endif
  for (; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(p[i]);
    bool printable = (c >= 0x20 && c < 0x7f) || c == '\t';
    p[i] = printable ? static_cast<char>(c) : '\n';
  }
}

bool contains_keyword(std::string_view hay, const std::vector<std::string>& kws) {
  std::string low(hay);
  for (auto& ch : low) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return std::any_of(kws.begin(), kws.end(), [&](const std::string& k) { return low.find(k) != std::string::npos; });
}

}  // namespace

struct SecretScanner::Impl {
  RuleSet set;
  std::vector<CompiledRule> rules;
  CompiledRules dbs;
  hs_scratch_t* proto = nullptr;  // cloned once per thread; large enough for every part
  // std::allocator, not oneTBB's default cache_aligned_allocator: that one
  // takes its memory from tbbmalloc when the library is installed, outside
  // the heap LeakSanitizer scans, so a leak check in the middle of a run
  // (libFuzzer runs one when an input allocates for good) saw each thread's
  // scratch and streams as leaked (docs/fuzzing.md, finding 9). The elements
  // are padded to 128 bytes by the container either way.
  mutable tbb::enumerable_thread_specific<ThreadState, std::allocator<ThreadState>> threads{[this] {
    // On failure the thread's state stays empty and its scans report ENOMEM.
    ThreadState ts;
    if (hs_clone_scratch(proto, &ts.scratch) != HS_SUCCESS) ts.scratch = nullptr;
    for (const DbPart& part : dbs.parts) {
      hs_stream_t* st = nullptr;
      if (hs_open_stream(part.db, 0, &st) != HS_SUCCESS) {
        for (hs_stream_t* o : ts.streams) hs_close_stream(o, nullptr, nullptr, nullptr);
        ts.streams.clear();
        break;
      }
      ts.streams.push_back(st);
    }
    return ts;
  }};
  size_t max_width = 0;
  size_t carry = 0;

  // The global allow patterns, compiled on the first candidate of any rule.
  const std::vector<std::unique_ptr<RE2>>& global_allow() const {
    std::call_once(global_once, [this] {
      const RE2::Options ro = re2_options();
      for (const auto& g : set.global_allow) global_programs.push_back(std::make_unique<RE2>(g, ro));
    });
    return global_programs;
  }
  mutable std::once_flag global_once;
  mutable std::vector<std::unique_ptr<RE2>> global_programs;
  mutable std::once_flag version_once;
  mutable std::string version;

  ~Impl() {
    threads.clear();  // streams and scratch before the database they were made for
    if (proto) hs_free_scratch(proto);
  }  // dbs frees the databases
};

namespace {

struct Found {
  uint32_t rule;
  uint64_t offset;
  uint32_t length;
  std::string redacted, fingerprint;
  uint32_t context = 0;  // bytes of the whole match: how much the rule saw around the secret
};

// The state of one scan: a Vectorscan stream, candidate spans, and the
// per-rule watermark that keeps a match confirmed from two overlapping
// windows from being reported twice.
class Scan {
 public:
  Scan(const SecretScanner::Impl& im, ThreadState& ts, const SecretSink& sink)
      : im_(im),
        scratch_(ts.scratch),
        sink_(sink),
        streams_(ts.streams),
        ts_(ts),
        spans_(ts.spans),
        open_(ts.open),
        watermark_(ts.watermark) {
    ts.busy = true;
    spans_.clear();
    open_.assign(im.rules.size(), -1);
    watermark_.assign(im.rules.size(), 0);
  }
  ~Scan() {
    // An unfinished scan (error or sink stop) leaves the stream clean for the next file.
    if (!finished_)
      for (hs_stream_t* st : streams_) hs_reset_stream(st, 0, nullptr, nullptr, nullptr);
    ts_.busy = false;
  }

  // `text[0, len)` is the carry from earlier chunks followed by new data at
  // `text + new_off`; `text_abs` is the stream offset of text[0].
  Status feed(char* text, size_t len, size_t new_off, uint64_t text_abs) {
    char* fresh = text + new_off;
    size_t n = len - new_off;
    if (!stats.binary && std::memchr(fresh, '\0', n)) stats.binary = true;
    if (stats.binary) to_printable_runs(fresh, n);
    MOAT_TRY(scan_parts(fresh, n));
    stats.bytes += n;
    confirm(text, len, text_abs, /*eof=*/false);
    find_block_end(text, text_abs, text_abs + len);  // before these bytes leave the carry
    return ok_status();
  }

  // Same as feed() for a read-only buffer already known to hold no NUL byte.
  Status feed_text(const char* text, size_t len) {
    MOAT_TRY(scan_parts(text, len));
    stats.bytes += len;
    return ok_status();
  }

  // End of input: Vectorscan reports matches anchored at the end ($), then
  // every pending span is confirmed on what is left in `text`.
  void finish(const char* text, size_t len, uint64_t text_abs) {
    if (!finished_) {
      finished_ = true;
      for (part_ = 0; part_ < streams_.size(); ++part_)  // reports end-anchored matches
        hs_reset_stream(streams_[part_], 0, scratch_, &Scan::on_match, this);
    }
    confirm(text, len, text_abs, /*eof=*/true);
  }

  // Each database part over the same bytes (usually one; two with user rules).
  Status scan_parts(const char* p, size_t n) {
    for (part_ = 0; part_ < streams_.size(); ++part_)
      if (hs_scan_stream(streams_[part_], p, static_cast<unsigned>(n), 0, scratch_, &Scan::on_match, this) !=
          HS_SUCCESS)
        return Error{"Vectorscan stream scan failed", 0, {}};
    return ok_status();
  }

  // Counts the newlines of bytes that leave the carry buffer.
  void forget(const char* p, size_t n) {
    if (!stats.binary) lines_before_ += count_newlines(p, n);
  }

  ScanStats stats;

 private:
  static int on_match(unsigned int id, unsigned long long /*from*/, unsigned long long to, unsigned int /*flags*/,
                      void* ctx) {
    auto* self = static_cast<Scan*>(ctx);
    // Expression ids are per database part; a rule of the shipped database
    // that is not in this set (--disable, replaced) is dropped here.
    const int32_t rule = self->im_.dbs.parts[self->part_].to_rule[id];
    if (rule < 0) return 0;
    id = static_cast<unsigned>(rule);
    const size_t width = self->im_.rules[id].width;
    int& open = self->open_[id];
    // Extend the rule's open span when the new window would overlap it, so a
    // run of ends (one per extra character of a {20,80} repeat) costs one
    // RE2 call, not eighty.
    if (open >= 0 && to <= self->spans_[open].end_max + width + kHead) {
      self->spans_[open].end_max = std::max<uint64_t>(self->spans_[open].end_max, to);
    } else {
      uint64_t lo = to > width + kHead ? to - width - kHead : 0;
      self->spans_.push_back({id, lo, to});
      open = static_cast<int>(self->spans_.size() - 1);
    }
    return 0;
  }

  void confirm(const char* text, size_t len, uint64_t text_abs, bool eof) {
    if ((spans_.empty() && held_.empty()) || stats.stopped) return;
    const uint64_t avail = text_abs + len;
    std::vector<Span> pending;
    std::vector<Found> found;
    re2::StringPiece whole(text, len);
    for (const Span& sp : spans_) {
      const CompiledRule& cr = im_.rules[sp.rule];
      const RE2& re = *cr.compiled().re;
      uint64_t lo = std::max(sp.lo, text_abs);
      uint64_t hi = std::min(sp.end_max + kTail, avail);
      size_t pos = lo - text_abs, end = hi - text_abs;
      while (pos < end) {
        // m[1]: the rule's whole match, m[2]: its capture (confirm_pattern()).
        re2::StringPiece g[3];
        if (!re.Match(whole, pos, end, RE2::ANCHOR_START, g, 3)) break;
        const re2::StringPiece* m = g + 1;
        size_t ms = static_cast<size_t>(m[0].data() - text), me = ms + m[0].size();
        if (!eof && text_abs + me >= avail) {
          // The match touches the end of what has been read: the next chunk
          // may extend it or break a trailing \b or $. Decide later.
          pending.push_back({sp.rule, text_abs + ms, sp.end_max});
          break;
        }
        pos = me > ms ? me : ms + 1;
        if (m[1].data() == nullptr || m[1].empty()) continue;
        uint64_t abs_ms = text_abs + ms;
        if (abs_ms < watermark_[sp.rule]) continue;  // seen through an earlier window
        watermark_[sp.rule] = text_abs + me;
        std::string_view secret(m[1].data(), m[1].size());
        if (!accept(cr, std::string_view(m[0].data(), m[0].size()), secret)) continue;
        found.push_back({sp.rule, text_abs + static_cast<uint64_t>(m[1].data() - text),
                         static_cast<uint32_t>(secret.size()), redact(secret), fingerprint(cr.rule->id, secret),
                         static_cast<uint32_t>(me - ms)});
      }
    }
    // Findings held back by the last call, and those that may overlap a match
    // decided only later: emit() must see both sides of an overlap at once.
    for (auto& h : held_) found.push_back(std::move(h));
    held_.clear();
    if (!pending.empty()) {
      uint64_t from = UINT64_MAX;
      for (const Span& p : pending) from = std::min(from, p.lo);
      auto keep = std::stable_partition(found.begin(), found.end(),
                                        [&](const Found& f) { return f.offset < from; });  // from stays in the carry
      std::move(keep, found.end(), std::back_inserter(held_));
      found.erase(keep, found.end());
    }
    spans_.swap(pending);
    std::fill(open_.begin(), open_.end(), -1);
    for (size_t i = 0; i < spans_.size(); ++i) open_[spans_[i].rule] = static_cast<int>(i);
    emit(found, text, text_abs, avail);
  }

  bool accept(const CompiledRule& cr, std::string_view match, std::string_view secret) const {
    if (!cr.keywords.empty() && !contains_keyword(match, cr.keywords)) return false;
    if (cr.rule->min_entropy > 0 && shannon_entropy(secret) < cr.rule->min_entropy) return false;
    const CompiledRule::Programs& progs = cr.compiled();
    re2::StringPiece s(secret.data(), secret.size());
    for (const auto& a : progs.allow)
      if (RE2::PartialMatch(s, *a)) return false;
    for (const auto& a : im_.global_allow())
      if (RE2::PartialMatch(s, *a)) return false;
    re2::StringPiece whole(match.data(), match.size());
    for (const auto& a : progs.allow_match)
      if (RE2::PartialMatch(whole, *a)) return false;
    return true;
  }

  // One secret at one place is one finding: of the findings whose secrets
  // overlap, a specific rule beats a generic one; between two generic ones
  // the one whose whole match is longer (it saw more of the context: a
  // connection string, not just "Password=") wins; otherwise the rule listed
  // first (files load in name order; a file lists its rules from the most
  // to the least specific). Findings inside a key block (opened by a rule
  // with block_end) are dropped. Then lines are numbered and findings go to
  // the sink in offset order.
  void emit(std::vector<Found>& found, const char* text, uint64_t text_abs, uint64_t avail) {
    if (found.empty()) return;
    std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
      return a.offset != b.offset ? a.offset < b.offset : a.rule < b.rule;
    });
    auto outranks = [&](const Found& o, const Found& f) {
      bool og = im_.rules[o.rule].rule->generic, fg = im_.rules[f.rule].rule->generic;
      if (og != fg) return fg;
      if (og && o.context != f.context) return o.context > f.context;
      return o.rule < f.rule;
    };
    uint64_t cursor = text_abs, lines = lines_before_;
    for (const Found& f : found) {
      const SecretRule* r = im_.rules[f.rule].rule;
      bool shadowed = std::any_of(found.begin(), found.end(), [&](const Found& o) {
        return &o != &f && o.offset < f.offset + f.length && f.offset < o.offset + o.length && outranks(o, f);
      });
      if (shadowed) continue;
      if (in_block(f.offset, text, text_abs, avail)) continue;
      if (!r->block_end.empty()) open_block(f.offset + f.length, r->block_end, text, text_abs, avail);
      SecretFinding out;
      out.rule = r;
      out.rule_id = r->id;
      out.offset = f.offset;
      out.length = f.length;
      out.redacted = f.redacted;
      out.fingerprint = f.fingerprint;
      if (!stats.binary) {
        lines += count_newlines(text + (cursor - text_abs), f.offset - cursor);
        cursor = f.offset;
        out.line = lines + 1;
      }
      ++stats.findings;
      if (sink_(out) == SinkAction::kStop) {
        stats.stopped = true;
        return;
      }
    }
  }

  const SecretScanner::Impl& im_;
  hs_scratch_t* scratch_;
  const SecretSink& sink_;
  const std::vector<hs_stream_t*>& streams_;  // the thread's streams, one per database part
  size_t part_ = 0;                            // the part being scanned, for on_match
  bool finished_ = false;                      // end of input reported to Vectorscan
  ThreadState& ts_;
  std::vector<Span>& spans_;
  std::vector<int>& open_;            // per rule: index of its open span, or -1
  std::vector<uint64_t>& watermark_;  // per rule: end of the last match taken
  std::vector<Found> held_;           // confirmed, emitted with the pending matches they may overlap
  uint64_t lines_before_ = 0;        // newlines before the carry buffer

  // The key block a block rule opened: [block_lo_, block_hi_), block_hi_ is
  // UINT64_MAX while its end literal has not been seen yet.
  std::string_view block_end_;
  uint64_t block_lo_ = 0, block_hi_ = 0;
  bool block_open_ = false;

  void open_block(uint64_t from, std::string_view end, const char* text, uint64_t text_abs, uint64_t avail) {
    block_open_ = true;
    block_end_ = end;
    block_lo_ = from;
    block_hi_ = UINT64_MAX;
    find_block_end(text, text_abs, avail);
  }
  // Looks for the end literal in text[block_lo_ .. avail) when it is unknown.
  void find_block_end(const char* text, uint64_t text_abs, uint64_t avail) {
    if (!block_open_ || block_hi_ != UINT64_MAX) return;
    uint64_t from = std::max(block_lo_, text_abs);
    if (from >= avail) return;
    std::string_view hay(text + (from - text_abs), avail - from);
    size_t at = hay.find(block_end_);
    if (at != std::string_view::npos) block_hi_ = from + at;
  }
  bool in_block(uint64_t off, const char* text, uint64_t text_abs, uint64_t avail) {
    if (!block_open_) return false;
    find_block_end(text, text_abs, avail);
    if (off >= block_lo_ && off < block_hi_) return true;
    if (off >= block_hi_) block_open_ = false;
    return false;
  }
};

}  // namespace

std::string redact(std::string_view s) {
  // Show at most a quarter of the secret, split between both ends, and never
  // more than 4 + 2 characters: enough to tell two findings apart, far too
  // little to use. Short secrets show nothing.
  size_t n = s.size();
  if (n < 8) return std::string("****");
  size_t shown = std::min<size_t>(6, n / 4);
  size_t tail = shown / 3, head = shown - tail;
  return std::string(s.substr(0, head)) + "****" + std::string(s.substr(n - tail));
}

std::string fingerprint(std::string_view rule_id, std::string_view secret) {
  std::string text(rule_id);
  text += '\0';  // the NUL keeps ("ab","c") apart from ("a","bc")
  text += secret;
  return sha256_hex(text);
}

double shannon_entropy(std::string_view s) {
  if (s.empty()) return 0;
  std::array<uint32_t, 256> counts{};
  for (unsigned char c : s) ++counts[c];
  double h = 0, n = static_cast<double>(s.size());
  for (uint32_t c : counts) {
    if (!c) continue;
    double p = c / n;
    h -= p * std::log2(p);
  }
  return h;
}

namespace {
Status usable(const ThreadState& ts) {
  if (!ts.scratch || ts.streams.empty())
    return Error{"cannot allocate Vectorscan scratch or stream for this thread", ENOMEM, {}};
  if (ts.busy)
    return Error{"SecretScanner::scan_* called again from inside its own sink on the same thread", 0,
                 "collect findings in the sink and scan after it returns"};
  return ok_status();
}
}  // namespace

SecretScanner::SecretScanner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SecretScanner::~SecretScanner() = default;

const RuleSet& SecretScanner::rules() const { return impl_->set; }
size_t SecretScanner::rule_count() const { return impl_->rules.size(); }
size_t SecretScanner::carry_bytes() const { return impl_->carry; }

Result<std::unique_ptr<SecretScanner>> SecretScanner::create(RuleSet rules, const Options& opts) {
  if (rules.rules.empty()) return Error{"no secret rules to compile", 0, "every rule was disabled"};
  // The shipped built-in database, the store's cache or a compile; rules
  // are validated there unless they come precompiled (database.h).
  auto dbs = compile_rules(rules, opts.cache_dir);
  if (!dbs.ok()) return std::move(dbs).error();
  auto im = std::make_unique<Impl>();
  im->dbs = std::move(dbs).value();
  im->set = std::move(rules);
  for (size_t i = 0; i < im->set.rules.size(); ++i) {
    const SecretRule& r = im->set.rules[i];
    CompiledRule cr;
    cr.rule = &r;
    for (auto k : r.keywords) {
      for (auto& ch : k) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      cr.keywords.push_back(std::move(k));
    }
    cr.width = im->dbs.widths[i];
    im->max_width = std::max(im->max_width, cr.width);
    im->rules.push_back(std::move(cr));
  }
  im->carry = im->max_width + kHead + kTail;
  // One scratch space big enough for every part.
  hs_scratch_t* s = nullptr;
  for (const DbPart& part : im->dbs.parts)
    if (hs_alloc_scratch(part.db, &s) != HS_SUCCESS) {
      if (s) hs_free_scratch(s);
      return Error{"cannot allocate Vectorscan scratch", ENOMEM, {}};
    }
  im->proto = s;
  return std::unique_ptr<SecretScanner>(new SecretScanner(std::move(im)));
}

const std::string& SecretScanner::database_note() const { return impl_->dbs.note; }

const std::string& SecretScanner::rules_version() const {
  std::call_once(impl_->version_once, [this] { impl_->version = impl_->set.version(); });
  return impl_->version;
}

Result<ScanStats> SecretScanner::scan_buffer(const void* data, size_t len, const SecretSink& sink) const {
  ThreadState& ts = impl_->threads.local();
  MOAT_TRY(usable(ts));
  const char* p = static_cast<const char*>(data);
  Scan scan(*impl_, ts, sink);
  // Text without NUL bytes (the common case): one pass over the caller's
  // buffer, no copy; the whole buffer is the confirmation context.
  if (len <= UINT32_MAX && !std::memchr(p, '\0', len)) {
    MOAT_TRY(scan.feed_text(p, len));
    scan.finish(p, len, 0);
    return scan.stats;
  }
  // Binary (or > 4 GiB, Vectorscan's per-call limit): chunk through a
  // private copy, as scan_fd does, so bytes can be mapped to printable runs.
  const size_t carry = impl_->carry;
  std::vector<char>& buf = ts.buf;
  if (buf.size() < carry + kChunk) buf.resize(carry + kChunk);
  size_t have = 0;  // carry bytes at the front of buf
  uint64_t abs = 0; // stream offset of buf[0]
  size_t off = 0;
  while (off < len && !scan.stats.stopped) {
    size_t n = std::min(kChunk, len - off);
    std::memcpy(buf.data() + have, p + off, n);
    off += n;
    MOAT_TRY(scan.feed(buf.data(), have + n, have, abs));
    size_t total = have + n, keep = std::min(carry, total);
    scan.forget(buf.data(), total - keep);
    std::memmove(buf.data(), buf.data() + total - keep, keep);
    abs += total - keep;
    have = keep;
  }
  if (!scan.stats.stopped) scan.finish(buf.data(), have, abs);
  return scan.stats;
}

namespace {

// An ELF file's machine code (elf_code.h), read with pread: the file
// position stays where scan_fd's reads expect it. Empty on any doubt.
std::vector<ByteRange> code_ranges(int fd, uint64_t size) {
  if (size < kMinElfToSkip) return {};
  char head[64];
  if (::pread(fd, head, sizeof head, 0) != static_cast<ssize_t>(sizeof head)) return {};
  auto where = elf_section_table(std::string_view(head, sizeof head), size);
  if (!where) return {};
  std::string table(where->end - where->begin, '\0');
  if (::pread(fd, table.data(), table.size(), static_cast<off_t>(where->begin)) != static_cast<ssize_t>(table.size()))
    return {};
  return elf_code_ranges(std::string_view(head, sizeof head), table, size);
}

}  // namespace

Result<ScanStats> SecretScanner::scan_fd(int fd, uint64_t max_bytes, const SecretSink& sink,
                                         uint64_t size_hint) const {
  ThreadState& ts = impl_->threads.local();
  MOAT_TRY(usable(ts));
  Scan scan(*impl_, ts, sink);
  const size_t carry = impl_->carry;
  std::vector<char>& buf = ts.buf;
  if (buf.size() < carry + kChunk) buf.resize(carry + kChunk);
  // Only with a known size (from fstat): ranges are checked against it.
  const std::vector<ByteRange> skip = size_hint == UINT64_MAX ? std::vector<ByteRange>{} : code_ranges(fd, size_hint);
  size_t next_skip = 0;
  uint64_t pos = 0;   // file offset of the next read()
  size_t have = 0;
  uint64_t abs = 0;   // stream offset of buf[0] (skipped code is not in the stream)
  uint64_t left = max_bytes;
  while (!scan.stats.stopped) {
    size_t n;
    size_t want = 0;
    if (next_skip < skip.size() && pos == skip[next_skip].begin) {
      // Over the machine code; one '\n' stands for it in the stream, so
      // printable runs on either side never join.
      const ByteRange r = skip[next_skip++];
      if (::lseek(fd, static_cast<off_t>(r.end), SEEK_SET) < 0) return sys_error("seek");
      scan.stats.code_skipped += r.end - pos;
      pos = r.end;
      buf[have] = '\n';
      n = 1;
    } else {
      if (left == 0) {
        // Only a truncation if there is more to read.
        char probe;
        ssize_t r;
        do r = ::read(fd, &probe, 1);
        while (r < 0 && errno == EINTR);
        if (r > 0) scan.stats.truncated = true;
        break;
      }
      want = static_cast<size_t>(std::min<uint64_t>(kChunk, left));
      if (next_skip < skip.size()) want = static_cast<size_t>(std::min<uint64_t>(want, skip[next_skip].begin - pos));
      ssize_t r = ::read(fd, buf.data() + have, want);
      if (r < 0) {
        if (errno == EINTR) continue;
        return sys_error("read");
      }
      if (r == 0) break;
      n = static_cast<size_t>(r);
      left -= n;
      pos += n;
    }
    MOAT_TRY(scan.feed(buf.data(), have + n, have, abs));
    size_t total = have + n, keep = std::min(carry, total);
    // The known size reached by a short read: no empty read() to find the end.
    if (n < want && pos >= size_hint) {
      have = total;
      break;
    }
    scan.forget(buf.data(), total - keep);
    std::memmove(buf.data(), buf.data() + total - keep, keep);
    abs += total - keep;
    have = keep;
  }
  if (!scan.stats.stopped) scan.finish(buf.data(), have, abs);
  return scan.stats;
}

std::vector<std::string> check_rule_examples(const SecretScanner& scanner, const SecretRule& rule) {
  std::vector<std::string> out;
  auto run = [&](const std::string& text) {
    std::vector<SecretFinding> fs;
    auto st = scanner.scan_buffer(text.data(), text.size(), [&](const SecretFinding& f) {
      if (f.rule_id == rule.id) fs.push_back(f);
      return SinkAction::kContinue;
    });
    if (!st.ok()) out.push_back(rule.id + ": scan failed: " + st.error().describe());
    return fs;
  };
  for (size_t i = 0; i < rule.examples.size(); ++i) {
    const auto& ex = rule.examples[i];
    auto fs = run(ex.text);
    if (fs.empty()) {
      out.push_back(rule.id + ": example " + std::to_string(i + 1) + " does not match");
    } else if (!ex.secret.empty()) {
      std::string want = fingerprint(rule.id, ex.secret);
      if (std::none_of(fs.begin(), fs.end(), [&](const SecretFinding& f) { return f.fingerprint == want; }))
        out.push_back(rule.id + ": example " + std::to_string(i + 1) + " matches but captures " + fs[0].redacted +
                      " (" + std::to_string(fs[0].length) + " bytes), not the expected secret (" +
                      std::to_string(ex.secret.size()) + " bytes)");
    }
  }
  for (size_t i = 0; i < rule.negative_examples.size(); ++i) {
    auto fs = run(rule.negative_examples[i].text);
    if (!fs.empty())
      out.push_back(rule.id + ": negative example " + std::to_string(i + 1) + " matches (" + fs[0].redacted + ")");
  }
  return out;
}

std::vector<std::string> check_examples(const SecretScanner& scanner) {
  std::vector<std::string> out;
  for (const auto& r : scanner.rules().rules) {
    auto one = check_rule_examples(scanner, r);
    out.insert(out.end(), one.begin(), one.end());
  }
  return out;
}

}  // namespace moat::secrets
