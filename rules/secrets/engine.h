// SecretScanner: the two-stage secret matcher over bytes.
//
// Stage 1: one Vectorscan database in streaming mode holds every rule's
// pattern and reports (rule, end offset) candidates at memory speed; the
// cost stays flat as rules are added. Stage 2: RE2 re-runs only the
// candidate's rule on a small window ending at the candidate and extracts the
// one capture group; entropy, keyword and allow-pattern filters then decide.
//
// Why no HS_FLAG_SOM_LEFTMOST: start-of-match tracking in streaming mode
// enlarges the per-stream state, needs a SOM horizon, and makes some patterns
// fail to compile ("pattern too large"). RE2 has to run anyway to extract the
// capture, and every rule's match width is bounded (validated with
// hs_expression_info, at most kMaxRuleWidth), so the end offset alone fixes
// the window: [end - max_width - 64, end + 64).
//
// Streaming: input arrives in 64 KiB chunks; Vectorscan keeps its own stream
// state across chunks, and the engine keeps the last (max width + 128) bytes
// as a carry buffer so a candidate whose match started in the previous chunk
// can still be confirmed. Memory per scan is one chunk plus the carry, however
// large the file.
//
// Binary input (a NUL byte in a chunk) is scanned as `strings` sees it: from
// that chunk on, every byte outside printable ASCII and tab becomes '\n'. The
// mapping keeps byte offsets exact and stops a pattern from joining two
// printable runs. (strings' minimum run length of 4/8 is not applied: every
// rule needs more than 8 consecutive printable bytes anyway.) Line numbers in
// binary files are reported as 0.
//
// One secret at one place is one finding: overlapping captures of several
// rules are resolved in favour of the most specific rule, and a key block
// (a rule with block_end, PEM private keys) silences the other rules until
// its end literal (Scan::emit() in engine.cc; rules/secrets/README.md).
//
// Thread safety: a SecretScanner is immutable after create(); scan_* may be
// called from any number of threads at once. Each thread gets its own
// Vectorscan scratch space (hs_clone_scratch, held in a oneTBB
// enumerable_thread_specific).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rules/secrets/rules.h"
#include "storage/result.h"

namespace moat::secrets {

// One confirmed secret. It never holds the secret itself.
struct SecretFinding {
  const SecretRule* rule = nullptr;  // owned by the scanner, valid while it lives
  std::string rule_id;
  uint64_t line = 0;       // 1-based line of the secret's first byte; 0 in binary input
  uint64_t offset = 0;     // byte offset of the secret's first byte in the input
  uint32_t length = 0;     // bytes in the secret
  std::string redacted;    // a few characters at each end, "ghp_****Ab"; never the whole secret
  std::string fingerprint; // hex sha256(rule_id + '\0' + secret): stable across runs and images
};

// The sink contract (after ripgrep's Sink): return kContinue for more
// findings, kStop to end the scan early (not an error).
enum class SinkAction { kContinue, kStop };
using SecretSink = std::function<SinkAction(const SecretFinding&)>;

struct ScanStats {
  uint64_t bytes = 0;     // bytes read and scanned
  uint64_t code_skipped = 0;  // bytes of an ELF file's machine code not read (scan_fd, elf_code.h)
  bool binary = false;    // a NUL byte was seen: scanned as printable runs
  bool truncated = false; // max_bytes reached before the end of the input
  bool stopped = false;   // the sink returned kStop
  uint64_t findings = 0;
};

// Redaction and fingerprint, public so report writers and tests share them.
std::string redact(std::string_view secret);
std::string fingerprint(std::string_view rule_id, std::string_view secret);
double shannon_entropy(std::string_view s);

class SecretScanner {
 public:
  struct Options {
    // If set, the Vectorscan database compiled at run time (rules that are
    // not in the shipped built-in database, see database.h) is kept here,
    // named by those rules and the Vectorscan version, so later runs skip the
    // compile. A damaged or foreign file is ignored and rewritten.
    // Typically <store>/cache.
    std::string cache_dir;
  };
  // Validates (validate() in rules.h) and compiles the rules (database.h:
  // built-in rules come precompiled); an invalid rule set is an Error
  // listing every problem.
  static Result<std::unique_ptr<SecretScanner>> create(RuleSet rules, const Options& opts);
  static Result<std::unique_ptr<SecretScanner>> create(RuleSet rules) { return create(std::move(rules), Options{}); }
  ~SecretScanner();
  SecretScanner(const SecretScanner&) = delete;
  SecretScanner& operator=(const SecretScanner&) = delete;

  // Scans one in-memory buffer (the image config's Env values and history
  // lines, or a small file already read).
  Result<ScanStats> scan_buffer(const void* data, size_t len, const SecretSink& sink) const;
  // Streams an open file from its current position: at most max_bytes are
  // read (UINT64_MAX for all), in 64 KiB chunks. Read errors are Errors; EINTR
  // is retried.
  // size_hint: the file's size from fstat, if known. A short read that
  // reaches it is taken as the end, which saves the final empty read() of
  // every small file (a growing file is still read to its real end). With
  // it, the machine code of an ELF file of 64 KiB or more is not read
  // (elf_code.h says why no secret is lost); offsets of its findings are then
  // in the bytes scanned, not in the file.
  Result<ScanStats> scan_fd(int fd, uint64_t max_bytes, const SecretSink& sink,
                            uint64_t size_hint = UINT64_MAX) const;

  const RuleSet& rules() const;
  // rules().version(), computed once (the per-layer result cache's key).
  const std::string& rules_version() const;
  size_t rule_count() const;
  // Bytes carried between chunks: the largest rule width plus context.
  size_t carry_bytes() const;
  // Where the Vectorscan databases came from (shipped, cache, compiled), for -v.
  const std::string& database_note() const;

  struct Impl;

 private:
  explicit SecretScanner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Runs every example and negative example of every rule through `scanner`:
// an example must produce a finding of its rule (with the expected capture
// when the example names one); a negative example must produce none of its
// rule. Returns one message per failure.
std::vector<std::string> check_examples(const SecretScanner& scanner);
// The same for one rule (for the parameterized test).
std::vector<std::string> check_rule_examples(const SecretScanner& scanner, const SecretRule& rule);

}  // namespace moat::secrets
