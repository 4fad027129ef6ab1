// The trust parts of the CLI: `moat verify` and the gate `moat scan --policy`
// runs between reading the manifest and requesting the first layer.
// main.cc only registers options and calls these.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "scanner/report/findings.h"
#include "scanner/trust/evaluate.h"
#include "storage/image.h"
#include "storage/limits.h"

namespace moat::trust {

struct TrustOptions {
  std::string policy;        // --policy FILE|system; empty: trust not evaluated (scan only)
  std::string registries_d;  // --registries.d DIR; empty: the default lookup
};

// Adds --policy and --registries.d to a command. `for_scan`: the help says
// that without --policy nothing is evaluated.
void add_trust_options(CLI::App* c, TrustOptions& o, bool for_scan);

struct VerifyArgs {
  std::string image, format = "table", platform;
  TrustOptions trust;
  Limits limits;
};
void add_verify_options(CLI::App* c, VerifyArgs& a);

// `moat verify`: exit 0 accepted, 1 rejected, 2 could not evaluate.
int cmd_verify(const VerifyArgs& a);

// Loads the policy and registries.d named by `o` and evaluates `desc`.
// Loading failures come back as a Decision::Error result (never accepted).
TrustResult evaluate_image(const TrustOptions& o, const std::string& image_text, const ImageDesc& desc);

// The finding a scan reports for a trust result: critical for a rejection,
// info when the policy verified nothing (insecureAcceptAnything); nullopt otherwise.
std::optional<Finding> trust_finding(const TrustResult& r);

}  // namespace moat::trust
