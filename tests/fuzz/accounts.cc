// Fuzz target: the image's /etc/passwd, /etc/group, /etc/shadow and
// /etc/os-release through parse_identity(), the account checks and
// os_release_ids() (scanner/image/identity.h, scanner/image/packages.h).
//
// Input: the four texts separated by "\n@@@@\n".
#include "rules/policy/policy.h"
#include "scanner/image/identity.h"
#include "scanner/image/packages.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data), size), 4);
  parts.resize(4);
  Identity id = parse_identity(parts[0], parts[1], parts[2]);
  for (const auto& u : id.users) {
    (void)id.owner(u.uid, u.gid);
    MOAT_FUZZ_ASSERT(id.user_name(u.uid).has_value(), "a parsed user has no name lookup");
  }
  for (const auto& g : id.groups) MOAT_FUZZ_ASSERT(id.group_name(g.gid).has_value(), "a parsed group has no name");
  const auto& policy = policy::builtin_policy();
  MOAT_FUZZ_ASSERT(policy.ok(), "the built-in policy does not load");
  AccountSources src;
  src.passwd = LayerRef{0, "sha256:" + std::string(64, '0'), "RUN useradd"};
  auto findings = account_findings(id, src, *policy);
  for (const auto& f : findings) MOAT_FUZZ_ASSERT(!f.fingerprint.empty(), "a finding without a fingerprint");
  auto ids = os_release_ids(parts[3]);
  (void)policy->distribution_for(ids);
  return 0;
}
