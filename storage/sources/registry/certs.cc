#include "storage/sources/registry/certs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "storage/fsutil.h"

namespace moat::registry {

Result<TlsConfig> tls_config_for(const std::string& host_port, const std::string& cert_dir, bool verify,
                                 std::vector<std::string>* tried) {
  TlsConfig t;
  t.verify = verify;
  std::vector<std::string> dirs;
  if (!cert_dir.empty()) {
    dirs.push_back(cert_dir);
  } else {
    if (const char* h = getenv("HOME"); h && *h) dirs.push_back(std::string(h) + "/.config/containers/certs.d/" + host_port);
    dirs.push_back("/etc/containers/certs.d/" + host_port);
    dirs.push_back("/etc/docker/certs.d/" + host_port);
  }
  for (const auto& d : dirs) {
    if (tried) tried->push_back(d);
    DIR* dir = opendir(d.c_str());
    if (!dir) {
      if (errno == ENOENT || errno == ENOTDIR) continue;
      return sys_error("open certificate folder " + d);
    }
    std::vector<std::string> names;
    while (dirent* e = readdir(dir)) names.emplace_back(e->d_name);
    closedir(dir);
    std::sort(names.begin(), names.end());
    auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
    auto ends = [](const std::string& n, const std::string& suf) {
      return n.size() > suf.size() && n.compare(n.size() - suf.size(), suf.size(), suf) == 0;
    };
    for (const auto& n : names) {
      std::string path = d + "/" + n;
      if (ends(n, ".crt")) {
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return sys_error("read CA certificate " + path);
        auto pem = read_all(fd, 1u << 20);
        ::close(fd);
        if (!pem) return std::move(pem).error().context(path);
        t.ca_pem += *pem + "\n";
      } else if (ends(n, ".cert")) {
        std::string key = n.substr(0, n.size() - 5) + ".key";
        if (!has(key))
          return Error{"client certificate " + path + " has no key " + d + "/" + key}.with_hint(
              "put the certificate's private key next to it, named " + key);
        t.client_cert = path;
        t.client_key = d + "/" + key;
      } else if (ends(n, ".key")) {
        std::string cert = n.substr(0, n.size() - 4) + ".cert";
        if (!has(cert))
          return Error{"client key " + path + " has no certificate " + d + "/" + cert}.with_hint(
              "put the client certificate next to it, named " + cert + ", or remove the key");
      }
    }
    break;  // the first folder that exists is the one used
  }
  return t;
}

}  // namespace moat::registry
