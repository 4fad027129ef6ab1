// Signature sources: where the signatures of an image are found, and the
// exact manifest bytes each one is attached to. Every byte read here is
// untrusted; nothing is interpreted beyond telling formats apart.
//
//   dir:      signature-N beside manifest.json (the top-level manifest), and
//             <hex>.signature-N for an instance of a list (skopeo's layout);
//   docker:// the lookaside of registries.d: BASE/REPO@sha256=HEX/signature-N,
//             N from 1 until "not found" (404, ENOENT); any other answer is an
//             error: the evaluation fails closed;
//   oci:      cosign's attachment when the layout holds it under the tag
//             sha256-HEX.sig (containers/image reads none there);
//   oci-archive:, docker-archive: none (containers/image has none either).
//
// For an image picked from a list, the instance is evaluated with its own
// signatures (as `skopeo copy` of one instance does): never the list's.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "scanner/trust/policy.h"
#include "scanner/trust/registries_d.h"
#include "storage/image.h"
#include "storage/reference.h"
#include "storage/result.h"

namespace moat::trust {

struct AttachedManifest {
  std::string digest;  // verified: digest of `bytes`
  std::string bytes;
  std::string role;    // "image" or "index"
};

enum class SigFormat { SimpleSigning, Sigstore, Unsupported };

struct SignatureBlob {
  std::string source;   // where it came from: a path or URL
  SigFormat format = SigFormat::SimpleSigning;
  std::string bytes;    // simple signing: the OpenPGP message; sigstore: the payload
  std::string note;     // Unsupported: what it is
  size_t manifest = 0;  // index into SignatureSet::manifests
  // sigstore only (from the c/image blob's JSON or a cosign attachment layer)
  std::string sigstore_signature;  // base64 signature over `bytes`
  std::string sigstore_cert, sigstore_chain, sigstore_bundle;
};

struct SignatureSet {
  std::vector<AttachedManifest> manifests;
  std::vector<SignatureBlob> sigs;
  std::vector<std::string> searched;  // human-readable: where we looked
};

// Splits a containers/image signature blob (0x00 "format" "\n" chunk, or a
// bare OpenPGP message) into a SignatureBlob.
SignatureBlob classify_blob(std::string blob, std::string source);

// Reads cosign's attachment manifest (tagged sha256-HEX.sig) into `set`: one
// signature per layer, its payload the layer blob fetched by `blob` (by
// digest, verified), its signature, certificate, chain and Rekor bundle from
// the layer's annotations. `where` and `tag` name it in messages.
Status parse_attachment(const std::string& bytes, const std::string& where, const std::string& tag,
                        const std::function<Result<std::string>(const std::string&)>& blob, SignatureSet& set);

// Fetches one lookaside URL (file:// or http(s)://). nullopt when not found.
Result<std::optional<std::string>> fetch_lookaside(const std::string& url);

Result<SignatureSet> collect_signatures(const Reference& ref, const ImageDesc& desc, const PolicyImage& pimg,
                                        const RegistriesD& regd);

// The policy's view of a reference (transport name, identity, namespaces).
Result<PolicyImage> policy_image(const Reference& ref);

}  // namespace moat::trust
