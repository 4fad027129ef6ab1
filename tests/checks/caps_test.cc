#include "scanner/checks/caps.h"

#include <gtest/gtest.h>

#include <sys/xattr.h>

#include "test_util.h"

namespace moat {
namespace {

std::string unhex(std::string_view h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  return out;
}

// Values produced on Debian 12 with libcap2-bin 2.66:
//   setcap SPEC f && getfattr -n security.capability -e hex f
// and the text getcap printed (in libcap's '=' spelling; moat writes '+').
struct Case {
  const char* setcap;
  const char* hex;
  int revision;
  const char* text;
  std::optional<uint32_t> rootid;
};

const Case kCases[] = {
    {"cap_net_raw+ep", "0100000200200000000000000000000000000000", 2, "cap_net_raw+ep", std::nullopt},
    {"-n 1000 cap_net_raw,cap_net_bind_service+eip", "0100000300240000002400000000000000000000e8030000", 3,
     "cap_net_bind_service,cap_net_raw+eip", 1000u},
    {"cap_setuid+i", "0000000200000000800000000000000000000000", 2, "cap_setuid+i", std::nullopt},
    {"cap_checkpoint_restore,cap_sys_admin+ep", "0100000200002000000000000001000000000000", 2,
     "cap_sys_admin,cap_checkpoint_restore+ep", std::nullopt},
    {"cap_chown+eip cap_net_admin+ep", "0100000201100000010000000000000000000000", 2,
     "cap_chown+eip cap_net_admin+ep", std::nullopt},
    {"cap_chown+i cap_net_admin+p", "0000000200100000010000000000000000000000", 2, "cap_chown+i cap_net_admin+p",
     std::nullopt},
};

TEST(Caps, RealSetcapValues) {
  for (const auto& c : kCases) {
    auto fc = decode_file_caps(unhex(c.hex));
    ASSERT_TRUE(fc.ok()) << c.setcap << ": " << fc.error().describe();
    EXPECT_EQ(fc->revision, c.revision) << c.setcap;
    EXPECT_EQ(fc->text(), c.text) << c.setcap;
    EXPECT_EQ(fc->rootid, c.rootid) << c.setcap;
  }
}

TEST(Caps, Revision1AndUnknownBits) {
  // v1: 32 bits only, 12 bytes.
  auto v1 = decode_file_caps(unhex("010000010020000000000000"));
  ASSERT_TRUE(v1.ok());
  EXPECT_EQ(v1->text(), "cap_net_raw+ep");
  // Bit 45 has no name yet: written as a number, like libcap.
  auto hi = decode_file_caps(unhex("0100000200000000000000000020000000000000"));
  ASSERT_TRUE(hi.ok());
  EXPECT_EQ(hi->text(), "cap_45+ep");
  auto none = decode_file_caps(unhex("0000000200000000000000000000000000000000"));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->text(), "");
}

TEST(Caps, HostileValuesAreErrors) {
  EXPECT_FALSE(decode_file_caps("").ok());
  EXPECT_FALSE(decode_file_caps(unhex("010000")).ok());
  EXPECT_FALSE(decode_file_caps(unhex("0100000200200000")).ok());                    // v2 truncated
  EXPECT_FALSE(decode_file_caps(unhex("0100000200200000000000000000000000000000ff")).ok());  // v2 too long
  EXPECT_FALSE(decode_file_caps(unhex("0100000300200000000000000000000000000000")).ok());    // v3 without rootid
  EXPECT_FALSE(decode_file_caps(unhex("0100000900200000000000000000000000000000")).ok());    // revision 9
}

// Where setcap works here (root with CAP_SETFCAP), produce a value live and decode it.
TEST(Caps, LiveSetcapWhenAvailable) {
  char dir[] = "/tmp/moat-caps-XXXXXX";
  ASSERT_TRUE(mkdtemp(dir));
  std::string f = std::string(dir) + "/f";
  testing::spit(f, "x");
  int st = testing::run("setcap cap_net_raw,cap_dac_override+ep " + f + " 2>/dev/null");
  char buf[64];
  ssize_t n = st == 0 ? getxattr(f.c_str(), "security.capability", buf, sizeof buf) : -1;
  std::remove(f.c_str());
  rmdir(dir);
  if (n < 0) GTEST_SKIP() << "setcap is unavailable or not permitted here";
  auto fc = decode_file_caps(std::string_view(buf, static_cast<size_t>(n)));
  ASSERT_TRUE(fc.ok());
  EXPECT_EQ(fc->text(), "cap_dac_override,cap_net_raw+ep");
}

}  // namespace
}  // namespace moat
