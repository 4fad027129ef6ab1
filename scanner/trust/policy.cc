#include "scanner/trust/policy.h"

#include <pwd.h>
#include <unistd.h>

#include <set>

#include "scanner/trust/util.h"
#include "storage/digest.h"

namespace moat::trust {
namespace {

using json = nlohmann::json;
constexpr size_t kMaxPolicyBytes = 4u << 20;

// Rejects keys outside `allowed` (ParanoidUnmarshalJSONObject's "Unknown key").
Status only_keys(const json& obj, const std::set<std::string>& allowed, const std::string& where) {
  if (!obj.is_object()) return Error{where + ": a JSON object was expected"};
  for (auto it = obj.begin(); it != obj.end(); ++it)
    if (!allowed.count(it.key())) return Error{where + ": unknown key \"" + printable_text(it.key(), 80) + "\""};
  return ok_status();
}

Result<std::string> get_string(const json& obj, const std::string& key, const std::string& where) {
  const json& v = obj.at(key);
  if (!v.is_string()) return Error{where + ": \"" + key + "\" must be a string"};
  return v.get<std::string>();
}

Result<std::vector<std::string>> get_strings(const json& obj, const std::string& key, const std::string& where) {
  const json& v = obj.at(key);
  if (!v.is_array()) return Error{where + ": \"" + key + "\" must be a list of strings"};
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) return Error{where + ": \"" + key + "\" must be a list of strings"};
    out.push_back(e.get<std::string>());
  }
  if (out.empty()) return Error{where + ": \"" + key + "\" contains no entries"};
  return out;
}

Result<KeyMaterial> key_path(const json& obj, const std::string& key, const std::string& where) {
  MOAT_ASSIGN_OR_RETURN(std::string p, get_string(obj, key, where));
  if (p.empty()) return Error{where + ": \"" + key + "\" is empty"};
  return KeyMaterial{key + " " + p, p, {}};
}

Result<KeyMaterial> key_data(const json& v, const std::string& key, const std::string& where) {
  if (!v.is_string()) return Error{where + ": \"" + key + "\" must be a base64 string"};
  auto d = base64_decode(v.get<std::string>());
  if (!d) return Error{where + ": \"" + key + "\" is not valid base64"};
  return KeyMaterial{key, {}, std::move(*d)};
}

Result<SignedIdentity> parse_identity(const json& j, const std::string& where) {
  std::string w = where + ": signedIdentity";
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    return Error{w + ": an object with a \"type\" is expected"};
  std::string t = j["type"].get<std::string>();
  SignedIdentity si;
  if (t == "matchExact" || t == "matchRepoDigestOrExact" || t == "matchRepository") {
    MOAT_TRY(only_keys(j, {"type"}, w));
    si.type = t == "matchExact" ? IdentityMatch::MatchExact
              : t == "matchRepository" ? IdentityMatch::MatchRepository
                                       : IdentityMatch::MatchRepoDigestOrExact;
  } else if (t == "exactReference") {
    MOAT_TRY(only_keys(j, {"type", "dockerReference"}, w));
    if (!j.contains("dockerReference")) return Error{w + ": key \"dockerReference\" missing"};
    MOAT_ASSIGN_OR_RETURN(si.docker_reference, get_string(j, "dockerReference", w));
    auto r = parse_docker_ref(si.docker_reference);
    if (!r) return Error{w + ": invalid dockerReference: " + r.error().message};
    if (r->name_only()) return Error{w + ": dockerReference \"" + si.docker_reference + "\" contains neither a tag nor a digest"};
    si.type = IdentityMatch::ExactReference;
  } else if (t == "exactRepository") {
    MOAT_TRY(only_keys(j, {"type", "dockerRepository"}, w));
    if (!j.contains("dockerRepository")) return Error{w + ": key \"dockerRepository\" missing"};
    MOAT_ASSIGN_OR_RETURN(si.docker_repository, get_string(j, "dockerRepository", w));
    auto r = parse_docker_ref(si.docker_repository);
    if (!r) return Error{w + ": invalid dockerRepository: " + r.error().message};
    if (!r->name_only()) return Error{w + ": dockerRepository \"" + si.docker_repository + "\" must be a repository name without a tag or digest"};
    si.type = IdentityMatch::ExactRepository;
  } else if (t == "remapIdentity") {
    MOAT_TRY(only_keys(j, {"type", "prefix", "signedPrefix"}, w));
    for (const char* k : {"prefix", "signedPrefix"})
      if (!j.contains(k)) return Error{w + ": key \"" + std::string(k) + "\" missing"};
    MOAT_ASSIGN_OR_RETURN(si.prefix, get_string(j, "prefix", w));
    MOAT_ASSIGN_OR_RETURN(si.signed_prefix, get_string(j, "signedPrefix", w));
    for (const auto* p : {&si.prefix, &si.signed_prefix})
      if (!valid_remap_prefix(*p)) return Error{w + ": prefix \"" + *p + "\" is not valid"};
    si.type = IdentityMatch::RemapIdentity;
  } else {
    return Error{w + ": unknown type \"" + printable_text(t, 80) + "\""};
  }
  return si;
}

Result<Requirement> parse_signed_by(const json& j, const std::string& w) {
  MOAT_TRY(only_keys(j, {"type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"}, w));
  Requirement r;
  r.type = Requirement::Type::SignedBy;
  if (!j.contains("keyType")) return Error{w + ": keyType is missing (it must be \"GPGKeys\")"};
  MOAT_ASSIGN_OR_RETURN(std::string kt, get_string(j, "keyType", w));
  if (kt == "signedByGPGKeys" || kt == "X509Certificates" || kt == "signedByX509CAs")
    return Error{w + ": keyType \"" + kt + "\" is not implemented (by containers/image either); use \"GPGKeys\""};
  if (kt != "GPGKeys") return Error{w + ": unrecognized keyType \"" + printable_text(kt, 80) + "\""};
  int n = j.contains("keyPath") + j.contains("keyPaths") + j.contains("keyData");
  if (n == 0) return Error{w + ": exactly one of keyPath, keyPaths and keyData must be specified, none of them present"};
  if (n > 1) return Error{w + ": exactly one of keyPath, keyPaths and keyData must be specified, more than one present"};
  if (j.contains("keyPath")) {
    MOAT_ASSIGN_OR_RETURN(KeyMaterial k, key_path(j, "keyPath", w));
    r.keys.push_back(std::move(k));
  } else if (j.contains("keyPaths")) {
    MOAT_ASSIGN_OR_RETURN(auto ps, get_strings(j, "keyPaths", w));
    for (auto& p : ps) r.keys.push_back(KeyMaterial{"keyPaths " + p, p, {}});
  } else {
    MOAT_ASSIGN_OR_RETURN(KeyMaterial k, key_data(j["keyData"], "keyData", w));
    r.keys.push_back(std::move(k));
  }
  if (j.contains("signedIdentity")) {
    MOAT_ASSIGN_OR_RETURN(r.identity, parse_identity(j["signedIdentity"], w));
  }
  return r;
}

Result<KeyMaterial> path_or_data(const json& j, const std::string& pk, const std::string& dk, const std::string& w,
                                 bool required) {
  bool hp = j.contains(pk), hd = j.contains(dk);
  if (hp && hd) return Error{w + ": " + pk + " and " + dk + " cannot be used simultaneously"};
  if (!hp && !hd) {
    if (required) return Error{w + ": at least one of " + pk + " and " + dk + " must be specified"};
    return KeyMaterial{};
  }
  if (hp) return key_path(j, pk, w);
  return key_data(j[dk], dk, w);
}

// The one of NAMEPath, NAMEPaths, NAMEData, NAMEDatas that `j` holds (the
// caller has checked there is at most one) appended to `out`: sigstoreSigned
// reads its keys ("key...") and its Rekor keys ("rekorPublicKey...") alike.
// `number_datas`: name each NAMEDatas entry by its position.
Status read_keys(const json& j, const std::string& name, const std::string& w, std::vector<KeyMaterial>& out,
                 bool number_datas) {
  const std::string path = name + "Path", paths = name + "Paths", data = name + "Data", datas = name + "Datas";
  if (j.contains(path)) {
    MOAT_ASSIGN_OR_RETURN(KeyMaterial k, key_path(j, path, w));
    out.push_back(std::move(k));
  } else if (j.contains(paths)) {
    MOAT_ASSIGN_OR_RETURN(auto ps, get_strings(j, paths, w));
    for (auto& p : ps) out.push_back(KeyMaterial{paths + " " + p, p, {}});
  } else if (j.contains(data)) {
    MOAT_ASSIGN_OR_RETURN(KeyMaterial k, key_data(j[data], data, w));
    out.push_back(std::move(k));
  } else if (j.contains(datas)) {
    if (!j[datas].is_array() || j[datas].empty()) return Error{w + ": \"" + datas + "\" contains no entries"};
    for (const auto& e : j[datas]) {
      MOAT_ASSIGN_OR_RETURN(KeyMaterial k, key_data(e, datas, w));
      if (number_datas) k.origin = datas + " #" + std::to_string(out.size() + 1);
      out.push_back(std::move(k));
    }
  }
  return ok_status();
}

Result<Requirement> parse_sigstore(const json& j, const std::string& w) {
  MOAT_TRY(only_keys(j, {"type", "keyPath", "keyPaths", "keyData", "keyDatas", "fulcio", "rekorPublicKeyPath",
                         "rekorPublicKeyPaths", "rekorPublicKeyData", "rekorPublicKeyDatas", "pki", "signedIdentity"},
                     w));
  Requirement r;
  r.type = Requirement::Type::SigstoreSigned;
  int n = j.contains("keyPath") + j.contains("keyPaths") + j.contains("keyData") + j.contains("keyDatas") +
          j.contains("fulcio") + j.contains("pki");
  if (n != 1) return Error{w + ": exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must be specified"};
  if (!j.contains("fulcio") && !j.contains("pki")) {
    MOAT_TRY(read_keys(j, "key", w, r.keys, true));
  } else if (j.contains("fulcio")) {
    std::string fw = w + ": fulcio";
    const json& f = j["fulcio"];
    MOAT_TRY(only_keys(f, {"caPath", "caData", "oidcIssuer", "subjectEmail"}, fw));
    Fulcio fu;
    MOAT_ASSIGN_OR_RETURN(fu.ca, path_or_data(f, "caPath", "caData", fw, true));
    if (!f.contains("oidcIssuer")) return Error{fw + ": oidcIssuer not specified"};
    if (!f.contains("subjectEmail")) return Error{fw + ": subjectEmail not specified"};
    MOAT_ASSIGN_OR_RETURN(fu.oidc_issuer, get_string(f, "oidcIssuer", fw));
    MOAT_ASSIGN_OR_RETURN(fu.subject_email, get_string(f, "subjectEmail", fw));
    if (fu.oidc_issuer.empty()) return Error{fw + ": oidcIssuer not specified"};
    if (fu.subject_email.empty()) return Error{fw + ": subjectEmail not specified"};
    r.fulcio = std::move(fu);
  } else {
    std::string pw = w + ": pki";
    const json& p = j["pki"];
    MOAT_TRY(only_keys(p, {"caRootsPath", "caRootsData", "caIntermediatesPath", "caIntermediatesData", "subjectEmail",
                           "subjectHostname"},
                       pw));
    Pki pk;
    MOAT_ASSIGN_OR_RETURN(pk.roots, path_or_data(p, "caRootsPath", "caRootsData", pw, true));
    MOAT_ASSIGN_OR_RETURN(KeyMaterial inter, path_or_data(p, "caIntermediatesPath", "caIntermediatesData", pw, false));
    if (!inter.origin.empty()) pk.intermediates = std::move(inter);
    if (p.contains("subjectEmail")) {
      MOAT_ASSIGN_OR_RETURN(pk.subject_email, get_string(p, "subjectEmail", pw));
    }
    if (p.contains("subjectHostname")) {
      MOAT_ASSIGN_OR_RETURN(pk.subject_hostname, get_string(p, "subjectHostname", pw));
    }
    if (pk.subject_email.empty() && pk.subject_hostname.empty())
      return Error{pw + ": at least one of subjectEmail, subjectHostname must be specified"};
    r.pki = std::move(pk);
  }
  int rn = j.contains("rekorPublicKeyPath") + j.contains("rekorPublicKeyPaths") + j.contains("rekorPublicKeyData") +
           j.contains("rekorPublicKeyDatas");
  if (rn > 1)
    return Error{w + ": at most one of rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData and "
                     "rekorPublicKeyDatas can be used simultaneously"};
  MOAT_TRY(read_keys(j, "rekorPublicKey", w, r.rekor_keys, false));
  if (r.fulcio && r.rekor_keys.empty())
    return Error{w + ": at least one of rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData and "
                     "rekorPublicKeyDatas must be specified if fulcio is used"};
  if (r.pki && !r.rekor_keys.empty())
    return Error{w + ": rekorPublicKey* are not supported for pki"};
  if (j.contains("signedIdentity")) {
    MOAT_ASSIGN_OR_RETURN(r.identity, parse_identity(j["signedIdentity"], w));
  }
  return r;
}

Result<Requirement> parse_requirement(const json& j, const std::string& w) {
  if (!j.is_object()) return Error{w + ": a requirement must be an object"};
  if (!j.contains("type") || !j["type"].is_string()) return Error{w + ": requirement has no \"type\""};
  std::string t = j["type"].get<std::string>();
  if (t == "insecureAcceptAnything" || t == "reject") {
    MOAT_TRY(only_keys(j, {"type"}, w));
    Requirement r;
    r.type = t == "reject" ? Requirement::Type::Reject : Requirement::Type::InsecureAcceptAnything;
    return r;
  }
  if (t == "signedBy") return parse_signed_by(j, w + " (signedBy)");
  if (t == "sigstoreSigned") return parse_sigstore(j, w + " (sigstoreSigned)");
  if (t == "signedBaseLayer") return Error{w + ": requirement type \"signedBaseLayer\" is not supported"};
  return Error{w + ": unknown policy requirement type \"" + printable_text(t, 80) + "\""};
}

Result<std::vector<Requirement>> parse_requirements(const json& j, const std::string& w) {
  if (!j.is_array()) return Error{w + ": a list of requirements was expected"};
  if (j.empty()) return Error{w + ": the list of requirements must not be empty"};
  std::vector<Requirement> out;
  for (size_t i = 0; i < j.size(); ++i) {
    MOAT_ASSIGN_OR_RETURN(Requirement r, parse_requirement(j[i], w + "[" + std::to_string(i) + "]"));
    out.push_back(std::move(r));
  }
  return out;
}

// ValidatePolicyConfigurationScope of the transports moat knows; other
// transports' scopes are kept unchecked, as containers/image does.
Status validate_scope(const std::string& transport, const std::string& scope, const std::string& w) {
  if (scope.empty()) return ok_status();
  auto path_scope = [&](bool allow_root) -> Status {
    if (scope[0] != '/') return Error{w + ": scope \"" + scope + "\" must be an absolute path"};
    if (!allow_root && scope == "/") return Error{w + ": scope \"/\" is not allowed; use the transport default \"\""};
    // filepath.Clean(scope) == scope: no "//", no "." or ".." components, no trailing "/".
    std::string path = scope;
    if (transport == "oci" || transport == "oci-archive") {
      // The scope may carry an image name after a ':' (containers/image's oci scopes).
      if (size_t c = path.find(':'); c != std::string::npos) path = path.substr(0, c);
    }
    bool bad = path.size() > 1 && path.back() == '/';
    for (size_t p = 0; p < path.size() && !bad;) {
      size_t q = path.find('/', p + 1);
      std::string comp = path.substr(p + 1, q == std::string::npos ? std::string::npos : q - p - 1);
      if ((comp.empty() && path != "/") || comp == "." || comp == "..") bad = true;
      p = q == std::string::npos ? path.size() : q;
    }
    if (bad) return Error{w + ": scope \"" + scope + "\" is not a canonical path"};
    return ok_status();
  };
  if (transport == "dir") return path_scope(false);
  if (transport == "oci" || transport == "oci-archive") return path_scope(true);
  return ok_status();
}

}  // namespace

std::string SignedIdentity::describe() const {
  switch (type) {
    case IdentityMatch::MatchRepoDigestOrExact: return "matchRepoDigestOrExact";
    case IdentityMatch::MatchExact: return "matchExact";
    case IdentityMatch::MatchRepository: return "matchRepository";
    case IdentityMatch::ExactReference: return "exactReference " + docker_reference;
    case IdentityMatch::ExactRepository: return "exactRepository " + docker_repository;
    case IdentityMatch::RemapIdentity: return "remapIdentity " + prefix + " -> " + signed_prefix;
  }
  return "?";
}

std::string Requirement::type_name() const {
  switch (type) {
    case Type::InsecureAcceptAnything: return "insecureAcceptAnything";
    case Type::Reject: return "reject";
    case Type::SignedBy: return "signedBy";
    case Type::SigstoreSigned: return "sigstoreSigned";
  }
  return "?";
}

std::string Requirement::describe() const {
  std::string s = type_name();
  if (type != Type::SignedBy && type != Type::SigstoreSigned) return s;
  std::string keys_text;
  for (const auto& k : keys) keys_text += (keys_text.empty() ? "" : ", ") + k.origin;
  if (fulcio) keys_text = "fulcio CA (" + fulcio->ca.origin + "), issuer " + fulcio->oidc_issuer + ", email " + fulcio->subject_email;
  if (pki) keys_text = "pki roots (" + pki->roots.origin + ")";
  s += " [" + keys_text + "]";
  if (!rekor_keys.empty()) s += " rekor [" + rekor_keys[0].origin + (rekor_keys.size() > 1 ? ", ..." : "") + "]";
  s += " identity " + identity.describe();
  return s;
}

std::string Scope::describe() const {
  if (is_default) return "default";
  return "transports[\"" + transport + "\"][\"" + scope + "\"]";
}

Result<Policy> parse_policy(const std::string& bytes, const std::string& where) {
  MOAT_ASSIGN_OR_RETURN(json j, parse_strict_json(bytes, where));
  MOAT_TRY(only_keys(j, {"default", "transports"}, where));
  Policy p;
  p.path = where;
  p.sha256 = sha256_digest(bytes);
  if (!j.contains("default")) return Error{where + ": the default policy is missing"};
  MOAT_ASSIGN_OR_RETURN(p.default_reqs, parse_requirements(j["default"], where + ": default"));
  if (j.contains("transports")) {
    const json& t = j["transports"];
    if (!t.is_object()) return Error{where + ": \"transports\" must be an object"};
    for (auto it = t.begin(); it != t.end(); ++it) {
      std::string tw = where + ": transports[\"" + printable_text(it.key(), 80) + "\"]";
      if (!it.value().is_object()) return Error{tw + ": an object of scopes was expected"};
      auto& scopes = p.transports[it.key()];
      for (auto s = it.value().begin(); s != it.value().end(); ++s) {
        std::string sw = tw + "[\"" + printable_text(s.key(), 200) + "\"]";
        MOAT_TRY(validate_scope(it.key(), s.key(), sw));
        MOAT_ASSIGN_OR_RETURN(scopes[s.key()], parse_requirements(s.value(), sw));
      }
    }
  }
  return p;
}

Result<Policy> load_policy(const std::string& explicit_path) {
  std::string path = explicit_path == "system" ? "" : explicit_path;
  std::vector<std::string> tried;
  if (path.empty()) {
    std::string home;
    if (const char* h = getenv("HOME"); h && *h) home = h;
    else if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_dir) home = pw->pw_dir;
    std::string user = home.empty() ? "" : home + "/.config/containers/policy.json";
    if (!user.empty() && ::access(user.c_str(), F_OK) == 0) path = user;
    else if (::access("/etc/containers/policy.json", F_OK) == 0) path = "/etc/containers/policy.json";
    else
      return Error{"no policy.json found at " + (user.empty() ? "" : user + " or ") + "/etc/containers/policy.json"}
          .with_hint("give the trust policy with --policy FILE (containers-policy.json(5)); a missing policy is "
                     "never treated as \"accept\"");
  }
  auto bytes = read_file_limited(path, kMaxPolicyBytes);
  if (!bytes) return Error{"cannot read the trust policy: " + bytes.error().describe()}.with_hint(
                 "check the --policy path (containers-policy.json(5))");
  auto p = parse_policy(*bytes, path);
  if (!p) return Error{"invalid trust policy " + p.error().message}.with_hint(
              "fix the file (containers-policy.json(5)); skopeo and podman reject it too");
  return p;
}

Scope requirements_for(const Policy& p, const PolicyImage& img) {
  Scope s;
  auto t = p.transports.find(img.transport);
  if (t != p.transports.end()) {
    s.transport = img.transport;
    s.is_default = false;
    auto try_key = [&](const std::string& k) {
      auto it = t->second.find(k);
      if (it == t->second.end()) return false;
      s.scope = k;
      s.reqs = &it->second;
      return true;
    };
    if (!img.identity.empty() && try_key(img.identity)) return s;
    for (const auto& ns : img.namespaces)
      if (try_key(ns)) return s;
    if (try_key("")) return s;
  }
  s = Scope{};
  s.reqs = &p.default_reqs;
  return s;
}

namespace {
// refMatchesPrefix: "busybox" matches "busybox:latest" but not "busybox2".
bool ref_matches_prefix(const std::string& ref, const std::string& prefix) {
  if (ref.size() < prefix.size()) return false;
  if (ref.size() == prefix.size()) return ref == prefix;
  if (ref.compare(0, prefix.size(), prefix) != 0) return false;
  char c = ref[prefix.size()];
  return c == ':' || c == '/' || c == '@';
}

bool repo_digest_or_exact(const DockerRef& intended, const DockerRef& sig, std::string* why) {
  if (!intended.tag.empty()) {
    if (sig.text() == intended.text()) return true;
    *why = "the signature is for " + sig.text() + ", the image is " + intended.text();
    return false;
  }
  if (!intended.digest.empty()) {
    if (sig.name() == intended.name()) return true;
    *why = "the signature is for repository " + sig.name() + ", the image is in " + intended.name();
    return false;
  }
  *why = "the image reference " + intended.text() + " has neither a tag nor a digest";
  return false;
}
}  // namespace

bool identity_matches(const SignedIdentity& rule, const std::optional<DockerRef>& image,
                      const std::string& signed_reference, std::string* why) {
  std::string dummy;
  if (!why) why = &dummy;
  auto sig = parse_docker_ref(signed_reference);
  if (!sig) {
    *why = "the signed identity is not a valid reference: " + sig.error().message;
    return false;
  }
  switch (rule.type) {
    case IdentityMatch::ExactReference: {
      auto want = parse_docker_ref(rule.docker_reference);
      if (want && sig->text() == want->text()) return true;
      *why = "the signature is for " + sig->text() + ", the policy requires exactly " + rule.docker_reference;
      return false;
    }
    case IdentityMatch::ExactRepository: {
      auto want = parse_docker_ref(rule.docker_repository);
      if (want && sig->name() == want->name()) return true;
      *why = "the signature is for repository " + sig->name() + ", the policy requires " + rule.docker_repository;
      return false;
    }
    default: break;
  }
  if (!image) {
    *why = "the image has no docker reference to compare the signed identity " + sig->text() +
           " with (use signedIdentity exactReference or exactRepository for this transport)";
    return false;
  }
  switch (rule.type) {
    case IdentityMatch::MatchExact:
      if (image->name_only()) {
        *why = "the image reference has neither a tag nor a digest";
        return false;
      }
      if (sig->text() == image->text()) return true;
      *why = "the signature is for " + sig->text() + ", matchExact requires " + image->text();
      return false;
    case IdentityMatch::MatchRepoDigestOrExact: return repo_digest_or_exact(*image, *sig, why);
    case IdentityMatch::MatchRepository:
      if (sig->name() == image->name()) return true;
      *why = "the signature is for repository " + sig->name() + ", the image is in " + image->name();
      return false;
    case IdentityMatch::RemapIdentity: {
      DockerRef intended = *image;
      std::string text = image->text();
      if (ref_matches_prefix(text, rule.prefix)) {
        std::string remapped = rule.signed_prefix + text.substr(rule.prefix.size());
        auto r = parse_docker_ref(remapped);
        if (!r) {
          *why = "remapping gives an invalid reference " + remapped;
          return false;
        }
        intended = *r;
      }
      return repo_digest_or_exact(intended, *sig, why);
    }
    default: break;
  }
  return false;
}

}  // namespace moat::trust
