// Fuzz target: the bytes of signatures, before and after the cryptography
// (gpgme itself is not fuzzed):
//   - a simple-signing payload (containers-signature(5), cosign's too)
//     through parse_simple_payload() (scanner/trust/simple_signing.h) and
//     manifest_matches_digest();
//   - a containers/image signature blob through classify_blob()
//     (scanner/trust/sources.h): OpenPGP, simple-signing, sigstore-json;
//   - cosign's attachment manifest through parse_attachment(), its layer
//     blobs served from the input by digest;
//   - every sigstore signature found through SigstoreVerifier::verify()
//     (scanner/trust/sigstore.h) for three fixed requirements: public keys
//     (PEM_SIGNER and PEM_CA_KEY below), the same keys with a Rekor key (the
//     Rekor SET: strict JSON, base64, hashedrekord body), and a PKI with a
//     fixed CA (the signature's certificate and chain, PEM and X.509); a
//     payload that verifies is parsed as evaluate() parses it.
//
// Input: parts separated by "\n@@@@\n": 0 a payload, 1 a signature blob,
// 2 an attachment manifest, 3.. its layer blobs ("@N" = part N's digest).
#include "scanner/trust/sigstore.h"
#include "scanner/trust/simple_signing.h"
#include "scanner/trust/sources.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;
using namespace moat::trust;

namespace {

// Made once with openssl (P-256; the private keys were not kept). The seeds in
// tests/fuzz/seeds/signature are signed with PEM_SIGNER's key, and their
// certificate holds PEM_SIGNER and is issued by PEM_CA (whose key, PEM_CA_KEY,
// serves as the Rekor key), so the seeds pass the cryptography and reach the
// payload parsing after it; mutations mostly stop at it.
const char* PEM_CA_KEY = R"(-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEoXENAkUx/hg2t3GwHB0hsQ8ePUoM
0c+JFXdG8Z6Egq5wEImCMrZ0LAr8ro5eVASoecq3unndHwinKdtHwox1xQ==
-----END PUBLIC KEY-----
)";
const char* PEM_SIGNER = R"(-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZP3u9Vrko/QxYWe885ZzrzIxZXXW
y6kJMY5wt3muc7HDh5YQRPQJM+kcZcHTdaTF8cxTmbuG5O+XDA5NB957Mw==
-----END PUBLIC KEY-----
)";
const char* PEM_CA = R"(-----BEGIN CERTIFICATE-----
MIIBhjCCASugAwIBAgIUW4Y8rXAG6J5IPYUhT/MpL5qAxuUwCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMbW9hdC1mdXp6LWNhMCAXDTI2MTEzMDEzNTM0OVoYDzIxMjYx
MTA2MTM1MzQ5WjAXMRUwEwYDVQQDDAxtb2F0LWZ1enotY2EwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAAShcQ0CRTH+GDa3cbAcHSGxDx49SgzRz4kVd0bxnoSCrnAQ
iYIytnQsCvyujl5UBKh5yre6ed0fCKcp20fCjHXFo1MwUTAdBgNVHQ4EFgQUG1ek
fMe/jngMnVifPoqp8t8zZnUwHwYDVR0jBBgwFoAUG1ekfMe/jngMnVifPoqp8t8z
ZnUwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAu6eRhEfNRNgj
1stBh3H4e2cE4996fZSB/A1tZLLR8RICIQDY3i/EbyleWFO1BcWFKR3+zNAiiggU
OiQqPqiXZS3HKQ==
-----END CERTIFICATE-----
)";

struct Verifiers {
  std::vector<Requirement> reqs;
  std::vector<std::unique_ptr<SigstoreVerifier>> v;
};

const Verifiers& verifiers() {
  static Verifiers vs = [] {
    Verifiers out;
    auto km = [](const char* origin, const char* pem) { return KeyMaterial{origin, "", pem}; };
    Requirement key;
    key.type = Requirement::Type::SigstoreSigned;
    key.keys.push_back(km("keyData (signer)", PEM_SIGNER));
    key.keys.push_back(km("keyData (ca key)", PEM_CA_KEY));
    Requirement rekor = key;
    rekor.rekor_keys.push_back(km("rekorPublicKeyData (ca key)", PEM_CA_KEY));
    Requirement pki;
    pki.type = Requirement::Type::SigstoreSigned;
    pki.pki = Pki{km("caRootsData (fuzz)", PEM_CA), std::nullopt, "dev@example.com", ""};
    out.reqs = {key, rekor, pki};
    for (const auto& r : out.reqs) {
      auto v = SigstoreVerifier::create(r);
      MOAT_FUZZ_ASSERT(v.ok(), "the fixed sigstore requirements do not load");
      out.v.push_back(std::move(v).value());
    }
    return out;
  }();
  return vs;
}

void payload(const std::string& bytes, const std::string& manifest) {
  for (bool cosign : {false, true}) {
    auto p = parse_simple_payload(bytes, cosign);
    if (!p.ok()) continue;
    MOAT_FUZZ_ASSERT(is_valid_digest(p->manifest_digest) || p->manifest_digest.rfind("sha512:", 0) == 0,
                     "an invalid docker-manifest-digest was accepted");
    (void)manifest_matches_digest(manifest, p->manifest_digest);
  }
}

void check(const SignatureBlob& s, const std::string& manifest) {
  if (s.format != SigFormat::Sigstore) return;
  for (const auto& v : verifiers().v) {
    auto r = v->verify(s);
    if (r.ok()) payload(r->payload, manifest);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data), size), 10);
  auto digests = fuzz::link_parts(parts);
  parts.resize(std::max<size_t>(parts.size(), 3));
  digests.resize(parts.size());
  const std::string manifest = R"({"schemaVersion":2})";

  payload(parts[0], manifest);
  check(classify_blob(parts[1], "signature-1"), manifest);

  SignatureSet set;
  auto blob = [&](const std::string& d) -> Result<std::string> {
    for (size_t i = 3; i < parts.size(); ++i)
      if (digests[i] == d) return parts[i];
    return Error{"blob " + d + " not found", ENOENT};
  };
  Status st = parse_attachment(parts[2], "oci:/moat-fuzz/layout", "sha256-0.sig", blob, set);
  if (!st.ok()) MOAT_FUZZ_ASSERT(!st.error().describe().empty(), "an error without a message");
  for (const auto& s : set.sigs) check(s, manifest);
  return 0;
}
