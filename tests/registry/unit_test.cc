// Unit tests of the docker:// pieces that need no network: references,
// registries.conf (rewriting, mirrors, blocked, aliases, short names) and the
// auth.json search order.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>

#include "storage/base64.h"
#include "storage/reference.h"
#include "storage/sources/registry/credentials.h"
#include "storage/sources/registry/docker_ref.h"
#include "storage/sources/registry/registries_conf.h"

namespace moat {
namespace {

TEST(DockerRef, DockerHubNormalization) {
  auto r = parse_docker_ref("alpine");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->text(), "docker.io/library/alpine:latest");
  r = parse_docker_ref("index.docker.io/foo/bar:1.2");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->text(), "docker.io/foo/bar:1.2");
  r = parse_docker_ref("registry-1.docker.io/ubuntu");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->text(), "docker.io/library/ubuntu:latest");
  EXPECT_EQ(api_host("docker.io"), "registry-1.docker.io");
}

TEST(DockerRef, HostsPortsTagsDigests) {
  auto r = parse_docker_ref("127.0.0.1:5000/a/b/c:v1");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->registry, "127.0.0.1:5000");
  EXPECT_EQ(r->repository, "a/b/c");
  EXPECT_EQ(r->tag, "v1");
  r = parse_docker_ref("localhost/x");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->registry, "localhost");
  std::string d = "sha256:" + std::string(64, 'a');
  r = parse_docker_ref("quay.io/x/y@" + d);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->digest, d);
  EXPECT_EQ(r->tag_or_digest(), d);
  EXPECT_EQ(r->text(), "quay.io/x/y@" + d);
  // a path component that looks like a host only counts first
  r = parse_docker_ref("foo/bar.baz");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->registry, "docker.io");
}

TEST(DockerRef, Refused) {
  EXPECT_FALSE(parse_docker_ref("").ok());
  EXPECT_FALSE(parse_docker_ref("UPPER/x").ok() && parse_docker_ref("UPPER/x")->registry == "docker.io");
  EXPECT_FALSE(parse_docker_ref("a/b:bad tag").ok());
  EXPECT_FALSE(parse_docker_ref("a/b@sha256:12").ok());
  EXPECT_FALSE(parse_docker_ref("a/b@md5:" + std::string(32, 'a')).ok());
  EXPECT_FALSE(parse_docker_ref("a/../b").ok());
  EXPECT_FALSE(parse_docker_ref("a//b").ok());
  EXPECT_FALSE(parse_docker_ref("a/b:t@sha256:" + std::string(64, 'a')).ok());
  EXPECT_FALSE(parse_docker_ref("host:port/x").ok());
}

TEST(Reference, DockerTransport) {
  auto r = parse_reference("docker://busybox");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->transport, Transport::Docker);
  EXPECT_EQ(r->text, "docker://docker.io/library/busybox:latest");
  EXPECT_EQ(r->path, "docker.io/library/busybox");
  EXPECT_EQ(r->tag, "latest");
  EXPECT_FALSE(parse_reference("docker:busybox").ok());
}

const char* kConf = R"(
unqualified-search-registries = ["registry.fedoraproject.org", "quay.io"]

[[registry]]
prefix = "example.com/foo"
location = "internal.example.com/bar"
[[registry.mirror]]
location = "mirror-a.example.com/m"
[[registry.mirror]]
location = "mirror-b.example.com"
pull-from-mirror = "digest-only"

[[registry]]
location = "evil.example.com"
blocked = true

[[registry]]
prefix = "*.wild.example.com"
insecure = true

[aliases]
"myimg" = "quay.io/team/myimg"
)";

TEST(RegistriesConf, RewriteMirrorsBlocked) {
  auto c = registry::parse_registries_conf(kConf, "test.conf");
  ASSERT_TRUE(c.ok()) << c.error().describe();
  auto ref = parse_docker_ref("example.com/foo/app:1");
  ASSERT_TRUE(ref.ok());
  auto s = registry::pull_sources(*c, *ref);
  ASSERT_TRUE(s.ok()) << s.error().describe();
  ASSERT_EQ(s->size(), 2u);  // the digest-only mirror is skipped for a tag
  EXPECT_EQ((*s)[0].ref.text(), "mirror-a.example.com/m/app:1");
  EXPECT_TRUE((*s)[0].mirror);
  EXPECT_EQ((*s)[1].ref.text(), "internal.example.com/bar/app:1");
  std::string d = "sha256:" + std::string(64, 'b');
  auto s2 = registry::pull_sources(*c, *parse_docker_ref("example.com/foo/app@" + d));
  ASSERT_TRUE(s2.ok());
  ASSERT_EQ(s2->size(), 3u);
  EXPECT_EQ((*s2)[1].ref.text(), "mirror-b.example.com/app@" + d);
  // prefix matching stops at a path boundary
  auto s3 = registry::pull_sources(*c, *parse_docker_ref("example.com/foobar/app:1"));
  ASSERT_TRUE(s3.ok());
  ASSERT_EQ(s3->size(), 1u);
  EXPECT_EQ((*s3)[0].ref.text(), "example.com/foobar/app:1");
  auto b = registry::pull_sources(*c, *parse_docker_ref("evil.example.com/x:1"));
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message.find("blocked"), std::string::npos);
  auto w = registry::pull_sources(*c, *parse_docker_ref("a.wild.example.com/x:1"));
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(w->back().insecure);
  EXPECT_EQ(w->back().ref.registry, "a.wild.example.com");
}

TEST(RegistriesConf, CredentialHelpers) {
  auto c = registry::parse_registries_conf("credential-helpers = [\"pass\", \"containers-auth.json\"]\n", "a.conf");
  ASSERT_TRUE(c.ok()) << c.error().describe();
  EXPECT_EQ(c->credential_helpers, (std::vector<std::string>{"pass", "containers-auth.json"}));
  EXPECT_FALSE(registry::parse_registries_conf("credential-helpers = \"pass\"\n", "b.conf").ok());
  EXPECT_TRUE(registry::parse_registries_conf("unqualified-search-registries = []\n", "c.conf")->credential_helpers.empty());
}

TEST(RegistriesConf, ShortNames) {
  auto c = registry::parse_registries_conf(kConf, "test.conf");
  ASSERT_TRUE(c.ok());
  auto a = registry::resolve_short_name(*c, "myimg:2");
  ASSERT_TRUE(a.ok()) << a.error().describe();
  ASSERT_EQ(a->candidates.size(), 1u);
  EXPECT_EQ(a->candidates[0].text(), "quay.io/team/myimg:2");
  EXPECT_FALSE(a->ambiguous);
  auto amb = registry::resolve_short_name(*c, "fedora");
  ASSERT_TRUE(amb.ok());
  EXPECT_TRUE(amb->ambiguous);
  ASSERT_EQ(amb->candidates.size(), 2u);
  EXPECT_EQ(amb->candidates[0].text(), "registry.fedoraproject.org/fedora:latest");
  Error e = registry::ambiguous_error("fedora", *amb);
  EXPECT_NE(e.message.find("quay.io/fedora:latest"), std::string::npos);
  auto full = registry::resolve_short_name(*c, "quay.io/x/y:1");
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->candidates.size(), 1u);
  auto none = registry::resolve_short_name(*registry::parse_registries_conf("", "empty.conf"), "x");
  EXPECT_FALSE(none.ok());
}

TEST(RegistriesConf, BadFiles) {
  EXPECT_FALSE(registry::parse_registries_conf("[[registry]\n", "bad.conf").ok());
  EXPECT_FALSE(registry::parse_registries_conf("[registries.search]\nregistries = ['a']\n", "v1.conf").ok());
  EXPECT_FALSE(registry::parse_registries_conf("[[registry]]\ninsecure = true\n", "noloc.conf").ok());
}

// toml11 3.7 overflows a signed integer on a binary integer of 63 digits
// (storage/toml_check.h): refused before it parses; 62 digits are read, and
// the same digits inside a string or a key are not a number.
TEST(RegistriesConf, LongBinaryIntegers) {
  const std::string d62(62, '1'), d63(63, '0');
  auto too_long = registry::parse_registries_conf("x = 0b" + d63 + "\n", "bin.conf");
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.error().describe().find("bin.conf is not valid TOML here: a binary integer of 63 digits"),
            std::string::npos)
      << too_long.error().describe();
  EXPECT_FALSE(registry::parse_registries_conf("x = [1, 0b1_" + d63 + "]\n", "bin.conf").ok());
  EXPECT_TRUE(registry::parse_registries_conf("x = 0b" + d62 + "\n", "bin.conf").ok());
  EXPECT_TRUE(registry::parse_registries_conf("x = '0b" + d63 + "'\nk0b" + d63 + " = 1\n", "bin.conf").ok());
}

class AuthFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/moat-auth-unit.XXXXXX";
    dir_ = mkdtemp(tmpl);
    old_home_ = getenv("HOME") ? getenv("HOME") : "";
    setenv("HOME", dir_.c_str(), 1);
    setenv("XDG_RUNTIME_DIR", (dir_ + "/run").c_str(), 1);
    unsetenv("REGISTRY_AUTH_FILE");
  }
  void TearDown() override {
    setenv("HOME", old_home_.c_str(), 1);
    std::string cmd = "rm -rf '" + dir_ + "'";
    ASSERT_EQ(system(cmd.c_str()), 0);
  }
  void write(const std::string& rel, const std::string& text) {
    std::string p = dir_ + "/" + rel;
    std::string cmd = "mkdir -p \"$(dirname '" + p + "')\"";
    ASSERT_EQ(system(cmd.c_str()), 0);
    std::ofstream(p) << text;
  }
  static std::string entry(const std::string& user, const std::string& pass) {
    return "{\"auth\": \"" + base64_encode(user + ":" + pass) + "\"}";
  }
  std::string dir_, old_home_;
};

TEST_F(AuthFiles, SearchOrderAndMostSpecificKey) {
  write(".docker/config.json", "{\"auths\": {\"https://r.example:5000/v1/\": " + entry("docker", "p") + "}}");
  auto c = registry::find_credentials("r.example:5000", "ns/app", "", "");
  ASSERT_TRUE(c.ok()) << c.error().describe();
  ASSERT_TRUE(c->found);
  EXPECT_EQ(c->found->username, "docker");
  write(".config/containers/auth.json", "{\"auths\": {\"r.example:5000\": " + entry("host", "p") +
                                          ", \"r.example:5000/ns\": " + entry("ns", "p") + "}}");
  c = registry::find_credentials("r.example:5000", "ns/app", "", "");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->found->username, "ns");
  EXPECT_NE(c->found->source.find("key r.example:5000/ns"), std::string::npos);
  c = registry::find_credentials("r.example:5000", "other/app", "", "");
  EXPECT_EQ(c->found->username, "host");
  write("run/containers/auth.json", "{\"auths\": {\"r.example:5000\": " + entry("runtime", "p") + "}}");
  c = registry::find_credentials("r.example:5000", "ns/app", "", "");
  EXPECT_EQ(c->found->username, "runtime");
  EXPECT_EQ(c->looked.size(), 1u);
  // --authfile alone, even when it has nothing for this registry
  write("only.json", "{\"auths\": {}}");
  c = registry::find_credentials("r.example:5000", "ns/app", "", dir_ + "/only.json");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->found);
  ASSERT_EQ(c->looked.size(), 1u);
  // --creds wins over everything
  c = registry::find_credentials("r.example:5000", "ns/app", "u:secret", "");
  EXPECT_EQ(c->found->username, "u");
  EXPECT_EQ(c->found->password, "secret");
  EXPECT_EQ(c->found->source, "--creds");
}

TEST_F(AuthFiles, IdentityTokenAndDamage) {
  write(".config/containers/auth.json", "{\"auths\": {\"r.example\": {\"identitytoken\": \"tok\"}}}");
  auto c = registry::find_credentials("r.example", "a", "", "");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->found->identity_token, "tok");
  write(".config/containers/auth.json", "{\"auths\": {\"r.example\": {\"auth\": \"!!!\"}}}");
  c = registry::find_credentials("r.example", "a", "", "");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message.find("!!!"), std::string::npos);  // never echo the value
  write(".config/containers/auth.json", "not json");
  EXPECT_FALSE(registry::find_credentials("r.example", "a", "", "").ok());
}

TEST(Base64, RoundTrip) {
  for (std::string s : {"", "a", "ab", "abc", "user:pässwörd"}) {
    auto d = base64_decode_lenient(base64_encode(s));
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(*d, s);
  }
}

}  // namespace
}  // namespace moat
