#include "scanner/report/findings.h"

#include <algorithm>
#include <tuple>

#include "storage/digest.h"

namespace moat {

std::string_view severity_name(Severity s) {
  switch (s) {
    case Severity::Critical: return "critical";
    case Severity::High: return "high";
    case Severity::Medium: return "medium";
    case Severity::Low: return "low";
    case Severity::Info: return "info";
  }
  return "info";
}

std::optional<Severity> parse_severity(std::string_view s) {
  for (Severity v : kSeverities)
    if (severity_name(v) == s) return v;
  return std::nullopt;
}

namespace {
constexpr Category kCategories[] = {
    Category::Setuid, Category::Setgid, Category::Capability, Category::Permission,
    Category::Ownership, Category::Device, Category::Account, Category::Secret,
    Category::SensitiveFile, Category::Integrity, Category::Config,
};
}  // namespace

std::string_view category_name(Category c) {
  switch (c) {
    case Category::Setuid: return "setuid";
    case Category::Setgid: return "setgid";
    case Category::Capability: return "capability";
    case Category::Permission: return "permission";
    case Category::Ownership: return "ownership";
    case Category::Device: return "device";
    case Category::Account: return "account";
    case Category::Secret: return "secret";
    case Category::SensitiveFile: return "sensitive-file";
    case Category::Integrity: return "integrity";
    case Category::Config: return "config";
  }
  return "config";
}

std::optional<Category> parse_category(std::string_view s) {
  for (Category c : kCategories)
    if (category_name(c) == s) return c;
  return std::nullopt;
}

std::string_view target_name(Target t) { return t == Target::Config ? "config" : "filesystem"; }

std::string mode_string(uint32_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", mode & 07777u);
  return buf;
}

std::string compute_fingerprint(const Finding& f) {
  std::string in = "moat-fp/v1";
  auto field = [&](std::string_view s) {
    in.push_back('\0');
    in.append(s);
  };
  field(f.rule_id);
  field(target_name(f.target));
  field(f.target == Target::Config ? f.config_field : f.path);
  field(f.layer ? f.layer->diff_id : std::string());
  field(f.detail);
  return digest_hex(sha256_digest(in));
}

void finalize_finding(Finding& f) { f.fingerprint = compute_fingerprint(f); }

bool finding_less(const Finding& a, const Finding& b) {
  auto key = [](const Finding& f) {
    const std::string& subject = f.target == Target::Config ? f.config_field : f.path;
    size_t layer = f.layer ? f.layer->index : SIZE_MAX;
    // Severity descending: negate. Strings compare as bytes (std::string <).
    return std::make_tuple(-static_cast<int>(f.severity), static_cast<int>(f.category), std::cref(f.rule_id),
                           static_cast<int>(f.target), std::cref(subject), layer, std::cref(f.detail),
                           std::cref(f.fingerprint));
  };
  return key(a) < key(b);
}

void sort_findings(std::vector<Finding>& findings) { std::sort(findings.begin(), findings.end(), finding_less); }

uint64_t& SeverityCounts::operator[](Severity s) {
  switch (s) {
    case Severity::Critical: return critical;
    case Severity::High: return high;
    case Severity::Medium: return medium;
    case Severity::Low: return low;
    case Severity::Info: return info;
  }
  return info;
}

uint64_t SeverityCounts::operator[](Severity s) const { return const_cast<SeverityCounts&>(*this)[s]; }

SeverityCounts count_by_severity(const std::vector<Finding>& findings) {
  SeverityCounts c;
  for (const auto& f : findings) ++c[f.severity];
  return c;
}

Result<int> fail_on_status(const std::vector<Finding>& findings, std::string_view threshold) {
  if (threshold == "none") return 0;
  auto t = parse_severity(threshold);
  if (!t) return Error{"--fail-on must be one of critical, high, medium, low, info, none (got \"" +
                       std::string(threshold) + "\")"};
  for (const auto& f : findings)
    if (f.severity >= *t) return 1;
  return 0;
}

Result<Flow> VectorSink::on_finding(Finding f) {
  if (findings.size() >= limit_) return Flow::Stop;
  findings.push_back(std::move(f));
  return Flow::Continue;
}

void VectorSink::merge(VectorSink&& other) {
  findings.insert(findings.end(), std::make_move_iterator(other.findings.begin()),
                  std::make_move_iterator(other.findings.end()));
  errors.insert(errors.end(), std::make_move_iterator(other.errors.begin()), std::make_move_iterator(other.errors.end()));
  other.findings.clear();
  other.errors.clear();
}

}  // namespace moat
