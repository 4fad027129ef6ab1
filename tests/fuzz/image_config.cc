// Fuzz target: an image config document through what `moat scan` does with
// it after the pull (scanner/main.cc): config_secret_findings() (Env values,
// Labels, every history created_by), redact_for_report(), config_findings()
// (User, ExposedPorts, Healthcheck, ADD from a URL, sudo) on the redacted
// record, redact_findings() over them all, and the three report writers
// (JSON, SARIF, table) over the result.
//
// Input: the config JSON. The layer records get the created_by of each
// history step that made a layer, as the pull gives them (storage/image.cc,
// apply_config) when the counts match.
//
// Invariants: the JSON report parses; and no report holds a
// whole secret: every match of the built-in rules in any string of the config
// (keys included) is looked for in the three reports, unless the same bytes
// occur in two strings of the config (then one may be a place moat does not
// scan).
#include <nlohmann/json.hpp>

#include "rules/policy/policy.h"
#include "rules/secrets/engine.h"
#include "scanner/checks/checks.h"
#include "scanner/checks/secret_scan.h"
#include "scanner/report/report.h"
#include "scanner/report/sarif.h"
#include "tests/fuzz/builtin_scanner.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;
using json = nlohmann::json;

namespace {

const secrets::SecretScanner& scanner() { return fuzz::builtin_scanner(); }

// Every string of the document, keys included (at most `limit`).
void strings_of(const json& j, std::vector<std::string>& out, size_t limit) {
  if (out.size() >= limit) return;
  if (j.is_string()) {
    out.push_back(j.get<std::string>());
  } else if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      out.push_back(k);
      strings_of(v, out, limit);
    }
  } else if (j.is_array()) {
    for (const auto& v : j) strings_of(v, out, limit);
  }
}

size_t occurrences(const std::vector<std::string>& strings, const std::string& s) {
  size_t n = 0;
  for (const auto& t : strings)
    for (size_t p = t.find(s); p != std::string::npos; p = t.find(s, p + 1)) ++n;
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)scanner();
  MOAT_FUZZ_ASSERT(policy::builtin_policy().ok(), "the built-in policy does not load");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ImageRecord rec;
  rec.config.assign(reinterpret_cast<const char*>(data), size);
  rec.id = sha256_digest(rec.config).substr(7);
  rec.config_digest = "sha256:" + rec.id;
  json cfg = json::parse(rec.config, nullptr, false);
  if (cfg.is_object() && cfg.contains("history") && cfg["history"].is_array()) {
    for (const auto& h : cfg["history"]) {
      if (!h.is_object() || rec.layers.size() >= 16) continue;
      if (auto e = h.find("empty_layer"); e != h.end() && e->is_boolean() && e->get<bool>()) continue;
      LayerRecord l;
      l.index = rec.layers.size();
      l.diff_id = "sha256:" + std::string(64, static_cast<char>('a' + l.index % 6));
      if (auto cb = h.find("created_by"); cb != h.end() && cb->is_string()) l.created_by = cb->get<std::string>();
      rec.layers.push_back(std::move(l));
    }
  }

  auto secrets_in_config = config_secret_findings(rec, scanner());
  if (!secrets_in_config.ok()) {
    MOAT_FUZZ_ASSERT(!secrets_in_config.error().describe().empty(), "an error without a message");
    return 0;
  }
  const ImageRecord shown = redact_for_report(rec, scanner());
  MOAT_FUZZ_ASSERT(shown.layers.size() == rec.layers.size(), "redaction changed the layers");

  const policy::Policy& pol = policy::builtin_policy().value();
  Identity identity;
  PackageDb packages;
  CheckContext ctx{pol, identity, packages, nullptr, CheckSelection::all()};
  auto config = config_findings(shown, ctx);
  if (!config.ok()) {
    MOAT_FUZZ_ASSERT(!config.error().describe().empty(), "an error without a message");
    return 0;
  }

  Report r;
  r.reference = "oci:/fuzz/layout:latest";
  r.image = shown;
  r.findings = std::move(*secrets_in_config);
  for (auto& f : *config) r.findings.push_back(std::move(f));
  redact_findings(r.findings, r.errors, scanner());
  const std::string out_json = report_json(r), out_sarif = report_sarif(r, pol);
  const std::string out_table = report_table(r, TableOptions{false, true, 100});
  MOAT_FUZZ_ASSERT(!json::parse(out_json, nullptr, false).is_discarded(), "the JSON report is not JSON");

  std::vector<std::string> strings;
  strings_of(cfg, strings, 4096);
  for (const std::string& s : strings) {
    std::vector<std::string> found;
    auto st = scanner().scan_buffer(s.data(), s.size(), [&](const secrets::SecretFinding& f) {
      if (f.offset + f.length <= s.size()) found.push_back(s.substr(f.offset, f.length));
      return secrets::SinkAction::kContinue;
    });
    if (!st.ok()) continue;
    for (const std::string& secret : found) {
      // Short or starred matches are fragments a report may show legitimately
      // (the redacted forms themselves keep a few characters).
      if (secret.size() < 8 || secret.find('*') != std::string::npos || secret.find('\0') != std::string::npos) continue;
      if (occurrences(strings, secret) != 1) continue;
      const bool in_json = out_json.find(secret) != std::string::npos,
                 in_sarif = out_sarif.find(secret) != std::string::npos,
                 in_table = out_table.find(secret) != std::string::npos;
      // Triage (a fuzzer's input, not a real secret); MOAT_FUZZ_SHOW=1 adds the JSON report.
      if (in_json || in_sarif || in_table)
        std::fprintf(stderr, "match left whole: [%s] in [%s]\n%s\n", printable(secret, 400).c_str(),
                     printable(s, 400).c_str(), getenv("MOAT_FUZZ_SHOW") ? out_json.c_str() : "");
      MOAT_FUZZ_ASSERT(!in_json, "the JSON report holds a whole secret");
      MOAT_FUZZ_ASSERT(!in_sarif, "the SARIF report holds a whole secret");
      MOAT_FUZZ_ASSERT(!in_table, "the table report holds a whole secret");
    }
  }
  return 0;
}
