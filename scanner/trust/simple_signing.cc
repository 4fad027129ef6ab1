#include "scanner/trust/simple_signing.h"

#include <gpgme.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <regex>

#include "scanner/trust/util.h"
#include "storage/digest.h"

namespace moat::trust {
namespace {

using json = nlohmann::json;

Status exact_keys(const json& j, std::initializer_list<const char*> keys, const std::string& what) {
  if (!j.is_object()) return Error{what + " is not a JSON object"};
  for (const char* k : keys)
    if (!j.contains(k)) return Error{what + ": key \"" + k + "\" missing"};
  if (j.size() != keys.size()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      bool known = false;
      for (const char* k : keys) known |= it.key() == k;
      if (!known) return Error{what + ": unknown key \"" + printable_text(it.key(), 80) + "\""};
    }
  }
  return ok_status();
}

std::string gpg_err_text(gpgme_error_t e) { return gpgme_strerror(e); }

// Collects gpgme's plaintext output, refusing more than the limit (a small
// signature can inflate to gigabytes through OpenPGP compression).
struct LimitedSink {
  std::string out;
  size_t limit;
  bool overflow = false;
};
ssize_t sink_write(void* handle, const void* buf, size_t size) {
  auto* s = static_cast<LimitedSink*>(handle);
  if (s->out.size() + size > s->limit) {
    s->overflow = true;
    errno = EFBIG;
    return -1;
  }
  s->out.append(static_cast<const char*>(buf), size);
  return static_cast<ssize_t>(size);
}

}  // namespace

Result<SimplePayload> parse_simple_payload(const std::string& bytes, bool cosign) {
  MOAT_ASSIGN_OR_RETURN(json j, parse_strict_json(bytes, "signature payload"));
  MOAT_TRY(exact_keys(j, {"critical", "optional"}, "signature payload"));
  SimplePayload p;
  const json& opt = j["optional"];
  if (!(cosign && opt.is_null())) {
    if (!opt.is_object()) return Error{"signature payload: \"optional\" is not an object"};
    if (opt.contains("creator")) {
      if (!opt["creator"].is_string()) return Error{"signature payload: optional.creator is not a string"};
      p.creator = opt["creator"].get<std::string>();
    }
    if (opt.contains("timestamp")) {
      const json& t = opt["timestamp"];
      if (!t.is_number()) return Error{"signature payload: optional.timestamp is not a number"};
      double d = t.get<double>();
      if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9.2e18)
        return Error{"signature payload: optional.timestamp is not an integer"};
      p.timestamp = static_cast<int64_t>(d);
    }
  }
  const json& c = j["critical"];
  MOAT_TRY(exact_keys(c, {"type", "image", "identity"}, "signature payload critical"));
  if (!c["type"].is_string()) return Error{"signature payload: critical.type is not a string"};
  const std::string want_type = cosign ? "cosign container image signature" : "atomic container signature";
  if (c["type"].get<std::string>() != want_type)
    return Error{"signature payload: unrecognized signature type \"" + printable_text(c["type"].get<std::string>(), 80) + "\""};
  MOAT_TRY(exact_keys(c["image"], {"docker-manifest-digest"}, "signature payload critical.image"));
  MOAT_TRY(exact_keys(c["identity"], {"docker-reference"}, "signature payload critical.identity"));
  if (!c["image"]["docker-manifest-digest"].is_string() || !c["identity"]["docker-reference"].is_string())
    return Error{"signature payload: docker-manifest-digest and docker-reference must be strings"};
  p.manifest_digest = c["image"]["docker-manifest-digest"].get<std::string>();
  p.docker_reference = c["identity"]["docker-reference"].get<std::string>();
  static const std::regex dig("^(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$");
  if (!std::regex_match(p.manifest_digest, dig))
    return Error{"signature payload: invalid docker-manifest-digest \"" + printable_text(p.manifest_digest, 100) + "\""};
  return p;
}

bool manifest_matches_digest(const std::string& manifest, const std::string& want) {
  const EVP_MD* md = nullptr;
  std::string algo = want.substr(0, want.find(':'));
  if (algo == "sha256") md = EVP_sha256();
  else if (algo == "sha384") md = EVP_sha384();
  else if (algo == "sha512") md = EVP_sha512();
  else return false;
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(manifest.data(), manifest.size(), out, &n, md, nullptr) != 1) return false;
  static const char* hx = "0123456789abcdef";
  std::string got = algo + ":";
  for (unsigned i = 0; i < n; ++i) {
    got.push_back(hx[out[i] >> 4]);
    got.push_back(hx[out[i] & 15]);
  }
  return got == want;
}

Result<std::unique_ptr<GpgKeyring>> GpgKeyring::create(const std::vector<KeyMaterial>& keys) {
  gpgme_check_version(nullptr);
  auto kr = std::unique_ptr<GpgKeyring>(new GpgKeyring());
  std::string tmpl = std::string(getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp") + "/moat-gpg-XXXXXX";
  if (!mkdtemp(tmpl.data())) return sys_error("create a temporary keyring directory " + tmpl);
  kr->home_ = tmpl;
  gpgme_ctx_t ctx = nullptr;
  if (gpgme_error_t e = gpgme_new(&ctx); e) return Error{"gpgme: " + gpg_err_text(e)};
  kr->ctx_ = ctx;
  gpgme_set_protocol(ctx, GPGME_PROTOCOL_OpenPGP);
  if (gpgme_error_t e = gpgme_ctx_set_engine_info(ctx, GPGME_PROTOCOL_OpenPGP, nullptr, kr->home_.c_str()); e)
    return Error{"gpgme: " + gpg_err_text(e)}.with_hint("install gnupg (gpg)");
  for (const auto& k : keys) {
    std::string bytes = k.data;
    if (!k.path.empty()) {
      auto r = read_file_limited(k.path, 16u << 20);
      if (!r) return Error{"cannot read the policy's " + k.origin + ": " + r.error().describe()};
      bytes = std::move(r).value();
    }
    gpgme_data_t d = nullptr;
    if (gpgme_data_new_from_mem(&d, bytes.data(), bytes.size(), 1)) return Error{"gpgme: out of memory"};
    gpgme_error_t e = gpgme_op_import(ctx, d);
    gpgme_data_release(d);
    if (e) return Error{"cannot import the policy's " + k.origin + ": " + gpg_err_text(e)};
    gpgme_import_result_t res = gpgme_op_import_result(ctx);
    for (gpgme_import_status_t s = res ? res->imports : nullptr; s; s = s->next) {
      if (s->result != GPG_ERR_NO_ERROR || !s->fpr) continue;
      std::string f = s->fpr;
      if (std::find(kr->fprs_.begin(), kr->fprs_.end(), f) == kr->fprs_.end()) kr->fprs_.push_back(f);
    }
  }
  if (kr->fprs_.empty()) return Error{"no public keys were imported from the policy's keys"};
  return kr;
}

GpgKeyring::~GpgKeyring() {
  if (ctx_) gpgme_release(static_cast<gpgme_ctx_t>(ctx_));
  if (!home_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(home_, ec);
  }
}

Result<GpgVerified> GpgKeyring::verify(const std::string& signature) const {
  auto ctx = static_cast<gpgme_ctx_t>(ctx_);
  gpgme_data_t sig = nullptr, plain = nullptr;
  if (gpgme_data_new_from_mem(&sig, signature.data(), signature.size(), 0)) return Error{"gpgme: out of memory"};
  LimitedSink sink{{}, kMaxSignatureBytes};
  gpgme_data_cbs cbs{};
  cbs.write = sink_write;
  if (gpgme_data_new_from_cbs(&plain, &cbs, &sink)) {
    gpgme_data_release(sig);
    return Error{"gpgme: out of memory"};
  }
  gpgme_error_t e = gpgme_op_verify(ctx, sig, nullptr, plain);
  gpgme_data_release(sig);
  gpgme_data_release(plain);
  if (sink.overflow) return Error{"the signed payload is larger than " + std::to_string(kMaxSignatureBytes) + " bytes"};
  if (e) return Error{"not a valid OpenPGP signature (" + gpg_err_text(e) + ")"};
  gpgme_verify_result_t res = gpgme_op_verify_result(ctx);
  int n = 0;
  for (gpgme_signature_t s = res ? res->signatures : nullptr; s; s = s->next) ++n;
  if (n == 0) return Error{"the signature is damaged or not an OpenPGP signature (no signature packet verified)"};
  if (n != 1) return Error{"expected exactly one OpenPGP signature, found " + std::to_string(n)};
  gpgme_signature_t s = res->signatures;
  std::string fpr = s->fpr ? s->fpr : "";
  if (gpgme_err_code(s->status) == GPG_ERR_NO_PUBKEY)
    return Error{"signed by key " + fpr + ", which is not one of the policy's keys"};
  if (s->status != GPG_ERR_NO_ERROR) {
    std::string why = gpg_err_text(s->status);
    if (gpgme_err_code(s->status) == GPG_ERR_KEY_EXPIRED) why = "the signing key has expired";
    else if (gpgme_err_code(s->status) == GPG_ERR_SIG_EXPIRED) why = "the signature has expired";
    else if (gpgme_err_code(s->status) == GPG_ERR_CERT_REVOKED) why = "the signing key has been revoked";
    else if (gpgme_err_code(s->status) == GPG_ERR_BAD_SIGNATURE) why = "bad signature (the signed data was altered)";
    return Error{"invalid OpenPGP signature by " + fpr + ": " + why};
  }
  if (s->validity == GPGME_VALIDITY_NEVER || s->validity_reason != GPG_ERR_NO_ERROR || s->wrong_key_usage)
    return Error{"invalid OpenPGP signature by " + fpr + " (validity " + std::to_string(s->validity) + ", " +
                 gpg_err_text(s->validity_reason) + (s->wrong_key_usage ? ", wrong key usage" : "") + ")"};
  // s->fpr may name a signing subkey: accept it when its primary key is one of the policy's.
  std::string primary = fpr;
  if (std::find(fprs_.begin(), fprs_.end(), fpr) == fprs_.end()) {
    gpgme_key_t key = nullptr;
    if (gpgme_get_key(ctx, fpr.c_str(), &key, 0) == GPG_ERR_NO_ERROR && key) {
      if (key->fpr) primary = key->fpr;
      gpgme_key_unref(key);
    }
    if (std::find(fprs_.begin(), fprs_.end(), primary) == fprs_.end())
      return Error{"signed by key " + fpr + ", which is not one of the policy's keys"};
  }
  return GpgVerified{std::move(sink.out), primary};
}

}  // namespace moat::trust
