// registries.conf (version 2), read as podman reads it.
//
// Files: --registries-conf or $CONTAINERS_REGISTRIES_CONF alone when given;
// else ~/.config/containers/registries.conf when it exists, otherwise
// /etc/containers/registries.conf; then the drop-ins of the matching
// registries.conf.d/ folder (~/.config/containers/ or /etc/containers/) in
// name order, each [[registry]] replacing one of the same prefix, a given
// unqualified-search-registries replacing the list, [aliases] merged.
//
// For one reference the longest matching prefix (a "*.example.com" prefix
// matches subdomains) decides: blocked refuses it; otherwise the pull sources
// are its mirrors (filtered by pull-from-mirror and mirror-by-digest-only)
// and then its location, the prefix rewritten into each.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "storage/result.h"
#include "storage/sources/registry/docker_ref.h"

namespace moat::registry {

struct Mirror {
  std::string location;
  bool insecure = false;
  std::string pull_from_mirror;  // "", "all", "digest-only", "tag-only"
};

struct RegistryEntry {
  std::string prefix, location;
  bool insecure = false, blocked = false, mirror_by_digest_only = false;
  std::vector<Mirror> mirrors;
};

struct RegistriesConf {
  std::vector<std::string> files;  // read, in order (for -v and errors)
  std::vector<std::string> unqualified_search;
  std::string short_name_mode;     // as written; moat never prompts whatever it says
  std::vector<RegistryEntry> registries;
  std::map<std::string, std::string> aliases;
  std::vector<std::string> credential_helpers;  // as written; empty: "containers-auth.json" only
};

// `explicit_file`: --registries-conf (empty: the environment and podman's search).
Result<RegistriesConf> load_registries_conf(const std::string& explicit_file);
Result<RegistriesConf> parse_registries_conf(const std::string& text, const std::string& file_name);

// One place to pull a reference from.
struct PullSource {
  DockerRef ref;          // rewritten to this endpoint
  bool insecure = false;
  bool mirror = false;
};

// The pull sources of `ref`, mirrors first; an Error when a matching entry is blocked.
Result<std::vector<PullSource>> pull_sources(const RegistriesConf& conf, const DockerRef& ref);

// Short names (no registry): an [aliases] entry, else one candidate per
// unqualified-search registry. moat never prompts: more than one candidate is
// `ambiguous`, and the caller reports the list (ambiguous_error).
struct ShortNameResolution {
  std::vector<DockerRef> candidates;
  std::string alias_source;  // the alias used, when one was
  bool ambiguous = false;
};
Result<ShortNameResolution> resolve_short_name(const RegistriesConf& conf, const std::string& name);
Error ambiguous_error(const std::string& name, const ShortNameResolution& r);

}  // namespace moat::registry
