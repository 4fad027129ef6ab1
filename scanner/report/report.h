// The scan report: the `moat.report/v1` JSON contract (docs/cli-and-report in
// ../shared/design, schema in docs/report.schema.json) and its table form.
// SARIF is in sarif.h.
//
// Wire format (JSON): an object with
//   schema        "moat.report/v1"
//   moat_version  string
//   image         {reference, manifest_digest|null, config_digest|null,
//                  layers: [{index, digest|null, diff_id, created_by}]}
//   scan          {mode, rootless, id_mapping, duration_ms, checks: [string]}
//   findings      [finding], sorted (findings.h: sort order)
//   summary       {critical, high, medium, low, info}: counts of `findings`
//   errors        [string]    per-item problems that did not stop the scan
// A finding is
//   {rule_id, category, severity, title, message, target,
//    path (string|null), config_field (string|null),
//    layer ({index, diff_id, created_by}|null), deleted,
//    owner ({uid, gid, user|null, group|null}|null), mode ("4755"|null),
//    package (string|null), secret ({kind, redacted, line}|null), fingerprint}
// `message` and `config_field` (null for filesystem findings) are additions to
// the contract's example; nothing was removed or renamed.
// Keys are emitted in a fixed order so two runs give byte-identical output
// apart from duration_ms.
//
// Strings from the image (paths, created_by, names, messages) are bytes, not
// necessarily UTF-8. A string that is valid UTF-8 is written unchanged; one
// that is not has every byte outside a valid sequence written as the four
// characters \xHH and every backslash doubled, so the JSON stays valid and
// the bytes can be recovered (json_text() below). Fingerprints are computed
// over the raw bytes, so two paths that differ only in invalid bytes stay two
// findings.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "scanner/report/findings.h"
#include "storage/store.h"

namespace moat {

struct ScanInfo {
  std::string mode = "none";        // overlay | userspace | in-place (dir: tree, owners as on disk) | none
  bool rootless = true;
  std::string id_mapping = "none";  // subuid | single | none
  int64_t duration_ms = 0;
  std::vector<std::string> checks;
};

struct Report {
  std::string reference;
  ImageRecord image;
  ScanInfo scan;
  std::vector<Finding> findings;  // after ignore entries were applied; writers sort a copy
  size_t suppressed = 0;          // findings an ignore file removed (table footer only)
  std::vector<std::string> errors;
};

std::string report_json(const Report& r);

struct TableOptions {
  bool color = false;    // the caller decides: a terminal and no NO_COLOR
  bool verbose = false;  // add each finding's description and remediation
  size_t width = 100;    // lines are cut to this many columns
};
std::string report_table(const Report& r, bool color);
std::string report_table(const Report& r, const TableOptions& opt);

// The JSON-safe form of image bytes described above.
std::string json_text(std::string_view bytes);
// True when s is well-formed UTF-8 (no overlongs, surrogates or values above U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace moat
