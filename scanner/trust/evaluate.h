// Trust evaluation: the policy's decision for one image, with everything a
// user needs to see why (the scope that applied, each requirement, each
// signature, where it came from, who signed what, and why it passed or not).
//
// Semantics are containers/image's (signature/policy_eval*.go): the most
// specific scope's requirements all must pass; signedBy / sigstoreSigned
// pass when any one signature is valid for the policy's keys, signs the
// digest of the exact manifest bytes it is attached to, and carries an
// identity the requirement's signedIdentity accepts. Anything that prevents
// evaluation (unreadable keys, an unreachable signature store) is
// Decision::Error: never accepted.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "scanner/trust/policy.h"
#include "scanner/trust/registries_d.h"
#include "scanner/trust/sources.h"
#include "storage/image.h"
#include "storage/reference.h"

namespace moat::trust {

enum class Decision { Accepted, Rejected, Error };
const char* decision_name(Decision d);  // "accepted" "rejected" "error"

struct SignatureCheck {
  std::string source;
  std::string format;           // "simple-signing", "sigstore", "unsupported"
  std::string attached_to;      // digest of the manifest it is attached to (role in parentheses)
  std::string key;              // the key fingerprint / certificate subject that verified it, if any
  std::string signed_identity;  // critical.identity.docker-reference, once verified
  std::string signed_digest;    // critical.image.docker-manifest-digest, once verified
  bool accepted = false;
  std::string reason;           // why it was accepted or not
};

struct RequirementCheck {
  std::string type;         // "signedBy" ...
  std::string description;  // Requirement::describe()
  bool passed = false;
  std::string reason;
  std::vector<SignatureCheck> signatures;
};

struct TrustResult {
  Decision decision = Decision::Error;
  std::string reason;  // one sentence: why (first failed requirement, or the error)
  std::string hint;    // what to do next, may be empty
  std::string policy_path, policy_sha256;
  std::string image;            // the reference as given
  std::string transport, identity;
  std::string scope;            // Scope::describe()
  std::string manifest_digest;  // the instance evaluated
  std::string platform;
  std::vector<std::string> searched;  // where signatures were looked for
  std::vector<RequirementCheck> requirements;
  bool nothing_verified = false;  // every requirement was insecureAcceptAnything
};

// Evaluates `policy` for the opened image. Signatures are read only when a
// requirement needs them.
TrustResult evaluate(const Policy& policy, const Reference& ref, const ImageDesc& desc, const RegistriesD& regd);

// A result for an image that could not be evaluated at all (bad policy, image not readable).
TrustResult error_result(const std::string& image, const std::string& message, const std::string& hint = "");

nlohmann::ordered_json trust_json(const TrustResult& r);
std::string trust_text(const TrustResult& r, bool color);

}  // namespace moat::trust
