#include "scanner/trust/registries_d.h"

#include <dirent.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>

#include "scanner/trust/util.h"

namespace moat::trust {
namespace {

std::string home_dir() {
  if (const char* h = getenv("HOME"); h && *h) return h;
  if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_dir) return pw->pw_dir;
  return "";
}

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Result<RegistryNamespace> parse_ns(const YAML::Node& n, const std::string& where) {
  RegistryNamespace ns;
  if (n.IsNull()) return ns;
  if (!n.IsMap()) return Error{where + ": a mapping was expected"};
  // Unknown keys are ignored, as containers/image's (non-strict) YAML decoding does.
  auto str = [&](const char* key, std::string& out) -> Status {
    if (!n[key]) return ok_status();
    if (!n[key].IsScalar()) return Error{where + ": " + key + " must be a string"};
    out = n[key].as<std::string>();
    return ok_status();
  };
  MOAT_TRY(str("lookaside", ns.lookaside));
  MOAT_TRY(str("lookaside-staging", ns.lookaside_staging));
  MOAT_TRY(str("sigstore", ns.sigstore));
  MOAT_TRY(str("sigstore-staging", ns.sigstore_staging));
  if (n["use-sigstore-attachments"]) {
    try {
      ns.use_sigstore_attachments = n["use-sigstore-attachments"].as<bool>();
    } catch (const YAML::Exception&) {
      return Error{where + ": use-sigstore-attachments must be true or false"};
    }
  }
  return ns;
}

// The read URL of one entry: lookaside, else the old name sigstore.
std::string top_level(const RegistryNamespace& ns) { return !ns.lookaside.empty() ? ns.lookaside : ns.sigstore; }

std::vector<std::string> lookup_order(const DockerRef& ref, const std::string& identity) {
  std::vector<std::string> keys{identity};
  for (auto& n : docker_namespaces(ref)) keys.push_back(n);
  return keys;
}

}  // namespace

Status parse_registries_yaml(const std::string& text, const std::string& file, RegistriesD& into) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Error{file + ": invalid YAML: " + e.what()};
  }
  if (root.IsNull()) return ok_status();
  if (!root.IsMap()) return Error{file + ": a mapping was expected at the top level"};
  try {
    if (root["default-docker"]) {
      if (into.default_docker)
        return Error{file + ": default-docker is already defined in " + into.default_docker->file};
      MOAT_ASSIGN_OR_RETURN(RegistryNamespace ns, parse_ns(root["default-docker"], file + ": default-docker"));
      ns.file = file;
      into.default_docker = ns;
    }
    if (root["docker"]) {
      const YAML::Node& d = root["docker"];
      if (!d.IsMap() && !d.IsNull()) return Error{file + ": docker must be a mapping of namespaces"};
      for (auto it = d.begin(); d.IsMap() && it != d.end(); ++it) {
        std::string key = it->first.as<std::string>();
        if (into.docker.count(key))
          return Error{file + ": namespace \"" + key + "\" is already defined in " + into.docker[key].file};
        MOAT_ASSIGN_OR_RETURN(RegistryNamespace ns, parse_ns(it->second, file + ": docker: " + key));
        ns.file = file;
        into.docker[key] = ns;
      }
    }
  } catch (const YAML::Exception& e) {
    return Error{file + ": " + e.what()};
  }
  return ok_status();
}

Result<RegistriesD> load_registries_d(const std::string& dir_arg) {
  RegistriesD r;
  std::string dir = dir_arg;
  if (dir.empty()) {
    std::string user = home_dir().empty() ? "" : home_dir() + "/.config/containers/registries.d";
    dir = !user.empty() && is_dir(user) ? user : "/etc/containers/registries.d";
    if (!is_dir(dir)) return r;  // none: the built-in default lookaside only
  } else if (!is_dir(dir)) {
    return Error{"--registries.d " + dir + " is not a directory"};
  }
  r.dir = dir;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return sys_error("open " + dir);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 5 && n.compare(n.size() - 5, 5, ".yaml") == 0) names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    std::string p = dir + "/" + n;
    struct stat st;
    if (::stat(p.c_str(), &st) != 0 || S_ISDIR(st.st_mode)) continue;
    MOAT_ASSIGN_OR_RETURN(std::string text, read_file_limited(p, 4u << 20));
    MOAT_TRY(parse_registries_yaml(text, p, r));
  }
  return r;
}

std::string RegistriesD::lookaside_base(const DockerRef& ref, const std::string& identity, std::string* origin) const {
  std::string url;
  for (const auto& k : lookup_order(ref, identity)) {
    auto it = docker.find(k);
    if (it != docker.end() && !top_level(it->second).empty()) {
      url = top_level(it->second);
      if (origin) *origin = it->second.file + ": docker: " + k;
      break;
    }
  }
  if (url.empty() && default_docker && !top_level(*default_docker).empty()) {
    url = top_level(*default_docker);
    if (origin) *origin = default_docker->file + ": default-docker";
  }
  if (url.empty()) {
    url = geteuid() == 0 ? "file:///var/lib/containers/sigstore"
                         : "file://" + home_dir() + "/.local/share/containers/sigstore";
    if (origin) *origin = "built-in default";
  }
  return url + "/" + ref.path;
}

bool RegistriesD::use_sigstore_attachments(const DockerRef& ref, const std::string& identity) const {
  for (const auto& k : lookup_order(ref, identity)) {
    auto it = docker.find(k);
    if (it != docker.end() && it->second.use_sigstore_attachments) return *it->second.use_sigstore_attachments;
  }
  if (default_docker && default_docker->use_sigstore_attachments) return *default_docker->use_sigstore_attachments;
  return false;
}

}  // namespace moat::trust
