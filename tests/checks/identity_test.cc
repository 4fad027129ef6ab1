#include "scanner/checks/accounts.h"
#include "scanner/image/identity.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace moat {
namespace {

using testing::data_path;
using testing::slurp;

const policy::Policy& pol() { return policy::builtin_policy().value(); }

Identity debian() {
  return parse_identity(*slurp(data_path("accounts/debian.passwd")), *slurp(data_path("accounts/debian.group")),
                        *slurp(data_path("accounts/debian.shadow")));
}

TEST(Identity, RealDebianFilesParseCleanly) {
  Identity id = debian();
  EXPECT_TRUE(id.errors.empty()) << id.errors.front();
  EXPECT_EQ(id.users.size(), 27u);
  EXPECT_EQ(id.groups.size(), 50u);
  EXPECT_EQ(id.user_name(0), "root");
  EXPECT_EQ(id.group_name(42), "shadow");
  EXPECT_EQ(id.user_name(65534), "nobody");
  EXPECT_FALSE(id.user_name(4242));
  Owner o = id.owner(0, 42);
  EXPECT_EQ(o.user, "root");
  EXPECT_EQ(o.group, "shadow");
  EXPECT_FALSE(id.owner(4242, 4242).user);
}

TEST(Identity, CleanDebianHasNoAccountFindings) {
  auto f = account_findings(debian(), {}, pol());
  EXPECT_TRUE(f.empty()) << f.front().message;
}

TEST(Identity, ImageDefinesItsOwnIds) {
  // uid 1000 is whoever the image says, whatever the host's passwd holds.
  Identity id = parse_identity("root:x:0:0:root:/root:/bin/sh\nappuser:x:1000:1000::/app:/bin/sh\n",
                               "root:x:0:\napp:x:1000:appuser\n", "");
  EXPECT_EQ(id.user_name(1000), "appuser");
  EXPECT_EQ(id.group_name(1000), "app");
  ASSERT_EQ(id.groups[1].members.size(), 1u);
  EXPECT_EQ(id.groups[1].members[0], "appuser");
}

TEST(Identity, MalformedLinesAreSkippedAndReported) {
  Identity id = parse_identity(
      "# comment\n\nroot:x:0:0:root:/root:/bin/sh\nbroken:x:0\nneg:x:-1:0:::\nbig:x:4294967295:0:::\n"
      "+nisuser::::::\nok:x:4294967294:7:::\r\n",
      "root:x:0:\nbad:x:zz:\n", "root:*:1::::::\nnofields\n");
  EXPECT_EQ(id.users.size(), 2u);
  EXPECT_EQ(id.user_name(4294967294u), "ok");
  EXPECT_EQ(id.users[1].shell, "");  // CRLF stripped
  EXPECT_EQ(id.groups.size(), 1u);
  EXPECT_EQ(id.shadow.size(), 1u);
  EXPECT_EQ(id.errors.size(), 5u);
  EXPECT_NE(id.errors[0].find("/etc/passwd:4:"), std::string::npos) << id.errors[0];
}

TEST(Identity, FirstEntryWinsLikeGetpwuid) {
  Identity id = parse_identity("root:x:0:0:::\ntoor:x:0:0:::\n", "", "");
  EXPECT_EQ(id.user_name(0), "root");
}

TEST(AccountChecks, PlantedProblems) {
  const std::string passwd =
      "root:x:0:0:root:/root:/bin/bash\n"
      "toor:x:0:0:backdoor:/root:/bin/sh\n"       // extra uid 0
      "guest::1001:1001::/home/guest:/bin/sh\n"  // empty password in passwd
      "app:x:1000:1000::/app:/bin/sh\n"
      "app2:x:1000:1000::/app:/bin/sh\n"         // duplicate uid
      "app:x:1002:1000::/app:/bin/sh\n";         // duplicate name
  const std::string shadow = "root::19000:0:99999:7:::\n"  // Alpine CVE-2019-5021
                             "toor:!:19000::::::\n";
  const std::string group = "root:x:0:\napp:x:1000:\napp:x:1001:\n";
  Identity id = parse_identity(passwd, group, shadow);
  AccountSources src;
  src.passwd = LayerRef{3, testing::fake_digest('3'), "RUN echo toor... >> /etc/passwd"};
  auto f = account_findings(id, src, pol());
  std::multiset<std::string> got;
  for (const auto& x : f) {
    got.insert(x.rule_id + " " + x.path + " " + x.detail);
    EXPECT_EQ(x.fingerprint.size(), 64u);
    EXPECT_FALSE(x.message.empty());
    if (x.path == "/etc/passwd") {
      ASSERT_TRUE(x.layer);
      EXPECT_EQ(x.layer->index, 3u);
    } else {
      EXPECT_FALSE(x.layer);  // no source given for shadow/group
    }
  }
  std::multiset<std::string> want = {
      "account-extra-uid0 /etc/passwd toor",
      "account-empty-password /etc/passwd guest",
      "account-empty-password /etc/shadow root",
      "account-duplicate /etc/passwd uid:0",
      "account-duplicate /etc/passwd uid:1000",
      "account-duplicate /etc/passwd name:app",
      "account-duplicate /etc/group name:app",
  };
  EXPECT_EQ(got, want);
  // Locked ("!", "*") and hashed passwords are not empty.
  for (const auto& x : f)
    if (x.rule_id == "account-empty-password") {
      EXPECT_NE(x.detail, "toor") << x.message;
    }
}

}  // namespace
}  // namespace moat
