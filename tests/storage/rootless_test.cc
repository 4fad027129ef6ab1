// Rootless: "works as root" proves nothing about the unprivileged case, where
// lchown to other ids fails, security.* xattrs cannot be set, device nodes
// cannot be made and a 0000 directory locks its owner out. These tests run
// the real binary as the unprivileged test users (tests/lib/rootless-users.sh):
//   moat-single  only its own id maps
//   moat-subuid  has a subordinate id range
// and check, as root, that the store still tells the image's truth: the index
// has the true owners, modes and capabilities, override_stat carries foreign
// owners on disk, setuid bits stay, whiteouts are 0:0 devices. They need root
// to switch users; elsewhere they are skipped (and reported as skipped).
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "tests/storage/harness.h"

namespace moat::test {
namespace {

using json = nlohmann::json;

class Rootless : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to run moat as the unprivileged test users";
    pw_ = getpwnam(GetParam());
    if (!pw_)
      GTEST_SKIP() << "user " << GetParam() << " does not exist: run tests/lib/rootless-users.sh as root (scripts/test.sh does)";
    uid_ = pw_->pw_uid;
    gid_ = pw_->pw_gid;
    // The build tree may be unreadable to the test user: copy the binary into a 0755 dir.
    ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
    bin_ = dir_ / "moat";
    std::filesystem::copy_file(moat_bin(), bin_);
    ASSERT_EQ(chmod(bin_.c_str(), 0755), 0);
    // A directory the user owns, for its store.
    home_ = dir_ / "user";
    ASSERT_EQ(mkdir(home_.c_str(), 0700), 0);
    ASSERT_EQ(chown(home_.c_str(), uid_, gid_), 0);
  }

  RunResult as_user(const std::vector<std::string>& args) {
    std::vector<std::string> argv{"/bin/bash", std::string(MOAT_SOURCE_DIR) + "/tests/lib/as-user.sh", GetParam(), bin_};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  }

  // Fixture files must be readable by the user: build with a 022 umask.
  fixture::Built build(const json& spec, const std::string& out) {
    mode_t old = umask(022);
    auto b = build_fixture(spec, out);
    umask(old);
    return b;
  }

  TempDir dir_{"moat-rootless"};
  struct passwd* pw_ = nullptr;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  std::string bin_, home_;
};

TEST_P(Rootless, PullRecordsTheImagesTruth) {
  std::string img = dir_ / "image";
  auto built = build({{"format", "oci"}, {"layers", rich_layers()}}, img);
  std::string store = home_ + "/store";
  auto r = as_user({"image", "pull", "--store", store, "oci:" + img});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto st = lstat_of(store);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->st_uid, uid_) << "the store belongs to the user who made it";
  std::string l0 = store + "/layers/" + hex_of(built.platforms[0].diff_ids[0]);
  auto layer_json = json::parse(read_file(l0 + "/layer.json").value_or("{}"));
  if (!layer_json.value("owners_applied", false)) {
    // Everything verify_rich_store checks, with files owned by the user and foreign owners in override_stat.
    verify_rich_store(store, built.platforms[0], /*as_root=*/false, uid_);
  } else {
    // Unpacked through a subordinate id mapping: container id N>0 is subuid_start+N-1 on disk.
    ASSERT_STREQ(GetParam(), "moat-subuid") << "only a user with a subuid range can apply owners";
    auto notes = lstat_of(l0 + "/diff/home/user/notes");
    ASSERT_TRUE(notes);
    EXPECT_EQ(notes->st_uid, 400000u + 1000u - 1u) << "see the range in tests/lib/rootless-users.sh";
    EXPECT_EQ(lstat_of(l0 + "/diff/bin/su")->st_uid, uid_);
    EXPECT_EQ(lstat_of(l0 + "/diff/bin/su")->st_mode & 07777, 04755u);
  }
  // The capability could not be set by an unprivileged user: the index still has it.
  auto ix = index_lines(l0);
  ASSERT_TRUE(ix.count("/usr/bin/ping"));
  EXPECT_NE(ix["/usr/bin/ping"][10].find("security.capability=01000002"), std::string::npos);
  EXPECT_EQ(ix["/home/user/notes"][3], "1000");

  // The user can scan it again (reuse) and remove it, 0000 directories included.
  auto scan = as_user({"scan", "--fail-on", "none", "--format", "json", "--store", store, "oci:" + img});
  EXPECT_EQ(scan.exit_code, 0) << scan.err;
  auto rm = as_user({"image", "rm", "--store", store, "oci:" + img});
  EXPECT_EQ(rm.exit_code, 0) << rm.err;
  EXPECT_TRUE(list_dir(store + "/layers").empty());
}

// Without CAP_DAC_OVERRIDE the owner of a 0000 file (Fedora's /etc/shadow) or
// of a file under a 0000 directory cannot read it: a hardlink to it from an
// upper layer (which becomes a copy) must still work, and the lower layer's
// modes must come back exactly as they were.
TEST_P(Rootless, HardlinkCopiesFromLockedLowerFiles) {
  std::string img = dir_ / "locked";
  auto built = build({{"format", "oci"},
                      {"layers",
                       {{{"entries",
                          {{{"path", "etc/shadow"}, {"mode", "0000"}, {"content", "root:*:1::::::\n"}},
                           {{"path", "locked"}, {"type", "dir"}, {"mode", "0000"}},
                           {{"path", "locked/inner"}, {"type", "dir"}, {"mode", "0100"}},
                           {{"path", "locked/inner/f"}, {"mode", "0400"}, {"uid", 1000}, {"content", "deep"}}}}},
                        {{"compression", "zstd"},
                         {"entries",
                          {{{"path", "shadow-link"}, {"type", "hardlink"}, {"link", "etc/shadow"}},
                           {{"path", "deep-link"}, {"type", "hardlink"}, {"link", "locked/inner/f"}}}}}}}},
                     img);
  std::string store = home_ + "/store";
  auto r = as_user({"image", "pull", "--store", store, "oci:" + img});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string d0 = store + "/layers/" + hex_of(built.platforms[0].diff_ids[0]) + "/diff";
  std::string d1 = store + "/layers/" + hex_of(built.platforms[0].diff_ids[1]) + "/diff";
  EXPECT_EQ(read_file(d1 + "/shadow-link").value_or("<none>"), "root:*:1::::::\n");
  EXPECT_EQ(read_file(d1 + "/deep-link").value_or("<none>"), "deep");
  EXPECT_EQ(lstat_of(d1 + "/shadow-link")->st_mode & 07777, 0u);
  EXPECT_EQ(lstat_of(d1 + "/deep-link")->st_mode & 07777, 0400u);
  EXPECT_EQ(lstat_of(d1 + "/deep-link")->st_mtim.tv_sec, 1700000000);
  // Owners: in override_stat, unless moat unpacked as root of the user's subuid namespace (then real, mapped).
  if (auto ov = xattr_of(d1 + "/deep-link", "user.containers.override_stat")) EXPECT_EQ(*ov, "1000:0:0400:file");
  else EXPECT_EQ(lstat_of(d1 + "/deep-link")->st_uid, 400000u + 1000u - 1u) << "no override_stat: the owner must be real";
  // The lower layer is shared and published: its modes are exactly the image's again.
  EXPECT_EQ(lstat_of(d0 + "/etc/shadow")->st_mode & 07777, 0u);
  EXPECT_EQ(lstat_of(d0 + "/locked")->st_mode & 07777, 0u);
  EXPECT_EQ(lstat_of(d0 + "/locked/inner")->st_mode & 07777, 0100u);
  EXPECT_EQ(lstat_of(d0 + "/locked/inner/f")->st_mode & 07777, 0400u);
}

// A hostile image refused without privilege just the same, nothing left behind.
TEST_P(Rootless, HostileRefused) {
  std::string img = dir_ / "hostile";
  build({{"format", "oci-archive"},
         {"layers",
          {{{"compression", "zstd"},
            {"entries", {{{"path", "s"}, {"type", "symlink"}, {"link", home_}}, {{"path", "s/pwned"}, {"content", "x"}}}}}}}},
        img);
  std::string store = home_ + "/store";
  auto r = as_user({"image", "pull", "--store", store, "oci-archive:" + img});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("entry \"s/pwned\""), std::string::npos) << r.err;
  EXPECT_FALSE(lstat_of(home_ + "/pwned"));
  EXPECT_TRUE(list_dir(store + "/layers").empty());
  EXPECT_TRUE(list_dir(store + "/tmp").empty());
}

INSTANTIATE_TEST_SUITE_P(Users, Rootless, ::testing::Values("moat-single", "moat-subuid"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           std::string n = i.param;
                           for (auto& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

}  // namespace
}  // namespace moat::test
