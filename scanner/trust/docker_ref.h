// Docker references as containers/image (docker/distribution's `reference`)
// normalizes them: "busybox" -> "docker.io/library/busybox", "index.docker.io"
// -> "docker.io", a tag and/or a digest. Used by the trust policy for scopes
// and for the signed identity of a signature, both of which are compared as
// normalized strings, exactly as skopeo and podman compare them.
#pragma once

#include <string>
#include <vector>

#include "storage/result.h"

namespace moat::trust {

struct DockerRef {
  std::string domain;  // "docker.io", "localhost:5000"
  std::string path;    // "library/busybox"
  std::string tag;     // may be empty
  std::string digest;  // "sha256:..." or empty

  std::string name() const { return domain + "/" + path; }
  // name[:tag][@digest]: reference.String() of the normalized reference.
  std::string text() const;
  bool name_only() const { return tag.empty() && digest.empty(); }
};

// reference.ParseNormalizedNamed: validates and normalizes. Errors say why.
Result<DockerRef> parse_docker_ref(const std::string& s);

// The docker transport's policy scopes for ref, most specific first, as
// containers/image's DockerReferenceNamespaces: the repository, each parent
// namespace up to the host (with its port), then "*.domain" wildcards built
// from the host without its port. The full reference (identity) is not included.
std::vector<std::string> docker_namespaces(const DockerRef& ref);

// A policy "remapIdentity" prefix: a host[:port], or host[:port]/path.
bool valid_remap_prefix(const std::string& s);

}  // namespace moat::trust
