// SARIF 2.1.0 output for GitHub code scanning (`--format sarif`).
//
// Shape (one run):
//   $schema, version "2.1.0"
//   runs[0].tool.driver  {name "moat", version, semanticVersion,
//                         rules: [reportingDescriptor]}
//     a rule per check in the registry (scanner/checks/checks.h), in registry order,
//     then one per rule id a finding carries that the registry does not know
//     (issue 5's secret rules), sorted; each with shortDescription (title),
//     fullDescription, help {text, markdown} (why + fix),
//     defaultConfiguration.level, properties {tags, precision,
//     security-severity (omitted for info), moat-category, moat-severity}
//   runs[0].results: one per finding, sorted like the JSON report:
//     ruleId, ruleIndex, level, message.text, locations[1],
//     partialFingerprints {"moat/v1": fingerprint}, properties {severity,
//     category, layer, deleted, owner, mode, package}
//   runs[0].invocations[0]: executionSuccessful true (a SARIF file is only
//     written for a completed scan), report errors as warnings in
//     toolExecutionNotifications
//   runs[0].properties.image: reference and digests.
//
// Levels: critical and high -> error, medium -> warning, low and info -> note.
// security-severity (GitHub: >= 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium,
// 0.1-3.9 low): critical 9.5, high 8.0, medium 5.5, low 3.0.
//
// Locations: GitHub requires a physical location on every result.
// Filesystem findings: artifactLocation {uri: the image path without its
// leading '/', percent-encoded, uriBaseId "IMAGE_ROOT"} and region
// {startLine: the secret's line or 1}. Config findings have no file: their
// artifact is the image reference (percent-encoded, relative, no base),
// plus a logicalLocation {name: config_field, fullyQualifiedName:
// "config.<field>", kind "member"} naming the field.
#pragma once

#include <string>
#include <string_view>

#include "rules/policy/policy.h"
#include "scanner/report/report.h"

namespace moat {

std::string report_sarif(const Report& r, const policy::Policy& p);
// With the built-in policy (the rules' default severities if it failed to load).
std::string report_sarif(const Report& r);

// RFC 3986 percent-encoding of bytes; '/' kept when keep_slash.
std::string percent_encode(std::string_view bytes, bool keep_slash);

}  // namespace moat
