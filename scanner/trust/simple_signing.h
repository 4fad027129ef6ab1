// Simple signing (containers-signature(5)): an OpenPGP-signed JSON payload
//   {"critical": {"type": "atomic container signature",
//                 "image": {"docker-manifest-digest": "sha256:..."},
//                 "identity": {"docker-reference": "..."}},
//    "optional": {...}}
// verified with gpgme against a temporary keyring (its own GNUPGHOME, made
// and removed here) that holds only the policy's keys: the user's ~/.gnupg
// is never read. The payload format is shared by cosign's attachments, so
// parse_simple_payload() serves sigstore too.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "scanner/trust/policy.h"
#include "storage/result.h"

namespace moat::trust {

struct SimplePayload {
  std::string docker_reference;  // critical.identity.docker-reference, not yet validated
  std::string manifest_digest;   // critical.image.docker-manifest-digest, validated digest syntax
  std::optional<std::string> creator;
  std::optional<int64_t> timestamp;
};

// containers/image's strict rules: exact keys in critical, image and
// identity; "optional" present (cosign: may be null); type must match.
// `cosign` relaxes only what cosign writes differently (optional: null).
Result<SimplePayload> parse_simple_payload(const std::string& bytes, bool cosign = false);

// digest of `manifest` with the algorithm of `want` (sha256/sha512) equals `want`.
bool manifest_matches_digest(const std::string& manifest, const std::string& want);

struct GpgVerified {
  std::string plaintext;
  std::string fingerprint;  // of the primary key that made the signature
};

class GpgKeyring {
 public:
  // Imports every key of `keys` into a fresh temporary keyring. An unreadable
  // key file is an Error (the policy cannot be evaluated); no key imported at
  // all is an Error as well (containers/image: "No public keys imported").
  static Result<std::unique_ptr<GpgKeyring>> create(const std::vector<KeyMaterial>& keys);
  ~GpgKeyring();
  GpgKeyring(const GpgKeyring&) = delete;
  GpgKeyring& operator=(const GpgKeyring&) = delete;

  // Exactly one signature, valid, by a non-expired, non-revoked key of this
  // keyring. The Error message says what was wrong.
  Result<GpgVerified> verify(const std::string& signature) const;
  const std::vector<std::string>& fingerprints() const { return fprs_; }

 private:
  GpgKeyring() = default;
  std::string home_;
  void* ctx_ = nullptr;  // gpgme_ctx_t
  std::vector<std::string> fprs_;
};

}  // namespace moat::trust
