#include "scanner/report.h"

#include <nlohmann/json.hpp>

#include "storage/fsutil.h"

namespace moat {

using ojson = nlohmann::ordered_json;

namespace {
ojson str_or_null(const std::string& s) { return s.empty() ? ojson(nullptr) : ojson(s); }
}  // namespace

std::string report_json(const Report& r) {
  ojson layers = ojson::array();
  for (const auto& l : r.image.layers) {
    ojson lj;
    lj["index"] = l.index;
    lj["digest"] = str_or_null(l.blob_digest);
    lj["diff_id"] = l.diff_id;
    lj["created_by"] = l.created_by;
    layers.push_back(lj);
  }
  ojson j;
  j["schema"] = "moat.report/v1";
  j["moat_version"] = MOAT_VERSION;
  j["image"]["reference"] = r.reference;
  j["image"]["manifest_digest"] = str_or_null(r.image.manifest_digest);
  j["image"]["config_digest"] = str_or_null(r.image.config_digest);
  j["image"]["layers"] = layers;
  j["scan"]["mode"] = r.scan.mode;
  j["scan"]["rootless"] = r.scan.rootless;
  j["scan"]["id_mapping"] = r.scan.id_mapping;
  j["scan"]["duration_ms"] = r.scan.duration_ms;
  j["scan"]["checks"] = r.scan.checks;
  j["findings"] = ojson::array();
  j["summary"] = {{"critical", 0}, {"high", 0}, {"medium", 0}, {"low", 0}, {"info", 0}};
  j["errors"] = r.errors;
  // Image strings may hold invalid UTF-8: replace rather than fail, so the JSON stays valid.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string report_table(const Report& r, bool color) {
  auto bold = [&](const std::string& s) { return color ? "\033[1m" + s + "\033[0m" : s; };
  std::string out;
  out += bold("Image") + "  " + printable(r.reference) + "\n";
  if (!r.image.config_digest.empty()) out += "  config   " + r.image.config_digest + "\n";
  if (!r.image.manifest_digest.empty()) out += "  manifest " + r.image.manifest_digest + "\n";
  if (!r.image.platform.empty()) out += "  platform " + r.image.platform + "\n";
  out += "\n" + bold("Layers") + "\n";
  char buf[256];
  std::snprintf(buf, sizeof buf, "  %-3s  %-19s  %10s  %8s  %s\n", "#", "DIFF ID", "SIZE", "ENTRIES", "CREATED BY");
  out += buf;
  for (const auto& l : r.image.layers) {
    std::string cb = printable(l.created_by, 200);
    if (cb.size() > 50) cb = cb.substr(0, 47) + "...";
    std::snprintf(buf, sizeof buf, "  %-3zu  %-19s  %10s  %8llu  %s\n", l.index, l.diff_id.substr(0, 19).c_str(),
                  human_bytes(l.tar_size).c_str(), static_cast<unsigned long long>(l.entries), cb.c_str());
    out += buf;
  }
  out += "\n";
  if (r.scan.checks.empty()) out += "No checks ran (none are implemented in this version): no findings.\n";
  else out += "No findings.\n";
  return out;
}

}  // namespace moat
