// See secret_context.h.
#include "scanner/checks/secret_context.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <re2/re2.h>
#include <set>
#include <tuple>

#include "rules/secrets/engine.h"
#include "scanner/checks/secret_scan.h"
#include "storage/fd.h"
#include "storage/fsutil.h"

namespace moat {

namespace {

// Hex digest of one layer's copy of `path`, or an Error.
Result<std::string> layer_file_digest(const Store& store, const std::string& diff_id, const std::string& path,
                                      DigestAlgo algo) {
  Fd root(::open(store.diff_dir(diff_id).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return sys_error("open layer " + diff_id);
  if (path.size() < 2 || path[0] != '/') return Error{"not an absolute path"};
  MOAT_ASSIGN_OR_RETURN(Fd fd, open_beneath(root.get(), path.substr(1), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  FileHasher h(algo);
  char buf[1 << 16];
  for (;;) {
    ssize_t r = ::read(fd.get(), buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return sys_error("read");
    if (r == 0) break;
    h.update(buf, static_cast<size_t>(r));
  }
  return h.finish_hex();
}

// "/usr/lib/python3.11/urllib/__pycache__/request.cpython-311.pyc" ->
// "/usr/lib/python3.11/urllib/request.py"; "" when `path` is no such .pyc.
std::string pyc_source(const std::string& path) {
  static const std::string kDir = "/__pycache__/";
  size_t d = path.rfind(kDir);
  if (d == std::string::npos || !path.ends_with(".pyc")) return {};
  std::string name = path.substr(d + kDir.size());
  if (name.find('/') != std::string::npos) return {};
  size_t dot = name.find('.');
  if (dot == 0 || dot == std::string::npos) return {};
  return path.substr(0, d + 1) + name.substr(0, dot) + ".py";
}

std::string package_note(const std::string& pkg) {
  return " (shipped unchanged by package " + printable(pkg, 64) + ": distribution material, reported at info)";
}

}  // namespace

void mark_package_material(std::vector<Finding>& secrets, const Store& store, const PackageDb& packages,
                           std::vector<std::string>& errors) {
  // (diff_id, path) -> package when the layer's copy is the package's own bytes.
  std::map<std::pair<std::string, std::string>, std::optional<std::string>> verdict;
  auto unchanged = [&](const std::string& diff_id, const std::string& path) -> std::optional<std::string> {
    auto key = std::make_pair(diff_id, path);
    if (auto it = verdict.find(key); it != verdict.end()) return it->second;
    std::optional<std::string> out;
    if (const ExpectedDigest* want = packages.digest_of(path)) {
      auto got = layer_file_digest(store, diff_id, path, want->algo);
      if (!got) errors.push_back(printable(path, 4096) + ": cannot check its package digest: " + got.error().describe());
      else if (*got == want->hex) out = want->package;
    }
    verdict.emplace(key, out);
    return out;
  };
  // Secrets found in unchanged package files: (diff_id, path, rule, secret fingerprint).
  std::set<std::tuple<std::string, std::string, std::string, std::string>> shipped;
  for (Finding& f : secrets) {
    if (f.category != Category::Secret || f.target != Target::Filesystem || !f.layer) continue;
    if (auto pkg = unchanged(f.layer->diff_id, f.path)) {
      f.severity = Severity::Info;
      f.package = *pkg;
      f.message += package_note(*pkg);
      shipped.emplace(f.layer->diff_id, f.path, f.rule_id, f.detail);
    }
  }
  for (Finding& f : secrets) {
    if (f.category != Category::Secret || f.target != Target::Filesystem || !f.layer) continue;
    if (f.severity == Severity::Info) continue;
    std::string src = pyc_source(f.path);
    if (src.empty()) continue;
    // The source may sit in this layer or any other; the secret must be the same.
    for (const auto& [diff, path, rule, fp] : shipped) {
      if (path != src || rule != f.rule_id || fp != f.detail) continue;
      (void)diff;
      const std::string* pkg = packages.owner_of(src);
      f.severity = Severity::Info;
      f.message += " (compiled from " + printable(src, 4096) + ", shipped unchanged by package " +
                   printable(pkg ? *pkg : std::string("?"), 64) + ": distribution material, reported at info)";
      break;
    }
  }
}

void merge_key_file_findings(std::vector<Finding>& findings) {
  using Place = std::tuple<std::string, size_t, bool>;  // path, layer index, deleted
  std::set<Place> keys;
  for (const Finding& f : findings)
    if (f.category == Category::Secret && f.target == Target::Filesystem && f.layer &&
        f.rule_id.starts_with("private-key."))
      keys.emplace(f.path, f.layer->index, f.deleted);
  if (keys.empty()) return;
  std::map<Place, std::string> folded;  // place -> the sensitive-file finding's title
  std::vector<Finding> out;
  out.reserve(findings.size());
  for (Finding& f : findings) {
    if (f.rule_id == "sensitive-ssh-key" && f.layer) {
      Place p{f.path, f.layer->index, f.deleted};
      if (keys.count(p)) {
        folded.emplace(p, f.title);
        continue;
      }
    }
    out.push_back(std::move(f));
  }
  for (Finding& f : out) {
    if (f.category != Category::Secret || !f.layer || !f.rule_id.starts_with("private-key.")) continue;
    auto it = folded.find(Place{f.path, f.layer->index, f.deleted});
    if (it != folded.end()) f.message += " (also a sensitive file: " + it->second + ")";
  }
  findings = std::move(out);
}

namespace {

// Each pattern's one capture group is a value to hide.
const std::vector<std::unique_ptr<RE2>>& credential_patterns() {
  static const std::vector<std::unique_ptr<RE2>> pats = [] {
    const char* kName =
        "(?:password|passwd|passphrase|pwd|secret|token|api[_.-]?key|apikey|access[_.-]?key|auth[_.-]?key|"
        "private[_.-]?key|credentials?)";
    std::vector<std::string> src = {
        // NAME=V, NAME: V, "NAME": "V" (the name may have a prefix and a suffix)
        std::string("(?i)[\\w.-]{0,60}") + kName + "[\\w.-]{0,30}[\"']?\\s{0,3}(?:=|:|=>)\\s{0,3}[\"']?([^\\s\"'`;&|)<>,]{3,})",
        // ENV NAME V (Dockerfile's old form)
        std::string("(?i)\\b(?:ENV|ARG)\\s+[\\w.-]{0,60}") + kName + "[\\w.-]{0,30}\\s+[\"']?([^\\s\"'`;&|)=]{3,})",
        // --password V, --token=V, --http-password=V
        "(?i)(?:^|\\s)--?[\\w-]{0,30}(?:password|passwd|pass|token|secret|api-?key)[\\w-]{0,15}(?:=|\\s{1,4})[\"']?"
        "([^\\s\"'`;&|)<>-][^\\s\"'`;&|)<>]{2,})",
        // -u user:V, --user user:V
        "(?:^|\\s)(?:-u|--user|--proxy-user)(?:=|\\s{1,4})[\"']?[^\\s:\"'`]{1,64}:([^\\s\"'`@]{3,})",
        // mysql ... -pV
        "\\b(?:mysql\\w*|mariadb\\S*)\\s[^|;&\\n]*?\\s-p[\"']?([^\\s\"'`-][^\\s\"'`]{2,})",
        // sshpass -p V ; ... login ... -p V
        "\\bsshpass\\s{1,4}-p\\s{0,4}[\"']?([^\\s\"'`]{3,})",
        "\\blogin\\b[^|;&\\n]{0,200}?\\s-p(?:=|\\s{1,4})[\"']?([^\\s\"'`]{3,})",
        // scheme://user:V@host
        "[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\\s:/?#@\"'`]{1,128}:([^\\s/?#@\"'`]{1,256})@",
    };
    std::vector<std::unique_ptr<RE2>> out;
    RE2::Options o;
    o.set_log_errors(false);
    for (const auto& s : src) out.push_back(std::make_unique<RE2>(s, o));
    return out;
  }();
  return pats;
}

// A value that is a reference or a placeholder, not a credential.
bool not_a_value(std::string_view v) {
  if (v.empty() || v[0] == '$' || v[0] == '%' || v[0] == '<' || v[0] == '{' || v[0] == '/') return true;
  if (v.find("${") != std::string_view::npos || v.find("$(") != std::string_view::npos) return true;
  if (v.find("://") != std::string_view::npos) return true;  // a URL: its userinfo has its own pattern
  static const std::set<std::string_view> kWords = {"true", "false", "null", "none", "yes", "no", "stdin", "-"};
  std::string low(v);
  for (auto& c : low) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return kWords.count(low) > 0 || std::all_of(low.begin(), low.end(), [](char c) { return c == '*' || c == 'x'; });
}

}  // namespace

std::vector<std::pair<size_t, size_t>> credential_spans(std::string_view text) {
  std::vector<std::pair<size_t, size_t>> out;
  re2::StringPiece whole(text.data(), text.size());
  for (const auto& re : credential_patterns()) {
    if (!re->ok()) continue;
    size_t pos = 0;
    re2::StringPiece m[2];
    while (pos < text.size() && re->Match(whole, pos, text.size(), RE2::UNANCHORED, m, 2)) {
      size_t end = static_cast<size_t>(m[0].data() - text.data()) + m[0].size();
      if (m[1].data() != nullptr && !m[1].empty()) {
        std::string_view v(m[1].data(), m[1].size());
        size_t b = static_cast<size_t>(m[1].data() - text.data());
        if (!not_a_value(v)) out.emplace_back(b, b + v.size());
      }
      pos = end > pos ? end : pos + 1;
    }
  }
  return out;
}

std::vector<Finding> env_credential_findings(const nlohmann::json& env, const std::vector<std::string>& reported,
                                             const secrets::SecretScanner& scanner) {
  static const RE2 kCredName(
      "(?i)(?:password|passwd|passphrase|secret|token|api_?key|access_?key|auth_?key|private_?key|credential|"
      "(?:^|_)pwd(?:_|$))");
  static const RE2 kNotCred("(?i)(?:_file|_path|_dir|_url|_uri|_endpoint|_name|_id|_type|_ttl|_header|_length|"
                            "_expiry|_expires|_timeout|_enabled|_version|_algorithm)$");
  std::vector<Finding> out;
  if (!env.is_array()) return out;
  for (const auto& e : env) {
    if (!e.is_string()) continue;
    const std::string s = e.get<std::string>();
    size_t eq = s.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    std::string name = s.substr(0, eq), value = s.substr(eq + 1);
    if (name == "PWD" || name == "OLDPWD") continue;
    if (!RE2::PartialMatch(name, kCredName) || RE2::PartialMatch(name, kNotCred)) continue;
    if (std::find(reported.begin(), reported.end(), name) != reported.end()) continue;
    if (value.size() < 4 || not_a_value(value)) continue;
    // Documentation values and placeholders stay silent, as for the rules.
    static const RE2 kPlaceholder(
        "(?i)(?:example|changeme|change_me|placeholder|dummy|sample|redacted|your[_-]|xxxx|^test$|^secret$|"
        "^password$|\\.\\.\\.)");
    if (RE2::PartialMatch(value, kPlaceholder)) continue;
    // Severity by evidence: a long random value is almost surely a credential,
    // a short or word-like one may be a setting.
    double h = secrets::shannon_entropy(value);
    Severity sev = value.size() >= 16 && h >= 3.5 ? Severity::High : value.size() >= 8 && h >= 2.5 ? Severity::Medium
                                                                                                     : Severity::Low;
    Finding f;
    f.rule_id = "config.env-credential";
    f.category = Category::Secret;
    f.severity = sev;
    f.title = "credential-like environment variable in the image config";
    f.description =
        "The image config's Env is visible to anyone who can pull or inspect the image (docker inspect, any "
        "registry client), and is passed to every container. A variable named like a password, token or key "
        "with a value set at build time ships that value.";
    f.remediation = "Remove the ENV; pass the credential at run time (orchestrator secrets, --env-file kept outside "
                    "the image) or read it from a mounted file (NAME_FILE=/run/secrets/...).";
    f.target = Target::Config;
    f.config_field = "Env";
    f.secret = SecretInfo{f.rule_id, secrets::redact(value), 0};
    f.detail = "Env " + name + "\n" + secrets::fingerprint(f.rule_id, value);
    f.message = "Env " + printable(redact_text(name, scanner), 128) + " is named like a credential and has a value set in the image (" +
                std::string(sev == Severity::High ? "long, random-looking" : sev == Severity::Medium ? "8+ characters" : "short") + ")";
    finalize_finding(f);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace moat
