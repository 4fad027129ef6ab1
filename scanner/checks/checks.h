// The check registry: one explicit table of every check moat runs (no static
// self-registration, so the list is greppable and its order is the listing
// order of `moat rules list`).
//
// A check has an id (the finding's rule_id), a category from the report
// contract, a default severity, texts for reports and SARIF help, a version
// that goes into cache keys (bump it when the check's logic changes what it
// reports), and for filesystem checks a cheap gate: a test on the entry's
// metadata alone, run before any content is read (Trivy fanal's Required()).
//
// Severities are data: rules/policy/severities.json names the severity of
// every check and wins; default_severity only applies under a custom policy
// that leaves a rule out. A test keeps the shipped policy and this table in
// step (every id in both).
#pragma once

#include <bitset>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rules/policy/policy.h"
#include "scanner/report/findings.h"
#include "scanner/image/identity.h"
#include "scanner/image/packages.h"
#include "storage/layer_index.h"
#include "storage/store.h"
#include "storage/result.h"

namespace moat {

// The gate sees the metadata index entry as the merged tree shows it; for a
// hardlink the caller passes the target's entry with the link's path.
using CheckGate = bool (*)(const IndexEntry& e);

struct CheckInfo {
  std::string_view id;
  Category category;
  Severity default_severity;
  std::string_view title;        // one line, as in the report
  std::string_view description;  // why it matters (SARIF help, table --verbose)
  std::string_view remediation;  // what to do
  int version;
  CheckGate gate;  // null: not a per-entry check (accounts, image config)
};

std::span<const CheckInfo> all_checks();
const CheckInfo* find_check(std::string_view id);

// The severity a policy gives a check (its default when the policy is silent).
Severity check_severity(const CheckInfo& c, const policy::Policy& p);

// A Finding with the check's identity and texts filled in; the caller adds
// the subject (path or config_field, owner, layer ...) and calls finalize_finding().
Finding make_finding(const CheckInfo& c, const policy::Policy& p);
// Same by id; an unknown id is an Error (a programming error, but never an assert).
Result<Finding> make_finding(std::string_view id, const policy::Policy& p);

// `--checks LIST`: comma-separated check ids and/or category names
// ("setuid,config-sudo"); empty selects all. Unknown names are an Error.
// The result keeps registry order and has no duplicates.
Result<std::vector<const CheckInfo*>> select_checks(std::string_view list);

// "id@version" of the selected checks joined by ',': part of any cache key.
std::string checks_cache_key(const std::vector<const CheckInfo*>& checks);

// Rule ids the policy names that no check has, and checks the policy gives no
// severity: both empty for the shipped policy (tested).
struct PolicyMismatch {
  std::vector<std::string> unknown_in_policy, missing_from_policy;
};
PolicyMismatch policy_mismatches(const policy::Policy& p);

// ---------------------------------------------------------------------------
// Running the checks. The walker (not this file) decides what an entry is and
// where its bytes are; these functions decide what is wrong with it.

// Which checks run: a bit per registry position.
class CheckSelection {
 public:
  static CheckSelection all();
  static CheckSelection of(const std::vector<const CheckInfo*>& checks);
  bool has(const CheckInfo& c) const;
  bool has(std::string_view id) const;

 private:
  std::bitset<64> bits_;
};

// Everything the checks know about the image, built once before the walk and
// shared read-only by every walker thread.
struct CheckContext {
  const policy::Policy& policy;
  const Identity& identity;
  const PackageDb& packages;              // set_merged_usr() already applied
  const policy::Distribution* distro;     // policy.distribution_for(os_release_ids(...)); may be null
  CheckSelection selection = CheckSelection::all();
};

// One entry of the merged tree as the checks see it.
struct EntryView {
  // Metadata from the layer index (owner, mode, type, size, xattrs): right
  // under any id mapping. `path` is the entry's path in the merged tree; for a
  // hardlink pass the target's metadata with the link's path.
  const IndexEntry& meta;
  std::optional<LayerRef> layer;  // the layer that last wrote the entry
  bool deleted = false;           // a later layer removes or replaces it
  // Content, only called after a gate passed and only for regular files:
  // the first `max` bytes (fewer if the file is shorter)...
  std::function<Result<std::string>(size_t max)> read_head;
  // ...and the digest of the whole file, streamed (lowercase hex).
  std::function<Result<std::string>(DigestAlgo)> hash;
};

// Runs every selected per-entry check on one entry and hands the findings to
// the sink. Per-entry problems (an unreadable file, a malformed capability
// xattr) go to sink.on_error() and the walk goes on; only the sink failing is
// an Error. Checks that need content skip it when the callback is empty.
// A deleted entry (shadowed by a later layer) only goes through the
// sensitive-* checks: it ships in the image (a leak) but no container runs or
// sees it, so a setuid file removed later is silent (issue 4's look-alikes).
//   setuid/setgid (regular files only; setgid directories are not findings):
//     one finding per bit, the first that applies of -writable (group/other
//     write), -script ("#!"), -unpackaged, -expected (packaged and in the
//     distribution's list), -packaged.
//   capability: decoded text is the finding's detail.
//   world-writable: files, and directories without the sticky bit.
//   shadow-readable, private-key-readable: others can read (rules/policy).
//   unknown-owner: uid/gid the image's passwd/group lack; 0 is always known,
//     and a database the image does not have at all is not consulted (a
//     scratch image has no /etc/passwd: every file would be "unknown").
//   device-node: character and block devices.
//   integrity-mismatch: regular, not deleted, with a recorded digest.
//   sensitive-*: rules/policy patterns, then size and content markers.
Status check_entry(const CheckContext& ctx, const EntryView& e, FindingSink& sink);

// The image config's history with the layer each step made: steps that are
// not `empty_layer` map to the image's layers in order (as storage maps
// created_by). When the counts disagree no step gets a layer (a guess could
// blame the wrong one). Entries that are not objects are skipped; a
// `created_by` that is not a string reads as "".
struct HistoryStep {
  size_t index = 0;  // position in the config's history array
  std::string created_by;
  std::optional<LayerRef> layer;
};
std::vector<HistoryStep> history_steps(const ImageRecord& img, const nlohmann::json& config);

// The image-config checks (config-*) over the config document bytes
// (ImageRecord::config) and the image's layers (for the layer a history entry
// made). An empty config (dir: trees) has nothing to check; a config that is
// not a JSON object is an Error.
Result<std::vector<Finding>> config_findings(const ImageRecord& img, const CheckContext& ctx);

}  // namespace moat
