// registries.d: where the signatures of docker:// images are
// (containers-registries.d(5)), read as containers/image reads it
// (docker/registries_d.go).
//
// One directory is read: --registries.d DIR, else ~/.config/containers/registries.d
// when it exists, else /etc/containers/registries.d (missing: empty). Every
// *.yaml in it, in name order; a second `default-docker`, or a namespace under
// `docker:` given in two files, is an error. For an image, the entry used is
// the first of: its full reference, its namespaces (as the policy's scopes),
// `default-docker` that names a lookaside; without any, the built-in
// file:///var/lib/containers/sigstore (root) or
// file://$HOME/.local/share/containers/sigstore (rootless).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "scanner/trust/docker_ref.h"
#include "storage/result.h"

namespace moat::trust {

struct RegistryNamespace {
  std::string lookaside, lookaside_staging, sigstore, sigstore_staging;  // sigstore*: the old names
  std::optional<bool> use_sigstore_attachments;
  std::string file;  // where it was defined (for messages)
};

struct RegistriesD {
  std::string dir;  // the directory read, empty if none
  std::optional<RegistryNamespace> default_docker;
  std::map<std::string, RegistryNamespace> docker;

  // The lookaside base URL for ref, with the repository path appended
  // (BASE/ns/repo); `origin` says which entry gave it.
  std::string lookaside_base(const DockerRef& ref, const std::string& identity, std::string* origin) const;
  bool use_sigstore_attachments(const DockerRef& ref, const std::string& identity) const;
};

// dir: the --registries.d value, empty for the default lookup.
Result<RegistriesD> load_registries_d(const std::string& dir);
// Parses one file's text (exposed for tests).
Status parse_registries_yaml(const std::string& text, const std::string& file, RegistriesD& into);

}  // namespace moat::trust
