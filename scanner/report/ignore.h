// Ignore files (`--ignorefile FILE`, default `.moatignore` in the working
// directory when present): accepted findings that must not fail a pipeline.
// The format is documented for users in docs/moatignore.md.
//
// One entry per line, `key=value` fields separated by blanks; '#' starts a
// comment line; blank lines are skipped.
//   rule=ID            the finding's rule_id
//   path=GLOB          fnmatch(3) glob on the finding's path, without
//                      FNM_PATHNAME: '*' also matches '/', so /opt/app/* is
//                      everything under /opt/app (config findings have no path
//                      and never match a path selector)
//   fingerprint=HEX    the finding's fingerprint (the table shows its first 12
//                      digits; a prefix of at least 12 digits is accepted)
//   expires=YYYY-MM-DD the entry applies through that day (UTC), then stops
//   reason=TEXT        free text, the rest of the line
// An entry needs at least one of rule, path, fingerprint; all the selectors it
// has must match (rule=setuid-packaged path=/usr/bin/* is "that rule, there").
// Values may be double-quoted ("/opt/my app/*") with \" and \\ escapes.
// Unknown keys, a missing selector, a bad date or a repeated key are errors
// naming the line: a typo must not silently suppress nothing (or everything).
//
// Rejected: YAML (a full parser for five keys, and indentation mistakes that
// change meaning) and JSON (hostile to hand editing and comments).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "scanner/report/findings.h"
#include "storage/result.h"

namespace moat {

struct IgnoreEntry {
  std::string rule, path_glob, fingerprint;
  std::string expires;  // "YYYY-MM-DD" or empty: never
  std::string reason;
  std::string source;  // ".moatignore"
  size_t line = 0;

  bool matches(const Finding& f) const;
  // expires set and earlier than today ("YYYY-MM-DD" compare as text).
  bool expired(std::string_view today) const { return !expires.empty() && expires < today; }
  // ".moatignore:3 rule=setuid-packaged path=/usr/bin/* (expired 2026-01-31)"
  std::string describe() const;
};

struct IgnoreList {
  std::vector<IgnoreEntry> entries;
};

Result<IgnoreList> parse_ignore(std::string_view text, const std::string& source);

// Reads and parses `path`. With must_exist false (the default .moatignore), a
// missing file gives an empty list; with true (given by --ignorefile) it is an Error.
Result<IgnoreList> load_ignore_file(const std::string& path, bool must_exist);

struct IgnoreOutcome {
  std::vector<Finding> kept;        // what the report shows and --fail-on sees
  std::vector<Finding> suppressed;  // matched a live entry
  std::vector<IgnoreEntry> expired; // entries past their date: name them on stderr
  std::vector<IgnoreEntry> unused;  // live entries that matched nothing (for --verbose)
};

// Applies the live entries; expired ones apply to nothing. Order of findings is kept.
IgnoreOutcome apply_ignores(std::vector<Finding> findings, const IgnoreList& list, std::string_view today);

// Today's date in UTC as "YYYY-MM-DD".
std::string today_utc();

}  // namespace moat
