// check_entry() and config_findings() on planted entries and their look-alikes,
// plus a cross-check on this machine's real Debian /usr.
#include <ftw.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <map>

#include "rules/secrets/engine.h"
#include "scanner/checks/checks.h"
#include "scanner/checks/secret_scan.h"
#include "test_util.h"

namespace moat {
namespace {

using testing::data_path;
using testing::slurp;

struct Fixture {
  const policy::Policy& pol = policy::builtin_policy().value();
  Identity id = parse_identity(*slurp(data_path("accounts/debian.passwd")), *slurp(data_path("accounts/debian.group")),
                               *slurp(data_path("accounts/debian.shadow")));
  PackageDb db;
  const policy::Distribution* distro = nullptr;
  Fixture() {
    auto r = load_package_db([](const std::string& path) -> Result<std::optional<std::string>> {
      const std::string prefix = "/var/lib/dpkg/";
      if (path.rfind(prefix, 0) != 0) return std::optional<std::string>();
      return slurp(data_path("dpkg/" + path.substr(prefix.size())));
    });
    db = std::move(r).value();
    db.set_merged_usr(true);
    distro = pol.distribution_for(os_release_ids(*slurp(data_path("dpkg/os-release"))));
  }
  CheckContext ctx() const { return CheckContext{pol, id, db, distro, CheckSelection::all()}; }
};

IndexEntry file(const std::string& path, uint32_t mode, uint32_t uid = 0, uint32_t gid = 0,
                EntryType t = EntryType::File) {
  IndexEntry e;
  e.path = path;
  e.mode = mode;
  e.uid = uid;
  e.gid = gid;
  e.type = t;
  e.size = 100;
  return e;
}

std::vector<Finding> run(const CheckContext& ctx, const IndexEntry& m, std::string head = "\x7f" "ELF",
                         std::string hash = "", bool deleted = false) {
  VectorSink sink;
  EntryView v{m, LayerRef{1, testing::fake_digest('1'), "RUN x"}, deleted,
              [head](size_t max) -> Result<std::string> { return head.substr(0, max); },
              nullptr};
  // No digest given: the walker did not offer hashing (integrity not checked).
  if (!hash.empty()) v.hash = [hash](DigestAlgo) -> Result<std::string> { return hash; };
  EXPECT_TRUE(check_entry(ctx, v, sink).ok());
  EXPECT_TRUE(sink.errors.empty()) << sink.errors.front();
  return sink.findings;
}

std::vector<std::string> rules(const std::vector<Finding>& f) {
  std::vector<std::string> out;
  for (const auto& x : f) out.push_back(x.rule_id);
  return out;
}
using V = std::vector<std::string>;

TEST(EntryChecks, SetuidClassification) {
  Fixture fx;
  auto ctx = fx.ctx();
  auto su = run(ctx, file("/usr/bin/su", 04755));  // util-linux lists /bin/su: merged /usr
  ASSERT_EQ(rules(su), V{"setuid-expected"});
  EXPECT_EQ(su[0].package, "util-linux");
  EXPECT_EQ(su[0].severity, Severity::Info);
  EXPECT_EQ(su[0].owner->user, "root");
  EXPECT_EQ(su[0].layer->index, 1u);
  EXPECT_EQ(rules(run(ctx, file("/usr/local/bin/rootsh", 04755))), V{"setuid-unpackaged"});
  EXPECT_EQ(run(ctx, file("/usr/local/bin/rootsh", 04755))[0].severity, Severity::High);
  EXPECT_EQ(rules(run(ctx, file("/usr/local/bin/x.sh", 04755), "#!/bin/sh\n")), V{"setuid-script"});
  // World-writable is also its own permission finding.
  EXPECT_EQ(rules(run(ctx, file("/usr/bin/chsh", 04757))), (V{"setuid-writable", "world-writable"}));
  EXPECT_EQ(rules(run(ctx, file("/usr/bin/chsh", 04775))), V{"setuid-writable"});
  // Packaged, but a setuid bit the distribution does not set on this file.
  EXPECT_EQ(rules(run(ctx, file("/usr/bin/dash", 04755))), V{"setuid-packaged"});
  auto chk = run(ctx, file("/usr/sbin/unix_chkpwd", 02755, 0, 42));
  ASSERT_EQ(rules(chk), V{"setgid-expected"});
  EXPECT_EQ(chk[0].owner->group, "shadow");
  EXPECT_EQ(chk[0].package, "libpam-modules-bin");
  EXPECT_EQ(rules(run(ctx, file("/opt/both", 06755))), (V{"setuid-unpackaged", "setgid-unpackaged"}));
  // A setuid file a later layer deletes or replaces: silent.
  EXPECT_TRUE(run(ctx, file("/usr/local/bin/rootsh", 04777), "#!", "", true).empty());
  // Look-alikes: setgid directory, plain binaries.
  EXPECT_TRUE(run(ctx, file("/var/mail", 02775, 0, 8, EntryType::Dir)).empty());
  EXPECT_TRUE(run(ctx, file("/usr/bin/chsh", 0755)).empty());
}

TEST(EntryChecks, PermissionsOwnershipDevicesCaps) {
  Fixture fx;
  auto ctx = fx.ctx();
  EXPECT_TRUE(run(ctx, file("/tmp", 01777, 0, 0, EntryType::Dir)).empty());
  EXPECT_EQ(rules(run(ctx, file("/srv/drop", 0777, 0, 0, EntryType::Dir))), V{"world-writable"});
  EXPECT_EQ(rules(run(ctx, file("/etc/app.conf", 0666))), V{"world-writable"});
  EXPECT_EQ(rules(run(ctx, file("/etc/shadow", 0644, 0, 42))), V{"shadow-readable"});
  EXPECT_TRUE(run(ctx, file("/etc/shadow", 0640, 0, 42)).empty());
  EXPECT_EQ(rules(run(ctx, file("/etc/ssl/private/site.key", 0644))), V{"private-key-readable"});
  auto own = run(ctx, file("/srv/data", 0644, 4242, 0));
  ASSERT_EQ(rules(own), V{"unknown-owner"});
  EXPECT_FALSE(own[0].owner->user);
  EXPECT_EQ(own[0].owner->group, "root");
  EXPECT_TRUE(run(ctx, file("/srv/data", 0644, 1000 % 1000, 0)).empty());
  // An image without /etc/passwd: nothing to compare against, no noise.
  Identity none;
  CheckContext bare{fx.pol, none, fx.db, fx.distro, CheckSelection::all()};
  EXPECT_TRUE(run(bare, file("/srv/data", 0644, 4242, 4242)).empty());
  auto dev = run(ctx, file("/dev/mem", 0640, 0, 15, EntryType::Char));
  ASSERT_EQ(rules(dev), V{"device-node"});
  EXPECT_TRUE(run(ctx, file("/run/fifo", 0600, 0, 0, EntryType::Fifo)).empty());
  IndexEntry ping = file("/usr/bin/ping", 0755);
  ping.xattrs.push_back({"security.capability", std::string("\x01\x00\x00\x02\x00\x20\x00\x00", 8) + std::string(12, '\0')});
  auto caps = run(ctx, ping);
  ASSERT_EQ(rules(caps), V{"capability"});
  EXPECT_EQ(caps[0].detail, "cap_net_raw+ep");
  // A malformed xattr is an error value, not a crash and not a finding.
  IndexEntry bad = file("/usr/bin/bad", 0755);
  bad.xattrs.push_back({"security.capability", "\x01"});
  VectorSink sink;
  ASSERT_TRUE(check_entry(ctx, EntryView{bad, std::nullopt, false, nullptr, nullptr}, sink).ok());
  EXPECT_TRUE(sink.findings.empty());
  EXPECT_EQ(sink.errors.size(), 1u);
}

TEST(EntryChecks, Integrity) {
  Fixture fx;
  auto ctx = fx.ctx();
  const std::string good = "b51e956c521c34f50236166438108360";
  EXPECT_TRUE(run(ctx, file("/usr/bin/chsh", 0755), "", good).empty());
  auto bad = run(ctx, file("/usr/bin/chsh", 0755), "", std::string(32, '0'));
  ASSERT_EQ(rules(bad), V{"integrity-mismatch"});
  EXPECT_EQ(bad[0].package, "passwd");
  EXPECT_NE(bad[0].message.find("passwd"), std::string::npos);
  // A replaced-later (deleted) copy is not compared: the visible one is.
  EXPECT_TRUE(run(ctx, file("/usr/bin/chsh", 0755), "", std::string(32, '0'), true).empty());
  // Files no package recorded are never hashed.
  EXPECT_TRUE(run(ctx, file("/usr/local/bin/tool", 0755), "", "x").empty());
}

TEST(EntryChecks, SensitiveFiles) {
  Fixture fx;
  auto ctx = fx.ctx();
  EXPECT_EQ(rules(run(ctx, file("/app/.env", 0644))), V{"sensitive-dotenv"});
  EXPECT_TRUE(run(ctx, file("/app/.env.example", 0644)).empty());
  EXPECT_EQ(rules(run(ctx, file("/app/.git", 0755, 0, 0, EntryType::Dir))), V{"sensitive-git-dir"});
  EXPECT_TRUE(run(ctx, file("/root/.npmrc", 0644), "registry=https://registry.npmjs.org/\n").empty());
  EXPECT_EQ(rules(run(ctx, file("/root/.npmrc", 0644), "//registry.npmjs.org/:_authToken=npm_x\n")),
            V{"sensitive-credentials-file"});
  IndexEntry empty_hist = file("/root/.bash_history", 0600);
  empty_hist.size = 0;
  EXPECT_TRUE(run(ctx, empty_hist).empty());
  EXPECT_EQ(rules(run(ctx, file("/root/.bash_history", 0600))), V{"sensitive-history"});
  auto key = run(ctx, file("/root/.ssh/id_ed25519", 0600), "-----BEGIN OPENSSH PRIVATE KEY-----\n", "", true);
  ASSERT_EQ(rules(key), V{"sensitive-ssh-key"});
  EXPECT_TRUE(key[0].deleted);  // deleted later, still shipped in a layer
}

TEST(EntryChecks, SelectionAndStop) {
  Fixture fx;
  auto ctx = fx.ctx();
  ctx.selection = CheckSelection::of(*select_checks("setuid"));
  EXPECT_TRUE(run(ctx, file("/dev/mem", 0640, 0, 15, EntryType::Char)).empty());
  EXPECT_EQ(rules(run(ctx, file("/opt/both", 06755))), V{"setuid-unpackaged"});
  ctx.selection = CheckSelection::all();
  VectorSink one(1);
  IndexEntry m = file("/opt/both", 06777, 4242);  // would give several findings
  ASSERT_TRUE(check_entry(ctx, EntryView{m, std::nullopt, false, nullptr, nullptr}, one).ok());
  EXPECT_EQ(one.findings.size(), 1u);
}

TEST(ConfigChecks, PlantedConfig) {
  Fixture fx;
  ImageRecord img;
  for (size_t i = 0; i < 2; ++i) {
    LayerRecord l;
    l.index = i;
    l.diff_id = testing::fake_digest(static_cast<char>('1' + i));
    img.layers.push_back(l);
  }
  img.config = R"({"architecture":"amd64","os":"linux",
    "config":{"Env":["PATH=/usr/bin"],"ExposedPorts":{"22/tcp":{},"8080/tcp":{}}},
    "history":[
      {"created_by":"/bin/sh -c #(nop) ADD file:abc in / "},
      {"created_by":"/bin/sh -c #(nop)  CMD [\"bash\"]","empty_layer":true},
      {"created_by":"ADD https://example.com/tool.tgz /opt/ # buildkit","comment":"buildkit.dockerfile.v0"},
      {"created_by":"RUN /bin/sh -c sudo apt-get update # buildkit","empty_layer":true}
    ]})";
  auto f = config_findings(img, fx.ctx());
  ASSERT_TRUE(f.ok()) << f.error().describe();
  std::map<std::string, Finding> by;
  for (const auto& x : *f) by[x.rule_id] = x;
  EXPECT_EQ(by.size(), 5u);
  EXPECT_EQ(by["config-runs-as-root"].config_field, "User");
  EXPECT_EQ(by["config-runs-as-root"].target, Target::Config);
  EXPECT_EQ(by["config-ssh-port"].detail, "22/tcp");
  EXPECT_TRUE(by.count("config-no-healthcheck"));
  ASSERT_TRUE(by["config-add-url"].layer);
  EXPECT_EQ(by["config-add-url"].layer->index, 1u);  // the second history entry that made a layer
  EXPECT_FALSE(by["config-sudo"].layer);             // an empty_layer step
}

TEST(ConfigChecks, CleanConfigAndLookAlikes) {
  Fixture fx;
  ImageRecord img;
  img.config = R"({"config":{"User":"app:app","ExposedPorts":{"2222/tcp":{}},
    "Healthcheck":{"Test":["CMD","curl","-f","http://localhost/"]}},
    "history":[{"created_by":"RUN apt-get install -y pseudo sudoku # buildkit"},
               {"created_by":"ADD --checksum=sha256:abc https://example.com/x /x"},
               {"created_by":"COPY file:abc in / "}]})";
  auto f = config_findings(img, fx.ctx());
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->empty()) << f->front().rule_id;
  img.config = R"({"config":{"User":"0:0","Healthcheck":{"Test":["NONE"]}}})";
  EXPECT_EQ(config_findings(img, fx.ctx())->size(), 2u);
  img.config = "[]";
  EXPECT_FALSE(config_findings(img, fx.ctx()).ok());
  img.config = "";
  EXPECT_TRUE(config_findings(img, fx.ctx())->empty());
}

// A config nested 200,000 deep, whose User holds a token: redact_for_report()
// re-serialized it (nlohmann's dump() recurses per level) and overflowed the
// stack. Every reader of the config now refuses it (storage/json_check.h);
// the pull refuses it first (e2e.errors).
TEST(ConfigChecks, DeeplyNestedConfigIsRefusedNotRecursed) {
  Fixture fx;
  ImageRecord img;
  const std::string token = "ghp_" "Zq8LmN2vXc4RtY7uPa1sDf3GhJ5kWe9Bo0Ti";
  img.config = R"({"config":{"User":"root:)" + token + R"("},"x":)" + std::string(200000, '[') +
               std::string(200000, ']') + "}";
  auto rules = secrets::load_rules({}, {}, true);
  ASSERT_TRUE(rules.ok());
  auto scanner = secrets::SecretScanner::create(std::move(rules).value());
  ASSERT_TRUE(scanner.ok()) << scanner.error().describe();
  EXPECT_FALSE(config_secret_findings(img, **scanner).ok());
  ImageRecord shown = redact_for_report(img, **scanner);
  EXPECT_EQ(shown.config, img.config);  // not re-serialized
  EXPECT_FALSE(config_findings(shown, fx.ctx()).ok());
}

// This machine's /usr is a real Debian tree with a real dpkg database: every
// setuid/setgid file under it must be found, attributed, and none above low.
std::vector<IndexEntry>* g_special;
int collect(const char* path, const struct stat* st, int type, FTW*) {
  if (type == FTW_F && S_ISREG(st->st_mode) && (st->st_mode & 06000)) {
    IndexEntry e;
    e.path = path;
    e.mode = st->st_mode & 07777;
    e.uid = st->st_uid;
    e.gid = st->st_gid;
    e.size = static_cast<uint64_t>(st->st_size);
    g_special->push_back(e);
  }
  return 0;
}

TEST(CrossCheck, HostDebianUsrIsCleanAndAttributed) {
  auto status = slurp("/var/lib/dpkg/status");
  auto osr = slurp("/etc/os-release");
  if (!status || !osr || os_release_ids(*osr).empty() || os_release_ids(*osr)[0] != "debian")
    GTEST_SKIP() << "not a Debian machine";
  auto db = load_package_db([](const std::string& path) -> Result<std::optional<std::string>> {
    if (path.rfind("/var/lib/dpkg/", 0) != 0) return std::optional<std::string>();
    return slurp(path);
  });
  ASSERT_TRUE(db.ok());
  struct stat st;
  db->set_merged_usr(lstat("/bin", &st) == 0 && S_ISLNK(st.st_mode));
  Identity id = parse_identity(*slurp("/etc/passwd"), *slurp("/etc/group"), "");
  const auto& pol = policy::builtin_policy().value();
  CheckContext ctx{pol, id, *db, pol.distribution_for(os_release_ids(*osr)), CheckSelection::all()};
  std::vector<IndexEntry> special;
  g_special = &special;
  nftw("/usr", collect, 64, FTW_PHYS | FTW_MOUNT);
  ASSERT_FALSE(special.empty());
  size_t found = 0;
  for (const auto& m : special) {
    VectorSink sink;
    EntryView v{m, std::nullopt, false, [&](size_t max) -> Result<std::string> {
                  auto s = slurp(m.path);
                  return s ? s->substr(0, max) : std::string();
                }, nullptr};
    ASSERT_TRUE(check_entry(ctx, v, sink).ok());
    size_t bits = ((m.mode & 04000) ? 1 : 0) + ((m.mode & 02000) ? 1 : 0);
    size_t special_findings = 0;
    for (const auto& f : sink.findings) {
      if (f.category != Category::Setuid && f.category != Category::Setgid) continue;
      ++special_findings;
      EXPECT_LE(f.severity, Severity::Low) << f.rule_id << " " << f.path;
      EXPECT_FALSE(f.package.empty()) << f.path;
    }
    EXPECT_EQ(special_findings, bits) << m.path;
    found += special_findings;
  }
  EXPECT_GE(found, special.size());
}

}  // namespace
}  // namespace moat
