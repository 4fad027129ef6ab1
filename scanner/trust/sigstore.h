// sigstore (cosign) signatures, verified with OpenSSL as containers/image
// verifies them (signature/policy_eval_sigstore.go, internal/signature):
//   - the payload is cosign's simple-signing JSON, the signature is the
//     base64 `dev.cosignproject.cosign/signature` annotation over its bytes;
//   - public keys: ECDSA (P-256/384/521), RSA (PKCS#1 v1.5, SHA-256) and Ed25519;
//   - keyless (fulcio): the `dev.sigstore.cosign/certificate` leaf, chained
//     (with `dev.sigstore.cosign/chain`) to the policy's CA, with the
//     code-signing extended key usage, the Fulcio OIDC issuer extension
//     (1.3.6.1.4.1.57264.1.1 or .1.8) and the SAN e-mail the policy names,
//     and a Rekor SET (`dev.sigstore.cosign/bundle`) verified with the
//     policy's Rekor key whose integrated time lies within the certificate's
//     validity;
//   - a Rekor SET is checked for public keys too when the policy gives Rekor keys.
#pragma once

#include <string>

#include "scanner/trust/policy.h"
#include "scanner/trust/sources.h"
#include "storage/result.h"

namespace moat::trust {

struct SigstoreVerified {
  std::string payload;  // the verified payload bytes (parse with parse_simple_payload(..., true))
  std::string signer;   // "key keyPath /k.pub" or "certificate email@x (issuer ...)"
};

// Loads the requirement's keys, CA and Rekor keys once; reports unreadable
// material as an Error (the policy cannot be evaluated).
class SigstoreVerifier {
 public:
  static Result<std::unique_ptr<SigstoreVerifier>> create(const Requirement& r);
  ~SigstoreVerifier();
  SigstoreVerifier(const SigstoreVerifier&) = delete;
  SigstoreVerifier& operator=(const SigstoreVerifier&) = delete;
  Result<SigstoreVerified> verify(const SignatureBlob& sig) const;

 private:
  SigstoreVerifier() = default;
  struct Impl;
  Impl* impl_ = nullptr;
};

// Verifies `sig` (raw bytes) over `data` with a PEM public key (exposed for tests).
Result<void> verify_with_pem_key(const std::string& pem, const std::string& data, const std::string& sig);

}  // namespace moat::trust
