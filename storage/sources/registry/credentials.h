// Registry credentials, found where podman finds them.
//
// --creds USER[:PASS] wins. Else registries.conf's credential-helpers are asked
// in order (default: only "containers-auth.json", the files below; any other
// NAME runs `docker-credential-NAME get`). The files: --authfile or
// $REGISTRY_AUTH_FILE alone when given; otherwise, in order:
// $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json,
// $DOCKER_CONFIG/config.json (else ~/.docker/config.json), ~/.dockercfg. In each
// file: credHelpers[HOST] (a `docker-credential-NAME get` run with a timeout),
// then the auths keys from the most specific (HOST/NS/REPO) to the least (HOST),
// then credsStore. An `identitytoken` is used for the OAuth2 refresh-token grant.
//
// A credential is never printed: `source` says where it came from (a file and
// key, a helper) and is what -v and error messages show.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "storage/result.h"

namespace moat::registry {

struct Credential {
  std::string username, password;
  std::string identity_token;  // OAuth2 refresh token (auth.json identitytoken, or a helper's <token>)
  std::string source;          // "/home/u/.config/containers/auth.json (key quay.io/ns)", "docker-credential-pass"
};

struct CredentialSearch {
  std::optional<Credential> found;
  std::vector<std::string> looked;  // every place searched, for "unauthorized" messages
};

// The name registries.conf gives the auth files in credential-helpers.
inline constexpr const char* kAuthFilesHelper = "containers-auth.json";

// `registry` HOST[:PORT] ("docker.io" for Docker Hub), `repository` its path;
// `helpers` registries.conf's credential-helpers (empty: the auth files only).
Result<CredentialSearch> find_credentials(const std::string& registry, const std::string& repository,
                                          const std::string& creds_flag, const std::string& authfile_flag,
                                          const std::vector<std::string>& helpers = {});

// Runs `docker-credential-NAME get` for `server` (exposed for tests).
// `named_in` says where the helper's name came from, for "not installed".
Result<std::optional<Credential>> run_credential_helper(const std::string& name, const std::string& server,
                                                        const std::string& named_in = "the credentials file");


}  // namespace moat::registry
