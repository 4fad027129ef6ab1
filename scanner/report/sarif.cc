#include "scanner/report/sarif.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>

#include "scanner/checks/checks.h"

namespace moat {

using ojson = nlohmann::ordered_json;

namespace {

const char* sarif_level(Severity s) {
  switch (s) {
    case Severity::Critical:
    case Severity::High: return "error";
    case Severity::Medium: return "warning";
    case Severity::Low:
    case Severity::Info: return "note";
  }
  return "note";
}

const char* security_severity(Severity s) {
  switch (s) {
    case Severity::Critical: return "9.5";
    case Severity::High: return "8.0";
    case Severity::Medium: return "5.5";
    case Severity::Low: return "3.0";
    case Severity::Info: return nullptr;
  }
  return nullptr;
}

// "setuid-unpackaged" -> "SetuidUnpackaged", "capability" -> "CapabilityCheck".
std::string pascal_case(const std::string& id) {
  std::string out;
  bool up = true;
  for (char c : id) {
    if (c == '-' || c == '_' || c == '.') {
      up = true;
      continue;
    }
    out.push_back(up ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c);
    up = false;
  }
  // The multitool compares case-insensitively: "capability" needs more than a capital.
  if (out.size() == id.size()) out += "Check";
  return out;
}

ojson rule_json(const std::string& id, Category cat, Severity sev, const std::string& title,
                const std::string& description, const std::string& remediation) {
  ojson r;
  r["id"] = id;
  r["name"] = pascal_case(id);  // SARIF1001: name must differ from id; GitHub shows it
  r["shortDescription"] = {{"text", title}};
  r["fullDescription"] = {{"text", description.empty() ? title : description}};
  std::string text = description.empty() ? title : description;
  std::string md = "**" + title + "**\n\n" + text;
  if (!remediation.empty()) {
    text += "\n\nRemediation: " + remediation;
    md += "\n\n**Remediation:** " + remediation;
  }
  r["help"] = {{"text", text}, {"markdown", md}};
  r["defaultConfiguration"] = {{"level", sarif_level(sev)}};
  ojson props;
  props["tags"] = {"security", std::string(category_name(cat))};
  props["precision"] = "high";
  if (const char* ss = security_severity(sev)) props["security-severity"] = ss;
  props["moat-category"] = category_name(cat);
  props["moat-severity"] = severity_name(sev);
  r["properties"] = props;
  return r;
}

}  // namespace

std::string percent_encode(std::string_view bytes, bool keep_slash) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : bytes) {
    bool unreserved = std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

std::string report_sarif(const Report& r) {
  const auto& p = policy::builtin_policy();
  if (p.ok()) return report_sarif(r, p.value());
  return report_sarif(r, policy::Policy{});
}

std::string report_sarif(const Report& r, const policy::Policy& p) {
  std::vector<Finding> sorted = r.findings;
  sort_findings(sorted);

  // Rules: the registry, then unknown ids from findings (first finding's texts).
  ojson rules = ojson::array();
  std::map<std::string, size_t> index;
  for (const auto& c : all_checks()) {
    index[std::string(c.id)] = rules.size();
    rules.push_back(rule_json(std::string(c.id), c.category, check_severity(c, p), std::string(c.title),
                              std::string(c.description), std::string(c.remediation)));
  }
  std::map<std::string, const Finding*> extra;
  for (const auto& f : sorted)
    if (!index.count(f.rule_id)) extra.emplace(f.rule_id, &f);
  for (const auto& [id, f] : extra) {
    index[id] = rules.size();
    rules.push_back(rule_json(json_text(id), f->category, f->severity, json_text(f->title), json_text(f->description),
                              json_text(f->remediation)));
  }

  ojson results = ojson::array();
  for (const auto& f : sorted) {
    ojson res;
    res["ruleId"] = json_text(f.rule_id);
    res["ruleIndex"] = index[f.rule_id];
    res["level"] = sarif_level(f.severity);
    std::string msg = f.message.empty() ? f.title : f.message;
    res["message"] = {{"text", json_text(msg)}};
    ojson loc;
    if (f.target == Target::Filesystem) {
      std::string_view path = f.path;
      while (!path.empty() && path.front() == '/') path.remove_prefix(1);
      loc["physicalLocation"] = {
          {"artifactLocation", {{"uri", percent_encode(path.empty() ? "." : path, true)}, {"uriBaseId", "IMAGE_ROOT"}}},
          {"region", {{"startLine", f.secret && f.secret->line > 0 ? f.secret->line : 1}}}};
    } else {
      loc["physicalLocation"] = {
          {"artifactLocation",
           {{"uri", percent_encode(r.reference.empty() ? "image" : r.reference, true)}}},
          {"region", {{"startLine", 1}}}};
      loc["logicalLocations"] = ojson::array(
          {{{"name", json_text(f.config_field)}, {"fullyQualifiedName", "config." + json_text(f.config_field)},
            {"kind", "member"}}});
    }
    res["locations"] = ojson::array({loc});
    res["partialFingerprints"] = {{"moat/v1", f.fingerprint}};
    ojson props;
    props["severity"] = severity_name(f.severity);
    props["category"] = category_name(f.category);
    if (f.layer)
      props["layer"] = {{"index", f.layer->index}, {"diff_id", f.layer->diff_id},
                        {"created_by", json_text(f.layer->created_by)}};
    props["deleted"] = f.deleted;
    if (f.owner) {
      props["owner"] = {{"uid", f.owner->uid}, {"gid", f.owner->gid}};
      if (f.owner->user) props["owner"]["user"] = json_text(*f.owner->user);
      if (f.owner->group) props["owner"]["group"] = json_text(*f.owner->group);
    }
    if (f.mode) props["mode"] = mode_string(*f.mode);
    if (!f.package.empty()) props["package"] = json_text(f.package);
    if (f.secret) props["secret"] = {{"kind", f.secret->kind}, {"redacted", json_text(f.secret->redacted)}};
    res["properties"] = props;
    results.push_back(res);
  }

  ojson notifications = ojson::array();
  for (const auto& e : r.errors)
    notifications.push_back({{"level", "warning"}, {"message", {{"text", json_text(e)}}}});

  ojson run;
  run["tool"]["driver"] = {{"name", "moat"},
                           {"version", MOAT_VERSION},
                           {"semanticVersion", MOAT_VERSION},
                           {"rules", rules}};
  run["originalUriBaseIds"] = {
      {"IMAGE_ROOT", {{"uri", "file:///"}, {"description", {{"text", "The root of the image's merged filesystem"}}}}}};
  ojson inv;
  inv["executionSuccessful"] = true;
  if (!notifications.empty()) inv["toolExecutionNotifications"] = notifications;
  run["invocations"] = ojson::array({inv});
  run["results"] = results;
  run["columnKind"] = "unicodeCodePoints";
  run["properties"] = {{"image",
                        {{"reference", json_text(r.reference)},
                         {"manifest_digest", r.image.manifest_digest},
                         {"config_digest", r.image.config_digest}}}};

  ojson doc;
  doc["$schema"] = "https://json.schemastore.org/sarif-2.1.0.json";
  doc["version"] = "2.1.0";
  doc["runs"] = ojson::array({run});
  return doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace moat
