// Helpers shared by the tests in tests/checks.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "scanner/checks/checks.h"
#include "scanner/report/findings.h"
#include "scanner/report/report.h"

namespace moat::testing {

inline std::string data_path(const std::string& rel) { return std::string(MOAT_CHECKS_DATA) + "/" + rel; }

inline std::optional<std::string> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void spit(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// Runs a shell command, returns its exit status (-1 if it did not exit).
inline int run(const std::string& cmd) {
  int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

inline std::string fake_digest(char c) { return "sha256:" + std::string(64, c); }

// A report with one finding of every shape: filesystem and config targets,
// with and without layer/owner/mode/package/secret, an owner the image does
// not name, a deleted entry, a path that is not UTF-8 and one with a backslash.
inline Report sample_report() {
  const auto& pol = policy::builtin_policy().value();
  Report r;
  r.reference = "oci:/tmp/planted:latest";
  r.image.manifest_digest = fake_digest('a');
  r.image.config_digest = fake_digest('b');
  for (size_t i = 0; i < 3; ++i) {
    LayerRecord l;
    l.index = i;
    l.diff_id = fake_digest(static_cast<char>('1' + i));
    l.blob_digest = fake_digest(static_cast<char>('4' + i));
    l.created_by = i == 2 ? "RUN cp /bin/sh /usr/local/bin/rootsh && chmod 4755 /usr/local/bin/rootsh" : "ADD rootfs /";
    l.tar_size = 1000 * (i + 1);
    l.entries = 10 * (i + 1);
    r.image.layers.push_back(l);
  }
  r.scan.mode = "overlay";
  r.scan.id_mapping = "subuid";
  r.scan.duration_ms = 1234;
  r.scan.checks = {"setuid", "config"};
  auto layer = [&](size_t i) { return LayerRef{i, r.image.layers[i].diff_id, r.image.layers[i].created_by}; };

  Finding a = make_finding(*find_check("setuid-unpackaged"), pol);
  a.path = "/usr/local/bin/rootsh";
  a.message = "setuid-root /usr/local/bin/rootsh is not owned by any package";
  a.layer = layer(2);
  a.owner = Owner{0, 0, "root", "root"};
  a.mode = 04755;
  finalize_finding(a);

  Finding b = make_finding(*find_check("setuid-expected"), pol);
  b.path = "/usr/bin/passwd";
  b.message = "setuid-root /usr/bin/passwd from package passwd";
  b.layer = layer(0);
  b.owner = Owner{0, 0, "root", "root"};
  b.mode = 04755;
  b.package = "passwd";
  finalize_finding(b);

  Finding c = make_finding(*find_check("unknown-owner"), pol);
  c.path = std::string("/srv/caf\xe9\\data");  // Latin-1 byte and a backslash: not UTF-8
  c.message = "owned by uid 4242, which /etc/passwd does not define";
  c.layer = layer(1);
  c.owner = Owner{4242, 4242, std::nullopt, std::nullopt};
  c.mode = 0644;
  c.deleted = true;
  finalize_finding(c);

  Finding d = make_finding(*find_check("config-runs-as-root"), pol);
  d.config_field = "User";
  d.message = "the image config sets no User";
  finalize_finding(d);

  Finding e = make_finding(*find_check("account-empty-password"), pol);
  e.path = "/etc/shadow";
  e.detail = "root";
  e.message = "account root has an empty password field in /etc/shadow (line 1)";
  e.layer = layer(0);
  finalize_finding(e);

  // A rule the registry does not know (issue 5's secret rules look like this).
  Finding s;
  s.rule_id = "secret-github-pat";
  s.category = Category::Secret;
  s.severity = Severity::Critical;
  s.title = "GitHub personal access token";
  s.description = "A GitHub token grants access to repositories.";
  s.remediation = "Revoke the token.";
  s.path = "/app/config.yml";
  s.message = "GitHub personal access token in /app/config.yml line 3";
  s.layer = layer(1);
  s.secret = SecretInfo{"github-pat", "ghp_****Ab", 3};
  finalize_finding(s);

  r.findings = {e, d, c, b, a, s};  // deliberately unsorted
  r.errors = {std::string("/var/lib/dpkg/info/foo.list: unreadable \xff")};
  return r;
}

}  // namespace moat::testing
