// What only moat knows about a secret finding, applied after the engine:
//
//  - Package material: a match in a file a package owns and whose bytes are
//    still the package's own (the digest dpkg/apk/rpm recorded) is something
//    the distribution ships to everyone (a docstring example, a test .netrc),
//    not a credential this image leaked: it is reported at info, naming the
//    package. A Python .pyc beside such a source (__pycache__/NAME.*.pyc of
//    NAME.py, compiled at install time and so owned by no package) with the
//    same secret follows its source.
//  - One problem, one finding: a private key that is also a sensitive file
//    (an SSH host key baked into the image) is one finding that says both.
//  - History lines: the value behind a credential-looking name or flag
//    (db_password=V, --token V, -u user:V, mysql -pV, sshpass -p V, URL
//    userinfo) is redacted even when no rule reports it with confidence.
//  - Env: a config Env entry whose name says credential gets a finding of its
//    own (severity by how much the value looks like one), unless a rule
//    already reported that entry.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "scanner/report/findings.h"
#include "scanner/image/packages.h"
#include "storage/store.h"

namespace moat::secrets {
class SecretScanner;
}

namespace moat {

// Lowers to info the secret findings in unchanged package files (and their
// .pyc), naming the package. A file that cannot be read for its digest keeps
// its severity and adds an entry to `errors`.
void mark_package_material(std::vector<Finding>& secrets, const Store& store, const PackageDb& packages,
                           std::vector<std::string>& errors);

// Folds each sensitive-ssh-key finding into the private-key secret finding on
// the same path and layer, if there is one: the secret finding stays (with
// both in its message), the sensitive-file finding goes.
void merge_key_file_findings(std::vector<Finding>& findings);

// [begin, end) byte ranges of values that follow a credential-looking name or
// flag in `text` (a history line). Placeholders and variable references
// ($VAR, ${VAR}, $(cmd)) are left alone.
std::vector<std::pair<size_t, size_t>> credential_spans(std::string_view text);

// Findings (rule config.env-credential, category secret, target config) for
// Env entries named like credentials. `reported` holds the Env names a rule
// already reported; `scanner` redacts a secret in a name the message prints.
std::vector<Finding> env_credential_findings(const nlohmann::json& env, const std::vector<std::string>& reported,
                                             const secrets::SecretScanner& scanner);

}  // namespace moat
