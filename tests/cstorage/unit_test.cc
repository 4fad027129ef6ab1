// Unit tests of the containers-storage source's pure pieces: storage.conf,
// images.json/layers.json parsing as hostile input, name resolution, the
// reference's store spec, big-data file names, tar-split decoding helpers.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <fstream>

#include "storage/base64.h"
#include "storage/reference.h"
#include "storage/sources/containers_storage/config.h"
#include "storage/sources/containers_storage/source.h"
#include "storage/sources/containers_storage/store_db.h"
#include "storage/fd.h"
#include "storage/sources/containers_storage/tar_split.h"

namespace moat::cstorage {
namespace {

const std::string kA(64, 'a'), kB(64, 'b'), kC(64, 'c');

TEST(Conf, ReadsDriverGraphrootAndAdditionalStores) {
  StoreLocation loc;
  loc.graphroot = "/default";
  ASSERT_TRUE(apply_storage_conf("[storage]\ndriver = \"overlay\"\ngraphroot = \"/g\"\nrunroot = \"/r\"\n"
                                 "[storage.options]\nadditionalimagestores = [\"/ro1\", \"/ro2\"]\n",
                                 "t.conf", false, loc).ok());
  EXPECT_EQ(loc.driver, "overlay");
  EXPECT_EQ(loc.graphroot, "/g");
  EXPECT_EQ(loc.runroot, "/r");
  EXPECT_EQ(loc.additional, (std::vector<std::string>{"/ro1", "/ro2"}));
}

TEST(Conf, RootlessFromSystemFileTakesRootlessStoragePathOnly) {
  StoreLocation loc;
  loc.graphroot = "/home/u/.local/share/containers/storage";
  setenv("MOAT_TEST_X", "xx", 1);
  ASSERT_TRUE(apply_storage_conf("[storage]\ndriver = \"vfs\"\ngraphroot = \"/var/lib/containers/storage\"\n"
                                 "rootless_storage_path = \"/srv/$MOAT_TEST_X/${MOAT_TEST_X}s\"\n",
                                 "sys.conf", true, loc).ok());
  EXPECT_EQ(loc.driver, "vfs");
  EXPECT_EQ(loc.graphroot, "/srv/xx/xxs");
}

TEST(Conf, BadTomlIsAnErrorNamingTheFile) {
  StoreLocation loc;
  auto st = apply_storage_conf("[storage\ndriver=", "bad.conf", false, loc);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("bad.conf"), std::string::npos);
  EXPECT_FALSE(apply_storage_conf("[storage]\ndriver = 3\n", "t.conf", false, loc).ok());
}

TEST(Location, ParsesSkopeoStoreSpecs) {
  auto r = parse_location("[overlay@/var/lib/containers/storage+/run/containers/storage:opt=1]docker.io/library/alpine:3");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->first.driver, "overlay");
  EXPECT_EQ(r->first.graphroot, "/var/lib/containers/storage");
  EXPECT_EQ(r->first.runroot, "/run/containers/storage");
  EXPECT_EQ(r->first.options, "opt=1");
  EXPECT_EQ(r->second, "docker.io/library/alpine:3");
  r = parse_location("[/g]x");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->first.graphroot, "/g");
  EXPECT_EQ(r->first.driver, "");
  r = parse_location("alpine");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->first.given);
  EXPECT_FALSE(parse_location("[vfs@/g").ok());
  EXPECT_FALSE(parse_location("[vfs@relative]x").ok());
  EXPECT_FALSE(parse_location("[zfs@/g]x").ok());
  EXPECT_FALSE(parse_location("[/g]").ok());
}

TEST(Reference, BareNamesAndContainersStorage) {
  auto r = parse_reference("alpine:3.19");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->transport, Transport::ContainersStorage);
  EXPECT_TRUE(r->bare);
  r = parse_reference("localhost:5000/team/app@sha256:" + kA);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->bare);
  r = parse_reference("containers-storage:[vfs@/g]app");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->bare);
  EXPECT_EQ(r->path, "[vfs@/g]app");
  for (const char* bad : {"/abs/path", "Upper/case", "a//b", "x:", "bogus:/x", "-lead", "a:b:c"})
    EXPECT_FALSE(is_image_name(bad)) << bad;
}

TEST(StoreJson, ParsesRealShapes) {
  auto imgs = parse_images_json(
      R"([{"id":")" + kA + R"(","digest":"sha256:)" + kB + R"(","names":["localhost/x:1"],"layer":")" + kC +
          R"(","big-data-names":["manifest"],"metadata":"{}","created":"2024-01-01T00:00:00Z"}])",
      "images.json");
  ASSERT_TRUE(imgs.ok()) << imgs.error().message;
  ASSERT_EQ(imgs->size(), 1u);
  EXPECT_EQ((*imgs)[0].top_layer, kC);
  auto layers = parse_layers_json(R"([{"id":")" + kC + R"(","parent":")" + kB + R"(","diff-digest":"sha256:)" + kA +
                                      R"(","diff-size":10,"flags":{"incomplete":true}}])",
                                  "layers.json");
  ASSERT_TRUE(layers.ok()) << layers.error().message;
  EXPECT_TRUE(layers->at(kC).incomplete);
  EXPECT_EQ(layers->at(kC).diff_size, 10);
}

TEST(StoreJson, RefusesHostileEntries) {
  for (const std::string& bad : std::vector<std::string>{R"({})", R"([{"id":"../../etc"}])", R"([{"id":")" + kA + R"(","names":"x"}])",
                                R"([{"id":")" + kA + R"(","layer":"../x"}])", R"([1])", "[{"})
    EXPECT_FALSE(parse_images_json(bad, "images.json").ok()) << bad;
  for (const std::string& bad : std::vector<std::string>{R"([{"id":")" + kA + R"(","parent":"/etc"}])",
                                R"([{"id":")" + kA + R"(","diff-digest":"sha256:../../x"}])",
                                R"([{"id":")" + kA + R"("},{"id":")" + kA + R"("}])",
                                R"([{"id":")" + kA + R"(","diff-size":"big"}])"})
    EXPECT_FALSE(parse_layers_json(bad, "layers.json").ok()) << bad;
}

TEST(Names, NormalisesLikeDocker) {
  EXPECT_EQ(normalize_name("alpine"), "docker.io/library/alpine:latest");
  EXPECT_EQ(normalize_name("user/app:1"), "docker.io/user/app:1");
  EXPECT_EQ(normalize_name("quay.io/x/y"), "quay.io/x/y:latest");
  EXPECT_EQ(normalize_name("localhost/y"), "localhost/y:latest");
  EXPECT_EQ(normalize_name("index.docker.io/library/a:2"), "docker.io/library/a:2");
}

TEST(Names, ResolvesAsPodman) {
  StoreDb db;
  CsImage a{kA, "sha256:" + kC, {}, {"docker.io/library/alpine:latest"}, "", {}};
  CsImage b{kB, "", {}, {"localhost/team/app:1", "quay.io/other/app:2"}, "", {}};
  CsImage c{std::string(60, 'a') + "bbbb", "", {}, {}, "", {}};
  db.images = {a, b, c};
  std::vector<StoreDb> stores{db};
  auto m = resolve_image(stores, "alpine");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->image->id, kA);
  EXPECT_EQ(m->matched_name, "docker.io/library/alpine:latest");
  m = resolve_image(stores, "team/app:1");  // localhost/ first
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->image->id, kB);
  m = resolve_image(stores, "app:2");  // the end of a stored repository path
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->image->id, kB);
  m = resolve_image(stores, "alpine@sha256:" + kC);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->image->id, kA);
  m = resolve_image(stores, "bbbbbbb");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->image->id, kB);
  m = resolve_image(stores, "sha256:" + kB);
  ASSERT_TRUE(m.ok());
  auto amb = resolve_image(stores, "aaaa");  // two ids start so
  ASSERT_FALSE(amb.ok());
  EXPECT_NE(amb.error().message.find("more than one"), std::string::npos);
  EXPECT_FALSE(resolve_image(stores, "nothere").ok());
  EXPECT_FALSE(resolve_image(stores, "alpine@sha256:" + kB).ok());
}

TEST(BigData, FileNamesAsContainersStorage) {
  EXPECT_EQ(big_data_file("manifest"), "manifest");
  // "sha256:..." has a ':' and so is base64'd behind '='.
  EXPECT_EQ(big_data_file("sha256:72f0ff721b306954aa47049c16f499090ea4e5019db6cb7aecad88f2a57e1dc8"),
            "=c2hhMjU2OjcyZjBmZjcyMWIzMDY5NTRhYTQ3MDQ5YzE2ZjQ5OTA5MGVhNGU1MDE5ZGI2Y2I3YWVjYWQ4OGYyYTU3ZTFkYzg=");
  EXPECT_EQ(big_data_file("../x").find('/'), std::string::npos);
}

TEST(TarSplit, Helpers) {
  EXPECT_EQ(*base64_decode("aGVsbG8="), "hello");
  EXPECT_EQ(*base64_decode(""), "");
  EXPECT_FALSE(base64_decode("a=bc").has_value());
  EXPECT_FALSE(base64_decode("abc").has_value());
  // CRC-64/GO-ISO check value (Go's crc64.ISO table, as tar-split uses).
  EXPECT_EQ(crc64_iso(0, "123456789", 9), 0xB90956C775A41001ULL);
  EXPECT_EQ(crc64_iso(crc64_iso(0, "he", 2), "llo", 3), crc64_iso(0, "hello", 5));  // streaming
  std::string out;
  EXPECT_TRUE(beneath_path("./usr//bin/", out));
  EXPECT_EQ(out, "usr/bin");
  EXPECT_TRUE(beneath_path("/etc/passwd", out));
  EXPECT_EQ(out, "etc/passwd");
  EXPECT_FALSE(beneath_path("a/../../etc/passwd", out));
  EXPECT_FALSE(beneath_path("..", out));
}

// A layer directory and a gzip'd tar-split written by the test.
class TarSplitFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/moat-cs-unit.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(mkdir((dir_ + "/layer").c_str(), 0755), 0);
    ASSERT_EQ(mkdir((dir_ + "/layer/etc").c_str(), 0755), 0);
    std::ofstream(dir_ + "/layer/etc/hello") << "hello";
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  void write_split(const std::string& lines) {
    gzFile g = gzopen((dir_ + "/ts.gz").c_str(), "wb");
    gzwrite(g, lines.data(), static_cast<unsigned>(lines.size()));
    gzclose(g);
  }
  Result<std::string> reassemble() {
    Fd gz(::open((dir_ + "/ts.gz").c_str(), O_RDONLY | O_CLOEXEC));
    Fd d(::open((dir_ + "/layer").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    TarSplitReader r(std::move(gz), std::move(d), "podman layer test", {});
    std::string out;
    char buf[3];  // tiny reads cross every boundary
    for (;;) {
      auto n = r.read(buf, sizeof buf);
      if (!n) return std::move(n).error();
      if (*n == 0) return out;
      out.append(buf, *n);
    }
  }
  static std::string crc_b64(const std::string& data) {
    uint64_t c = crc64_iso(0, data.data(), data.size());
    std::string raw;
    for (int i = 7; i >= 0; --i) raw += static_cast<char>((c >> (i * 8)) & 0xff);
    static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (size_t i = 0; i < raw.size(); i += 3) {
      uint32_t v = uint8_t(raw[i]) << 16;
      if (i + 1 < raw.size()) v |= uint8_t(raw[i + 1]) << 8;
      if (i + 2 < raw.size()) v |= uint8_t(raw[i + 2]);
      out += t[v >> 18];
      out += t[(v >> 12) & 63];
      out += i + 1 < raw.size() ? t[(v >> 6) & 63] : '=';
      out += i + 2 < raw.size() ? t[v & 63] : '=';
    }
    return out;
  }
  std::string dir_;
};

TEST_F(TarSplitFixture, ReassemblesSegmentsAndFiles) {
  // "SERS" = base64("HDR"), "UEFE" = base64("PAD")
  write_split(R"({"type":2,"payload":"SERS","position":0})" "\n"
              R"({"type":1,"name":"./etc/","payload":null,"position":1})" "\n"
              R"({"type":1,"name":"./etc/hello","size":5,"payload":")" + crc_b64("hello") + R"(","position":2})" "\n"
              R"({"type":2,"payload":"UEFE","position":3})" "\n");
  auto r = reassemble();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, "HDRhelloPAD");
}

TEST_F(TarSplitFixture, RefusesEditedEscapingAndOddEntries) {
  std::string crc = crc_b64("hellp");  // recorded content differs from the file
  write_split(R"({"type":1,"name":"etc/hello","size":5,"payload":")" + crc + R"("})" "\n");
  auto r = reassemble();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("podman layer test"), std::string::npos);
  EXPECT_NE(r.error().message.find("etc/hello"), std::string::npos);
  for (const std::string& line : std::vector<std::string>{
           R"({"type":1,"name":"../../etc/passwd","size":5,"payload":null})",  // outside the layer
           R"({"type":1,"name":"etc/hello","size":6,"payload":null})",         // size differs from the file
           R"({"type":1,"name":"etc","size":5,"payload":null})",               // not a regular file
           R"({"type":1,"name":"etc/missing","size":5,"payload":null})",
           R"({"type":1,"name":"etc/hello","size":-5})",
           R"({"type":2,"payload":"not base64!"})",
           R"({"type":7})",
           R"(not json)"}) {
    write_split(line + "\n");
    EXPECT_FALSE(reassemble().ok()) << line;
  }
  symlink("/etc/hostname", (dir_ + "/layer/link").c_str());
  write_split(R"({"type":1,"name":"link","size":5,"payload":null})" "\n");
  EXPECT_FALSE(reassemble().ok());  // a symlink is never followed
  std::ofstream(dir_ + "/ts.gz") << "not gzip";
  EXPECT_FALSE(reassemble().ok());
}

}  // namespace
}  // namespace moat::cstorage
