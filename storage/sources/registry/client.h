// The registry client: the OCI distribution API (docker://) over libcurl.
//
// One Client talks to one registry endpoint (HOST[:PORT] as written in a
// docker:// reference, docker.io meaning registry-1.docker.io) with the
// credentials, certs.d and TLS settings podman would use for it. Connections
// are shared and reused across every Client of the process (HTTP/2 where the
// server offers it). Authentication is handled inside: the /v2/ ping, Basic,
// Bearer tokens (anonymous or with credentials, per repository scope, renewed
// when they expire, one retry on 401 insufficient_scope). Redirects are
// followed by the client itself (at most 5; Authorization only to the same
// scheme, host and port; never from https to http). 429 and 5xx are retried a
// bounded number of times, honouring Retry-After.
//
// Nothing the registry says is trusted: a manifest's digest is computed from
// its bytes (Docker-Content-Digest is ignored), bodies are size-capped, and a
// blob's bytes are verified by whoever reads them (open_blob's reader checks
// the size; the unpacker checks the digest).
//
// How to use it (e.g. scanner/trust fetching what a signature covers):
//
//   registry::Options opt = registry::default_options();   // the CLI's flags
//   MOAT_ASSIGN_OR_RETURN(DockerRef ref, parse_docker_ref("quay.io/x/y:1"));
//   MOAT_ASSIGN_OR_RETURN(auto client, registry::Client::create(ref.registry, opt));
//   MOAT_ASSIGN_OR_RETURN(registry::Manifest m, client->get_manifest(ref.repository, ref.tag_or_digest()));
//   // m.bytes are the exact bytes; m.digest = sha256 of them; m.media_type from the body or Content-Type.
//   MOAT_ASSIGN_OR_RETURN(std::string sig, client->get_blob(ref.repository, "sha256:...", 4 << 20));
//   // get_blob verifies the bytes against the digest before returning them.
//
// A Client is safe to use from several threads at once. Errors are moat
// Errors with a hint a podman user recognises (unauthorized and where
// credentials were looked for, repository or tag not found, TLS failures
// naming the certs.d folders tried, rate limits with the reset time).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "storage/result.h"
#include "storage/sources/registry/docker_ref.h"
#include "storage/tree.h"

namespace moat::registry {

// What the CLI says about registries (flags of scan, image pull and mount).
struct Options {
  std::string authfile;             // --authfile (else $REGISTRY_AUTH_FILE, else podman's search list)
  std::string creds;                // --creds USER[:PASS]; never printed
  std::optional<bool> tls_verify;   // --tls-verify; unset: verify unless registries.conf says insecure
  std::string cert_dir;             // --cert-dir: used instead of the certs.d folders
  std::string registries_conf;      // --registries-conf (else $CONTAINERS_REGISTRIES_CONF, else podman's files)
  // registries.conf's credential-helpers when the caller has read it (unset:
  // the client reads registries.conf the first time it needs credentials).
  std::optional<std::vector<std::string>> credential_helpers;
  int jobs = 4;                     // --jobs: layers downloaded at once
  std::function<void(const std::string&)> log;  // -v lines (never holds a credential)
};

// The options main() set for this process (default-constructed until then).
const Options& default_options();
void set_default_options(Options o);

struct Manifest {
  std::string bytes;       // exactly as served
  std::string media_type;  // the body's mediaType, else the Content-Type header
  std::string digest;      // sha256 of bytes, computed here
};

class Client {
 public:
  // `registry` is HOST[:PORT] as in a reference (docker.io is mapped to its API
  // host). `insecure`: registries.conf's insecure = true for this endpoint
  // (TLS not verified, plain HTTP allowed), unless --tls-verify says otherwise.
  static Result<std::unique_ptr<Client>> create(const std::string& registry, const Options& opt, bool insecure = false);
  ~Client();

  const std::string& registry() const;

  // GET /v2/REPO/manifests/REF (REF a tag or sha256:...). When REF is a digest
  // the bytes are verified against it. At most max_bytes (default 8 MiB).
  Result<Manifest> get_manifest(const std::string& repo, const std::string& ref, size_t max_bytes = 8u << 20);

  // GET /v2/REPO/blobs/DIGEST, whole, at most max_bytes, verified against DIGEST.
  Result<std::string> get_blob(const std::string& repo, const std::string& digest, size_t max_bytes);

  // A stream of the blob's bytes (not verified here: the reader stops at
  // `size` + 1 bytes, the caller hashes). An interrupted body is resumed with
  // Range from where it stopped.
  Result<std::unique_ptr<Reader>> open_blob(const std::string& repo, const std::string& digest, int64_t size);

  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moat::registry
