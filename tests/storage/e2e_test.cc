// End-to-end: images built by the fixture builder, pulled by the real moat
// binary into a fresh store, then the store's files, modes, owners, xattrs and
// metadata index checked against what the image says. Every transport carries
// the same three layers (gzip, zstd, uncompressed), so each transport is
// checked with every compression, and all of them must give the same diffIDs.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>

#include "tests/storage/harness.h"

namespace moat::test {
namespace {

using json = nlohmann::json;

struct Transport {
  const char* format;  // fixture format
  const char* scheme;  // moat transport
};

std::string ref_for(const Transport& t, const std::string& path) { return std::string(t.scheme) + ":" + path; }

class TransportTest : public ::testing::TestWithParam<Transport> {};

TEST_P(TransportTest, PullsEveryEntryKindIntoTheStore) {
  TempDir tmp;
  const Transport t = GetParam();
  std::string img = tmp / "image";
  auto built = build_fixture({{"format", t.format}, {"layers", rich_layers()}}, img);
  std::string store = tmp / "store";
  auto r = moat({"image", "pull", "--store", store, ref_for(t, img)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, hex_of(built.platforms[0].config_digest) + "\n") << "pull prints the image id";
  verify_rich_store(store, built.platforms[0], geteuid() == 0, geteuid());
}

// The scan pulls what is missing and reports the image's layers, with their history, in order.
TEST_P(TransportTest, ScanReportsTheLayers) {
  TempDir tmp;
  const Transport t = GetParam();
  std::string img = tmp / "image";
  auto built = build_fixture({{"format", t.format}, {"layers", rich_layers()}}, img);
  std::string store = tmp / "store";
  auto s = moat({"scan", "--fail-on", "none", "--format", "json", "--store", store, ref_for(t, img)});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  json rep = json::parse(s.out);
  ASSERT_EQ(rep["image"]["layers"].size(), 3u);
  EXPECT_EQ(rep["image"]["layers"][0]["diff_id"], built.platforms[0].diff_ids[0]);
  EXPECT_EQ(rep["image"]["layers"][1]["created_by"], "RUN rm /etc/shadow");
  EXPECT_EQ(rep["image"]["layers"][2]["diff_id"], built.platforms[0].diff_ids[2]);
  EXPECT_EQ(rep["image"]["config_digest"], built.platforms[0].config_digest);
}

INSTANTIATE_TEST_SUITE_P(AllTransports, TransportTest,
                         ::testing::Values(Transport{"oci", "oci"}, Transport{"oci-archive", "oci-archive"},
                                           Transport{"docker-archive", "docker-archive"},
                                           Transport{"docker-archive-25", "docker-archive"},
                                           Transport{"dir", "dir"}),
                         [](const ::testing::TestParamInfo<Transport>& i) {
                           std::string n = i.param.format;
                           for (auto& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

// Layers are keyed by diffID and shared: the same image through five
// transports into one store is unpacked once and recorded as one image.
TEST(Store, SharesLayersAcrossTransportsAndReusesThem) {
  TempDir tmp;
  std::string store = tmp / "store";
  fixture::Built first;
  std::vector<std::string> refs;
  for (Transport t : {Transport{"oci", "oci"}, Transport{"oci-archive", "oci-archive"},
                      Transport{"docker-archive", "docker-archive"}, Transport{"docker-archive-25", "docker-archive"},
                      Transport{"dir", "dir"}}) {
    std::string img = tmp / (std::string("img-") + t.format);
    auto b = build_fixture({{"format", t.format}, {"layers", rich_layers()}}, img);
    if (refs.empty()) first = b;
    EXPECT_EQ(b.platforms[0].diff_ids, first.platforms[0].diff_ids);
    refs.push_back(ref_for(t, img));
  }
  auto l0 = [&] { return lstat_of(store + "/layers/" + hex_of(first.platforms[0].diff_ids[0]) + "/diff/etc/passwd"); };
  ino_t ino = 0;
  for (size_t i = 0; i < refs.size(); ++i) {
    auto r = moat({"image", "pull", "-v", "--store", store, refs[i]});
    ASSERT_EQ(r.exit_code, 0) << refs[i] << "\n" << r.err;
    if (i == 0) {
      EXPECT_NE(r.err.find("3 layers unpacked, 0 reused"), std::string::npos) << r.err;
      ASSERT_TRUE(l0());
      ino = l0()->st_ino;
    } else {
      EXPECT_NE(r.err.find("0 layers unpacked, 3 reused"), std::string::npos) << refs[i] << "\n" << r.err;
      ASSERT_TRUE(l0());
      EXPECT_EQ(l0()->st_ino, ino) << "a reused layer must not be unpacked again";
    }
  }
  EXPECT_EQ(list_dir(store + "/layers").size(), 3u);
  auto ls = moat({"image", "ls", "--json", "--store", store});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  json j = json::parse(ls.out);
  ASSERT_EQ(j["images"].size(), 1u) << "one config, one image";
  EXPECT_EQ(j["images"][0]["names"].size(), refs.size()) << "every reference is kept as a name";
  for (const auto& l : j["layers"]) EXPECT_EQ(l["used_by"], 1);

  // rm by one of several names only untags it (as podman rmi does); the layers stay.
  auto untag = moat({"image", "rm", "--store", store, refs[1]});
  ASSERT_EQ(untag.exit_code, 0) << untag.err;
  EXPECT_NE(untag.out.find("untagged"), std::string::npos) << untag.out;
  EXPECT_EQ(list_dir(store + "/layers").size(), 3u);
  // rm by id removes the image and its layers; nothing is left.
  auto rm = moat({"image", "rm", "--store", store, j["images"][0]["id"].get<std::string>()});
  ASSERT_EQ(rm.exit_code, 0) << rm.err;
  EXPECT_TRUE(list_dir(store + "/layers").empty());
  EXPECT_TRUE(list_dir(store + "/images").empty());
}

std::string host_arch() {
  struct utsname u;
  uname(&u);
  std::string m = u.machine;
  return m == "x86_64" ? "amd64" : m == "aarch64" ? "arm64" : m;
}

json platform_layers(const std::string& name, const std::string& comp) {
  return json::array({{{"compression", comp}, {"entries", {{{"path", "platform"}, {"content", name}}}}}});
}

class PlatformTest : public ::testing::TestWithParam<Transport> {};

// An image index: the host's platform by default, --platform to choose, and a
// clear error naming what the index has when nothing matches.
TEST_P(PlatformTest, SelectsByPlatform) {
  TempDir tmp;
  const Transport t = GetParam();
  std::string img = tmp / "image";
  json spec = {{"format", t.format},
               {"platforms",
                {{{"arch", "amd64"}, {"layers", platform_layers("amd64", "gzip")}},
                 {{"arch", "arm64"}, {"variant", "v8"}, {"layers", platform_layers("arm64", "zstd")}},
                 {{"arch", "arm"}, {"variant", "v7"}, {"layers", platform_layers("armv7", "none")}}}}};
  auto built = build_fixture(spec, img);
  ASSERT_EQ(built.platforms.size(), 3u);
  auto content_after = [&](const std::vector<std::string>& extra) -> std::string {
    std::string store = tmp / ("store" + std::to_string(rand()));
    std::vector<std::string> args{"image", "pull", "--store", store};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(ref_for(t, img));
    auto r = moat(args);
    if (r.exit_code != 0) return "exit " + std::to_string(r.exit_code) + ": " + r.err;
    auto layers = list_dir(store + "/layers");
    if (layers.size() != 1) return "layers: " + std::to_string(layers.size());
    return read_file(store + "/layers/" + layers[0] + "/diff/platform").value_or("<no file>");
  };
  std::string host = host_arch();
  if (host == "amd64" || host == "arm64") {
    EXPECT_EQ(content_after({}), host);
  }
  EXPECT_EQ(content_after({"--platform", "linux/arm64"}), "arm64");
  EXPECT_EQ(content_after({"--platform", "linux/arm64/v8"}), "arm64");
  EXPECT_EQ(content_after({"--platform", "linux/arm/v7"}), "armv7");
  EXPECT_EQ(content_after({"--platform", "linux/amd64"}), "amd64");

  std::string store = tmp / "store-none";
  auto r = moat({"image", "pull", "--store", store, "--platform", "linux/s390x", ref_for(t, img)});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no image for linux/s390x"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("linux/arm64/v8"), std::string::npos) << "the error lists what the index has: " << r.err;
  EXPECT_NE(r.err.find(img), std::string::npos) << "the error names the image: " << r.err;
  EXPECT_NE(r.err.find("moat: hint: "), std::string::npos) << r.err;
  EXPECT_TRUE(list_dir(store + "/layers").empty());

  r = moat({"image", "pull", "--store", store, "--platform", "linux", ref_for(t, img)});
  EXPECT_EQ(r.exit_code, 2) << "a malformed --platform is a usage error";
}

INSTANTIATE_TEST_SUITE_P(IndexTransports, PlatformTest,
                         ::testing::Values(Transport{"oci", "oci"}, Transport{"oci-archive", "oci-archive"},
                                           Transport{"dir", "dir"}),
                         [](const ::testing::TestParamInfo<Transport>& i) {
                           std::string n = i.param.format;
                           for (auto& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

// oci: layouts with several images are chosen by tag; docker-archive by NAME:TAG or @N.
TEST(Reference, TagsPickTheImage) {
  TempDir tmp;
  std::string oci = tmp / "oci";
  build_fixture({{"format", "oci"}, {"tag", "v2"}, {"layers", platform_layers("x", "gzip")}}, oci);
  std::string store = tmp / "store";
  EXPECT_EQ(moat({"image", "pull", "--store", store, "oci:" + oci + ":v2"}).exit_code, 0);
  auto r = moat({"image", "pull", "--store", store, "oci:" + oci + ":nope"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no image tagged \"nope\" (tags: v2)"), std::string::npos) << r.err;

  std::string da = tmp / "da.tar";
  build_fixture({{"format", "docker-archive"}, {"repo_tag", "docker.io/library/app:1.0"}, {"layers", platform_layers("y", "none")}},
                da);
  EXPECT_EQ(moat({"image", "pull", "--store", store, "docker-archive:" + da + ":app:1.0"}).exit_code, 0);
  EXPECT_EQ(moat({"image", "pull", "--store", store, "docker-archive:" + da + ":@0"}).exit_code, 0);
  r = moat({"image", "pull", "--store", store, "docker-archive:" + da + ":@1"});
  EXPECT_EQ(r.exit_code, 2);
  r = moat({"image", "pull", "--store", store, "docker-archive:" + da + ":other:1.0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("docker.io/library/app:1.0"), std::string::npos) << "lists what the archive has: " << r.err;
}

// dir: with an unpacked root filesystem: copied through the same entry writer,
// symlinks kept as symlinks (never read through), owners and modes recorded.
TEST(DirRootfs, ImportsATreeWithoutFollowingSymlinks) {
  TempDir tmp;
  std::string root = tmp / "rootfs";
  std::string secret = tmp / "host-secret";
  write_file(secret, "HOST-SECRET-CONTENT");
  ASSERT_EQ(mkdir(root.c_str(), 0755), 0);
  ASSERT_EQ(mkdir((root + "/bin").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((root + "/etc").c_str(), 0755), 0);
  write_file(root + "/etc/hostname", "box\n");
  write_file(root + "/bin/su", "su");
  ASSERT_EQ(chmod((root + "/bin/su").c_str(), 04755), 0);
  ASSERT_EQ(symlink(secret.c_str(), (root + "/etc/secret-link").c_str()), 0);
  ASSERT_EQ(symlink(tmp.path().c_str(), (root + "/escape").c_str()), 0);
  ASSERT_EQ(link((root + "/bin/su").c_str(), (root + "/bin/su2").c_str()), 0);
  bool root_user = geteuid() == 0;
  if (root_user) {
    write_file(root + "/etc/owned", "o");
    ASSERT_EQ(lchown((root + "/etc/owned").c_str(), 1000, 1001), 0);
  }
  std::string store = tmp / "store";
  auto r = moat({"image", "pull", "--store", store, "dir:" + root});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto layers = list_dir(store + "/layers");
  ASSERT_EQ(layers.size(), 1u);
  std::string ld = store + "/layers/" + layers[0], d = ld + "/diff";
  EXPECT_EQ(read_file(d + "/etc/hostname").value_or(""), "box\n");
  auto su = lstat_of(d + "/bin/su"), su2 = lstat_of(d + "/bin/su2");
  ASSERT_TRUE(su && su2);
  EXPECT_EQ(su->st_mode & 07777, 04755u);
  EXPECT_EQ(su->st_ino, su2->st_ino) << "hardlinks in the tree stay links";
  auto link_st = lstat_of(d + "/etc/secret-link");
  ASSERT_TRUE(link_st);
  EXPECT_TRUE(S_ISLNK(link_st->st_mode)) << "a symlink in the tree was followed";
  EXPECT_TRUE(S_ISLNK(lstat_of(d + "/escape")->st_mode));
  // Nothing of the host file reached the store.
  for (const auto& [p, desc] : snapshot(ld)) {
    auto c = read_file(ld + "/" + p);
    if (c) {
      EXPECT_EQ(c->find("HOST-SECRET-CONTENT"), std::string::npos) << p;
    }
  }
  auto ix = index_lines(ld);
  ASSERT_TRUE(ix.count("/bin/su"));
  EXPECT_EQ(ix["/bin/su"][2], "4755");
  if (root_user) {
    ASSERT_TRUE(ix.count("/etc/owned"));
    EXPECT_EQ(ix["/etc/owned"][3], "1000");
    EXPECT_EQ(ix["/etc/owned"][4], "1001");
  }
  // The same tree again is the same layer.
  auto again = moat({"image", "pull", "-v", "--store", store, "dir:" + root});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(list_dir(store + "/layers").size(), 1u);
  EXPECT_TRUE(list_dir(store + "/tmp").empty());
}

// moat-fixture itself: deterministic (the same spec twice gives the same bytes).
TEST(Fixture, IsDeterministic) {
  TempDir tmp;
  auto a = build_fixture({{"format", "oci-archive"}, {"layers", rich_layers()}}, tmp / "a.tar");
  auto b = build_fixture({{"format", "oci-archive"}, {"layers", rich_layers()}}, tmp / "b.tar");
  EXPECT_EQ(a.platforms[0].manifest_digest, b.platforms[0].manifest_digest);
  EXPECT_EQ(read_file(tmp / "a.tar"), read_file(tmp / "b.tar"));
}

}  // namespace
}  // namespace moat::test
