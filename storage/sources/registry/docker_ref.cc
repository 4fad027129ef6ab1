#include "storage/sources/registry/docker_ref.h"

#include "storage/digest.h"
#include "storage/fsutil.h"

namespace moat {
namespace {

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
bool valid_component(const std::string& c) {
  if (c.empty() || !is_lower_alnum(c.front()) || !is_lower_alnum(c.back())) return false;
  for (size_t i = 0; i < c.size(); ++i) {
    char ch = c[i];
    if (is_lower_alnum(ch)) continue;
    if (ch == '.' || ch == '_' || ch == '-') {
      if (ch == '.' && !is_lower_alnum(c[i + 1])) return false;
      if (ch == '_' && c[i + 1] == '_' && !is_lower_alnum(c[i + 2])) return false;
      if (ch == '_' && c[i + 1] != '_' && !is_lower_alnum(c[i + 1])) return false;
      continue;
    }
    return false;
  }
  return true;
}

bool valid_tag(const std::string& t) {
  if (t.empty() || t.size() > 128) return false;
  auto word = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; };
  if (!word(t[0])) return false;
  for (char c : t)
    if (!word(c) && c != '.' && c != '-') return false;
  return true;
}

bool valid_host(const std::string& h) {
  if (h.empty() || h.size() > 255) return false;
  std::string host = h, port;
  if (h[0] == '[') {  // [IPv6]:port
    size_t e = h.find(']');
    if (e == std::string::npos) return false;
    port = h.size() > e + 1 ? h.substr(e + 1) : "";
    if (!port.empty() && port[0] != ':') return false;
    port = port.empty() ? "" : port.substr(1);
    host = h.substr(1, e - 1);
    for (char c : host)
      if (!isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
  } else {
    size_t c = h.rfind(':');
    if (c != std::string::npos) {
      port = h.substr(c + 1);
      host = h.substr(0, c);
      if (port.empty()) return false;
    }
    for (char ch : host)
      if (!isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '-') return false;
    if (host.empty() || host.front() == '-' || host.back() == '-') return false;
  }
  for (char c : port)
    if (!isdigit(static_cast<unsigned char>(c))) return false;
  return port.size() <= 5;
}

}  // namespace

std::string api_host(const std::string& registry) {
  return registry == "docker.io" ? "registry-1.docker.io" : registry;
}

Result<DockerRef> parse_docker_ref(const std::string& text_in, bool* had_host) {
  const std::string hint = "write it as docker://[HOST[:PORT]/]REPOSITORY[:TAG|@sha256:DIGEST], e.g. docker://quay.io/podman/hello:latest";
  std::string text = text_in;
  if (text.rfind("//", 0) == 0) text = text.substr(2);
  if (text.empty()) return Error{"empty image name"}.with_hint(hint);
  if (text.size() > 4096) return Error{"image name is too long"}.with_hint(hint);
  DockerRef r;
  std::string name = text;
  size_t at = text.find('@');
  if (at != std::string::npos) {
    r.digest = text.substr(at + 1);
    name = text.substr(0, at);
    if (!is_valid_digest(r.digest))
      return Error{"\"" + printable(text) + "\": \"" + printable(r.digest, 80) + "\" is not a sha256 digest"}.with_hint(hint);
  }
  // A tag follows the last ':' that comes after the last '/'.
  size_t slash = name.rfind('/');
  size_t colon = name.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    r.tag = name.substr(colon + 1);
    name = name.substr(0, colon);
    if (!valid_tag(r.tag)) return Error{"\"" + printable(text) + "\" has an invalid tag \"" + printable(r.tag, 80) + "\""}.with_hint(hint);
  }
  if (!r.digest.empty() && !r.tag.empty())
    return Error{"\"" + printable(text) + "\" names both a tag and a digest"}.with_hint(
        "as with skopeo, give one: :" + r.tag + " or @" + r.digest);
  size_t first = name.find('/');
  std::string head = name.substr(0, first);
  bool host = first != std::string::npos &&
              (head.find('.') != std::string::npos || head.find(':') != std::string::npos || head == "localhost" ||
               head.find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string::npos);
  if (host) {
    if (!valid_host(head)) return Error{"\"" + printable(text) + "\" has an invalid registry \"" + printable(head, 80) + "\""}.with_hint(hint);
    r.registry = head;
    r.repository = name.substr(first + 1);
  } else {
    r.registry = "docker.io";
    r.repository = name;
  }
  if (had_host) *had_host = host;
  if (r.registry == "index.docker.io" || r.registry == "registry-1.docker.io") r.registry = "docker.io";
  if (r.registry == "docker.io" && r.repository.find('/') == std::string::npos) r.repository = "library/" + r.repository;
  if (r.repository.empty() || r.repository.size() > 255)
    return Error{"\"" + printable(text) + "\" has no valid repository name"}.with_hint(hint);
  size_t pos = 0;
  while (pos <= r.repository.size()) {
    size_t e = r.repository.find('/', pos);
    if (e == std::string::npos) e = r.repository.size();
    std::string comp = r.repository.substr(pos, e - pos);
    if (!valid_component(comp))
      return Error{"\"" + printable(text) + "\": repository component \"" + printable(comp, 80) +
                   "\" is invalid (lowercase letters, digits and . _ - separators only)"}.with_hint(hint);
    pos = e + 1;
  }
  if (r.digest.empty() && r.tag.empty()) r.tag = "latest";
  return r;
}

}  // namespace moat
