#include "scanner/report/report.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "storage/fsutil.h"

namespace moat {

using ojson = nlohmann::ordered_json;

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 if none starts there.
size_t utf8_seq(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)) return 0;  // overlong
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;                       // surrogate
  if (cp > 0x10FFFF) return 0;
  return n;
}

ojson str_or_null(const std::string& s) { return s.empty() ? ojson(nullptr) : ojson(json_text(s)); }

ojson finding_json(const Finding& f) {
  ojson j;
  j["rule_id"] = f.rule_id;
  j["category"] = category_name(f.category);
  j["severity"] = severity_name(f.severity);
  j["title"] = json_text(f.title);
  j["message"] = json_text(f.message);
  j["target"] = target_name(f.target);
  if (f.target == Target::Filesystem) {
    j["path"] = json_text(f.path);
    j["config_field"] = nullptr;
  } else {
    j["path"] = nullptr;
    j["config_field"] = json_text(f.config_field);
  }
  if (f.layer) {
    j["layer"] = {{"index", f.layer->index}, {"diff_id", f.layer->diff_id}, {"created_by", json_text(f.layer->created_by)}};
  } else {
    j["layer"] = nullptr;
  }
  j["deleted"] = f.deleted;
  if (f.owner) {
    ojson o;
    o["uid"] = f.owner->uid;
    o["gid"] = f.owner->gid;
    o["user"] = f.owner->user ? ojson(json_text(*f.owner->user)) : ojson(nullptr);
    o["group"] = f.owner->group ? ojson(json_text(*f.owner->group)) : ojson(nullptr);
    j["owner"] = o;
  } else {
    j["owner"] = nullptr;
  }
  j["mode"] = f.mode ? ojson(mode_string(*f.mode)) : ojson(nullptr);
  j["package"] = str_or_null(f.package);
  if (f.secret) {
    j["secret"] = {{"kind", f.secret->kind}, {"redacted", json_text(f.secret->redacted)}, {"line", f.secret->line}};
  } else {
    j["secret"] = nullptr;
  }
  j["fingerprint"] = f.fingerprint;
  return j;
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_seq(s, i);
    if (!n) return false;
    i += n;
  }
  return true;
}

std::string json_text(std::string_view bytes) {
  if (is_valid_utf8(bytes)) return std::string(bytes);
  std::string out;
  out.reserve(bytes.size() + 16);
  for (size_t i = 0; i < bytes.size();) {
    size_t n = utf8_seq(bytes, i);
    if (n == 0) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", static_cast<unsigned char>(bytes[i]));
      out += buf;
      ++i;
    } else if (bytes[i] == '\\') {
      out += "\\\\";
      ++i;
    } else {
      out.append(bytes.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string report_json(const Report& r) {
  ojson layers = ojson::array();
  for (const auto& l : r.image.layers) {
    ojson lj;
    lj["index"] = l.index;
    lj["digest"] = str_or_null(l.blob_digest);
    lj["diff_id"] = l.diff_id;
    lj["created_by"] = json_text(l.created_by);
    layers.push_back(lj);
  }
  std::vector<Finding> sorted = r.findings;
  sort_findings(sorted);
  ojson findings = ojson::array();
  for (const auto& f : sorted) findings.push_back(finding_json(f));
  SeverityCounts counts = count_by_severity(sorted);

  ojson j;
  j["schema"] = "moat.report/v1";
  j["moat_version"] = MOAT_VERSION;
  j["image"]["reference"] = json_text(r.reference);
  j["image"]["manifest_digest"] = str_or_null(r.image.manifest_digest);
  j["image"]["config_digest"] = str_or_null(r.image.config_digest);
  j["image"]["layers"] = layers;
  j["scan"]["mode"] = r.scan.mode;
  j["scan"]["rootless"] = r.scan.rootless;
  j["scan"]["id_mapping"] = r.scan.id_mapping;
  j["scan"]["duration_ms"] = r.scan.duration_ms;
  j["scan"]["checks"] = r.scan.checks;
  j["findings"] = findings;
  j["summary"] = ojson::object();
  for (Severity s : kSeverities) j["summary"][std::string(severity_name(s))] = counts[s];
  ojson errors = ojson::array();
  for (const auto& e : r.errors) errors.push_back(json_text(e));
  j["errors"] = errors;
  // Everything image-derived went through json_text(); `replace` is only a
  // last guard so a missed string can never make the dump throw.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

namespace {

const char* severity_color(Severity s) {
  switch (s) {
    case Severity::Critical: return "\033[1;31m";
    case Severity::High: return "\033[31m";
    case Severity::Medium: return "\033[33m";
    case Severity::Low: return "\033[36m";
    case Severity::Info: return "\033[2m";
  }
  return "";
}

// Cuts printable text to `width` columns, marking the cut. printable() output
// is ASCII plus valid UTF-8; count code points, not bytes, so names in other
// scripts are not cut short (wide CJK glyphs may still overrun a little).
std::string fit(const std::string& s, size_t width) {
  size_t cols = 0, i = 0;
  while (i < s.size()) {
    size_t n = utf8_seq(s, i);
    if (!n) n = 1;
    if (cols + 1 > width) break;
    ++cols;
    i += n;
  }
  if (i >= s.size()) return s;
  // Back off to leave room for "...".
  std::string head;
  cols = 0;
  for (size_t k = 0; k < s.size() && cols + 3 < width;) {
    size_t n = utf8_seq(s, k);
    if (!n) n = 1;
    head.append(s, k, n);
    k += n;
    ++cols;
  }
  return head + "...";
}

// Word-wraps trusted (registry) text to width columns, every line indented.
std::string wrap(const std::string& text, const std::string& indent, size_t width) {
  std::string out, line = indent;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t sp = text.find(' ', pos);
    if (sp == std::string::npos) sp = text.size();
    std::string word = text.substr(pos, sp - pos);
    pos = sp + 1;
    if (line.size() > indent.size() && line.size() + 1 + word.size() > width) {
      out += line + "\n";
      line = std::string(indent.size(), ' ');
    }
    if (line.size() > indent.size() && line.back() != ' ') line += ' ';
    line += word;
  }
  if (line.size() > indent.size()) out += line + "\n";
  return out;
}

std::string owner_text(const Owner& o) {
  std::string u = o.user ? printable(*o.user, 32) : std::to_string(o.uid);
  std::string g = o.group ? printable(*o.group, 32) : std::to_string(o.gid);
  return u + ":" + g;
}

}  // namespace

std::string report_table(const Report& r, bool color) { return report_table(r, TableOptions{color, false, 100}); }

std::string report_table(const Report& r, const TableOptions& opt) {
  const bool color = opt.color;
  const size_t width = std::max<size_t>(opt.width, 40);
  auto bold = [&](const std::string& s) { return color ? "\033[1m" + s + "\033[0m" : s; };
  std::string out;
  out += bold("Image") + "  " + printable(r.reference) + "\n";
  if (!r.image.config_digest.empty()) out += "  config   " + r.image.config_digest + "\n";
  if (!r.image.manifest_digest.empty()) out += "  manifest " + r.image.manifest_digest + "\n";
  if (!r.image.platform.empty()) out += "  platform " + r.image.platform + "\n";
  if (r.scan.mode == "in-place")
    out += "  scanned  in place (an unpacked tree; owners and modes as on disk)\n";
  else if (r.scan.mode != "none")
    out += "  scanned  " + r.scan.mode + (r.scan.mode == "overlay" ? " mount" : " merge") + ", id mapping " +
           r.scan.id_mapping + (r.scan.rootless ? ", rootless" : ", as root") + "\n";
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

  if (r.findings.empty()) {
    if (r.scan.checks.empty()) out += "No checks ran (none are implemented in this version): no findings.\n";
    else out += "No findings.\n";
  } else {
    std::vector<Finding> sorted = r.findings;
    sort_findings(sorted);
    SeverityCounts counts = count_by_severity(sorted);
    // Per severity: a header, then per finding one line "rule  subject" and
    // indented lines for the message and the facts (layer, owner, mode, package).
    for (Severity s : kSeverities) {
      if (!counts[s]) continue;
      std::string head = std::string(severity_name(s));
      for (auto& c : head) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      head += " (" + std::to_string(counts[s]) + ")";
      out += color ? std::string(severity_color(s)) + head + "\033[0m\n" : head + "\n";
      for (const auto& f : sorted) {
        if (f.severity != s) continue;
        std::string subject = f.target == Target::Config ? "config " + printable(f.config_field) : printable(f.path, 4096);
        std::string rule = f.rule_id;
        if (rule.size() < 26) rule.resize(26, ' ');
        out += fit("  " + rule + " " + subject, width) + "\n";
        std::string msg = printable(f.message.empty() ? f.title : f.message, 4096);
        out += fit("      " + msg, width) + "\n";
        std::string facts;
        auto add = [&](const std::string& t) { facts += (facts.empty() ? "" : "  ") + t; };
        if (f.layer) add("layer " + std::to_string(f.layer->index));
        if (f.deleted) add("(deleted later)");
        if (f.owner) add("owner " + owner_text(*f.owner));
        if (f.mode) add("mode " + mode_string(*f.mode));
        if (!f.package.empty()) add("package " + printable(f.package, 64));
        if (f.secret) add("secret " + printable(f.secret->redacted, 64));
        add("id " + f.fingerprint.substr(0, 12));
        out += fit("      " + facts, width) + "\n";
        if (opt.verbose) {
          if (!f.description.empty()) out += wrap(f.description, "      why: ", width);
          if (!f.remediation.empty()) out += wrap(f.remediation, "      fix: ", width);
        }
      }
      out += "\n";
    }
    std::string total = std::to_string(sorted.size()) + " finding" + (sorted.size() == 1 ? "" : "s") + ":";
    for (Severity s : kSeverities) total += " " + std::to_string(counts[s]) + " " + std::string(severity_name(s)) + ",";
    total.pop_back();
    out += bold(total) + "\n";
  }
  if (r.suppressed)
    out += std::to_string(r.suppressed) + " finding" + (r.suppressed == 1 ? "" : "s") + " suppressed by the ignore file.\n";
  if (!r.errors.empty()) {
    out += "\n" + bold("Errors") + " (the scan completed; these items could not be checked)\n";
    for (const auto& e : r.errors) out += fit("  " + printable(e, 4096), width) + "\n";
  }
  return out;
}

}  // namespace moat
