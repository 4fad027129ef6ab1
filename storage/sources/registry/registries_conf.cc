#include "storage/sources/registry/registries_conf.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <toml.hpp>

#include "storage/fsutil.h"
#include "storage/toml_check.h"

namespace moat::registry {
namespace {

bool exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) return sys_error("read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().size() > (4u << 20)) return Error{path + " is larger than 4 MiB"};
  return ss.str();
}

// Merges `add` (a later file) into `into`.
void merge(RegistriesConf& into, RegistriesConf&& add) {
  for (auto& f : add.files) into.files.push_back(f);
  if (!add.unqualified_search.empty()) into.unqualified_search = std::move(add.unqualified_search);
  if (!add.short_name_mode.empty()) into.short_name_mode = add.short_name_mode;
  if (!add.credential_helpers.empty()) into.credential_helpers = std::move(add.credential_helpers);
  for (auto& r : add.registries) {
    auto it = std::find_if(into.registries.begin(), into.registries.end(), [&](const RegistryEntry& e) { return e.prefix == r.prefix; });
    if (it != into.registries.end()) *it = std::move(r);
    else into.registries.push_back(std::move(r));
  }
  for (auto& [k, v] : add.aliases) into.aliases[k] = v;
}

// Does the prefix match "host/repo"? Returns the matched length (0: no match).
size_t match_prefix(const std::string& prefix, const std::string& name) {
  if (prefix.rfind("*.", 0) == 0) {
    // *.example.com matches any subdomain host of example.com (host part only).
    std::string host = name.substr(0, name.find('/'));
    std::string suffix = prefix.substr(1);  // ".example.com"
    if (host.size() > suffix.size() && host.compare(host.size() - suffix.size(), suffix.size(), suffix) == 0)
      return host.size();
    return 0;
  }
  if (name.rfind(prefix, 0) != 0) return 0;
  if (name.size() == prefix.size() || name[prefix.size()] == '/') return prefix.size();
  return 0;
}

}  // namespace

Result<RegistriesConf> parse_registries_conf(const std::string& text, const std::string& file_name) {
  RegistriesConf c;
  c.files.push_back(file_name);
  toml::value data;
  if (Status ok = check_toml_text(text, file_name); !ok)
    return std::move(ok).error().with_hint("fix the file (man containers-registries.conf)");
  try {
    std::istringstream in(text);
    data = toml::parse(in, file_name);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (msg.size() > 600) msg = msg.substr(0, 600);
    return Error{file_name + " is not valid TOML: " + msg}.with_hint("fix the file (man containers-registries.conf)");
  }
  try {
    if (data.contains("registries") && data.at("registries").is_table())
      return Error{file_name + " is in the version 1 format ([registries.search]), which podman no longer reads"}.with_hint(
          "rewrite it in the version 2 format (unqualified-search-registries, [[registry]])");
    if (data.contains("unqualified-search-registries"))
      c.unqualified_search = toml::find<std::vector<std::string>>(data, "unqualified-search-registries");
    c.short_name_mode = toml::find_or<std::string>(data, "short-name-mode", "");
    if (data.contains("credential-helpers"))
      c.credential_helpers = toml::find<std::vector<std::string>>(data, "credential-helpers");
    if (data.contains("registry")) {
      for (const auto& r : toml::find(data, "registry").as_array()) {
        RegistryEntry e;
        e.prefix = toml::find_or<std::string>(r, "prefix", "");
        e.location = toml::find_or<std::string>(r, "location", "");
        e.insecure = toml::find_or<bool>(r, "insecure", false);
        e.blocked = toml::find_or<bool>(r, "blocked", false);
        e.mirror_by_digest_only = toml::find_or<bool>(r, "mirror-by-digest-only", false);
        if (e.prefix.empty()) e.prefix = e.location;
        if (e.prefix.empty()) return Error{file_name + ": a [[registry]] has neither prefix nor location"};
        if (e.location.empty() && e.prefix.rfind("*.", 0) != 0) e.location = e.prefix;
        if (r.contains("mirror")) {
          for (const auto& m : toml::find(r, "mirror").as_array()) {
            Mirror mi;
            mi.location = toml::find_or<std::string>(m, "location", "");
            mi.insecure = toml::find_or<bool>(m, "insecure", false);
            mi.pull_from_mirror = toml::find_or<std::string>(m, "pull-from-mirror", "");
            if (mi.location.empty()) return Error{file_name + ": a mirror of " + e.prefix + " has no location"};
            if (!mi.pull_from_mirror.empty() && mi.pull_from_mirror != "all" && mi.pull_from_mirror != "digest-only" &&
                mi.pull_from_mirror != "tag-only")
              return Error{file_name + ": mirror " + mi.location + ": pull-from-mirror must be all, digest-only or tag-only"};
            e.mirrors.push_back(mi);
          }
        }
        c.registries.push_back(std::move(e));
      }
    }
    if (data.contains("aliases")) {
      for (const auto& [k, v] : toml::find(data, "aliases").as_table()) c.aliases[k] = v.as_string();
    }
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (msg.size() > 600) msg = msg.substr(0, 600);
    return Error{file_name + ": " + msg}.with_hint("fix the file (man containers-registries.conf)");
  }
  return c;
}

// The files as containers/image finds them (pkg/sysregistriesv2,
// newConfigWrapperWithHomeDir and dropInConfigs), so moat reads what podman
// and skopeo read:
//  - FILE given (--registries-conf, or $CONTAINERS_REGISTRIES_CONF as podman
//    reads it): FILE (missing: an error), then the *.conf drop-ins of
//    /etc/containers/registries.conf.d and of ~/.config/containers/registries.conf.d;
//  - else ~/.config/containers/registries.conf when it exists, with the user's
//    drop-in folder only;
//  - else /etc/containers/registries.conf (missing: nothing configured) with
//    both drop-in folders.
// Each folder's files in name order, the system folder first; a later file's
// fields override the earlier ones (merge()).
Result<RegistriesConf> load_registries_conf(const std::string& explicit_file) {
  std::string file = explicit_file;
  if (file.empty() && getenv("CONTAINERS_REGISTRIES_CONF") && *getenv("CONTAINERS_REGISTRIES_CONF"))
    file = getenv("CONTAINERS_REGISTRIES_CONF");
  const std::string home = getenv("HOME") ? getenv("HOME") : "";
  const std::string user_file = home.empty() ? "" : home + "/.config/containers/registries.conf";
  const std::string user_dir = home.empty() ? "" : home + "/.config/containers/registries.conf.d";
  const std::string system_file = "/etc/containers/registries.conf";
  const std::string system_dir = "/etc/containers/registries.conf.d";
  std::vector<std::string> files, dirs;
  if (!file.empty()) {
    if (!exists(file)) return Error{"registries configuration " + file + " does not exist"};
    files.push_back(file);
    dirs = {system_dir, user_dir};
  } else if (!user_file.empty() && exists(user_file)) {
    files.push_back(user_file);
    dirs = {user_dir};
  } else {
    if (exists(system_file)) files.push_back(system_file);
    dirs = {system_dir, user_dir};
  }
  for (const auto& dir : dirs) {
    if (dir.empty()) continue;
    std::vector<std::string> names;
    if (DIR* d = opendir(dir.c_str())) {
      while (dirent* e = readdir(d)) {
        std::string n = e->d_name;
        if (n.size() > 5 && n.compare(n.size() - 5, 5, ".conf") == 0 && !is_dir(dir + "/" + n)) names.push_back(n);
      }
      closedir(d);
    }
    std::sort(names.begin(), names.end());
    for (const auto& n : names) files.push_back(dir + "/" + n);
  }
  RegistriesConf conf;
  for (const auto& f : files) {
    MOAT_ASSIGN_OR_RETURN(std::string text, read_text(f));
    MOAT_ASSIGN_OR_RETURN(RegistriesConf c, parse_registries_conf(text, f));
    merge(conf, std::move(c));
  }
  return conf;
}

Result<std::vector<PullSource>> pull_sources(const RegistriesConf& conf, const DockerRef& ref) {
  std::string name = ref.name();
  const RegistryEntry* best = nullptr;
  size_t best_len = 0;
  for (const auto& e : conf.registries) {
    size_t l = match_prefix(e.prefix, name);
    if (l > best_len) {
      best = &e;
      best_len = l;
    }
  }
  std::vector<PullSource> out;
  if (!best) {
    out.push_back(PullSource{ref, false, false});
    return out;
  }
  std::string files;
  for (const auto& f : conf.files) files += (files.empty() ? "" : ", ") + f;
  if (best->blocked)
    return Error{ref.text() + " is blocked by registries.conf ([[registry]] prefix \"" + best->prefix + "\" has blocked = true)"}
        .with_hint("pull it from another registry, or change the entry in " + files);
  std::string rest = name.substr(best_len);
  auto rewrite = [&](const std::string& location) -> Result<DockerRef> {
    std::string loc = location;
    if (best->prefix.rfind("*.", 0) == 0) loc = name.substr(0, best_len);  // wildcard: the host itself
    std::string text = loc + rest + (ref.digest.empty() ? ":" + ref.tag : "@" + ref.digest);
    auto r = parse_docker_ref(text);
    if (!r) return std::move(r).error().context("registries.conf rewrites " + ref.text() + " to " + printable(text));
    return r;
  };
  bool by_digest = !ref.digest.empty();
  for (const auto& m : best->mirrors) {
    std::string when = m.pull_from_mirror.empty() ? (best->mirror_by_digest_only ? "digest-only" : "all") : m.pull_from_mirror;
    if (when == "digest-only" && !by_digest) continue;
    if (when == "tag-only" && by_digest) continue;
    MOAT_ASSIGN_OR_RETURN(DockerRef r, rewrite(m.location));
    out.push_back(PullSource{r, m.insecure, true});
  }
  MOAT_ASSIGN_OR_RETURN(DockerRef primary, rewrite(best->location.empty() ? name.substr(0, best_len) : best->location));
  out.push_back(PullSource{primary, best->insecure, false});
  return out;
}

Result<ShortNameResolution> resolve_short_name(const RegistriesConf& conf, const std::string& name_in) {
  ShortNameResolution r;
  bool had_host = false;
  MOAT_ASSIGN_OR_RETURN(DockerRef parsed, parse_docker_ref(name_in, &had_host));
  if (had_host) {
    r.candidates.push_back(parsed);
    return r;
  }
  // The name without tag or digest, as the alias table keys it.
  std::string bare = name_in;
  std::string suffix;
  if (size_t at = bare.find('@'); at != std::string::npos) {
    suffix = bare.substr(at);
    bare = bare.substr(0, at);
  } else if (size_t c = bare.rfind(':'); c != std::string::npos && bare.find('/', c) == std::string::npos) {
    suffix = bare.substr(c);
    bare = bare.substr(0, c);
  }
  auto alias = conf.aliases.find(bare);
  if (alias != conf.aliases.end()) {
    bool alias_host = false;
    auto a = parse_docker_ref(alias->second + suffix, &alias_host);
    if (!a || !alias_host)
      return Error{"registries.conf alias \"" + bare + "\" = \"" + printable(alias->second, 200) + "\" is not a fully qualified image name"};
    r.candidates.push_back(*a);
    r.alias_source = bare + " = " + alias->second;
    return r;
  }
  for (const auto& reg : conf.unqualified_search) {
    auto c = parse_docker_ref(reg + "/" + name_in);
    if (c) r.candidates.push_back(*c);
  }
  if (r.candidates.empty()) {
    std::string files;
    for (const auto& f : conf.files) files += (files.empty() ? "" : ", ") + f;
    return Error{"\"" + printable(name_in) + "\" is a short name and no unqualified-search-registries are configured" +
                 (files.empty() ? std::string(" (no registries.conf found)") : " in " + files)}
        .with_hint("write the full name, e.g. docker://docker.io/library/" + bare + ", or add an [aliases] entry");
  }
  r.ambiguous = r.candidates.size() > 1;
  return r;
}

Error ambiguous_error(const std::string& name, const ShortNameResolution& r) {
  std::string list;
  for (const auto& c : r.candidates) list += (list.empty() ? "" : ", ") + c.text();
  return Error{"short name \"" + printable(name) + "\" is ambiguous: it could be " + list}.with_hint(
      "moat never prompts: write the full name (e.g. docker://" + r.candidates.front().text() +
      "), or add an [aliases] entry to registries.conf");
}

}  // namespace moat::registry
