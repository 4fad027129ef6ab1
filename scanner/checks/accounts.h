// The account checks over the image's own users and groups (image/identity.h):
// extra uid-0 accounts, empty passwords, duplicate names and ids. They live
// with the checks, not with the parser, so image/ only says what the image
// holds and checks/ decides what is a finding.
#pragma once

#include <optional>
#include <vector>

#include "rules/policy/policy.h"
#include "scanner/image/identity.h"
#include "scanner/report/findings.h"

namespace moat {

// Where each account file came from, so account findings name the file and
// the layer that wrote it. An absent layer leaves the finding's layer null.
struct AccountSources {
  std::optional<LayerRef> passwd, group, shadow;
};

// The account checks: account-extra-uid0, account-empty-password (passwd or
// shadow), account-duplicate (user names, uids, group names, gids). Each
// finding's path is the file that holds the problem, its detail the account
// name (or "uid:N" / "gid:N"), so fingerprints are per account.
std::vector<Finding> account_findings(const Identity& id, const AccountSources& src, const policy::Policy& p);

}  // namespace moat
