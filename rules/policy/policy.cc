#include "rules/policy/policy.h"

#include <fnmatch.h>

#include <algorithm>
#include <nlohmann/json.hpp>

namespace moat::policy {

using json = nlohmann::json;

namespace {

std::string_view basename_of(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

bool glob(const std::string& pattern, std::string_view s, int flags) {
  // fnmatch needs NUL-terminated text; image paths never contain NUL.
  return fnmatch(pattern.c_str(), std::string(s).c_str(), flags) == 0;
}

bool any_glob(const std::vector<std::string>& patterns, std::string_view s, int flags) {
  return std::any_of(patterns.begin(), patterns.end(), [&](const std::string& p) { return glob(p, s, flags); });
}

// Small validation helpers: each names the file and the JSON location.
struct Ctx {
  std::string where;
  Error err(const std::string& what) const { return Error{"policy " + where + ": " + what}; }
};

Status only_keys(const json& obj, std::initializer_list<std::string_view> allowed, const Ctx& c) {
  if (!obj.is_object()) return c.err("expected an object");
  for (const auto& [k, v] : obj.items()) {
    if (k == "comment") continue;
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) return c.err("unknown key \"" + k + "\"");
  }
  return {};
}

Result<std::string> get_string(const json& obj, const char* key, const Ctx& c, bool required = true) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (required) return c.err(std::string("missing \"") + key + "\"");
    return std::string();
  }
  if (!it->is_string() || it->get<std::string>().empty()) return c.err(std::string("\"") + key + "\" must be a non-empty string");
  return it->get<std::string>();
}

Result<std::vector<std::string>> get_strings(const json& obj, const char* key, const Ctx& c) {
  std::vector<std::string> out;
  auto it = obj.find(key);
  if (it == obj.end()) return out;
  if (!it->is_array()) return c.err(std::string("\"") + key + "\" must be an array of strings");
  for (const auto& v : *it) {
    if (!v.is_string() || v.get<std::string>().empty()) return c.err(std::string("\"") + key + "\" holds a non-string or empty entry");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Status check_abs_paths(const std::vector<std::string>& paths, const char* key, const Ctx& c) {
  for (const auto& p : paths)
    if (p[0] != '/') return c.err(std::string("\"") + key + "\" entry \"" + p + "\" is not an absolute path");
  return {};
}

Status parse_severities(const json& doc, Policy& out, const Ctx& c) {
  MOAT_TRY(only_keys(doc, {"schema", "severities"}, c));
  auto it = doc.find("severities");
  if (it == doc.end() || !it->is_object()) return c.err("\"severities\" must be an object");
  for (const auto& [rule, sev] : it->items()) {
    if (rule.empty()) return c.err("empty rule id");
    if (!sev.is_string() || !is_severity_name(sev.get<std::string>()))
      return c.err("severity of " + rule + " must be one of critical, high, medium, low, info");
    out.severities[rule] = sev.get<std::string>();
  }
  return {};
}

Status parse_setuid(const json& doc, Policy& out, const Ctx& c) {
  MOAT_TRY(only_keys(doc, {"schema", "distributions"}, c));
  auto it = doc.find("distributions");
  if (it == doc.end() || !it->is_array()) return c.err("\"distributions\" must be an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const json& d = (*it)[i];
    Ctx dc{c.where + " distributions[" + std::to_string(i) + "]"};
    MOAT_TRY(only_keys(d, {"name", "os_release_ids", "setuid", "setgid"}, dc));
    Distribution dist;
    MOAT_ASSIGN_OR_RETURN(dist.name, get_string(d, "name", dc));
    MOAT_ASSIGN_OR_RETURN(dist.os_release_ids, get_strings(d, "os_release_ids", dc));
    if (dist.os_release_ids.empty()) return dc.err("\"os_release_ids\" must name at least one ID");
    MOAT_ASSIGN_OR_RETURN(auto su, get_strings(d, "setuid", dc));
    MOAT_ASSIGN_OR_RETURN(auto sg, get_strings(d, "setgid", dc));
    MOAT_TRY(check_abs_paths(su, "setuid", dc));
    MOAT_TRY(check_abs_paths(sg, "setgid", dc));
    for (const auto& p : su) dist.setuid.insert(usr_merged(p));
    for (const auto& p : sg) dist.setgid.insert(usr_merged(p));
    out.distributions.push_back(std::move(dist));
  }
  return {};
}

Status parse_sensitive(const json& doc, Policy& out, const Ctx& c) {
  MOAT_TRY(only_keys(doc, {"schema", "patterns", "protected"}, c));
  auto pats = doc.find("patterns");
  if (pats != doc.end()) {
    if (!pats->is_array()) return c.err("\"patterns\" must be an array");
    for (size_t i = 0; i < pats->size(); ++i) {
      const json& p = (*pats)[i];
      Ctx pc{c.where + " patterns[" + std::to_string(i) + "]"};
      MOAT_TRY(only_keys(p, {"rule", "kind", "names", "paths", "except_names", "content_markers", "min_size",
                             "examples", "negative_examples"},
                         pc));
      SensitivePattern sp;
      MOAT_ASSIGN_OR_RETURN(sp.rule, get_string(p, "rule", pc));
      MOAT_ASSIGN_OR_RETURN(auto kind, get_string(p, "kind", pc));
      if (kind == "file") sp.kind = Kind::File;
      else if (kind == "dir") sp.kind = Kind::Dir;
      else return pc.err("\"kind\" must be file or dir");
      MOAT_ASSIGN_OR_RETURN(sp.names, get_strings(p, "names", pc));
      MOAT_ASSIGN_OR_RETURN(sp.paths, get_strings(p, "paths", pc));
      MOAT_ASSIGN_OR_RETURN(sp.except_names, get_strings(p, "except_names", pc));
      MOAT_ASSIGN_OR_RETURN(sp.content_markers, get_strings(p, "content_markers", pc));
      MOAT_ASSIGN_OR_RETURN(sp.examples, get_strings(p, "examples", pc));
      MOAT_ASSIGN_OR_RETURN(sp.negative_examples, get_strings(p, "negative_examples", pc));
      if (sp.names.empty() && sp.paths.empty()) return pc.err("needs \"names\" or \"paths\"");
      MOAT_TRY(check_abs_paths(sp.paths, "paths", pc));
      for (const auto& n : sp.names)
        if (n.find('/') != std::string::npos) return pc.err("\"names\" entry \"" + n + "\" contains '/': use \"paths\"");
      if (auto ms = p.find("min_size"); ms != p.end()) {
        if (!ms->is_number_unsigned()) return pc.err("\"min_size\" must be a non-negative integer");
        sp.min_size = ms->get<uint64_t>();
      }
      if (sp.examples.empty()) return pc.err("needs at least one example");
      for (const auto& e : sp.examples)
        if (!sp.matches_path(e)) return pc.err("does not match its example " + e);
      for (const auto& e : sp.negative_examples)
        if (sp.matches_path(e)) return pc.err("matches its negative example " + e);
      out.sensitive.push_back(std::move(sp));
    }
  }
  auto prot = doc.find("protected");
  if (prot != doc.end()) {
    if (!prot->is_array()) return c.err("\"protected\" must be an array");
    for (size_t i = 0; i < prot->size(); ++i) {
      const json& p = (*prot)[i];
      Ctx pc{c.where + " protected[" + std::to_string(i) + "]"};
      MOAT_TRY(only_keys(p, {"rule", "paths", "examples", "negative_examples"}, pc));
      ProtectedFiles pf;
      MOAT_ASSIGN_OR_RETURN(pf.rule, get_string(p, "rule", pc));
      MOAT_ASSIGN_OR_RETURN(pf.paths, get_strings(p, "paths", pc));
      MOAT_ASSIGN_OR_RETURN(pf.examples, get_strings(p, "examples", pc));
      MOAT_ASSIGN_OR_RETURN(pf.negative_examples, get_strings(p, "negative_examples", pc));
      if (pf.paths.empty()) return pc.err("needs \"paths\"");
      MOAT_TRY(check_abs_paths(pf.paths, "paths", pc));
      if (pf.examples.empty()) return pc.err("needs at least one example");
      for (const auto& e : pf.examples)
        if (!pf.matches(e)) return pc.err("does not match its example " + e);
      for (const auto& e : pf.negative_examples)
        if (pf.matches(e)) return pc.err("matches its negative example " + e);
      out.protected_files.push_back(std::move(pf));
    }
  }
  return {};
}

}  // namespace

bool is_severity_name(std::string_view s) {
  return s == "critical" || s == "high" || s == "medium" || s == "low" || s == "info";
}

bool SensitivePattern::matches_path(std::string_view path) const {
  std::string_view base = basename_of(path);
  if (any_glob(except_names, base, 0)) return false;
  // FNM_PERIOD is off on purpose: ".env.*" and "*.env" must see dot files.
  return any_glob(names, base, 0) || any_glob(paths, path, FNM_PATHNAME);
}

bool SensitivePattern::matches_content(std::string_view head) const {
  if (content_markers.empty()) return true;
  return std::any_of(content_markers.begin(), content_markers.end(),
                     [&](const std::string& m) { return head.find(m) != std::string_view::npos; });
}

bool ProtectedFiles::matches(std::string_view path) const { return any_glob(paths, path, FNM_PATHNAME); }

bool Distribution::expects(std::string_view path, bool setgid_bit) const {
  const auto& set = setgid_bit ? setgid : setuid;
  return set.find(usr_merged(path)) != set.end();
}

std::optional<std::string> Policy::severity_of(std::string_view rule) const {
  auto it = severities.find(rule);
  if (it == severities.end()) return std::nullopt;
  return it->second;
}

const SensitivePattern* Policy::match_sensitive(std::string_view path, bool is_dir) const {
  for (const auto& p : sensitive) {
    if ((p.kind == Kind::Dir) != is_dir) continue;
    if (p.matches_path(path)) return &p;
  }
  return nullptr;
}

const ProtectedFiles* Policy::match_protected(std::string_view path) const {
  for (const auto& p : protected_files)
    if (p.matches(path)) return &p;
  return nullptr;
}

const Distribution* Policy::distribution_for(const std::vector<std::string>& ids) const {
  for (const auto& id : ids)
    for (const auto& d : distributions)
      if (std::find(d.os_release_ids.begin(), d.os_release_ids.end(), id) != d.os_release_ids.end()) return &d;
  return nullptr;
}

Result<Policy> parse_policy(const std::vector<PolicyFile>& files) {
  Policy out;
  for (const auto& f : files) {
    json doc = json::parse(f.text, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) return Error{"policy " + f.name + ": not a JSON object"};
    Ctx c{f.name};
    auto schema = doc.find("schema");
    if (schema == doc.end() || !schema->is_string()) return c.err("missing \"schema\"");
    const std::string s = schema->get<std::string>();
    if (s == "moat.policy.severities/v1") MOAT_TRY(parse_severities(doc, out, c));
    else if (s == "moat.policy.setuid/v1") MOAT_TRY(parse_setuid(doc, out, c));
    else if (s == "moat.policy.sensitive/v1") MOAT_TRY(parse_sensitive(doc, out, c));
    else return c.err("unknown schema \"" + s + "\"");
  }
  return out;
}

const Result<Policy>& builtin_policy() {
  static const Result<Policy> p = parse_policy(builtin_policy_files());
  return p;
}

std::string usr_merged(std::string_view path) {
  static constexpr std::string_view kMerged[] = {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"};
  for (auto dir : kMerged) {
    if (path.substr(0, dir.size()) == dir && (path.size() == dir.size() || path[dir.size()] == '/'))
      return "/usr" + std::string(path);
  }
  return std::string(path);
}

}  // namespace moat::policy
