#include "scanner/trust/docker_ref.h"

#include <regex>

namespace moat::trust {
namespace {

// From docker/distribution reference/regexp.go.
const std::string kDomainComponent = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const std::string kDomain = kDomainComponent + "(?:\\." + kDomainComponent + ")*(?::[0-9]+)?";
const std::string kPathComponent = "[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*";
const std::string kRemote = kPathComponent + "(?:/" + kPathComponent + ")*";

const std::regex& domain_re() {
  static const std::regex r("^" + kDomain + "$");
  return r;
}
const std::regex& remote_re() {
  static const std::regex r("^" + kRemote + "$");
  return r;
}
const std::regex& tag_re() {
  static const std::regex r("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$");
  return r;
}
const std::regex& digest_re() {
  static const std::regex r("^(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$");
  return r;
}
const std::regex& hex64_re() {
  static const std::regex r("^[a-f0-9]{64}$");
  return r;
}

}  // namespace

std::string DockerRef::text() const {
  std::string s = name();
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

Result<DockerRef> parse_docker_ref(const std::string& s) {
  auto bad = [&](const std::string& why) { return Error{"\"" + s + "\" is not a valid docker reference: " + why}; };
  if (s.empty()) return bad("empty");
  if (std::regex_match(s, hex64_re())) return bad("a 64-character hexadecimal string is an image id, not a name");
  DockerRef r;
  std::string rest = s;
  if (size_t at = rest.find('@'); at != std::string::npos) {
    r.digest = rest.substr(at + 1);
    rest = rest.substr(0, at);
    if (!std::regex_match(r.digest, digest_re())) return bad("invalid digest \"" + r.digest + "\"");
  }
  // A tag follows the last ':' that comes after the last '/'.
  size_t slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    r.tag = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    if (!std::regex_match(r.tag, tag_re())) return bad("invalid tag \"" + r.tag + "\"");
  }
  // splitDockerDomain.
  size_t i = rest.find('/');
  std::string first = i == std::string::npos ? "" : rest.substr(0, i);
  bool lower = true;
  for (char c : first) lower &= !(c >= 'A' && c <= 'Z');
  if (i == std::string::npos ||
      (first.find_first_of(".:") == std::string::npos && first != "localhost" && lower)) {
    r.domain = "docker.io";
    r.path = rest;
  } else {
    r.domain = first;
    r.path = rest.substr(i + 1);
  }
  if (r.domain == "index.docker.io") r.domain = "docker.io";
  if (r.domain == "docker.io" && r.path.find('/') == std::string::npos) r.path = "library/" + r.path;
  for (char c : r.path)
    if (c >= 'A' && c <= 'Z') return bad("repository name must be lowercase");
  // distribution's NameTotalLengthMax. Checked before the regexes: libstdc++'s
  // std::regex recurses once per character, so kilobytes of name overflow
  // the stack (docs/fuzzing.md, finding 11).
  if (r.domain.size() + 1 + r.path.size() > 255) return bad("the name is longer than 255 characters");
  if (!std::regex_match(r.domain, domain_re())) return bad("invalid registry host \"" + r.domain + "\"");
  if (!std::regex_match(r.path, remote_re())) return bad("invalid repository path \"" + r.path + "\"");
  return r;
}

std::vector<std::string> docker_namespaces(const DockerRef& ref) {
  std::vector<std::string> res;
  std::string name = ref.name();
  for (;;) {
    res.push_back(name);
    size_t slash = name.rfind('/');
    if (slash == std::string::npos) break;
    name = name.substr(0, slash);
  }
  // name is now the host[:port]; wildcards are built from the host alone.
  if (size_t c = name.find(':'); c != std::string::npos) name = name.substr(0, c);
  for (;;) {
    size_t dot = name.find('.');
    if (dot == std::string::npos) break;
    name = name.substr(dot + 1);
    res.push_back("*." + name);
  }
  return res;
}

bool valid_remap_prefix(const std::string& s) {
  if (s.size() > 255) return false;  // a name's limit; and std::regex recurses per character (finding 11)
  if (std::regex_match(s, domain_re())) return true;
  size_t i = s.find('/');
  if (i == std::string::npos) return false;
  return std::regex_match(s.substr(0, i), domain_re()) && std::regex_match(s.substr(i + 1), remote_re());
}

}  // namespace moat::trust
