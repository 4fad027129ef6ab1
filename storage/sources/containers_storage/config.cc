#include "storage/sources/containers_storage/config.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <toml.hpp>

#include "storage/toml_check.h"

namespace moat::cstorage {

uint32_t host_uid() {
  uint32_t uid = getuid();
  // uid_map lines: INSIDE OUTSIDE COUNT. The initial namespace maps 0 0 4294967295.
  if (FILE* f = std::fopen("/proc/self/uid_map", "re")) {
    unsigned long in = 0, out = 0, n = 0;
    while (std::fscanf(f, "%lu %lu %lu", &in, &out, &n) == 3) {
      if (in == 0 && out == 0 && n == 4294967295UL) break;  // not in a user namespace
      if (uid >= in && uid - in < n) {
        uid = static_cast<uint32_t>(out + (uid - in));
        break;
      }
    }
    std::fclose(f);
  }
  return uid;
}

namespace {

std::string home_dir() {
  if (const char* h = getenv("HOME"); h && *h) return h;
  if (passwd* pw = getpwuid(host_uid())) return pw->pw_dir;
  return "/";
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = getenv(name);
  return v && *v ? std::string(v) : fallback;
}

bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

std::string runtime_dir(uint32_t uid) {
  if (const char* x = getenv("XDG_RUNTIME_DIR"); x && *x) return x;
  std::string run = "/run/user/" + std::to_string(uid);
  if (exists(run)) return run;
  return "/tmp/storage-run-" + std::to_string(uid);
}

Result<std::string> read_text(const std::string& file) {
  std::ifstream f(file);
  if (!f) return sys_error("read " + file);
  std::stringstream ss;
  ss << f.rdbuf();
  if (ss.str().size() > (1u << 20)) return Error{file + " is larger than 1 MiB"};
  return ss.str();
}

}  // namespace

std::string expand_env(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s[i] != '$' || i + 1 >= s.size()) {
      out += s[i++];
      continue;
    }
    size_t start = i + 1, end;
    std::string name;
    if (s[start] == '{') {
      end = s.find('}', start);
      if (end == std::string::npos) {
        out += s.substr(i);
        break;
      }
      name = s.substr(start + 1, end - start - 1);
      i = end + 1;
    } else {
      end = start;
      while (end < s.size() && (isalnum(static_cast<unsigned char>(s[end])) || s[end] == '_')) ++end;
      name = s.substr(start, end - start);
      i = end;
      if (name.empty()) {
        out += '$';
        continue;
      }
    }
    if (name == "UID") out += std::to_string(host_uid());
    else if (name == "HOME") out += home_dir();
    else if (const char* v = getenv(name.c_str())) out += v;
  }
  return out;
}

std::string subid_hint() {
  return "a rootless podman store belongs to your subordinate ids: moat reads it as root of a user namespace "
         "with podman's mapping, which needs newuidmap/newgidmap (Debian: apt install uidmap), a range for you in "
         "/etc/subuid and /etc/subgid, and MOAT_USERNS_STORE not set to 0";
}

Status apply_storage_conf(const std::string& text, const std::string& file, bool rootless_from_system,
                          StoreLocation& loc) {
  if (Status ok = check_toml_text(text, file); !ok)
    return std::move(ok).error().with_hint("fix the file (containers-storage.conf(5))");
  try {
    std::istringstream in(text);
    const auto doc = toml::parse(in, file);
    if (!doc.is_table() || !doc.contains("storage")) return ok_status();
    const auto& st = doc.at("storage");
    if (!st.is_table()) return Error{file + ": [storage] is not a table"};
    auto str = [&](const toml::value& t, const char* key) -> std::string {
      if (!t.is_table() || !t.contains(key)) return {};
      const auto& v = t.at(key);
      if (!v.is_string()) throw std::runtime_error(std::string(key) + " is not a string");
      return expand_env(v.as_string().str);
    };
    if (std::string d = str(st, "driver"); !d.empty()) loc.driver = d;
    if (rootless_from_system) {
      if (std::string p = str(st, "rootless_storage_path"); !p.empty()) loc.graphroot = p;
    } else {
      if (std::string g = str(st, "graphroot"); !g.empty()) loc.graphroot = g;
      if (std::string r = str(st, "runroot"); !r.empty()) loc.runroot = r;
    }
    if (st.contains("options") && st.at("options").is_table()) {
      const auto& opt = st.at("options");
      if (opt.contains("additionalimagestores")) {
        const auto& a = opt.at("additionalimagestores");
        if (!a.is_array()) return Error{file + ": additionalimagestores is not a list"};
        loc.additional.clear();
        for (const auto& e : a.as_array()) {
          if (!e.is_string()) return Error{file + ": additionalimagestores holds a non-string"};
          loc.additional.push_back(expand_env(e.as_string().str));
        }
      }
    }
  } catch (const std::exception& e) {
    return Error{file + " is not valid storage.conf TOML: " + e.what()}.with_hint(
        "fix the file (containers-storage.conf(5)) or name the store in the reference: "
        "containers-storage:[DRIVER@GRAPHROOT]IMAGE");
  }
  return ok_status();
}

Result<StoreLocation> find_store(const StoreSpec& spec) {
  StoreLocation loc;
  uint32_t uid = host_uid();
  loc.rootless = uid != 0;
  if (loc.rootless) {
    loc.graphroot = env_or("XDG_DATA_HOME", home_dir() + "/.local/share") + "/containers/storage";
    loc.runroot = runtime_dir(uid) + "/containers";
  } else {
    loc.graphroot = "/var/lib/containers/storage";
    loc.runroot = "/run/containers/storage";
  }
  std::string file;
  bool from_system = false;
  if (const char* c = getenv("CONTAINERS_STORAGE_CONF"); c && *c) {
    file = c;
  } else {
    std::string user = env_or("XDG_CONFIG_HOME", home_dir() + "/.config") + "/containers/storage.conf";
    if (loc.rootless && exists(user)) {
      file = user;
    } else {
      for (const char* sys : {"/etc/containers/storage.conf", "/usr/share/containers/storage.conf"})
        if (exists(sys)) {
          file = sys;
          break;
        }
      from_system = loc.rootless;
    }
  }
  if (!file.empty() && exists(file)) {
    MOAT_ASSIGN_OR_RETURN(std::string text, read_text(file));
    MOAT_TRY(apply_storage_conf(text, file, from_system, loc));
    loc.config_file = file;
  } else if (!file.empty()) {
    return Error{"CONTAINERS_STORAGE_CONF names " + file + ", which does not exist"};
  }
  if (const char* d = getenv("STORAGE_DRIVER"); d && *d) loc.driver = d;
  if (spec.given) {
    if (!spec.driver.empty()) loc.driver = spec.driver;
    if (!spec.graphroot.empty()) loc.graphroot = spec.graphroot;
    if (!spec.runroot.empty()) loc.runroot = spec.runroot;
  }
  if (loc.driver == "overlay2") loc.driver = "overlay";
  return loc;
}

}  // namespace moat::cstorage
