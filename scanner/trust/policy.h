// The trust policy: containers-policy.json(5), read exactly as containers/image
// reads it (signature/policy_config.go), so that moat and skopeo/podman accept
// and reject the same images under the same file.
//
// Parsing is strict: an unknown key, a key given twice (at any depth), data
// after the top-level object, an empty requirement list, a scope its transport
// does not accept, or a requirement with a missing or conflicting field
// rejects the whole file. A policy that cannot be read is never "allow".
//
// Scope selection (requirements_for): transports[T][identity], then each
// namespace of the image (most specific first), then transports[T][""], then
// "default". Only that one list applies; every requirement in it must pass.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "scanner/trust/docker_ref.h"
#include "storage/result.h"

namespace moat::trust {

enum class IdentityMatch { MatchRepoDigestOrExact, MatchExact, MatchRepository, ExactReference, ExactRepository, RemapIdentity };

struct SignedIdentity {
  IdentityMatch type = IdentityMatch::MatchRepoDigestOrExact;
  std::string docker_reference;   // exactReference
  std::string docker_repository;  // exactRepository
  std::string prefix, signed_prefix;  // remapIdentity
  std::string describe() const;       // "matchRepoDigestOrExact", "exactReference docker.io/x:1" ...
};

// A key given in the policy: read from a file, or inline (base64 in JSON).
struct KeyMaterial {
  std::string origin;  // "keyPath /etc/pki/k.gpg" or "keyData #1"
  std::string path;    // empty when inline
  std::string data;    // the decoded bytes when inline
};

struct Fulcio {
  KeyMaterial ca;
  std::string oidc_issuer, subject_email;
};

struct Pki {
  KeyMaterial roots;
  std::optional<KeyMaterial> intermediates;
  std::string subject_email, subject_hostname;
};

struct Requirement {
  enum class Type { InsecureAcceptAnything, Reject, SignedBy, SigstoreSigned };
  Type type = Type::Reject;
  std::vector<KeyMaterial> keys;       // signedBy: OpenPGP keys; sigstoreSigned: public keys (PEM)
  std::optional<Fulcio> fulcio;        // sigstoreSigned keyless
  std::optional<Pki> pki;              // sigstoreSigned with an X.509 PKI
  std::vector<KeyMaterial> rekor_keys; // sigstoreSigned: Rekor public keys
  SignedIdentity identity;
  std::string type_name() const;       // as in the file: "signedBy" ...
  std::string describe() const;        // one line: type, keys, identity rule
};

struct Policy {
  std::string path;    // the file it was read from
  std::string sha256;  // "sha256:..." of the file's bytes
  std::vector<Requirement> default_reqs;
  std::map<std::string, std::map<std::string, std::vector<Requirement>>> transports;
};

// Parses policy.json bytes. `where` names the file in errors.
Result<Policy> parse_policy(const std::string& bytes, const std::string& where);

// --policy FILE, else ~/.config/containers/policy.json, else
// /etc/containers/policy.json. "system" means: skip --policy, use the lookup.
// A missing file is an error.
Result<Policy> load_policy(const std::string& explicit_path);

// What the policy sees of an image.
struct PolicyImage {
  std::string transport;                // "docker", "dir", "oci", "oci-archive", "docker-archive"
  std::string identity;                 // PolicyConfigurationIdentity
  std::vector<std::string> namespaces;  // PolicyConfigurationNamespaces, most specific first
  std::optional<DockerRef> docker;      // the docker reference, if the transport has one
};

struct Scope {
  std::string transport;  // empty when "default" applied
  std::string scope;      // the matched key ("" = the transport's default)
  bool is_default = true;
  const std::vector<Requirement>* reqs = nullptr;
  std::string describe() const;  // `transports["docker"]["docker.io/library"]` or `default`
};
Scope requirements_for(const Policy& p, const PolicyImage& img);

// Does the signature's claimed identity satisfy the rule for this image?
// `why` says what was compared when it does not.
bool identity_matches(const SignedIdentity& rule, const std::optional<DockerRef>& image,
                      const std::string& signed_reference, std::string* why);

}  // namespace moat::trust
