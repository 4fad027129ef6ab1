// Loader and validator for secret rule files. See rules.h.
#include "rules/secrets/rules.h"

#include <dirent.h>
#include <fcntl.h>
#include <hs/hs.h>
#include <openssl/evp.h>
#include <re2/re2.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "rules/secrets/builtin.h"

namespace moat::secrets {
namespace {

using nlohmann::json;

// Bumped whenever matching semantics change, so cached layer results made by
// an older engine are not reused (it is part of RuleSet::version()).
constexpr const char* kEngineVersion = "secrets-engine-3";  // 2: one finding per span, key blocks; 3: RE2 matches bytes

const std::set<std::string> kSeverities = {"critical", "high", "medium", "low", "info"};

Error rule_error(const std::string& origin, const std::string& msg) {
  return Error{origin + ": " + msg, 0, "see rules/secrets/README.md for the rule file schema"};
}

// A field that must be a string, if present.
Result<std::string> get_string(const json& j, const char* key, bool required, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (required) return rule_error(where, std::string("missing required field \"") + key + "\"");
    return std::string();
  }
  if (!it->is_string()) return rule_error(where, std::string("field \"") + key + "\" must be a string");
  return it->get<std::string>();
}

Result<std::vector<std::string>> get_strings(const json& j, const char* key, const std::string& where) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end()) return out;
  if (!it->is_array()) return rule_error(where, std::string("field \"") + key + "\" must be an array of strings");
  for (const auto& v : *it) {
    if (!v.is_string()) return rule_error(where, std::string("field \"") + key + "\" must be an array of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

// Examples are either "text" or {"text": "...", "secret": "..."}.
Result<std::vector<RuleExample>> get_examples(const json& j, const char* key, const std::string& where) {
  std::vector<RuleExample> out;
  auto it = j.find(key);
  if (it == j.end()) return out;
  if (!it->is_array()) return rule_error(where, std::string("field \"") + key + "\" must be an array");
  for (const auto& v : *it) {
    if (v.is_string()) {
      out.push_back({v.get<std::string>(), {}});
    } else if (v.is_object() && v.contains("text") && v["text"].is_string()) {
      RuleExample ex{v["text"].get<std::string>(), {}};
      if (v.contains("secret")) {
        if (!v["secret"].is_string()) return rule_error(where, std::string(key) + ": \"secret\" must be a string");
        ex.secret = v["secret"].get<std::string>();
      }
      out.push_back(std::move(ex));
    } else {
      return rule_error(where, std::string(key) + ": each entry is a string or {\"text\", \"secret\"}");
    }
  }
  return out;
}

Result<SecretRule> parse_rule(const json& j, const std::string& origin, size_t index) {
  std::string where = origin + ": rule " + std::to_string(index);
  if (!j.is_object()) return rule_error(where, "a rule must be a JSON object");
  SecretRule r;
  r.origin = origin;
  MOAT_ASSIGN_OR_RETURN(r.id, get_string(j, "id", true, where));
  where = origin + ": " + r.id;
  MOAT_ASSIGN_OR_RETURN(r.title, get_string(j, "title", true, where));
  MOAT_ASSIGN_OR_RETURN(r.category, get_string(j, "category", true, where));
  MOAT_ASSIGN_OR_RETURN(r.severity, get_string(j, "severity", true, where));
  MOAT_ASSIGN_OR_RETURN(r.pattern, get_string(j, "pattern", true, where));
  MOAT_ASSIGN_OR_RETURN(r.prefilter, get_string(j, "prefilter", false, where));
  MOAT_ASSIGN_OR_RETURN(r.block_end, get_string(j, "block_end", false, where));
  MOAT_ASSIGN_OR_RETURN(r.keywords, get_strings(j, "keywords", where));
  MOAT_ASSIGN_OR_RETURN(r.allow, get_strings(j, "allow", where));
  MOAT_ASSIGN_OR_RETURN(r.allow_match, get_strings(j, "allow_match", where));
  MOAT_ASSIGN_OR_RETURN(r.references, get_strings(j, "references", where));
  MOAT_ASSIGN_OR_RETURN(r.examples, get_examples(j, "examples", where));
  MOAT_ASSIGN_OR_RETURN(r.negative_examples, get_examples(j, "negative_examples", where));
  if (auto it = j.find("min_entropy"); it != j.end()) {
    if (!it->is_number()) return rule_error(where, "\"min_entropy\" must be a number");
    r.min_entropy = it->get<double>();
  }
  if (auto it = j.find("generic"); it != j.end()) {
    if (!it->is_boolean()) return rule_error(where, "\"generic\" must be true or false");
    r.generic = it->get<bool>();
  }
  static const std::set<std::string> known = {"id",       "title",     "category",         "severity",   "pattern",
                                              "prefilter", "keywords", "min_entropy",      "allow",      "allow_match", "generic",
                                              "examples", "negative_examples", "references", "description",
                                              "block_end"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    // An unknown key is most likely a misspelt optional one ("negative_example"),
    // which would silently switch a check off.
    if (!known.count(it.key())) return rule_error(where, "unknown field \"" + it.key() + "\"");
  }
  return r;
}

bool valid_id(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  auto ok_first = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!ok_first(id[0])) return false;
  return std::all_of(id.begin(), id.end(), [&](char c) { return ok_first(c) || c == '.' || c == '-' || c == '_'; });
}

// Everything about a rule that matching reads, in a canonical form for
// hashing: each field a length-prefixed string, lists with their counts.
// (Building nlohmann::json for every rule and dumping it cost 1-1.5 ms per
// digest of the 221 built-in rules, paid several times on every scan's
// start; this is a tenth of that.)
void put_field(std::string& out, std::string_view s) {
  out += std::to_string(s.size());
  out += ':';
  out += s;
}
void put_list(std::string& out, const std::vector<std::string>& v) {
  out += std::to_string(v.size());
  out += '[';
  for (const auto& s : v) put_field(out, s);
}
void put_examples(std::string& out, const std::vector<RuleExample>& v) {
  out += std::to_string(v.size());
  out += '[';
  for (const auto& e : v) {
    put_field(out, e.text);
    put_field(out, e.secret);
  }
}
void canonical_rule(std::string& out, const SecretRule& r) {
  put_field(out, r.id);
  put_field(out, r.severity);
  put_field(out, r.pattern);
  put_field(out, r.prefilter);
  put_list(out, r.keywords);
  char entropy[32];
  std::snprintf(entropy, sizeof entropy, "%.17g", r.min_entropy);
  put_field(out, entropy);
  put_list(out, r.allow);
  put_list(out, r.allow_match);
  put_field(out, r.generic ? "1" : "0");
  put_field(out, r.category);
  put_examples(out, r.examples);
  put_examples(out, r.negative_examples);
  put_field(out, r.block_end);
}

}  // namespace

std::string sha256_hex(std::string_view text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(text.data(), text.size(), md, &n, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

Status RuleSet::disable(const std::vector<std::string>& ids) {
  for (const auto& id : ids) {
    auto it = std::find_if(rules.begin(), rules.end(), [&](const SecretRule& r) { return r.id == id; });
    if (it == rules.end())
      return Error{"cannot disable secret rule \"" + id + "\": no rule has that id", 0,
                   "`moat rules list` prints every rule id"};
    rules.erase(it);
  }
  return ok_status();
}

std::string RuleSet::version() const {
  std::string text = std::string(kEngineVersion) + "\n";
  put_list(text, global_allow);
  text += std::to_string(rules.size()) + "\n";
  for (const auto& r : rules) canonical_rule(text, r);
  return "sha256:" + sha256_hex(text);
}

std::string rule_digest(const SecretRule& r) {
  std::string text = std::string(kEngineVersion) + "\n";
  canonical_rule(text, r);
  put_field(text, r.title);
  put_list(text, r.references);
  return sha256_hex(text);
}

Result<RuleSet> parse_rule_file(std::string_view json_text, const std::string& origin) {
  json doc = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return rule_error(origin, "not valid JSON");
  if (!doc.is_object()) return rule_error(origin, "a rule file is a JSON object with a \"rules\" array");
  RuleSet set;
  MOAT_ASSIGN_OR_RETURN(set.global_allow, get_strings(doc, "global_allow", origin));
  std::vector<std::string> file_allow;
  // A file-level "allow" applies to every rule of the file (a vendor's
  // documentation token, say), so it is not repeated in each rule.
  MOAT_ASSIGN_OR_RETURN(file_allow, get_strings(doc, "allow", origin));
  if (auto it = doc.find("rules"); it != doc.end()) {
    if (!it->is_array()) return rule_error(origin, "\"rules\" must be an array");
    size_t i = 0;
    for (const auto& j : *it) {
      MOAT_ASSIGN_OR_RETURN(SecretRule r, parse_rule(j, origin, i++));
      r.allow.insert(r.allow.end(), file_allow.begin(), file_allow.end());
      set.rules.push_back(std::move(r));
    }
  } else if (set.global_allow.empty()) {
    return rule_error(origin, "neither \"rules\" nor \"global_allow\": nothing to load");
  }
  return set;
}

Result<RuleSet> load_builtin_rules() {
  RuleSet all;
  for (const auto& f : builtin_rule_files()) {
    MOAT_ASSIGN_OR_RETURN(RuleSet one, parse_rule_file(f.content, "builtin:" + std::string(f.name)));
    // Built-in ids are unique by validation; append rather than replace so a
    // duplicate across built-in files is reported by validate(), not hidden.
    all.rules.insert(all.rules.end(), std::make_move_iterator(one.rules.begin()),
                     std::make_move_iterator(one.rules.end()));
    all.global_allow.insert(all.global_allow.end(), one.global_allow.begin(), one.global_allow.end());
  }
  return all;
}

Result<RuleSet> load_rule_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return sys_error("cannot open rule directory " + dir);
  std::vector<std::string> names;
  while (auto* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 5 && n.compare(n.size() - 5, 5, ".json") == 0) names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  RuleSet all;
  for (const auto& n : names) {
    std::string path = dir + "/" + n;
    std::ifstream in(path, std::ios::binary);
    if (!in) return sys_error("cannot read rule file " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    MOAT_ASSIGN_OR_RETURN(RuleSet one, parse_rule_file(ss.str(), path));
    for (auto& r : one.rules) {
      if (std::any_of(all.rules.begin(), all.rules.end(), [&](const SecretRule& x) { return x.id == r.id; }))
        return rule_error(path, "rule id \"" + r.id + "\" is defined twice in " + dir);
      all.rules.push_back(std::move(r));
    }
    all.global_allow.insert(all.global_allow.end(), one.global_allow.begin(), one.global_allow.end());
  }
  if (names.empty())
    return Error{"no *.json rule files in " + dir, 0, "--rules expects a directory of rule files"};
  return all;
}

void merge_rules(RuleSet& base, RuleSet extra) {
  for (auto& r : extra.rules) {
    auto it = std::find_if(base.rules.begin(), base.rules.end(), [&](const SecretRule& x) { return x.id == r.id; });
    if (it != base.rules.end())
      *it = std::move(r);
    else
      base.rules.push_back(std::move(r));
  }
  base.global_allow.insert(base.global_allow.end(), extra.global_allow.begin(), extra.global_allow.end());
}

Result<RuleSet> load_rules(const std::vector<std::string>& rule_dirs, const std::vector<std::string>& disabled,
                           bool builtin) {
  RuleSet set;
  if (builtin) {
    MOAT_ASSIGN_OR_RETURN(set, load_builtin_rules());
  }
  for (const auto& d : rule_dirs) {
    MOAT_ASSIGN_OR_RETURN(RuleSet extra, load_rule_dir(d));
    merge_rules(set, std::move(extra));
  }
  MOAT_TRY(set.disable(disabled));
  return set;
}

std::vector<std::string> validate(const RuleSet& set, bool compile_each) {
  std::vector<std::string> problems;
  std::map<std::string, std::string> seen;  // id -> origin
  RE2::Options ro;
  ro.set_log_errors(false);
  ro.set_encoding(RE2::Options::EncodingLatin1);  // as the engine compiles them (engine.cc, re2_options)
  for (const auto& g : set.global_allow) {
    RE2 re(g, ro);
    if (!re.ok()) problems.push_back("global_allow \"" + g + "\": " + re.error());
  }
  for (const auto& r : set.rules) {
    auto bad = [&](const std::string& m) { problems.push_back(r.id + " (" + r.origin + "): " + m); };
    if (!valid_id(r.id)) bad("id must be lowercase [a-z0-9._-], starting with a letter or digit");
    if (auto [it, fresh] = seen.emplace(r.id, r.origin); !fresh) bad("duplicate id (also in " + it->second + ")");
    if (r.title.empty()) bad("empty title");
    if (r.category != "secret") bad("category must be \"secret\"");
    if (!kSeverities.count(r.severity)) bad("severity must be critical, high, medium, low or info");
    if (r.examples.empty()) bad("needs at least one example");
    if (r.negative_examples.empty()) bad("needs at least one negative example");
    if (r.references.empty()) bad("needs at least one reference");
    if (!(r.min_entropy >= 0 && r.min_entropy <= 8)) bad("min_entropy must be between 0 and 8 bits per byte");
    for (const auto& k : r.keywords)
      if (k.empty()) bad("empty keyword");

    RE2 re("(?m)" + r.pattern, ro);
    if (!re.ok()) {
      bad("pattern does not compile in RE2: " + re.error());
    } else if (re.NumberOfCapturingGroups() != 1) {
      bad("pattern must have exactly one capture group (the secret), has " +
          std::to_string(re.NumberOfCapturingGroups()));
    }
    for (const auto* list : {&r.allow, &r.allow_match}) {
      for (const auto& a : *list) {
        RE2 are(a, ro);
        if (!are.ok()) bad("allow pattern \"" + a + "\" does not compile: " + are.error());
      }
    }

    // Each rule alone in Vectorscan: the combined database would only say
    // "something failed", this names the rule.
    if (!compile_each) continue;
    const std::string& hs_pat = r.prefilter.empty() ? r.pattern : r.prefilter;
    hs_database_t* db = nullptr;
    hs_compile_error_t* err = nullptr;
    if (hs_compile(hs_pat.c_str(), HS_FLAG_MULTILINE, HS_MODE_STREAM, nullptr, &db, &err) != HS_SUCCESS) {
      bad(std::string(r.prefilter.empty() ? "pattern" : "prefilter") + " does not compile in Vectorscan: " +
          (err && err->message ? err->message : "unknown error") +
          (r.prefilter.empty() ? " (add a Vectorscan-compatible \"prefilter\")" : ""));
      hs_free_compile_error(err);
      continue;
    }
    if (db) hs_free_database(db);
    hs_expr_info_t* info = nullptr;
    if (hs_expression_info(hs_pat.c_str(), HS_FLAG_MULTILINE, &info, &err) != HS_SUCCESS) {
      bad("Vectorscan cannot analyse the pattern");
      hs_free_compile_error(err);
      continue;
    }
    if (info->max_width > kMaxRuleWidth)
      bad("pattern may match more than " + std::to_string(kMaxRuleWidth) +
          " bytes; bound every repetition ({0,N} instead of * or +)");
    if (info->min_width == 0) bad("pattern can match the empty string");
    free(info);  // NOLINT: hs_expression_info allocates with the default allocator (malloc)
  }
  return problems;
}

}  // namespace moat::secrets
