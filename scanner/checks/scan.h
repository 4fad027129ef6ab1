// The check run of `moat scan`: everything between "the image is mounted"
// and "here are the findings".
//
//  1. The merged view (merged_view.h) is the truth about every entry: owner,
//     mode, type, xattrs and the layer that last wrote it, from the layer
//     indexes, right under any id mapping.
//  2. The image's own databases are read through that view, following the
//     image's symlinks inside the image only (/etc/os-release -> ../usr/lib/os-release):
//     passwd/group/shadow (identity.h), dpkg/apk (packages.h), os-release.
//  3. The entries are checked in parallel (oneTBB, a VectorSink per thread):
//     overlay mode walks the kernel's merged tree through the session's root
//     fd (walk.h: directories are the work items, openat relative to the
//     parent, never following a symlink, opening only regular files for
//     content) and looks every path up in the view for its metadata; a path
//     the walk could not reach (a directory the caller cannot read) is still
//     checked from the view, so no setuid file is missed. Userspace mode checks
//     the view's entries, content from the layer that provides each.
//  4. Entries a later layer removed or replaced are checked too, as deleted
//     (only the sensitive-file checks apply to them: check_entry()).
//  5. Account and image-config findings are added, and with a secret
//     scanner every layer's files are scanned (secret_scan.h); the config's
//     secrets are the caller's (it scans the config before redacting it).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "rules/policy/policy.h"
#include "rules/secrets/engine.h"
#include "scanner/checks/checks.h"
#include "scanner/report/findings.h"
#include "scanner/session/merged_view.h"
#include "scanner/session/mount_cmd.h"
#include "storage/result.h"
#include "storage/store.h"

namespace moat {

struct CheckRunOptions {
  std::vector<const CheckInfo*> checks;  // the selected checks; empty: none
  // Non-null: also scan every layer's files for secrets (secret_scan.h).
  const secrets::SecretScanner* secrets = nullptr;
  // Called before the secret phase: waits for the secret work that started
  // while the image was pulled (secret_prefetch.h), after the other checks
  // have run beside it.
  std::function<void()> before_secrets;
  bool verbose = false;
  // Non-null: the -v lines that name an image's path pass through this
  // engine's redact_text() (a token can be a file name). Set even when the
  // secret checks are off.
  const secrets::SecretScanner* redactor = nullptr;
  // Called at the start of each phase ("checking 35012 entries"); the CLI
  // shows it on a terminal only.
  std::function<void(const std::string&)> phase;
  // Set for an in-place scan of an unpacked tree (inplace.h): the image's one
  // layer is the tree itself, indexed by this walk, not a layer of the store.
  const std::vector<IndexEntry>* in_place_index = nullptr;
};

struct CheckRunResult {
  std::vector<Finding> findings;
  std::vector<std::string> errors;  // per-item problems: the report's "errors"
  size_t entries = 0;               // entries checked (merged and deleted)
  std::string packages;             // package managers found: "dpkg", "apk", ""
  std::string distribution;         // the policy's distribution name, or ""
  // The large tables the checks built (the package database, the digests,
  // the walk's index), handed back instead of freed on return: `moat scan`
  // leaves without freeing (main.cc), and freeing them here was 15-60 ms of
  // serial wall time between the last check and the report.
  std::shared_ptr<void> retained;
};

// The limit on one database file of the image read into memory (dpkg's
// status on a large image is a few MB).
inline constexpr size_t kMaxDatabaseBytes = 256u << 20;

// Reads a regular file of the merged image by absolute path, resolving the
// image's own symlinks inside the image (never on the host), at most 40 hops.
// nullopt when the path does not exist or is not a regular file.
Result<std::optional<std::string>> read_image_file(const MergedView& view, const std::string& path,
                                                   size_t max_bytes = kMaxDatabaseBytes);

// Runs the selected checks. `view` is the merged view of `img` (the mount's,
// or one built for an overlay scan). An Error means the scan cannot complete
// (exit 2); per-entry problems are in result.errors.
Result<CheckRunResult> run_checks(const Store& store, const ImageRecord& img, const ScanMount& mount,
                                  const MergedView& view, const policy::Policy& policy, const CheckRunOptions& opt);

}  // namespace moat
