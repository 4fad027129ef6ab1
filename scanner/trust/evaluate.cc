#include "scanner/trust/evaluate.h"

#include <optional>

#include "scanner/trust/sigstore.h"
#include "scanner/trust/simple_signing.h"
#include "scanner/trust/util.h"

namespace moat::trust {
namespace {

const char* format_name(SigFormat f) {
  switch (f) {
    case SigFormat::SimpleSigning: return "simple-signing";
    case SigFormat::Sigstore: return "sigstore";
    case SigFormat::Unsupported: return "unsupported";
  }
  return "unsupported";
}

// The checks both signature kinds share once the signature itself is valid:
// the signed digest is that of the exact manifest bytes the signature is
// attached to, and the signed identity satisfies the requirement.
void check_payload(const SimplePayload& p, const AttachedManifest& m, const Requirement& req,
                   const std::optional<DockerRef>& image_ref, SignatureCheck& out) {
  out.signed_identity = printable_text(p.docker_reference, 300);
  out.signed_digest = p.manifest_digest;
  if (!manifest_matches_digest(m.bytes, p.manifest_digest)) {
    out.reason = "the signature is for manifest " + p.manifest_digest + ", not for " + m.digest +
                 " (a signature of another image, or the manifest was changed)";
    return;
  }
  std::string why;
  if (!identity_matches(req.identity, image_ref, p.docker_reference, &why)) {
    out.reason = "signed identity not accepted by " + req.identity.describe() + ": " + why;
    return;
  }
  out.accepted = true;
  out.reason = "valid signature of " + m.digest + " for " + out.signed_identity + " (" + req.identity.describe() + ")";
}

}  // namespace

const char* decision_name(Decision d) {
  switch (d) {
    case Decision::Accepted: return "accepted";
    case Decision::Rejected: return "rejected";
    case Decision::Error: return "error";
  }
  return "error";
}

TrustResult error_result(const std::string& image, const std::string& message, const std::string& hint) {
  TrustResult r;
  r.image = image;
  r.decision = Decision::Error;
  r.reason = message;
  r.hint = hint;
  return r;
}

TrustResult evaluate(const Policy& policy, const Reference& ref, const ImageDesc& desc, const RegistriesD& regd) {
  TrustResult r;
  r.image = ref.text;
  r.policy_path = policy.path;
  r.policy_sha256 = policy.sha256;
  r.manifest_digest = desc.manifest_digest;
  r.platform = desc.platform;
  auto pimg = policy_image(ref);
  if (!pimg) {
    r.reason = pimg.error().message;
    return r;
  }
  r.transport = pimg->transport;
  r.identity = pimg->identity;
  Scope scope = requirements_for(policy, *pimg);
  r.scope = scope.describe();

  std::optional<Result<SignatureSet>> sigs;  // read once, when first needed
  auto signatures = [&]() -> const Result<SignatureSet>& {
    if (!sigs) sigs.emplace(collect_signatures(ref, desc, *pimg, regd));
    return *sigs;
  };

  bool all_pass = true, all_insecure = true;
  for (const Requirement& req : *scope.reqs) {
    RequirementCheck rc;
    rc.type = req.type_name();
    rc.description = req.describe();
    all_insecure &= req.type == Requirement::Type::InsecureAcceptAnything;
    switch (req.type) {
      case Requirement::Type::InsecureAcceptAnything:
        rc.passed = true;
        rc.reason = "insecureAcceptAnything accepts any image: nothing was verified";
        break;
      case Requirement::Type::Reject:
        rc.passed = false;
        rc.reason = "the policy rejects every image in scope " + r.scope;
        break;
      case Requirement::Type::SignedBy:
      case Requirement::Type::SigstoreSigned: {
        const auto& set = signatures();
        if (!set && !all_pass) {
          // An earlier requirement already rejects the image; containers/image stops there too.
          rc.reason = "not evaluated: " + set.error().describe();
          r.requirements.push_back(std::move(rc));
          continue;
        }
        if (!set) {
          r.decision = Decision::Error;
          r.reason = "cannot read the image's signatures: " + set.error().describe();
          rc.reason = "not evaluated: the signatures could not be read";
          r.hint = set.error().hint.empty() ? "fix the signature store (the image's signature files, or the lookaside "
                                              "or registry that registries.d names) and try again; moat never "
                                              "accepts an image whose signatures it cannot read"
                                            : set.error().hint;
          r.requirements.push_back(std::move(rc));
          return r;
        }
        r.searched = set->searched;
        const bool gpg = req.type == Requirement::Type::SignedBy;
        std::unique_ptr<GpgKeyring> keyring;
        std::unique_ptr<SigstoreVerifier> sv;
        Status ready = ok_status();
        if (gpg) {
          auto k = GpgKeyring::create(req.keys);
          if (k) keyring = std::move(k).value();
          else ready = std::move(k).error();
        } else {
          auto v = SigstoreVerifier::create(req);
          if (v) sv = std::move(v).value();
          else ready = std::move(v).error();
        }
        if (!ready) {
          r.decision = Decision::Error;
          rc.reason = "not evaluated: the policy's keys could not be loaded";
          r.reason = "cannot load the keys of requirement " + rc.description + ": " + ready.error().describe();
          r.hint = "fix the key paths or data in " + policy.path;
          r.requirements.push_back(std::move(rc));
          return r;
        }
        size_t unsupported = 0, other_kind = 0;
        for (const SignatureBlob& s : set->sigs) {
          SignatureCheck sc;
          sc.source = s.source;
          sc.format = format_name(s.format);
          const AttachedManifest& m = set->manifests[s.manifest];
          sc.attached_to = m.digest + " (" + m.role + ")";
          if (s.format == SigFormat::Unsupported) {
            ++unsupported;
            sc.reason = "unsupported signature format: " + s.note;
          } else if (gpg != (s.format == SigFormat::SimpleSigning)) {
            ++other_kind;
            sc.reason = std::string("a ") + sc.format + " signature; this requirement needs " +
                        (gpg ? "a simple-signing (GPG)" : "a sigstore") + " signature";
          } else if (gpg) {
            auto v = keyring->verify(s.bytes);
            if (!v) {
              sc.reason = v.error().message;
            } else {
              sc.key = v->fingerprint;
              auto p = parse_simple_payload(v->plaintext, false);
              if (!p) sc.reason = "invalid payload: " + p.error().message;
              else check_payload(*p, m, req, pimg->docker, sc);
            }
          } else {
            auto v = sv->verify(s);
            if (!v) {
              sc.reason = v.error().message;
            } else {
              sc.key = v->signer;
              auto p = parse_simple_payload(v->payload, true);
              if (!p) sc.reason = "invalid payload: " + p.error().message;
              else check_payload(*p, m, req, pimg->docker, sc);
            }
          }
          rc.passed |= sc.accepted;
          rc.signatures.push_back(std::move(sc));
        }
        if (rc.passed) {
          rc.reason = "a signature satisfies it";
        } else if (set->sigs.empty()) {
          rc.reason = "a signature was required, but no signature exists (looked in: ";
          for (size_t i = 0; i < set->searched.size(); ++i) rc.reason += (i ? "; " : "") + set->searched[i];
          rc.reason += ")";
        } else if (unsupported == set->sigs.size()) {
          rc.reason = "every signature found is in an unsupported signature format";
        } else if (unsupported + other_kind == set->sigs.size()) {
          rc.reason = std::string("no ") + (gpg ? "simple-signing (GPG)" : "sigstore") + " signature exists (" +
                      std::to_string(set->sigs.size()) + " of another kind or format)";
        } else {
          rc.reason = "none of the " + std::to_string(set->sigs.size()) + " signatures is acceptable";
          for (const auto& sc : rc.signatures)
            if (!sc.accepted && sc.format != "unsupported") {
              rc.reason += ": " + sc.reason;
              break;
            }
        }
        break;
      }
    }
    all_pass &= rc.passed;
    if (!rc.passed && r.reason.empty()) r.reason = rc.type + ": " + rc.reason;
    r.requirements.push_back(std::move(rc));
  }
  r.decision = all_pass ? Decision::Accepted : Decision::Rejected;
  r.nothing_verified = all_pass && all_insecure;
  if (all_pass) r.reason = r.nothing_verified ? "the policy accepts anything here: nothing was verified"
                                              : "every requirement of " + r.scope + " is satisfied";
  else r.hint = "see each requirement and signature above; the policy is " + policy.path;
  return r;
}

nlohmann::ordered_json trust_json(const TrustResult& r) {
  nlohmann::ordered_json j;
  auto str_or_null = [](const std::string& s) { return s.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(s); };
  j["decision"] = decision_name(r.decision);
  j["reason"] = r.reason;
  j["policy"] = str_or_null(r.policy_path);
  j["policy_sha256"] = str_or_null(r.policy_sha256);
  j["transport"] = str_or_null(r.transport);
  j["identity"] = str_or_null(r.identity);
  j["scope"] = str_or_null(r.scope);
  j["manifest_digest"] = str_or_null(r.manifest_digest);
  j["platform"] = str_or_null(r.platform);
  j["nothing_verified"] = r.nothing_verified;
  j["searched"] = r.searched;
  j["requirements"] = nlohmann::ordered_json::array();
  for (const auto& rc : r.requirements) {
    nlohmann::ordered_json q;
    q["type"] = rc.type;
    q["description"] = rc.description;
    q["passed"] = rc.passed;
    q["reason"] = rc.reason;
    q["signatures"] = nlohmann::ordered_json::array();
    for (const auto& s : rc.signatures) {
      nlohmann::ordered_json sj;
      sj["source"] = s.source;
      sj["format"] = s.format;
      sj["attached_to"] = s.attached_to;
      sj["key"] = str_or_null(s.key);
      sj["signed_identity"] = str_or_null(s.signed_identity);
      sj["signed_digest"] = str_or_null(s.signed_digest);
      sj["accepted"] = s.accepted;
      sj["reason"] = s.reason;
      q["signatures"].push_back(std::move(sj));
    }
    j["requirements"].push_back(std::move(q));
  }
  return j;
}

std::string trust_text(const TrustResult& r, bool color) {
  auto paint = [&](const char* code, const std::string& s) { return color ? std::string("\033[") + code + "m" + s + "\033[0m" : s; };
  std::string o;
  std::string verdict = r.decision == Decision::Accepted ? paint("1;32", "ACCEPTED")
                        : r.decision == Decision::Rejected ? paint("1;31", "REJECTED")
                                                           : paint("1;33", "NOT EVALUATED");
  o += "image:     " + printable_text(r.image, 300) + "\n";
  if (!r.manifest_digest.empty()) o += "manifest:  " + r.manifest_digest + (r.platform.empty() ? "" : " (" + r.platform + ")") + "\n";
  if (!r.policy_path.empty()) o += "policy:    " + r.policy_path + " (" + r.policy_sha256 + ")\n";
  if (!r.scope.empty()) o += "scope:     " + r.scope + "  [transport " + r.transport + (r.identity.empty() ? "" : ", identity " + printable_text(r.identity, 300)) + "]\n";
  for (const auto& s : r.searched) o += "searched:  " + printable_text(s, 400) + "\n";
  for (size_t i = 0; i < r.requirements.size(); ++i) {
    const auto& rc = r.requirements[i];
    o += "\nrequirement " + std::to_string(i + 1) + ": " + rc.description + "\n";
    o += "  " + (rc.passed ? paint("32", "passed") : paint("31", "failed")) + ": " + printable_text(rc.reason, 600) + "\n";
    for (size_t k = 0; k < rc.signatures.size(); ++k) {
      const auto& s = rc.signatures[k];
      o += "  signature " + std::to_string(k + 1) + ": " + printable_text(s.source, 300) + "\n";
      o += "    format:   " + s.format + ", attached to " + s.attached_to + "\n";
      if (!s.key.empty()) o += "    key:      " + printable_text(s.key, 300) + "\n";
      if (!s.signed_identity.empty()) o += "    signed:   " + s.signed_identity + " @ " + s.signed_digest + "\n";
      o += "    " + (s.accepted ? paint("32", "accepted") : paint("31", "not accepted")) + ": " + printable_text(s.reason, 600) + "\n";
    }
  }
  o += "\n" + verdict + ": " + printable_text(r.reason, 800) + "\n";
  if (!r.hint.empty() && r.decision != Decision::Accepted) o += "hint: " + r.hint + "\n";
  return o;
}

}  // namespace moat::trust
