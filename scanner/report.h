// The scan report: the `moat.report/v1` JSON contract (docs/cli-and-report in
// ../shared/design, schema in docs/report.schema.json) and its table form.
//
// Wire format (JSON): an object with
//   schema        "moat.report/v1"
//   moat_version  string
//   image         {reference, manifest_digest|null, config_digest|null,
//                  layers: [{index, digest|null, diff_id, created_by}]}
//   scan          {mode, rootless, id_mapping, duration_ms, checks: [string]}
//   findings      [finding]   (empty until checks exist)
//   summary       {critical, high, medium, low, info}
//   errors        [string]    per-item problems that did not stop the scan
// Keys are emitted in a fixed order so two runs give byte-identical output
// apart from duration_ms.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "storage/store.h"

namespace moat {

struct ScanInfo {
  std::string mode = "none";        // overlay | userspace | none (no filesystem checks ran)
  bool rootless = true;
  std::string id_mapping = "none";  // subuid | single | none
  int64_t duration_ms = 0;
  std::vector<std::string> checks;
};

struct Report {
  std::string reference;
  ImageRecord image;
  ScanInfo scan;
  std::vector<std::string> errors;
};

std::string report_json(const Report& r);
std::string report_table(const Report& r, bool color);

}  // namespace moat
