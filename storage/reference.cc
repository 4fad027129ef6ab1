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

Result<Reference> parse_reference(const std::string& text) {
  const std::string usage_hint =
      "write the image as TRANSPORT:LOCATION, e.g. oci:./layout:latest, oci-archive:img.tar, "
      "docker-archive:img.tar, dir:./rootfs";
  size_t colon = text.find(':');
  if (colon == std::string::npos || colon == 0)
    return Error{"\"" + text + "\" has no transport"}.with_hint(usage_hint);
  std::string t = text.substr(0, colon);
  std::string rest = text.substr(colon + 1);
  Reference r{};
  if (t == "oci") r.transport = Transport::OciLayout;
  else if (t == "oci-archive") r.transport = Transport::OciArchive;
  else if (t == "docker-archive") r.transport = Transport::DockerArchive;
  else if (t == "dir") r.transport = Transport::Dir;
  else if (t == "docker") {
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
  } else if (t == "containers-storage") {
    return Error{"transport \"" + t + ":\" is not supported yet"}.with_hint(
        "export the image first, e.g. `skopeo copy " + text + " oci-archive:image.tar`, then scan oci-archive:image.tar");
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
