#include "storage/sources/registry/credentials.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "storage/base64.h"
#include "storage/fsutil.h"
#include "storage/json_check.h"

namespace moat::registry {

using json = nlohmann::json;

namespace {

std::string home() {
  const char* h = getenv("HOME");
  return h ? h : "";
}

// auth.json keys as c/image normalizes them: no scheme, docker.io for Docker
// Hub; legacy (docker) files key by "https://HOST/v1/", so the path is dropped there.
std::string normalize_key(std::string k, bool legacy) {
  if (k.rfind("https://", 0) == 0) k = k.substr(8);
  else if (k.rfind("http://", 0) == 0) k = k.substr(7);
  if (legacy) k = k.substr(0, k.find('/'));
  while (!k.empty() && k.back() == '/') k.pop_back();
  if (k == "index.docker.io" || k == "registry-1.docker.io") k = "docker.io";
  if (k.rfind("index.docker.io/", 0) == 0) k = "docker.io/" + k.substr(16);
  return k;
}

Result<std::optional<Credential>> from_entry(const json& e, const std::string& source) {
  if (!e.is_object()) return std::optional<Credential>{};
  Credential c;
  c.source = source;
  if (e.contains("auth") && e["auth"].is_string() && !e["auth"].get<std::string>().empty()) {
    auto dec = base64_decode_lenient(e["auth"].get<std::string>());
    if (!dec) return Error{source + ": the \"auth\" value is not valid base64"}.with_hint("log in again: podman login HOST");
    size_t c2 = dec->find(':');
    if (c2 == std::string::npos) return Error{source + ": the \"auth\" value is not USER:PASSWORD"}.with_hint("log in again: podman login HOST");
    c.username = dec->substr(0, c2);
    c.password = dec->substr(c2 + 1);
  }
  if (e.contains("identitytoken") && e["identitytoken"].is_string()) c.identity_token = e["identitytoken"].get<std::string>();
  if (c.username.empty() && c.password.empty() && c.identity_token.empty()) return std::optional<Credential>{};
  return std::optional<Credential>{c};
}

// The keys to try for HOST/A/B, most specific first.
std::vector<std::string> candidate_keys(const std::string& registry, const std::string& repository) {
  std::vector<std::string> keys;
  std::string path = registry + "/" + repository;
  while (true) {
    keys.push_back(path);
    size_t s = path.rfind('/');
    if (s == std::string::npos) break;
    path = path.substr(0, s);
  }
  return keys;
}

// `docker_keys`: docker's config.json, keyed by "https://HOST/v1/".
Result<std::optional<Credential>> search_file(const std::string& file, bool legacy_format, bool docker_keys,
                                              const std::string& registry, const std::string& repository) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) return std::optional<Credential>{};
    return sys_error("read credentials " + file);
  }
  auto text = read_all(fd, 4u << 20);
  ::close(fd);
  if (!text) return std::move(text).error().context(file);
  MOAT_TRY(check_json_depth(*text, file));  // storage/json_check.h
  json j;
  try {
    j = json::parse(*text);
  } catch (const json::exception&) {
    return Error{file + " is not valid JSON"}.with_hint("fix or remove it (podman login rewrites it)");
  }
  if (!j.is_object()) return Error{file + " is not a JSON object"};
  const json* auths = &j;  // ~/.dockercfg: the top level is the auths map
  bool legacy = true;
  if (!legacy_format) {
    legacy = docker_keys;
    if (j.contains("credHelpers") && j["credHelpers"].is_object()) {
      for (const auto& [k, v] : j["credHelpers"].items())
        if (normalize_key(k, true) == registry && v.is_string())
          return run_credential_helper(v.get<std::string>(), registry);
    }
    static const json empty = json::object();
    auths = j.contains("auths") && j["auths"].is_object() ? &j["auths"] : &empty;
  }
  std::map<std::string, const json*> by_key;
  for (const auto& [k, v] : auths->items()) by_key.emplace(normalize_key(k, legacy), &v);
  for (const auto& key : candidate_keys(registry, repository)) {
    auto it = by_key.find(key);
    if (it == by_key.end()) continue;
    MOAT_ASSIGN_OR_RETURN(auto c, from_entry(*it->second, file + " (key " + key + ")"));
    if (c) return c;
  }
  if (!legacy_format && j.contains("credsStore") && j["credsStore"].is_string() && !j["credsStore"].get<std::string>().empty())
    return run_credential_helper(j["credsStore"].get<std::string>(), registry);
  return std::optional<Credential>{};
}

}  // namespace

Result<std::optional<Credential>> run_credential_helper(const std::string& name, const std::string& server,
                                                        const std::string& named_in) {
  for (char c : name)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return Error{"credential helper name \"" + printable(name, 60) + "\" is not valid"};
  std::string prog = "docker-credential-" + name;
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) return sys_error("pipe");
  if (pipe2(out, O_CLOEXEC) != 0) { close(in[0]); close(in[1]); return sys_error("pipe"); }
  pid_t pid = fork();
  if (pid < 0) return sys_error("fork " + prog);
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, 2);
    char* argv[] = {const_cast<char*>(prog.c_str()), const_cast<char*>("get"), nullptr};
    execvp(prog.c_str(), argv);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  std::string input = server + "\n";
  {
    // A helper that exits without reading (or is not installed) must not kill
    // moat with SIGPIPE: block it in this thread, write, drop a pending one.
    sigset_t pipe_set, old_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    (void)!write(in[1], input.data(), input.size());
    timespec zero{0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  }
  close(in[1]);
  std::string output;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  bool timed_out = false;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) { timed_out = true; break; }
    pollfd p{out[0], POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) { timed_out = r == 0; break; }
    char buf[4096];
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    output.append(buf, n);
    if (output.size() > (1u << 20)) break;
  }
  close(out[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  if (timed_out) return Error{prog + " get did not answer within 30 seconds"}.with_hint("check the helper, or pass --creds");
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && output.empty())
    return Error{prog + " (named in " + named_in + ") is not installed or not in PATH"}.with_hint("install it, or pass --creds");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    // "credentials not found in native keychain" is the helpers' not-found answer.
    if (output.find("not found") != std::string::npos) return std::optional<Credential>{};
    return Error{prog + " get failed (exit status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")"};
  }
  if (json_too_deep_at(output) != std::string_view::npos) return Error{prog + " get printed something that is not JSON"};
  json j;
  try {
    j = json::parse(output);
  } catch (const json::exception&) {
    return Error{prog + " get printed something that is not JSON"};
  }
  Credential c;
  c.source = prog;
  std::string user = j.is_object() && j.contains("Username") && j["Username"].is_string() ? j["Username"].get<std::string>() : "";
  std::string secret = j.is_object() && j.contains("Secret") && j["Secret"].is_string() ? j["Secret"].get<std::string>() : "";
  if (user == "<token>") c.identity_token = secret;
  else { c.username = user; c.password = secret; }
  if (secret.empty()) return std::optional<Credential>{};
  return std::optional<Credential>{c};
}

Result<CredentialSearch> find_credentials(const std::string& registry, const std::string& repository,
                                          const std::string& creds_flag, const std::string& authfile_flag,
                                          const std::vector<std::string>& helpers) {
  CredentialSearch s;
  if (!creds_flag.empty()) {
    Credential c;
    size_t colon = creds_flag.find(':');
    c.username = creds_flag.substr(0, colon);
    if (colon != std::string::npos) c.password = creds_flag.substr(colon + 1);
    if (c.username.empty()) return Error{"--creds has no user name"}.with_hint("write --creds USER[:PASSWORD]");
    c.source = "--creds";
    s.looked.push_back("--creds");
    s.found = c;
    return s;
  }
  struct File {
    std::string path;
    bool legacy_format = false;  // ~/.dockercfg
    bool docker_keys = false;    // docker's config.json
  };
  std::vector<File> files;
  std::string only = authfile_flag;
  if (only.empty() && getenv("REGISTRY_AUTH_FILE") && *getenv("REGISTRY_AUTH_FILE")) only = getenv("REGISTRY_AUTH_FILE");
  if (!only.empty()) {
    struct stat st;
    if (stat(only.c_str(), &st) != 0)
      return Error{"auth file " + only + " does not exist"}.with_hint("create it with `podman login --authfile " + only + " HOST`");
    files.push_back({only, false, only.find("/.docker/") != std::string::npos});
  } else {
    if (const char* x = getenv("XDG_RUNTIME_DIR"); x && *x) files.push_back({std::string(x) + "/containers/auth.json"});
    std::string h = home();
    if (!h.empty()) files.push_back({h + "/.config/containers/auth.json"});
    // $DOCKER_CONFIG moves docker's config.json, as for the docker CLI.
    if (const char* d = getenv("DOCKER_CONFIG"); d && *d) files.push_back({std::string(d) + "/config.json", false, true});
    else if (!h.empty()) files.push_back({h + "/.docker/config.json", false, true});
    if (!h.empty()) files.push_back({h + "/.dockercfg", true, false});
  }
  // registries.conf's credential-helpers, in order, as containers/image asks
  // them: "containers-auth.json" is the auth files above; any other NAME is
  // `docker-credential-NAME get`. A helper that fails does not stop the
  // search; its error is returned only when no later one has a credential.
  static const std::vector<std::string> kAuthFilesOnly{kAuthFilesHelper};
  std::optional<Error> first_error;
  for (const std::string& h : helpers.empty() ? kAuthFilesOnly : helpers) {
    if (h != kAuthFilesHelper) {
      s.looked.push_back("docker-credential-" + h + " (credential-helpers in registries.conf)");
      auto c = run_credential_helper(h, registry, "credential-helpers in registries.conf");
      if (!c) {
        if (!first_error) first_error = std::move(c).error();
        continue;
      }
      if (*c) {
        s.found = std::move(**c);
        return s;
      }
      continue;
    }
    for (const File& f : files) {
      s.looked.push_back(f.path);
      auto c = search_file(f.path, f.legacy_format, f.docker_keys, registry, repository);
      if (!c) {
        if (!first_error) first_error = std::move(c).error();
        break;
      }
      if (*c) {
        s.found = std::move(**c);
        return s;
      }
    }
  }
  if (first_error) return *first_error;
  return s;
}

}  // namespace moat::registry
