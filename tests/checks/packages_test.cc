#include "scanner/image/packages.h"
#include "scanner/image/packages_md5.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <gtest/gtest.h>

#include <map>

#include "test_util.h"

namespace moat {
namespace {

using testing::data_path;
using testing::slurp;

// An image whose files are the real Debian 12 samples in data/dpkg
// (copied from /var/lib/dpkg of a bookworm machine).
ReadImageFile dpkg_image() {
  return [](const std::string& path) -> Result<std::optional<std::string>> {
    const std::string prefix = "/var/lib/dpkg/";
    if (path.rfind(prefix, 0) != 0) return std::optional<std::string>();
    return slurp(data_path("dpkg/" + path.substr(prefix.size())));
  };
}

TEST(Dpkg, StatusStanzas) {
  auto pkgs = parse_dpkg_status(*slurp(data_path("dpkg/status")));
  ASSERT_EQ(pkgs.size(), 7u);
  std::map<std::string, DpkgPackage> by;
  for (const auto& p : pkgs) by[p.name] = p;
  EXPECT_TRUE(by["libc6"].multi_arch_same);
  EXPECT_FALSE(by["passwd"].multi_arch_same);
  EXPECT_EQ(by["passwd"].arch, "amd64");
  EXPECT_FALSE(by["passwd"].version.empty());
  // Removed packages with only config files left own nothing on disk.
  auto some = parse_dpkg_status(
      "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
      "Package: half\nStatus: install reinstreq half-installed\nDescription: x\n multi-line\n .\n more\n");
  ASSERT_EQ(some.size(), 1u);
  EXPECT_EQ(some[0].name, "half");
}

TEST(Dpkg, RealDatabaseOwnersAndDigests) {
  auto db = load_package_db(dpkg_image());
  ASSERT_TRUE(db.ok()) << db.error().describe();
  EXPECT_EQ(db->managers(), "dpkg");
  EXPECT_EQ(db->packages.size(), 7u);
  // base-files has a .list but no .md5sums in the sample: normal, no error.
  EXPECT_TRUE(db->errors.empty()) << db->errors.front();
  ASSERT_TRUE(db->owner_of("/usr/bin/chsh"));
  EXPECT_EQ(*db->owner_of("/usr/bin/chsh"), "passwd");
  // libc6 is Multi-Arch: same: its files come from libc6:amd64.list.
  EXPECT_NE(db->owner_of("/usr/share/doc/libc6/copyright"), nullptr);
  const ExpectedDigest* d = db->digest_of("/usr/bin/chsh");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->algo, DigestAlgo::Md5);
  EXPECT_EQ(d->hex, "b51e956c521c34f50236166438108360");
  EXPECT_EQ(d->package, "passwd");
  EXPECT_EQ(db->owner_of("/usr/local/bin/rootsh"), nullptr);
}

TEST(Dpkg, MergedUsrLookups) {
  auto db = load_package_db(dpkg_image());
  ASSERT_TRUE(db.ok());
  // util-linux lists /bin/su; on merged /usr the walker finds /usr/bin/su.
  EXPECT_EQ(db->owner_of("/usr/bin/su"), nullptr);  // exact lookups until told
  db->set_merged_usr(true);
  ASSERT_TRUE(db->owner_of("/usr/bin/su"));
  EXPECT_EQ(*db->owner_of("/usr/bin/su"), "util-linux");
  EXPECT_EQ(*db->owner_of("/usr/sbin/unix_chkpwd"), "libpam-modules-bin");
  ASSERT_TRUE(db->digest_of("/usr/bin/su"));
  EXPECT_EQ(db->digest_of("/usr/bin/su")->hex, "bf3f1799b2782402b9bbe1d16fba90e5");
  // And the other way round for a package that lists /usr paths.
  EXPECT_EQ(*db->owner_of("/bin/chsh"), "passwd");
}

TEST(Dpkg, Diversions) {
  // Debian 12: dash diverts /bin/sh to /bin/sh.distrib (from the real file).
  auto div = parse_dpkg_diversions(*slurp(data_path("dpkg/diversions")));
  ASSERT_TRUE(div.count("/bin/sh"));
  EXPECT_EQ(div["/bin/sh"].to, "/bin/sh.distrib");
  EXPECT_EQ(div["/bin/sh"].by, "dash");
  // A package (not the diverter) that lists the diverted path owns the new path.
  PackageDb db;
  add_dpkg_list(db, "bash", "/.\n/bin\n/bin/sh\n/bin/bash\n", div);
  add_dpkg_list(db, "dash", "/.\n/bin\n/bin/sh\n/usr/bin/dash\n", div);
  add_dpkg_md5sums(db, "bash", "0123456789abcdef0123456789abcdef  bin/sh\n", div);
  EXPECT_EQ(*db.owner_of("/bin/sh.distrib"), "bash");
  EXPECT_EQ(*db.owner_of("/bin/sh"), "dash");
  EXPECT_EQ(db.digest_of("/bin/sh.distrib")->package, "bash");
  EXPECT_EQ(db.digest_of("/bin/sh"), nullptr);
  // A truncated file (partial triple) is ignored, not guessed at.
  EXPECT_EQ(parse_dpkg_diversions("/a\n/b\n").size(), 0u);
}

TEST(Dpkg, MalformedMd5sumsAreCountedNotFatal) {
  PackageDb db;
  add_dpkg_md5sums(db, "p", "nothex  usr/bin/x\nb51e956c521c34f50236166438108360  usr/bin/with space\n"
                            "b51e956c521c34f50236166438108360 usr/bin/onespace\n", {});
  EXPECT_NE(db.digest_of("/usr/bin/with space"), nullptr);
  EXPECT_EQ(db.digests(), 1u);
  ASSERT_EQ(db.errors.size(), 1u);
}

TEST(Dpkg, MissingListIsAnErrorValue) {
  auto read = [](const std::string& path) -> Result<std::optional<std::string>> {
    if (path == "/var/lib/dpkg/status") return std::optional<std::string>("Package: ghost\nStatus: install ok installed\n");
    return std::optional<std::string>();
  };
  auto db = load_package_db(read);
  ASSERT_TRUE(db.ok());
  EXPECT_EQ(db->packages.size(), 1u);
  ASSERT_EQ(db->errors.size(), 1u);
  EXPECT_NE(db->errors[0].find("ghost"), std::string::npos);
}

TEST(Dpkg, UnreadableStatusFailsTheLoad) {
  auto read = [](const std::string& path) -> Result<std::optional<std::string>> {
    if (path == "/var/lib/dpkg/status") return Error{"read /var/lib/dpkg/status: too large"};
    return std::optional<std::string>();
  };
  EXPECT_FALSE(load_package_db(read).ok());
}

TEST(Apk, InstalledDatabase) {
  auto read = [](const std::string& path) -> Result<std::optional<std::string>> {
    if (path == "/lib/apk/db/installed") return slurp(data_path("apk/installed"));
    return std::optional<std::string>();
  };
  auto db = load_package_db(read);
  ASSERT_TRUE(db.ok());
  EXPECT_EQ(db->managers(), "apk");
  ASSERT_EQ(db->packages.size(), 3u);
  EXPECT_EQ(db->packages[1].name, "busybox");
  EXPECT_EQ(db->packages[1].version, "1.36.1-r5");
  EXPECT_TRUE(db->errors.empty()) << db->errors.front();
  EXPECT_EQ(*db->owner_of("/bin/bbsuid"), "busybox-suid");
  EXPECT_EQ(*db->owner_of("/lib/ld-musl-x86_64.so.1"), "musl");
  EXPECT_EQ(*db->owner_of("/etc/logrotate.d/acpid"), "busybox");
  EXPECT_EQ(*db->owner_of("/usr/share/udhcpc"), "busybox");  // F: directories are owned too
  const ExpectedDigest* d = db->digest_of("/bin/busybox");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->algo, DigestAlgo::Sha1);
  EXPECT_EQ(d->hex, digest_hex(DigestAlgo::Sha1, "busybox binary\n"));
  EXPECT_EQ(d->package, "busybox");
  const ExpectedDigest* s = db->digest_of("/usr/share/udhcpc/default.script");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->algo, DigestAlgo::Sha256);
  EXPECT_EQ(s->hex, digest_hex(DigestAlgo::Sha256, "#!/bin/sh\n"));
  // Alpine is not merged-/usr: exact lookups.
  EXPECT_EQ(db->owner_of("/usr/bin/busybox"), nullptr);
}

TEST(Apk, Checksums) {
  auto d = parse_apk_checksum("Q1nCjn8YNGXsuJHhYf6ptCCTAMenY=");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->hex, digest_hex(DigestAlgo::Sha1, "busybox binary\n"));
  EXPECT_FALSE(parse_apk_checksum("Q1short"));
  EXPECT_FALSE(parse_apk_checksum("Q3AAAA"));
  EXPECT_FALSE(parse_apk_checksum("Q1!!!!!!!!!!!!!!!!!!!!!!!!!!!="));
  EXPECT_FALSE(parse_apk_checksum(""));
}

TEST(Apk, MalformedLinesAreCounted) {
  PackageDb db;
  add_apk_installed(db, "P:x\nF:bin\nR:a\nZ:Qbogus\nR:../../etc/passwd\nnonsense\n");
  EXPECT_EQ(*db.owner_of("/bin/a"), "x");
  EXPECT_EQ(db.owner_of("/etc/passwd"), nullptr);
  ASSERT_EQ(db.errors.size(), 1u);
  EXPECT_NE(db.errors[0].find("3 malformed"), std::string::npos) << db.errors[0];
}

TEST(Integrity, RealChshAgainstItsRecordedDigest) {
  // The md5sums sample came from this kind of machine; hash the real binary.
  auto bin = slurp("/usr/bin/chsh");
  if (!bin) GTEST_SKIP() << "/usr/bin/chsh not present";
  auto db = load_package_db(dpkg_image());
  ASSERT_TRUE(db.ok());
  const ExpectedDigest* d = db->digest_of("/usr/bin/chsh");
  ASSERT_TRUE(d);
  FileHasher h(d->algo);
  // Streamed in odd-sized pieces, as a reader would.
  for (size_t off = 0; off < bin->size(); off += 4093) h.update(bin->data() + off, std::min<size_t>(4093, bin->size() - off));
  std::string actual = h.finish_hex();
  if (actual != d->hex) GTEST_SKIP() << "this machine's passwd package differs from the sample";
  std::string changed = *bin;
  changed[changed.size() / 2] ^= 1;
  EXPECT_NE(digest_hex(d->algo, changed), d->hex);
}

TEST(OsRelease, Ids) {
  EXPECT_EQ(os_release_ids(*slurp(data_path("apk/os-release"))), std::vector<std::string>{"alpine"});
  EXPECT_EQ(os_release_ids(*slurp(data_path("dpkg/os-release"))), std::vector<std::string>{"debian"});
  EXPECT_EQ(os_release_ids("ID=ubuntu\nID_LIKE=debian\n"), (std::vector<std::string>{"ubuntu", "debian"}));
  EXPECT_EQ(os_release_ids("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n"),
            (std::vector<std::string>{"rocky", "rhel", "centos", "fedora"}));
  EXPECT_TRUE(os_release_ids("").empty());
}

// The sixteen-lane MD5 (and its scalar form) against OpenSSL, on every
// length around the block and padding edges, on mixed sizes so lanes finish
// and refill at different times, and fed in pieces of several sizes.
TEST(PackagesMd5, MatchesOpenSslOnManySizes) {
  std::vector<std::string> data;
  uint32_t x = 12345;
  auto rnd = [&] { return x = x * 1103515245u + 12345u; };
  for (size_t n = 0; n <= 200; ++n) data.emplace_back(n, static_cast<char>('a' + n % 26));
  for (size_t n : {1000u, 4095u, 4096u, 65535u, 65536u, 65599u, 300000u, 1u << 20}) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rnd() >> 24);
    data.push_back(std::move(s));
  }
  for (int i = 0; i < 100; ++i) {
    std::string s(rnd() % 20000, '\0');
    for (auto& c : s) c = static_cast<char>(rnd() >> 24);
    data.push_back(std::move(s));
  }
  std::vector<std::string> want;
  for (const auto& d : data) want.push_back(digest_hex(DigestAlgo::Md5, d));
  EXPECT_EQ(want[0], "d41d8cd98f00b204e9800998ecf8427e");  // MD5("")
  for (size_t piece : {size_t{1} << 20, size_t{4096}, size_t{100}, size_t{63}, size_t{7}}) {
    EXPECT_EQ(md5_buffers_for_test(data, piece, /*force_scalar=*/false), want) << "piece " << piece;
    EXPECT_EQ(md5_buffers_for_test(data, piece, /*force_scalar=*/true), want) << "scalar, piece " << piece;
  }
  if (!md5_files_multi_buffer()) GTEST_SKIP() << "no AVX-512 here: only the scalar form was tested";
}

// md5_files() from real files, with the fstat size as the end (one read()
// for a small file), with no size, and with a size the file has outgrown
// since (the hint must not cut it short).
TEST(PackagesMd5, FilesWithSizeHints) {
  char tmpl[] = "/tmp/moat-md5-files-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  std::vector<std::string> data;
  uint32_t x = 777;
  for (size_t n : {0u, 1u, 63u, 64u, 65u, 4096u, 65535u, 65536u, 65537u, 131072u, 200000u}) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>((x = x * 1103515245u + 12345u) >> 24);
    data.push_back(std::move(s));
  }
  std::vector<std::string> names;
  for (size_t i = 0; i < data.size(); ++i) {
    names.push_back(dir + "/f" + std::to_string(i));
    FILE* f = std::fopen(names.back().c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(data[i].data(), 1, data[i].size(), f), data[i].size());
    std::fclose(f);
  }
  std::vector<std::optional<std::string>> want;
  for (const auto& d : data) want.emplace_back(digest_hex(DigestAlgo::Md5, d));
  enum Hint { kExact, kNone, kStale };
  for (Hint hint : {kExact, kNone, kStale}) {
    auto got = md5_files(data.size(), [&](size_t i) -> Result<Md5Input> {
      Fd fd(::open(names[i].c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) return Error{"open"};
      uint64_t n = data[i].size();
      return Md5Input{std::move(fd), hint == kExact ? n : hint == kNone ? UINT64_MAX : n / 2};
    });
    EXPECT_EQ(got, want) << "hint " << hint;
  }
  for (const auto& n : names) ::unlink(n.c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace moat
