// Unit tests of the trust building blocks: docker references and policy
// scopes, strict policy.json parsing, signed-identity rules (the semantics of
// containers/image's policy_reference_match.go), registries.d, signature blob
// formats, simple-signing payloads and the OpenSSL signature primitives.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "scanner/trust/docker_ref.h"
#include "scanner/trust/policy.h"
#include "scanner/trust/registries_d.h"
#include "scanner/trust/sigstore.h"
#include "scanner/trust/simple_signing.h"
#include "scanner/trust/sources.h"
#include "scanner/trust/util.h"

namespace moat::trust {
namespace {

TEST(DockerRef, Normalizes) {
  auto r = parse_docker_ref("busybox");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->name(), "docker.io/library/busybox");
  EXPECT_TRUE(r->name_only());
  r = parse_docker_ref("index.docker.io/foo/bar:1");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->text(), "docker.io/foo/bar:1");
  r = parse_docker_ref("localhost:5000/a/b@sha256:" + std::string(64, 'a'));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->domain, "localhost:5000");
  EXPECT_EQ(r->path, "a/b");
  EXPECT_FALSE(parse_docker_ref("Upper/Case").ok());
  EXPECT_FALSE(parse_docker_ref(std::string(64, 'a')).ok());
  EXPECT_FALSE(parse_docker_ref("a@sha256:abc").ok());
  EXPECT_FALSE(parse_docker_ref("").ok());
}

TEST(DockerRef, NamespacesAsContainersImage) {
  auto r = parse_docker_ref("reg.example.com:8443/ns/sub/repo:tag");
  ASSERT_TRUE(r.ok());
  std::vector<std::string> want = {"reg.example.com:8443/ns/sub/repo", "reg.example.com:8443/ns/sub",
                                   "reg.example.com:8443/ns", "reg.example.com:8443", "*.example.com", "*.com"};
  EXPECT_EQ(docker_namespaces(*r), want);
}

const char* kReject = R"({"default": [{"type": "reject"}]})";

TEST(Policy, StrictParsing) {
  EXPECT_TRUE(parse_policy(kReject, "p").ok());
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "reject"}], "default": [{"type": "reject"}]})", "p").ok());
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "reject", "type": "reject"}]})", "p").ok());
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "reject"}]} {})", "p").ok());
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "reject"}], "x": 1})", "p").ok());
  EXPECT_FALSE(parse_policy(R"({"default": []})", "p").ok());
  EXPECT_FALSE(parse_policy(R"({"transports": {}})", "p").ok());
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "reject", "keyPath": "/k"}]})", "p").ok());
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "signedBy", "keyType": "GPGKeys"}]})", "p").ok());
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a",
                                "keyData": "AA=="}]})", "p").ok());
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "!!"}]})", "p").ok());
  EXPECT_TRUE(parse_policy(R"({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "AA=="}]})", "p").ok());
  // sigstoreSigned: exactly one key source, fulcio needs Rekor.
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "sigstoreSigned"}]})", "p").ok());
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "sigstoreSigned", "keyPath": "/a",
                                "fulcio": {"caPath": "/c", "oidcIssuer": "i", "subjectEmail": "e"}}]})", "p").ok());
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "sigstoreSigned",
                                "fulcio": {"caPath": "/c", "oidcIssuer": "i", "subjectEmail": "e"}}]})", "p").ok());
  EXPECT_TRUE(parse_policy(R"({"default": [{"type": "sigstoreSigned", "rekorPublicKeyPath": "/r",
                               "fulcio": {"caPath": "/c", "oidcIssuer": "i", "subjectEmail": "e"}}]})", "p").ok());
  // Scopes: dir and oci need absolute canonical paths; docker takes anything; unknown transports are kept.
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "reject"}], "transports": {"dir": {"/a/../b": [{"type": "reject"}]}}})", "p").ok());
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "reject"}], "transports": {"dir": {"/": [{"type": "reject"}]}}})", "p").ok());
  EXPECT_TRUE(parse_policy(R"({"default": [{"type": "reject"}], "transports": {"docker": {"*.example.com": [{"type": "reject"}]},
                               "atomic": {"x": [{"type": "reject"}]}}})", "p").ok());
  // Identity rules.
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k",
      "signedIdentity": {"type": "exactReference", "dockerReference": "repo"}}]})", "p").ok());
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k",
      "signedIdentity": {"type": "remapIdentity", "prefix": "has space", "signedPrefix": "r.io"}}]})", "p").ok());
  EXPECT_FALSE(parse_policy(R"({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k",
      "signedIdentity": {"type": "matchExact", "extra": 1}}]})", "p").ok());
}

Requirement with_scopes(Policy& p, const std::string& text) {
  auto r = parse_policy(text, "p");
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  p = std::move(r).value();
  return {};
}

TEST(Policy, ScopeSelection) {
  Policy p;
  with_scopes(p, R"({"default": [{"type": "reject"}], "transports": {"docker": {
      "reg.example.com/ns/app:1": [{"type": "insecureAcceptAnything"}],
      "reg.example.com/ns": [{"type": "reject"}],
      "*.example.com": [{"type": "insecureAcceptAnything"}],
      "": [{"type": "reject"}]}}})");
  auto img = [](const std::string& ref) {
    PolicyImage i;
    i.transport = "docker";
    i.docker = *parse_docker_ref(ref);
    i.identity = i.docker->text();
    i.namespaces = docker_namespaces(*i.docker);
    return i;
  };
  EXPECT_EQ(requirements_for(p, img("reg.example.com/ns/app:1")).scope, "reg.example.com/ns/app:1");
  EXPECT_EQ(requirements_for(p, img("reg.example.com/ns/app:2")).scope, "reg.example.com/ns");
  EXPECT_EQ(requirements_for(p, img("reg.example.com:5000/other/app:2")).scope, "*.example.com");
  EXPECT_EQ(requirements_for(p, img("quay.io/x/y:1")).scope, "");
  EXPECT_FALSE(requirements_for(p, img("quay.io/x/y:1")).is_default);
  PolicyImage dir;
  dir.transport = "dir";
  EXPECT_TRUE(requirements_for(p, dir).is_default);
}

TEST(Policy, IdentityRules) {
  auto ref = [](const std::string& s) { return std::optional<DockerRef>(*parse_docker_ref(s)); };
  SignedIdentity def;
  const std::string dg = "@sha256:" + std::string(64, 'b');
  EXPECT_TRUE(identity_matches(def, ref("r.io/a:1"), "r.io/a:1", nullptr));
  EXPECT_FALSE(identity_matches(def, ref("r.io/a:2"), "r.io/a:1", nullptr));  // another tag of the same digest
  EXPECT_TRUE(identity_matches(def, ref("r.io/a" + dg), "r.io/a:1", nullptr));  // by digest: the repository
  EXPECT_FALSE(identity_matches(def, ref("r.io/b" + dg), "r.io/a:1", nullptr));
  SignedIdentity repo{IdentityMatch::MatchRepository};
  EXPECT_TRUE(identity_matches(repo, ref("r.io/a:2"), "r.io/a:1", nullptr));
  EXPECT_FALSE(identity_matches(repo, ref("r.io/a:2"), "r.io/b:1", nullptr));
  SignedIdentity exact{IdentityMatch::MatchExact};
  EXPECT_FALSE(identity_matches(exact, ref("r.io/a" + dg), "r.io/a:1", nullptr));
  SignedIdentity remap{IdentityMatch::RemapIdentity};
  remap.prefix = "mirror.io/lib";
  remap.signed_prefix = "r.io/a";
  EXPECT_TRUE(identity_matches(remap, ref("mirror.io/lib/x:1"), "r.io/a/x:1", nullptr));
  EXPECT_FALSE(identity_matches(remap, ref("mirror.io/library/x:1"), "r.io/a/x:1", nullptr));  // not a prefix match
  EXPECT_FALSE(identity_matches(def, std::nullopt, "r.io/a:1", nullptr));  // dir: has no docker reference
  SignedIdentity er{IdentityMatch::ExactReference};
  er.docker_reference = "r.io/a:1";
  EXPECT_TRUE(identity_matches(er, std::nullopt, "r.io/a:1", nullptr));
  EXPECT_FALSE(identity_matches(er, std::nullopt, "r.io/a:2", nullptr));
}

TEST(RegistriesD, LookasideAndAttachments) {
  RegistriesD d;
  ASSERT_TRUE(parse_registries_yaml("default-docker:\n  lookaside: https://sigs.example/base\n"
                                    "docker:\n  reg.example.com/ns:\n    lookaside: file:///srv/sigs\n"
                                    "    use-sigstore-attachments: true\n  reg.example.com:\n    unknown: 1\n",
                                    "a.yaml", d)
                  .ok());
  auto r = *parse_docker_ref("reg.example.com/ns/app:1");
  std::string origin;
  EXPECT_EQ(d.lookaside_base(r, r.text(), &origin), "file:///srv/sigs/ns/app");
  auto other = *parse_docker_ref("quay.io/x/y:1");
  EXPECT_EQ(d.lookaside_base(other, other.text(), &origin), "https://sigs.example/base/x/y");
  EXPECT_TRUE(d.use_sigstore_attachments(r, r.text()));
  EXPECT_FALSE(d.use_sigstore_attachments(other, other.text()));
  // A second default-docker or a namespace defined twice is an error.
  EXPECT_FALSE(parse_registries_yaml("default-docker:\n  lookaside: https://x\n", "b.yaml", d).ok());
  EXPECT_FALSE(parse_registries_yaml("docker:\n  reg.example.com/ns:\n    lookaside: https://x\n", "b.yaml", d).ok());
  EXPECT_FALSE(parse_registries_yaml("docker: [1, 2\n", "c.yaml", d).ok());
}

TEST(Sources, BlobFormats) {
  EXPECT_EQ(classify_blob(std::string("\xa3\x01") + "x", "s").format, SigFormat::SimpleSigning);
  EXPECT_EQ(classify_blob(std::string("\x00simple-signing\n\xa3", 17), "s").format, SigFormat::SimpleSigning);
  EXPECT_EQ(classify_blob("Agarbage", "s").format, SigFormat::Unsupported);
  EXPECT_EQ(classify_blob(std::string("\x00notation\n{}", 12), "s").format, SigFormat::Unsupported);
  EXPECT_EQ(classify_blob("", "s").format, SigFormat::Unsupported);
  auto s = classify_blob(std::string("\x00sigstore-json\n", 15) +
                             R"({"mimeType": "application/vnd.dev.cosign.simplesigning.v1+json", "payload": "e30=",
                                 "annotations": {"dev.cosignproject.cosign/signature": "AA=="}})",
                         "s");
  EXPECT_EQ(s.format, SigFormat::Sigstore);
  EXPECT_EQ(s.bytes, "{}");
  EXPECT_EQ(s.sigstore_signature, "AA==");
}

TEST(SimpleSigning, PayloadIsStrict) {
  const std::string d = "sha256:" + std::string(64, 'c');
  std::string ok = R"({"critical": {"type": "atomic container signature", "image": {"docker-manifest-digest": ")" + d +
                   R"("}, "identity": {"docker-reference": "r.io/a:1"}}, "optional": {"creator": "x", "timestamp": 5}})";
  auto p = parse_simple_payload(ok);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->manifest_digest, d);
  EXPECT_EQ(*p->timestamp, 5);
  EXPECT_FALSE(parse_simple_payload(R"({"critical": {"type": "atomic container signature", "image": {"docker-manifest-digest": ")" +
                                    d + R"("}, "identity": {"docker-reference": "r.io/a:1"}}})").ok());  // no optional
  EXPECT_FALSE(parse_simple_payload(ok.substr(0, ok.size() - 1) + ", \"critical\": {}}").ok());  // duplicate
  EXPECT_FALSE(parse_simple_payload(R"({"critical": {"type": "atomic container signature", "image": {"docker-manifest-digest": "sha256:zz"},
                                    "identity": {"docker-reference": "r.io/a:1"}}, "optional": {}})").ok());
  std::string fractional = ok;
  fractional.replace(fractional.find("5}"), 1, "5.5");
  EXPECT_FALSE(parse_simple_payload(fractional).ok());
  // cosign writes "optional": null.
  std::string cosign = R"({"critical": {"type": "cosign container image signature", "image": {"docker-manifest-digest": ")" + d +
                       R"("}, "identity": {"docker-reference": "r.io/a:1"}}, "optional": null})";
  EXPECT_TRUE(parse_simple_payload(cosign, true).ok());
  EXPECT_FALSE(parse_simple_payload(cosign, false).ok());
  EXPECT_TRUE(manifest_matches_digest("abc", "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  EXPECT_FALSE(manifest_matches_digest("abd", "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

TEST(Util, Base64AndStrictJson) {
  EXPECT_EQ(*base64_decode("aGk="), "hi");
  EXPECT_EQ(base64_encode("hi"), "aGk=");
  EXPECT_FALSE(base64_decode("aGk").has_value());
  EXPECT_FALSE(base64_decode("a=Gk").has_value());
  EXPECT_FALSE(parse_strict_json(R"({"a": {"b": 1, "b": 2}})", "x").ok());
  EXPECT_TRUE(parse_strict_json(R"({"a": {"b": 1}, "c": {"b": 2}})", "x").ok());
}

// ECDSA P-256, RSA and Ed25519 signatures made here with OpenSSL verify; a flipped byte does not.
TEST(Sigstore, KeyTypes) {
  for (int type : {EVP_PKEY_EC, EVP_PKEY_RSA, EVP_PKEY_ED25519}) {
    EVP_PKEY* k = nullptr;
    if (type == EVP_PKEY_EC) k = EVP_EC_gen("P-256");
    else if (type == EVP_PKEY_RSA) k = EVP_RSA_gen(2048);
    else k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    ASSERT_NE(k, nullptr);
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k);
    char* d = nullptr;
    long n = BIO_get_mem_data(b, &d);
    std::string pem(d, static_cast<size_t>(n));
    BIO_free(b);
    std::string data = "payload bytes";
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ASSERT_EQ(EVP_DigestSignInit(ctx, nullptr, type == EVP_PKEY_ED25519 ? nullptr : EVP_sha256(), nullptr, k), 1);
    size_t len = 0;
    EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()), data.size());
    std::string sig(len, '\0');
    ASSERT_EQ(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                             reinterpret_cast<const unsigned char*>(data.data()), data.size()),
              1);
    sig.resize(len);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(k);
    EXPECT_TRUE(verify_with_pem_key(pem, data, sig).ok()) << type;
    std::string bad = sig;
    bad[bad.size() / 2] ^= 1;
    EXPECT_FALSE(verify_with_pem_key(pem, data, bad).ok()) << type;
    EXPECT_FALSE(verify_with_pem_key(pem, data + "x", sig).ok()) << type;
  }
  EXPECT_FALSE(verify_with_pem_key("not a key", "d", "s").ok());
}

// Mutated policies, payloads, signature blobs and registries.d files: every
// parser answers with a value or an Error, never a crash or an exception.
TEST(Hostile, MutatedInputsNeverCrash) {
  const std::string d = "sha256:" + std::string(64, 'c');
  const std::vector<std::string> seeds = {
      R"({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "AA==", "signedIdentity": {"type":
          "remapIdentity", "prefix": "a.io/x", "signedPrefix": "b.io/y"}}], "transports": {"docker": {"*.a.io":
          [{"type": "sigstoreSigned", "rekorPublicKeyData": "AA==", "fulcio": {"caData": "AA==", "oidcIssuer": "i",
          "subjectEmail": "e"}}]}, "dir": {"/x": [{"type": "reject"}]}}})",
      R"({"critical": {"type": "atomic container signature", "image": {"docker-manifest-digest": ")" + d +
          R"("}, "identity": {"docker-reference": "r.io/a:1"}}, "optional": {"creator": "x", "timestamp": 5}})",
      "default-docker:\n  lookaside: https://x\ndocker:\n  a.io/ns:\n    lookaside: file:///s\n    use-sigstore-attachments: true\n",
      std::string("\x00sigstore-json\n", 15) + R"({"mimeType": "application/vnd.dev.cosign.simplesigning.v1+json",
          "payload": "e30=", "annotations": {"dev.cosignproject.cosign/signature": "AA==", "dev.sigstore.cosign/bundle":
          "{\"SignedEntryTimestamp\": \"AA==\", \"Payload\": {\"body\": \"e30=\", \"integratedTime\": 1,
          \"logIndex\": 1, \"logID\": \"x\"}}", "dev.sigstore.cosign/certificate": "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"}})",
  };
  uint32_t rng = 12345;
  auto next = [&] { return rng = rng * 1103515245u + 12345u; };
  // A verifier with a real key and Rekor key, and one keyless: mutated sigstore blobs go through both.
  EVP_PKEY* k = EVP_EC_gen("P-256");
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, k);
  char* pd = nullptr;
  std::string pem;
  long pn = BIO_get_mem_data(bio, &pd);
  pem.assign(pd, static_cast<size_t>(pn));
  BIO_free(bio);
  EVP_PKEY_free(k);
  Requirement keyed;
  keyed.type = Requirement::Type::SigstoreSigned;
  keyed.keys = {KeyMaterial{"keyData", "", pem}};
  keyed.rekor_keys = {KeyMaterial{"rekorPublicKeyData", "", pem}};
  auto kv = SigstoreVerifier::create(keyed);
  ASSERT_TRUE(kv.ok()) << kv.error().message;
  for (const auto& seed : seeds) {
    for (int i = 0; i < 1500; ++i) {
      std::string m = seed;
      int edits = 1 + static_cast<int>(next() % 4);
      for (int e = 0; e < edits && !m.empty(); ++e) {
        size_t at = next() % m.size();
        switch (next() % 3) {
          case 0: m[at] = static_cast<char>(next() & 0xff); break;
          case 1: m.erase(at, 1 + next() % 8); break;
          default: m.insert(at, m.substr(next() % m.size(), next() % 16)); break;
        }
      }
      (void)parse_policy(m, "p");
      (void)parse_simple_payload(m, false);
      (void)parse_simple_payload(m, true);
      RegistriesD rd;
      (void)parse_registries_yaml(m, "f", rd);
      SignatureBlob b = classify_blob(m, "s");
      if (b.format == SigFormat::Sigstore) (void)(*kv)->verify(b);
      (void)parse_docker_ref(m.substr(0, 300));
      std::string why;
      (void)identity_matches(SignedIdentity{}, parse_docker_ref("r.io/a:1").value(), m.substr(0, 300), &why);
      (void)b;
    }
  }
  SUCCEED();
}

}  // namespace
}  // namespace moat::trust
