#include "scanner/trust/commands.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "scanner/trust/util.h"
#include "storage/reference.h"

namespace moat::trust {

void add_trust_options(CLI::App* c, TrustOptions& o, bool for_scan) {
  c->add_option("--policy", o.policy,
                for_scan ? "Evaluate this trust policy (containers-policy.json(5)) before any layer is fetched; "
                           "\"system\": ~/.config/containers/policy.json, else /etc/containers/policy.json. "
                           "A rejected image stops the scan with exit 1. Without it, trust is not evaluated"
                         : "The trust policy (containers-policy.json(5)); default ~/.config/containers/policy.json, "
                           "else /etc/containers/policy.json");
  c->add_option("--registries.d", o.registries_d,
                "Directory of registries.d YAML files saying where signatures are (containers-registries.d(5)); "
                "default ~/.config/containers/registries.d, else /etc/containers/registries.d");
}

void add_verify_options(CLI::App* c, VerifyArgs& a) {
  c->add_option("IMAGE", a.image, "The image whose signatures to check (TRANSPORT:LOCATION)")->required();
  add_trust_options(c, a.trust, false);
  c->add_option("-f,--format", a.format, "Output format: table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
}

TrustResult evaluate_image(const TrustOptions& o, const std::string& image_text, const ImageDesc& desc) {
  auto ref = parse_reference(image_text);
  if (!ref) return error_result(image_text, ref.error().message, ref.error().hint);
  auto policy = load_policy(o.policy);
  if (!policy) return error_result(ref->text, policy.error().message, policy.error().hint);
  auto regd = load_registries_d(o.registries_d);
  if (!regd)
    return error_result(ref->text, "cannot read registries.d: " + regd.error().describe(),
                        "fix the YAML (containers-registries.d(5)) or point --registries.d at another directory");
  TrustResult r = evaluate(*policy, *ref, desc, *regd);
  r.image = image_text;
  return r;
}

int cmd_verify(const VerifyArgs& a) {
  TrustResult r;
  auto ref = parse_reference(a.image);
  Platform plat;
  if (!a.platform.empty()) {
    auto p = Platform::parse(a.platform);
    if (!p) {
      std::fprintf(stderr, "moat: error: %s\n", p.error().describe().c_str());
      return 2;
    }
    plat = *p;
  }
  if (!ref) {
    r = error_result(a.image, ref.error().message, ref.error().hint);
  } else {
    auto src = open_image(*ref, plat, a.limits);
    if (!src) r = error_result(a.image, "cannot read the image: " + src.error().describe(), src.error().hint);
    else r = evaluate_image(a.trust, a.image, (*src)->desc());
  }
  if (a.format == "json") {
    std::cout << trust_json(r).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << trust_text(r, isatty(1) && !getenv("NO_COLOR"));
  }
  std::cout.flush();
  if (r.decision == Decision::Error) {
    std::fprintf(stderr, "moat: error: %s: trust could not be evaluated: %s\n", a.image.c_str(), r.reason.c_str());
    if (!r.hint.empty()) std::fprintf(stderr, "moat: hint: %s\n", r.hint.c_str());
    return 2;
  }
  return r.decision == Decision::Accepted ? 0 : 1;
}

std::optional<Finding> trust_finding(const TrustResult& r) {
  Finding f;
  f.category = Category::Trust;
  f.target = Target::Image;
  if (r.decision == Decision::Rejected) {
    f.rule_id = "trust-rejected";
    f.severity = Severity::Critical;
    f.title = "The trust policy rejects this image";
    f.message = "rejected by " + r.policy_path + " (" + r.scope + "): " + printable_text(r.reason, 600);
    f.description = "The image's signatures do not satisfy the trust policy (containers-policy.json), so no layer "
                    "was fetched or scanned.";
    f.remediation = "Run `moat verify IMAGE --policy " + r.policy_path +
                    "` to see each requirement and signature; sign the image with a key the policy trusts, or "
                    "use an image that is signed.";
    f.detail = r.manifest_digest;
  } else if (r.decision == Decision::Accepted && r.nothing_verified) {
    f.rule_id = "trust-not-verified";
    f.severity = Severity::Info;
    f.title = "The trust policy accepts anything: no signature was verified";
    f.message = "the policy " + r.policy_path + " (" + r.scope +
                ") is insecureAcceptAnything: the image was accepted without any signature being checked";
    f.description = "insecureAcceptAnything admits any image; it says nothing about who built it.";
    f.remediation = "Require signatures (signedBy or sigstoreSigned) for the registries you use, in a policy "
                    "given with --policy.";
  } else {
    return std::nullopt;
  }
  finalize_finding(f);
  return f;
}

}  // namespace moat::trust
