#include "scanner/trust/sigstore.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <memory>
#include <vector>

#include "scanner/trust/util.h"

namespace moat::trust {
namespace {

using json = nlohmann::json;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;

Result<std::string> material_bytes(const KeyMaterial& k) {
  if (k.path.empty()) return k.data;
  auto r = read_file_limited(k.path, 4u << 20);
  if (!r) return Error{"cannot read the policy's " + k.origin + ": " + r.error().describe()};
  return r;
}

Result<Pkey> parse_pubkey_pem(const std::string& pem, const std::string& what) {
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!b) return Error{"out of memory"};
  EVP_PKEY* k = PEM_read_bio_PUBKEY(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  if (!k) return Error{what + " is not a PEM public key (\"-----BEGIN PUBLIC KEY-----\")"};
  return Pkey(k);
}

// Every certificate of a PEM text; an Error when there is none or one is malformed.
Result<std::vector<Cert>> parse_certs_pem(const std::string& pem, const std::string& what) {
  std::vector<Cert> out;
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!b) return Error{"out of memory"};
  for (;;) {
    X509* c = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
    if (!c) break;
    out.emplace_back(c);
  }
  BIO_free(b);
  if (out.empty()) return Error{what + " holds no PEM certificate"};
  return out;
}

std::string spki_der(EVP_PKEY* k) {
  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(k, &der);
  if (n <= 0) return {};
  std::string s(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return s;
}

// The DER bytes inside the one PEM block of `pem` (certificate or public key); empty if not exactly one block.
std::string pem_block_der(const std::string& pem) {
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  char *name = nullptr, *header = nullptr;
  unsigned char* data = nullptr;
  long len = 0;
  std::string out;
  if (PEM_read_bio(b, &name, &header, &data, &len) == 1) {
    out.assign(reinterpret_cast<char*>(data), static_cast<size_t>(len));
    // containers/image: trailing data after the block is an error.
    char rest[2];
    if (BIO_read(b, rest, 1) > 0) {
      std::string tail(rest, 1);
      char more[256];
      int n;
      while ((n = BIO_read(b, more, sizeof more)) > 0) tail.append(more, static_cast<size_t>(n));
      if (tail.find_first_not_of(" \t\r\n") != std::string::npos) out.clear();
    }
  }
  OPENSSL_free(name);
  OPENSSL_free(header);
  OPENSSL_free(data);
  BIO_free(b);
  return out;
}

Status verify_raw(EVP_PKEY* k, const std::string& data, const std::string& sig) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx) return Error{"out of memory"};
  int id = EVP_PKEY_get_base_id(k);
  const EVP_MD* md = (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) ? nullptr : EVP_sha256();
  int ok = EVP_DigestVerifyInit(ctx, nullptr, md, nullptr, k) == 1 &&
           EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                            reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) return Error{"cryptographic signature verification failed"};
  return ok_status();
}

std::string hex_of(const unsigned char* p, size_t n) {
  static const char* hx = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s.push_back(hx[p[i] >> 4]);
    s.push_back(hx[p[i] & 15]);
  }
  return s;
}

std::string sha256_raw(const std::string& d) {
  unsigned char out[32];
  unsigned int n = 0;
  EVP_Digest(d.data(), d.size(), out, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(out), n);
}

// containers/image's VerifyRekorSET: the SET is the Rekor key's signature over
// the canonical JSON of its payload; the payload's hashedrekord must name the
// same public key or certificate, the same signature and the payload's sha256.
// Returns the integrated time.
Result<int64_t> verify_rekor_set(const std::vector<Pkey>& rekor, const std::string& set_text,
                                 const std::string& key_or_cert_der, const std::string& b64sig,
                                 const std::string& payload) {
  auto setj = parse_strict_json(set_text, "Rekor SET");
  if (!setj) return setj.error();
  const json& s = *setj;
  if (!s.is_object() || s.size() != 2 || !s.contains("SignedEntryTimestamp") || !s.contains("Payload") ||
      !s["SignedEntryTimestamp"].is_string())
    return Error{"Rekor SET: exactly SignedEntryTimestamp and Payload are expected"};
  auto set_sig = base64_decode(s["SignedEntryTimestamp"].get<std::string>());
  if (!set_sig) return Error{"Rekor SET: SignedEntryTimestamp is not base64"};
  const json& p = s["Payload"];
  if (!p.is_object() || p.size() != 4 || !p.contains("body") || !p.contains("integratedTime") ||
      !p.contains("logIndex") || !p.contains("logID") || !p["body"].is_string() ||
      !p["integratedTime"].is_number_integer() || !p["logIndex"].is_number_integer() || !p["logID"].is_string())
    return Error{"Rekor SET: Payload must hold exactly body, integratedTime, logIndex and logID"};
  // RFC 8785 canonical form of this payload: sorted keys, no spaces, integers.
  std::string canonical;
  try {
    canonical = p.dump(-1, ' ', false, json::error_handler_t::strict);
  } catch (const json::exception&) {
    return Error{"Rekor SET: the payload cannot be canonicalized"};
  }
  bool matched = false;
  for (const auto& k : rekor) matched |= verify_raw(k.get(), canonical, *set_sig).ok();
  if (!matched) return Error{"cryptographic signature verification of the Rekor SET failed (not signed by the policy's Rekor key)"};
  auto body = base64_decode(p["body"].get<std::string>());
  if (!body) return Error{"Rekor SET: body is not base64"};
  auto bj = parse_strict_json(*body, "Rekor SET body");
  if (!bj) return bj.error();
  const json& b = *bj;
  if (!b.is_object() || !b.contains("apiVersion") || b["apiVersion"] != "0.0.1" || !b.contains("spec") ||
      !b["spec"].is_object())
    return Error{"Rekor SET: the body is not a hashedrekord 0.0.1 entry"};
  const json& spec = b["spec"];
  if (!spec.contains("signature") || !spec["signature"].is_object() || !spec["signature"].contains("content") ||
      !spec["signature"]["content"].is_string() || !spec["signature"].contains("publicKey") ||
      !spec["signature"]["publicKey"].is_object() || !spec["signature"]["publicKey"].contains("content") ||
      !spec["signature"]["publicKey"]["content"].is_string())
    return Error{"Rekor SET: hashedrekord without signature.content and signature.publicKey.content"};
  auto entry_key_pem = base64_decode(spec["signature"]["publicKey"]["content"].get<std::string>());
  if (!entry_key_pem) return Error{"Rekor SET: publicKey is not base64"};
  std::string entry_der = pem_block_der(*entry_key_pem);
  if (entry_der.empty()) return Error{"Rekor SET: publicKey is not one PEM block"};
  if (entry_der != key_or_cert_der) return Error{"Rekor SET: publicKey in Rekor SET does not match"};
  auto entry_sig = base64_decode(spec["signature"]["content"].get<std::string>());
  auto our_sig = base64_decode(b64sig);
  if (!entry_sig || !our_sig || *entry_sig != *our_sig) return Error{"Rekor SET: the signature in the Rekor SET does not match"};
  if (!spec.contains("data") || !spec["data"].is_object() || !spec["data"].contains("hash") ||
      !spec["data"]["hash"].is_object() || spec["data"]["hash"].value("algorithm", "") != "sha256" ||
      !spec["data"]["hash"].contains("value") || !spec["data"]["hash"]["value"].is_string())
    return Error{"Rekor SET: data.hash must be a sha256 value"};
  std::string want = spec["data"]["hash"]["value"].get<std::string>();
  std::string h = sha256_raw(payload);
  if (want != hex_of(reinterpret_cast<const unsigned char*>(h.data()), h.size()))
    return Error{"Rekor SET: the payload in the Rekor SET does not match"};
  return p["integratedTime"].get<int64_t>();
}

// The Fulcio OIDC issuer: v1 extension (raw string) and/or v2 (DER UTF8String), consistent.
Result<std::string> fulcio_issuer(X509* c) {
  std::optional<std::string> v1, v2;
  for (int i = 0; i < X509_get_ext_count(c); ++i) {
    X509_EXTENSION* e = X509_get_ext(c, i);
    char oid[80];
    OBJ_obj2txt(oid, sizeof oid, X509_EXTENSION_get_object(e), 1);
    ASN1_OCTET_STRING* d = X509_EXTENSION_get_data(e);
    std::string raw(reinterpret_cast<const char*>(ASN1_STRING_get0_data(d)), static_cast<size_t>(ASN1_STRING_length(d)));
    if (std::string(oid) == "1.3.6.1.4.1.57264.1.1") {
      if (v1) return Error{"Fulcio certificate has a duplicate OIDC issuer v1 extension"};
      v1 = raw;
    } else if (std::string(oid) == "1.3.6.1.4.1.57264.1.8") {
      if (v2) return Error{"Fulcio certificate has a duplicate OIDC issuer v2 extension"};
      const unsigned char* p = reinterpret_cast<const unsigned char*>(raw.data());
      ASN1_UTF8STRING* u = d2i_ASN1_UTF8STRING(nullptr, &p, static_cast<long>(raw.size()));
      if (!u || p != reinterpret_cast<const unsigned char*>(raw.data()) + raw.size()) {
        if (u) ASN1_UTF8STRING_free(u);
        return Error{"invalid ASN.1 in the OIDC issuer v2 extension"};
      }
      v2 = std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(u)), static_cast<size_t>(ASN1_STRING_length(u)));
      ASN1_UTF8STRING_free(u);
    }
  }
  if (v1 && v2 && *v1 != *v2) return Error{"inconsistent OIDC issuer extension values"};
  if (v1) return *v1;
  if (v2) return *v2;
  return Error{"Fulcio certificate is missing the OIDC issuer extension"};
}

std::vector<std::string> cert_emails(X509* c) {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(c, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    if (g->type == GEN_EMAIL)
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(g->d.rfc822Name)),
                       static_cast<size_t>(ASN1_STRING_length(g->d.rfc822Name)));
  }
  GENERAL_NAMES_free(names);
  return out;
}

// Verifies leaf up to one of `roots`, with `intermediates` and all but the
// last certificate of the signature's PEM chain as untrusted intermediates,
// at time `when` (0: now), and the code-signing extended key usage checked by
// hand (OpenSSL 3.0 has no code-signing purpose): the leaf must name it, and
// every certificate of the chain that restricts its usage must allow it.
// Returns "" when it verifies, else why not.
std::string verify_chain(X509* leaf, const std::vector<Cert>& roots, const std::vector<Cert>& intermediates,
                         const std::string& chain_pem, time_t when) {
  std::vector<Cert> chain;
  if (!chain_pem.empty()) {
    auto ch = parse_certs_pem(chain_pem, "the signature's certificate chain");
    if (!ch) return ch.error().message;
    chain = std::move(ch).value();
  }
  X509_STORE* store = X509_STORE_new();
  for (const auto& c : roots) X509_STORE_add_cert(store, c.get());
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  for (const auto& c : intermediates) sk_X509_push(untrusted, c.get());
  // containers/image uses all but the last (the root) of the chain annotation.
  for (size_t i = 0; i + 1 < chain.size(); ++i) sk_X509_push(untrusted, chain[i].get());
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, untrusted);
  if (when) X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), when);
  std::string why;
  if (X509_verify_cert(ctx) != 1) {
    why = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  } else {
    STACK_OF(X509)* built = X509_STORE_CTX_get0_chain(ctx);
    for (int i = 0; i < sk_X509_num(built) && why.empty(); ++i) {
      uint32_t xku = X509_get_extended_key_usage(sk_X509_value(built, i));
      if (xku != UINT32_MAX && !(xku & (XKU_CODE_SIGN | XKU_ANYEKU)))
        why = i == 0 ? "the certificate is not for code signing (extended key usage)"
                     : "a CA of the chain does not allow code signing (extended key usage)";
    }
    if (why.empty() && X509_get_extended_key_usage(leaf) == UINT32_MAX)
      why = "the certificate has no code-signing extended key usage";
  }
  X509_STORE_CTX_free(ctx);
  sk_X509_free(untrusted);
  X509_STORE_free(store);
  return why;
}

}  // namespace

struct SigstoreVerifier::Impl {
  const Requirement* req = nullptr;
  std::vector<std::pair<std::string, Pkey>> keys;  // origin, key
  std::vector<Pkey> rekor;
  std::vector<Cert> ca;             // fulcio CA, or pki roots
  std::vector<Cert> intermediates;  // pki intermediates
};

Result<std::unique_ptr<SigstoreVerifier>> SigstoreVerifier::create(const Requirement& r) {
  auto v = std::unique_ptr<SigstoreVerifier>(new SigstoreVerifier());
  v->impl_ = new Impl();
  v->impl_->req = &r;
  for (const auto& k : r.keys) {
    MOAT_ASSIGN_OR_RETURN(std::string pem, material_bytes(k));
    MOAT_ASSIGN_OR_RETURN(Pkey pk, parse_pubkey_pem(pem, "the policy's " + k.origin));
    v->impl_->keys.emplace_back(k.origin, std::move(pk));
  }
  for (const auto& k : r.rekor_keys) {
    MOAT_ASSIGN_OR_RETURN(std::string pem, material_bytes(k));
    MOAT_ASSIGN_OR_RETURN(Pkey pk, parse_pubkey_pem(pem, "the policy's " + k.origin));
    if (EVP_PKEY_get_base_id(pk.get()) != EVP_PKEY_EC) return Error{"the policy's " + k.origin + " is not an ECDSA key"};
    v->impl_->rekor.push_back(std::move(pk));
  }
  if (r.fulcio) {
    MOAT_ASSIGN_OR_RETURN(std::string pem, material_bytes(r.fulcio->ca));
    MOAT_ASSIGN_OR_RETURN(v->impl_->ca, parse_certs_pem(pem, "the policy's fulcio " + r.fulcio->ca.origin));
  }
  if (r.pki) {
    MOAT_ASSIGN_OR_RETURN(std::string roots, material_bytes(r.pki->roots));
    MOAT_ASSIGN_OR_RETURN(v->impl_->ca, parse_certs_pem(roots, "the policy's pki " + r.pki->roots.origin));
    if (r.pki->intermediates) {
      MOAT_ASSIGN_OR_RETURN(std::string inter, material_bytes(*r.pki->intermediates));
      MOAT_ASSIGN_OR_RETURN(v->impl_->intermediates,
                            parse_certs_pem(inter, "the policy's pki " + r.pki->intermediates->origin));
    }
  }
  return v;
}

SigstoreVerifier::~SigstoreVerifier() { delete impl_; }

Result<SigstoreVerified> SigstoreVerifier::verify(const SignatureBlob& sig) const {
  const Requirement& r = *impl_->req;
  if (sig.sigstore_signature.empty()) return Error{"missing dev.cosignproject.cosign/signature annotation"};
  auto raw_sig = base64_decode(sig.sigstore_signature);
  if (!raw_sig) return Error{"the dev.cosignproject.cosign/signature annotation is not base64"};
  std::vector<std::pair<std::string, EVP_PKEY*>> candidates;
  Cert leaf_keep;
  if (r.pki) {
    if (sig.sigstore_cert.empty()) return Error{"missing dev.sigstore.cosign/certificate annotation"};
    auto leaves = parse_certs_pem(sig.sigstore_cert, "the signature's certificate");
    if (!leaves) return leaves.error();
    if (leaves->size() != 1) return Error{"unexpected multiple certificates in the signature's certificate data"};
    X509* leaf = (*leaves)[0].get();
    std::string why = verify_chain(leaf, impl_->ca, impl_->intermediates, sig.sigstore_chain, 0);
    if (!why.empty()) return Error{"the certificate does not verify against the policy's pki roots: " + why};
    std::string who;
    if (!r.pki->subject_email.empty()) {
      bool found = false;
      for (const auto& e : cert_emails(leaf)) found |= e == r.pki->subject_email;
      if (!found) return Error{"required email " + r.pki->subject_email + " not found in the certificate"};
      who = r.pki->subject_email;
    }
    if (!r.pki->subject_hostname.empty()) {
      if (X509_check_host(leaf, r.pki->subject_hostname.data(), r.pki->subject_hostname.size(), 0, nullptr) != 1)
        return Error{"the certificate is not for host " + r.pki->subject_hostname};
      who += (who.empty() ? "" : ", ") + r.pki->subject_hostname;
    }
    leaf_keep = std::move((*leaves)[0]);
    EVP_PKEY* pk = X509_get0_pubkey(leaf_keep.get());
    if (!pk) return Error{"the certificate's public key cannot be read"};
    candidates.emplace_back("pki certificate " + who, pk);
  } else if (!r.fulcio) {
    if (!impl_->rekor.empty()) {
      if (sig.sigstore_bundle.empty()) return Error{"missing dev.sigstore.cosign/bundle annotation (the Rekor SET the policy requires)"};
      std::string failures;
      for (const auto& [origin, k] : impl_->keys) {
        std::string der = spki_der(k.get());
        auto t = verify_rekor_set(impl_->rekor, sig.sigstore_bundle, der, sig.sigstore_signature, sig.bytes);
        if (t) {
          candidates.emplace_back(origin, k.get());
          break;
        }
        failures += (failures.empty() ? "" : "; ") + t.error().message;
      }
      if (candidates.empty()) return Error{"no public key verified against the Rekor SET: " + failures};
    } else {
      for (const auto& [origin, k] : impl_->keys) candidates.emplace_back(origin, k.get());
    }
  } else {
    if (sig.sigstore_bundle.empty()) return Error{"missing dev.sigstore.cosign/bundle annotation (Rekor SET)"};
    if (sig.sigstore_cert.empty()) return Error{"missing dev.sigstore.cosign/certificate annotation"};
    auto leaves = parse_certs_pem(sig.sigstore_cert, "the signature's certificate");
    if (!leaves) return leaves.error();
    if (leaves->size() != 1) return Error{"unexpected multiple certificates in the signature's certificate data"};
    std::string leaf_der = pem_block_der(sig.sigstore_cert);
    if (leaf_der.empty()) return Error{"the signature's certificate is not one PEM block"};
    MOAT_ASSIGN_OR_RETURN(int64_t when, verify_rekor_set(impl_->rekor, sig.sigstore_bundle, leaf_der,
                                                         sig.sigstore_signature, sig.bytes));
    X509* leaf = (*leaves)[0].get();
    // Chain to the policy's CA at the time Rekor vouches for.
    std::string why = verify_chain(leaf, impl_->ca, {}, sig.sigstore_chain, static_cast<time_t>(when));
    bool ok = why.empty();
    if (!ok) return Error{"the Fulcio certificate does not verify against the policy's CA: " + why};
    MOAT_ASSIGN_OR_RETURN(std::string issuer, fulcio_issuer(leaf));
    if (issuer != r.fulcio->oidc_issuer)
      return Error{"unexpected Fulcio OIDC issuer \"" + printable_text(issuer, 200) + "\" (the policy requires " +
                   r.fulcio->oidc_issuer + ")"};
    auto emails = cert_emails(leaf);
    bool found = false;
    for (const auto& e : emails) found |= e == r.fulcio->subject_email;
    if (!found) {
      std::string got;
      for (const auto& e : emails) got += (got.empty() ? "" : ", ") + printable_text(e, 200);
      return Error{"required email " + r.fulcio->subject_email + " not found in the certificate (it has: " +
                   (got.empty() ? "none" : got) + ")"};
    }
    leaf_keep = std::move((*leaves)[0]);
    EVP_PKEY* pk = X509_get0_pubkey(leaf_keep.get());
    if (!pk) return Error{"the certificate's public key cannot be read"};
    candidates.emplace_back("certificate " + r.fulcio->subject_email + " (issuer " + issuer + ")", pk);
  }
  for (const auto& [origin, k] : candidates)
    if (verify_raw(k, sig.bytes, *raw_sig).ok()) return SigstoreVerified{sig.bytes, origin};
  return Error{"cryptographic signature verification failed (not signed by " +
               std::string(r.fulcio ? "the certificate's key" : "any of the policy's keys") + ")"};
}

Result<void> verify_with_pem_key(const std::string& pem, const std::string& data, const std::string& sig) {
  MOAT_ASSIGN_OR_RETURN(Pkey k, parse_pubkey_pem(pem, "key"));
  return verify_raw(k.get(), data, sig);
}

}  // namespace moat::trust
