// Findings: what a check reports, exactly as the `moat.report/v1` contract
// (../shared/design/cli-and-report.md) carries it, plus the contract of the
// sink that checks hand findings to.
//
// A Finding is a plain value. Checks fill in what they know (rule, path,
// owner, layer, package, a rule-specific `detail`); finalize_finding() then
// computes the fingerprint. Report writers (report.h, sarif.h) only read.
//
// Fingerprint (documented in docs/findings.md, stable across runs and machines):
//   hex(sha256("moat-fp/v1" NUL rule_id NUL target NUL subject NUL diff_id NUL detail))
// where target is "filesystem" or "config", subject is the path (filesystem)
// or config_field (config), diff_id is the layer's diffID or "" when the
// finding has no layer, and detail is the rule-specific discriminator (the
// capability text, the account name, the history line ...; often empty).
// Deliberately left out: severity (a policy change must not orphan ignore
// entries), owner, mode and package (a finding about one file stays one
// finding however its metadata changes), the layer index (adding a base layer
// must not change every fingerprint) and the image reference (the same layer
// in two tags is the same finding).
//
// Order (sort_findings): severity (critical first), category, rule_id,
// target (filesystem first), path / config_field as bytes, layer index,
// detail, fingerprint. Total, so two runs give identical reports.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "storage/result.h"

namespace moat {

// Ordered so that a larger value is more severe: comparisons read naturally.
enum class Severity : int { Info = 0, Low = 1, Medium = 2, High = 3, Critical = 4 };

std::string_view severity_name(Severity s);
// "critical" ... "info" (case-sensitive, as the contract spells them).
std::optional<Severity> parse_severity(std::string_view s);
// All five, most severe first (the report's summary order).
inline constexpr Severity kSeverities[] = {Severity::Critical, Severity::High, Severity::Medium, Severity::Low,
                                           Severity::Info};

enum class Category {
  Setuid, Setgid, Capability, Permission, Ownership, Device, Account, Secret, SensitiveFile, Integrity, Config,
};
std::string_view category_name(Category c);  // "sensitive-file" etc., as in the contract
std::optional<Category> parse_category(std::string_view s);

enum class Target { Filesystem, Config };
std::string_view target_name(Target t);

// The layer that added the entry a finding is about.
struct LayerRef {
  size_t index = 0;
  std::string diff_id;
  std::string created_by;
};

struct Owner {
  uint32_t uid = 0, gid = 0;
  std::optional<std::string> user, group;  // nullopt: the image's passwd/group do not define the id
};

// Issue 5 fills this in; a report never holds a whole secret.
struct SecretInfo {
  std::string kind;      // "github-pat"
  std::string redacted;  // "ghp_****…Ab"
  uint64_t line = 0;
};

struct Finding {
  std::string rule_id;
  Category category = Category::Config;
  Severity severity = Severity::Info;
  std::string title;        // the rule's one-line title
  std::string message;      // this finding in one sentence, naming its subject
  std::string description;  // why it matters (the rule's text, for table --verbose and SARIF)
  std::string remediation;  // what to do about it
  Target target = Target::Filesystem;
  std::string path;          // filesystem: absolute path inside the image, the image's bytes
  std::string config_field;  // config: "User", "ExposedPorts", "History", ...
  std::optional<LayerRef> layer;
  bool deleted = false;  // a later layer removes or replaces the entry
  std::optional<Owner> owner;
  std::optional<uint32_t> mode;  // 07777 bits; reported as octal text "4755"
  std::string package;           // owning package, empty: none / unknown
  std::optional<SecretInfo> secret;
  std::string detail;  // rule-specific fingerprint discriminator, not reported by itself
  std::string fingerprint;
};

// "4755", "0644", "1777": four octal digits of the 07777 bits.
std::string mode_string(uint32_t mode);

// The fingerprint as documented above (64 lowercase hex digits).
std::string compute_fingerprint(const Finding& f);
// Sets f.fingerprint. Call once all identifying fields are set.
void finalize_finding(Finding& f);

// Strict weak order described above; sort_findings applies it.
bool finding_less(const Finding& a, const Finding& b);
void sort_findings(std::vector<Finding>& findings);

struct SeverityCounts {
  uint64_t critical = 0, high = 0, medium = 0, low = 0, info = 0;
  uint64_t& operator[](Severity s);
  uint64_t operator[](Severity s) const;
};
SeverityCounts count_by_severity(const std::vector<Finding>& findings);

// --fail-on: `threshold` is a severity name or "none".
// Returns the exit status the contract gives a completed scan: 1 when some
// finding is at or above the threshold, else 0; "none" never fails.
// An unknown threshold is an Error (the CLI maps it to status 2).
Result<int> fail_on_status(const std::vector<Finding>& findings, std::string_view threshold);

// The findings sink: the one contract between checks and whatever collects
// their output (ripgrep's searcher/sink.rs). A check calls on_finding() for
// each finding and obeys the answer:
//   Flow::Continue  keep going;
//   Flow::Stop      stop this check cleanly (e.g. a finding limit was hit):
//                   not an error, the scan still completes;
//   an Error        the sink failed (e.g. writing a stream): the check stops
//                   and returns the Error, and the scan fails (exit 2).
// on_error() records a per-item problem (unreadable file, malformed package
// database) that does not stop the scan: it lands in the report's "errors".
// A sink is used by one thread: a parallel walk gives each worker its own and
// merges them at the end (threads own their scratch state).
enum class Flow { Continue, Stop };

class FindingSink {
 public:
  virtual ~FindingSink() = default;
  virtual Result<Flow> on_finding(Finding f) = 0;
  virtual void on_error(std::string message) = 0;
};

// Collects everything, optionally up to a limit (then answers Stop).
class VectorSink final : public FindingSink {
 public:
  explicit VectorSink(size_t limit = SIZE_MAX) : limit_(limit) {}
  Result<Flow> on_finding(Finding f) override;
  void on_error(std::string message) override { errors.push_back(std::move(message)); }
  // Moves another sink's findings and errors into this one.
  void merge(VectorSink&& other);

  std::vector<Finding> findings;
  std::vector<std::string> errors;

 private:
  size_t limit_;
};

}  // namespace moat
