// docker:// references as podman and skopeo write them:
//   [HOST[:PORT]/]REPO[:TAG|@sha256:HEX]
// with docker.io's normalization: no host means docker.io, a one-component
// repository on docker.io gets library/, index.docker.io and
// registry-1.docker.io are docker.io. The first component is a host when it
// holds a '.' or a ':' or is "localhost", as in distribution's reference package.
#pragma once

#include <string>

#include "storage/result.h"

namespace moat {

struct DockerRef {
  std::string registry;    // "docker.io", "quay.io", "127.0.0.1:5000"
  std::string repository;  // "library/alpine"
  std::string tag;         // "latest" when neither tag nor digest was given
  std::string digest;      // "sha256:<hex>", or empty

  // "tag" or "sha256:..." as the manifests endpoint takes it.
  std::string tag_or_digest() const { return digest.empty() ? tag : digest; }
  // "docker.io/library/alpine:latest" / "...@sha256:..."
  std::string name() const { return registry + "/" + repository; }
  std::string text() const { return name() + (digest.empty() ? ":" + tag : "@" + digest); }
};

// Parses the part after "docker://". `had_host` (optional) says whether the
// text named a registry itself (a short name did not).
Result<DockerRef> parse_docker_ref(const std::string& text, bool* had_host = nullptr);

// The host that serves docker.io's API.
std::string api_host(const std::string& registry);

}  // namespace moat
