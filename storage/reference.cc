#include "storage/reference.h"

#include <unistd.h>

#include <climits>
#include <cstdlib>

#include "storage/sources/registry/docker_ref.h"

namespace moat {

const char* transport_name(Transport t) {
  switch (t) {
    case Transport::OciLayout: return "oci";
    case Transport::OciArchive: return "oci-archive";
    case Transport::DockerArchive: return "docker-archive";
    case Transport::Dir: return "dir";
    case Transport::ContainersStorage: return "containers-storage";
    case Transport::Docker: return "docker";
  }
  return "?";
}

namespace {
std::string absolute(const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  char buf[PATH_MAX];
  if (!getcwd(buf, sizeof buf)) return p;
  std::string cwd = buf;
  std::string rel = p;
  while (rel.rfind("./", 0) == 0) rel = rel.substr(2);
  if (rel == ".") return cwd;
  return cwd + "/" + rel;
}
}  // namespace

bool is_image_name(const std::string& text) {
  if (text.empty() || text.size() > 4096) return false;
  std::string name = text;
  if (size_t at = name.find('@'); at != std::string::npos) {
    std::string dg = name.substr(at + 1);
    if (dg.rfind("sha256:", 0) == 0) dg = dg.substr(7);
    if (dg.size() != 64 || dg.find_first_not_of("0123456789abcdef") != std::string::npos) return false;
    name = name.substr(0, at);
  }
  size_t slash = name.rfind('/');
  size_t colon = name.find(':', slash == std::string::npos ? 0 : slash);
  if (colon != std::string::npos) {
    std::string tag = name.substr(colon + 1);
    if (tag.empty() || tag.size() > 128 || tag[0] == '.' || tag[0] == '-') return false;
    for (char c : tag)
      if (!isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') return false;
    name = name.substr(0, colon);
  }
  if (name.empty()) return false;
  size_t pos = 0;
  bool first = true;
  while (pos <= name.size()) {
    size_t end = name.find('/', pos);
    if (end == std::string::npos) end = name.size();
    std::string comp = name.substr(pos, end - pos);
    if (comp.empty()) return false;
    bool domain = first && end < name.size() &&
                  (comp == "localhost" || comp.find('.') != std::string::npos || comp.find(':') != std::string::npos);
    if (domain) {
      size_t pc = comp.find(':');
      if (pc == 0 || (pc != std::string::npos && (pc + 1 == comp.size() ||
                                                   comp.find_first_not_of("0123456789", pc + 1) != std::string::npos)))
        return false;  // HOST:PORT needs both
    }
    for (char c : comp) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
                (domain && ((c >= 'A' && c <= 'Z') || c == ':'));
      if (!ok) return false;
    }
    if (!domain && (comp.front() == '.' || comp.front() == '_' || comp.front() == '-' || comp.back() == '.' ||
                    comp.back() == '_' || comp.back() == '-'))
      return false;
    first = false;
    pos = end + 1;
  }
  return true;
}

Result<Reference> parse_reference(const std::string& text) {
  const std::string usage_hint =
      "write the image as TRANSPORT:LOCATION, e.g. oci:./layout:latest, oci-archive:img.tar, "
      "docker-archive:img.tar, dir:./rootfs, containers-storage:NAME (podman's store), or a bare image NAME";
  size_t colon = text.find(':');
  std::string t = colon == std::string::npos ? std::string() : text.substr(0, colon);
  bool known = t == "oci" || t == "oci-archive" || t == "docker-archive" || t == "dir" || t == "containers-storage" ||
               t == "docker";
  if (!known && is_image_name(text)) {
    // A bare name, as podman takes it: the user's containers-storage first.
    Reference r{};
    r.transport = Transport::ContainersStorage;
    r.path = text;
    r.text = text;
    r.bare = true;
    return r;
  }
  if (colon == std::string::npos || colon == 0)
    return Error{"\"" + text + "\" has no transport"}.with_hint(usage_hint);
  std::string rest = text.substr(colon + 1);
  Reference r{};
  if (t == "oci") r.transport = Transport::OciLayout;
  else if (t == "oci-archive") r.transport = Transport::OciArchive;
  else if (t == "docker-archive") r.transport = Transport::DockerArchive;
  else if (t == "dir") r.transport = Transport::Dir;
  else if (t == "containers-storage") {
    if (rest.empty()) return Error{"\"" + text + "\" names no image"}.with_hint(usage_hint);
    r.transport = Transport::ContainersStorage;
    r.path = rest;  // [SPEC]NAME, parsed by storage/sources/containers_storage
    r.text = text;
    return r;
  } else if (t == "docker") {
    // docker://[HOST[:PORT]/]REPO[:TAG|@DIGEST]: path is HOST/REPO, tag the tag or the digest.
    if (rest.rfind("//", 0) != 0)
      return Error{"\"" + text + "\": a registry reference starts with docker://"}.with_hint(
          "write docker://[HOST[:PORT]/]REPOSITORY[:TAG|@sha256:DIGEST]");
    MOAT_ASSIGN_OR_RETURN(DockerRef d, parse_docker_ref(rest.substr(2)));
    r.transport = Transport::Docker;
    r.path = d.name();
    r.tag = d.tag_or_digest();
    r.text = "docker://" + d.text();
    return r;
  } else {
    return Error{"unknown transport \"" + t + ":\""}.with_hint(usage_hint);
  }
  if (r.transport == Transport::Dir) {
    r.path = rest;
  } else {
    size_t c = rest.find(':');
    r.path = rest.substr(0, c);
    if (c != std::string::npos) r.tag = rest.substr(c + 1);
    if (c != std::string::npos && r.tag.empty())
      return Error{"\"" + text + "\" ends in ':' with no tag"}.with_hint(usage_hint);
  }
  if (r.path.empty()) return Error{"\"" + text + "\" has no path"}.with_hint(usage_hint);
  r.path = absolute(r.path);
  r.text = std::string(transport_name(r.transport)) + ":" + r.path + (r.tag.empty() ? "" : ":" + r.tag);
  return r;
}

}  // namespace moat
