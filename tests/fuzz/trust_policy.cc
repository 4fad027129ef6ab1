// Fuzz target: a trust policy (containers-policy.json) through parse_policy()
// (scanner/trust/policy.h), then for a few fixed images (docker://, oci:,
// dir:, docker-archive:) the scope it selects (requirements_for()), each
// requirement's description and its signedIdentity rule against a signed
// reference (identity_matches()), and, when the scope needs no signature,
// the whole evaluation (evaluate(), trust_json(), trust_text()). A second
// reference goes through the trust side's docker reference parser
// (scanner/trust/docker_ref.h) and its policy namespaces.
//
// Input: policy.json, "\n@@@@\n", a signed docker-reference, "\n@@@@\n", a reference.
#include "scanner/trust/docker_ref.h"
#include "scanner/trust/evaluate.h"
#include "scanner/trust/policy.h"
#include "scanner/trust/registries_d.h"
#include "scanner/trust/sources.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;
using namespace moat::trust;

namespace {

struct Image {
  Reference ref;
  PolicyImage pimg;
};

const std::vector<Image>& images() {
  static std::vector<Image> v = [] {
    std::vector<Image> out;
    for (const char* t : {"docker://docker.io/library/busybox:latest",
                          "docker://localhost:5000/ns/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                          "oci:/moat-fuzz/layout:v1", "dir:/moat-fuzz/dir", "docker-archive:/moat-fuzz/a.tar"}) {
      auto r = parse_reference(t);
      MOAT_FUZZ_ASSERT(r.ok(), "a fixed reference does not parse");
      auto p = policy_image(*r);
      MOAT_FUZZ_ASSERT(p.ok(), "a fixed reference has no policy view");
      out.push_back(Image{*r, *p});
    }
    return out;
  }();
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data), size), 3);
  parts.resize(3);

  auto ref = parse_docker_ref(parts[2]);
  if (ref.ok()) {
    auto again = parse_docker_ref(ref->text());
    MOAT_FUZZ_ASSERT(again.ok() && again->text() == ref->text(), "a normalized reference reads back differently");
    (void)docker_namespaces(*ref);
  }
  (void)valid_remap_prefix(parts[2]);

  auto policy = parse_policy(parts[0], "policy.json");
  if (!policy.ok()) {
    MOAT_FUZZ_ASSERT(!policy.error().describe().empty(), "an error without a message");
    return 0;
  }
  RegistriesD regd;
  ImageDesc desc;
  desc.manifest_digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  for (const Image& img : images()) {
    Scope s = requirements_for(*policy, img.pimg);
    MOAT_FUZZ_ASSERT(s.reqs != nullptr, "no requirements selected");
    MOAT_FUZZ_ASSERT(!s.reqs->empty(), "an empty requirement list was accepted");
    (void)s.describe();
    bool needs_signatures = false;
    for (const Requirement& r : *s.reqs) {
      (void)r.describe();
      std::string why;
      (void)identity_matches(r.identity, img.pimg.docker, parts[1], &why);
      needs_signatures |= r.type == Requirement::Type::SignedBy || r.type == Requirement::Type::SigstoreSigned;
    }
    if (needs_signatures) continue;  // gpgme and the signature stores are not fuzzed here
    TrustResult t = evaluate(*policy, img.ref, desc, regd);
    MOAT_FUZZ_ASSERT(t.decision != Decision::Accepted || t.nothing_verified, "accepted without verifying anything");
    (void)trust_json(t).dump();
    (void)trust_text(t, false);
  }
  return 0;
}
