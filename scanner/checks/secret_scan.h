// Secrets in an image: every regular file of every layer (not only the merged
// view: a key added in one layer and deleted in the next still ships), and
// the image config (Env, Labels, every history created_by).
//
// Per layer, the raw hits (path, rule, line, redacted text, secret
// fingerprint) depend only on the layer's bytes and the rule set, so they are
// cached in the layer's own directory of the store as
//   layers/<hex>/secrets-<rules version hex, 16 digits>.json
// (written atomically; a damaged file is ignored and rewritten; it goes away
// with the layer). A second image on the same base layers scans only its own
// layers; a rule change gives a new version and a fresh scan, and the other
// versions' files are removed when the new one is written.
//
// Whether a hit is `deleted`, and the owner, mode and package it reports,
// depend on the image it is seen in, so they are decided per scan from the
// merged view, never cached.
#pragma once

#include <string>
#include <vector>

#include "rules/secrets/engine.h"
#include "scanner/report/findings.h"
#include "scanner/image/identity.h"
#include "scanner/session/merged_view.h"
#include "scanner/image/packages.h"
#include "storage/result.h"
#include "storage/store.h"

namespace moat {

// One secret found in one layer's file (what the cache holds).
struct LayerSecretHit {
  std::string path;     // absolute in the image
  std::string rule_id;
  uint64_t line = 0;    // 1-based; 0 in binary content
  std::string redacted;
  std::string secret_fp;  // secrets::fingerprint(rule, secret)
};

struct LayerSecrets {
  std::vector<LayerSecretHit> hits;    // sorted by path, line, rule
  std::vector<std::string> errors;     // files that could not be read
  uint64_t files = 0, bytes = 0;
  bool cached = false;                 // came from the cache
};

// Scans (or reads from the cache) one layer of the store. Files are scanned
// in parallel (oneTBB), each streamed whole through the engine.
// The cache is named by scanner.rules_version().
Result<LayerSecrets> scan_layer_secrets(const Store& store, const std::string& diff_id,
                                        const secrets::SecretScanner& scanner);
// The same for a tree given by its root fd and its index, without a cache
// (an in-place dir: scan, inplace.h).
Result<LayerSecrets> scan_tree_secrets(int root_fd, const std::vector<IndexEntry>& idx,
                                       const secrets::SecretScanner& scanner);

// The pieces of scan_tree_secrets() that secret_prefetch.h assembles a
// layer's result from, while the pull is still running: which entries of an
// index it scans; parts scanned separately joined into one result (exactly
// the one a single scan of all of them gives); and that result stored as the
// layer's cache, where scan_layer_secrets() finds it.
std::vector<const IndexEntry*> secret_scan_files(const std::vector<IndexEntry>& idx);
LayerSecrets merge_layer_secrets(std::vector<LayerSecrets>&& parts);
void save_layer_secrets(const Store& store, const std::string& diff_id, const secrets::SecretScanner& scanner,
                        const LayerSecrets& s);

struct SecretScanContext {
  const Store& store;
  const ImageRecord& img;
  const MergedView& view;
  const Identity& identity;
  const PackageDb& packages;
  const secrets::SecretScanner& scanner;
  bool verbose = false;
  // Set for an in-place scan of an unpacked tree (inplace.h): the image's
  // only layer is the tree itself (view.diff_dir(0)), indexed by this walk.
  const std::vector<IndexEntry>* in_place_index = nullptr;
};

// Every layer's secrets as findings (category secret), with `deleted` set
// for copies a later layer removed or replaced, plus the config's.
Result<std::vector<Finding>> secret_findings(const SecretScanContext& ctx, std::vector<std::string>& errors);

// The image config's Env entries, Labels, User and history lines (target config).
Result<std::vector<Finding>> config_secret_findings(const ImageRecord& img, const secrets::SecretScanner& scanner);

// The history line a report may show: every secret the rules find in a
// created_by replaced by its redacted form. The report prints each layer's
// created_by, and a token passed with ARG or on a RUN line sits right there.
// `credential_values`: also the values behind credential-looking names and
// flags ("--password X", "TOKEN=X"), right for a command line; off for prose.
std::string redact_text(const std::string& text, const secrets::SecretScanner& scanner, bool credential_values = true);

// Every finding's text that came from the image -- its path, its message
// (which names the path, an account, a package), owner names, package --
// and every error line, with each rule match redacted. No rule reports a
// path, but a token pasted into a file or account name is printed wherever
// a finding names it. Fingerprints are kept (they hash the real path, so
// .moatignore entries and baselines still match).
void redact_findings(std::vector<Finding>& findings, std::vector<std::string>& errors,
                     const secrets::SecretScanner& scanner);

// `img` with every config text a report prints passed through redact_text():
// each history created_by (in the config document and in the layer records)
// and the config's User. It is what the report, the config checks and the
// layer references get, so no output holds a whole secret.
ImageRecord redact_for_report(const ImageRecord& img, const secrets::SecretScanner& scanner);

}  // namespace moat
