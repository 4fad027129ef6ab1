#include "scanner/session/namespace.h"

#include <dirent.h>
#include <grp.h>
#include <fcntl.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "scanner/session/overlay.h"
#include "storage/fsutil.h"

extern char** environ;

namespace moat {

using json = nlohmann::json;

// ---- id mapping ----

std::vector<IdRange> parse_subid(const std::string& text, const std::string& user, uint32_t uid) {
  std::vector<IdRange> out;
  std::istringstream in(text);
  std::string line;
  uint32_t next_inside = 1;  // container 0 is the caller; ranges follow from 1
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t a = line.find(':'), b = line.find(':', a == std::string::npos ? a : a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string who = line.substr(0, a);
    if (who != user && who != std::to_string(uid)) continue;
    char* end = nullptr;
    unsigned long start = std::strtoul(line.c_str() + a + 1, &end, 10);
    if (end != line.c_str() + b) continue;
    unsigned long count = std::strtoul(line.c_str() + b + 1, &end, 10);
    if (count == 0 || start > UINT32_MAX || count > UINT32_MAX - start) continue;
    out.push_back({next_inside, static_cast<uint32_t>(start), static_cast<uint32_t>(count)});
    if (count > UINT32_MAX - next_inside) break;
    next_inside += static_cast<uint32_t>(count);
  }
  return out;
}

namespace {

std::string find_tool(const char* name) {
  std::string path = getenv("PATH") ? getenv("PATH") : "";
  path += ":/usr/bin:/bin:/usr/sbin:/sbin";
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find(':', i);
    if (j == std::string::npos) j = path.size();
    std::string dir = path.substr(i, j - i);
    if (!dir.empty() && dir[0] == '/') {
      std::string p = dir + "/" + name;
      if (access(p.c_str(), X_OK) == 0) return p;
    }
    i = j + 1;
  }
  return {};
}

std::string slurp(const std::string& file) {
  std::ifstream f(file);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

bool in_moat_userns() {
  const char* v = getenv("MOAT_IN_USERNS");
  if (!v || std::strcmp(v, "subuid") != 0 || geteuid() != 0) return false;
  // The variable alone proves nothing: the initial namespace maps every id to itself.
  std::string map = slurp("/proc/self/uid_map");
  unsigned long a = 0, b = 0, n = 0;
  if (std::sscanf(map.c_str(), "%lu %lu %lu", &a, &b, &n) != 3) return false;
  return !(a == 0 && b == 0 && n == 4294967295UL);
}

IdMapPlan plan_id_mapping() {
  IdMapPlan p;
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (in_moat_userns()) {
    // Already root of moat's subuid namespace: only a mount namespace is needed.
    p.kind = "subuid";
    p.why = "inside moat's user namespace (MOAT_USERNS_STORE)";
    return p;
  }
  if (geteuid() == 0) {
    p.kind = "none";
    p.why = "running as root: host ids, no user namespace needed";
    return p;
  }
  p.kind = "single";
  p.uids = {{0, static_cast<uint32_t>(uid), 1}};
  p.gids = {{0, static_cast<uint32_t>(gid), 1}};
  if (find_tool("newuidmap").empty() || find_tool("newgidmap").empty()) {
    p.why = "newuidmap/newgidmap not installed (Debian: apt install uidmap)";
    return p;
  }
  std::string name;
  if (passwd* pw = getpwuid(uid)) name = pw->pw_name;
  auto su = parse_subid(slurp("/etc/subuid"), name, uid);
  auto sg = parse_subid(slurp("/etc/subgid"), name, gid);
  if (su.empty() || sg.empty()) {
    p.why = "no range for " + (name.empty() ? std::to_string(uid) : name) + " in /etc/subuid and /etc/subgid";
    return p;
  }
  p.kind = "subuid";
  p.uids.insert(p.uids.end(), su.begin(), su.end());
  p.gids.insert(p.gids.end(), sg.begin(), sg.end());
  return p;
}

namespace {

// ---- line protocol ----

Status send_line(int fd, const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("session: send");
    }
    off += static_cast<size_t>(n);
  }
  return ok_status();
}

// Messages are short; a byte at a time keeps what follows the newline unread.
Result<json> recv_line(int fd) {
  std::string s;
  for (;;) {
    char c;
    ssize_t n = read(fd, &c, 1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("session: receive");
    }
    if (n == 0) return Error{"session helper exited unexpectedly", EPIPE};
    if (c == '\n') break;
    if (s.size() > (1 << 20)) return Error{"session: message too long"};
    s += c;
  }
  try {
    return json::parse(s);
  } catch (const std::exception& e) {
    return Error{std::string("session: bad message: ") + e.what()};
  }
}

// One byte carrying one fd (SCM_RIGHTS). Sent after a line; the line reader
// reads byte by byte, so it never swallows this byte and its control data.
Status send_fd(int sock, int fd) {
  char byte = 'F';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  while (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) {
    if (errno != EINTR) return sys_error("session: send the root fd");
  }
  return ok_status();
}

Result<Fd> recv_fd(int sock) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  ssize_t n;
  while ((n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0) {
    if (errno != EINTR) return sys_error("session: receive the root fd");
  }
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (n != 1 || byte != 'F' || !c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
      c->cmsg_len != CMSG_LEN(sizeof(int)))
    return Error{"session: the helper did not hand over the merged root"};
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return Fd(fd);
}

json error_json(const std::string& stage, const Error& e) {
  return json{{"ev", "error"}, {"stage", stage}, {"message", e.message}, {"errno", e.sys_errno}, {"hint", e.hint}};
}

bool apparmor_restricts_userns() {
  std::string v = slurp("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
  return !v.empty() && v[0] == '1';
}

// The fix is the same whether AppArmor's sysctl says so or a profile refuses
// silently; only the diagnosis differs, and it must not claim what is not so.
std::string apparmor_hint() {
  std::string how =
      "install the AppArmor profile shipped in moat's repo (scripts/apparmor/moat, edit the binary path in it) as "
      "/etc/apparmor.d/moat and run `sudo apparmor_parser -r /etc/apparmor.d/moat`";
  if (apparmor_restricts_userns())
    return "AppArmor restricts unprivileged user namespaces here (kernel.apparmor_restrict_unprivileged_userns=1): " +
           how;
  return "a security module refused it inside the user namespace; with AppArmor, " + how;
}

// What to tell the user when the kernel refuses: depends on where it refused.
std::string hint_for(const std::string& stage, int err) {
  if (stage == "unshare") {
    if (apparmor_restricts_userns()) return apparmor_hint();
    if (err == ENOSPC)
      return "user namespaces are disabled or exhausted: `sudo sysctl -w user.max_user_namespaces=15000`";
    if (err == EPERM) {
      std::string v = slurp("/proc/sys/kernel/unprivileged_userns_clone");
      if (!v.empty() && v[0] == '0')
        return "unprivileged user namespaces are disabled: `sudo sysctl -w kernel.unprivileged_userns_clone=1`";
      return "user namespaces are refused (a seccomp filter, a container runtime, or "
             "kernel.unprivileged_userns_clone=0 / user.max_user_namespaces=0): enable them, "
             "e.g. `sudo sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000`";
    }
    if (err == EINVAL) return "this kernel has no user namespaces (CONFIG_USER_NS)";
    return "";
  }
  if (stage == "idmap") {
    // unshare worked and the map write did not: the signature of AppArmor's
    // restriction (Ubuntu 24.04) or another security module.
    if (apparmor_restricts_userns() || err == EPERM || err == EACCES) return apparmor_hint();
    return "the user namespace's id map could not be written: check newuidmap/newgidmap and /etc/subuid";
  }
  if (stage == "mount") {
    if (apparmor_restricts_userns() || err == EACCES) return apparmor_hint();
    if (err == E2BIG) return "images with more than 500 layers can only be scanned in userspace mode";
    if (err == EINVAL || err == ENODEV || err == EPERM)
      return "unprivileged overlayfs needs Linux 5.11+ with overlay built in or loaded (`modprobe overlay`), "
             "and no security module refusing mounts in user namespaces";
    return "the overlay mount failed in the user namespace; see the kernel's message above";
  }
  return "";
}

const char* deny_seam() {
  const char* v = getenv("MOAT_TEST_DENY_USERNS");
  return v && *v ? v : nullptr;
}

Status write_proc(const std::string& file, const std::string& text) {
  int fd = open(file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return sys_error("open " + file);
  Fd owner(fd);
  if (write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) return sys_error("write " + file);
  return ok_status();
}

std::string map_args(const std::vector<IdRange>& r) {
  std::string s;
  for (const auto& x : r) s += " " + std::to_string(x.inside) + " " + std::to_string(x.outside) + " " + std::to_string(x.count);
  return s;
}

// Runs newuidmap/newgidmap PID ranges... (setuid helpers that check /etc/subuid themselves).
Status run_map_tool(const std::string& tool, pid_t pid, const std::vector<IdRange>& ranges) {
  std::string path = find_tool(tool.c_str());
  if (path.empty()) return Error{tool + " not found"};
  std::vector<std::string> args = {tool, std::to_string(pid)};
  for (const auto& r : ranges) {
    args.push_back(std::to_string(r.inside));
    args.push_back(std::to_string(r.outside));
    args.push_back(std::to_string(r.count));
  }
  std::vector<char*> av;
  for (auto& a : args) av.push_back(a.data());
  av.push_back(nullptr);
  pid_t child;
  // posix_spawn: this parent is multi-threaded (oneTBB), fork+exec must be minimal.
  int rc = posix_spawn(&child, path.c_str(), nullptr, nullptr, av.data(), environ);
  if (rc != 0) return sys_error("run " + path, rc);
  int status = 0;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return sys_error("wait for " + tool);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return Error{tool + map_args(ranges) + " for pid " + std::to_string(pid) + " failed"};
  return ok_status();
}

// The session's mounts, in the calling process's mount namespace (which must
// be moat's own): a private tmpfs on `target`, the read-only overlay of the
// layers on target/merged. Returns target/merged.
Result<std::string> mount_session_tree(const std::vector<std::string>& lowers_top_first, const std::string& target,
                                       std::string* method) {
  const char* seam = deny_seam();
  // Private first: nothing mounted below may propagate back to the host.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return sys_error("make / private");
  if (target.empty() || target[0] != '/') return Error{"session: bad target"};
  if (mount("tmpfs", target.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700,size=1m") != 0)
    return sys_error("mount a private tmpfs on " + target);
  std::string merged = target + "/merged";
  if (mkdir(merged.c_str(), 0755) != 0) return sys_error("create " + merged);
  if (seam && std::strcmp(seam, "mount") == 0) return Error{"mount overlay [simulated by MOAT_TEST_DENY_USERNS]", EACCES};
  OverlayPlan plan;
  plan.lowers_top_first = lowers_top_first;
  plan.scratch = target;
  plan.target = merged;
  const char* legacy = getenv("MOAT_TEST_LEGACY_MOUNT");
  plan.force_legacy = legacy && std::strcmp(legacy, "1") == 0;
  MOAT_ASSIGN_OR_RETURN(*method, mount_overlay(plan));
  return merged;
}

int exit_status_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 2;
}

}  // namespace

// ---- parent side ----

Session::Session(Session&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), sock_(std::move(o.sock_)), root_fd_(std::move(o.root_fd_)),
      ready_(std::move(o.ready_)), mounted_here_(std::exchange(o.mounted_here_, {})) {}

Session& Session::operator=(Session&& o) noexcept {
  if (this != &o) {
    end();
    pid_ = std::exchange(o.pid_, -1);
    sock_ = std::move(o.sock_);
    root_fd_ = std::move(o.root_fd_);
    ready_ = std::move(o.ready_);
    mounted_here_ = std::exchange(o.mounted_here_, {});
  }
  return *this;
}

Session::~Session() { end(); }

void Session::end() {
  root_fd_.reset();
  sock_.reset();
  if (!mounted_here_.empty()) {
    // The tmpfs with the overlay on it, both at once (a lazy unmount takes the
    // subtree; a descriptor still open below it keeps only its own file).
    umount2(mounted_here_.c_str(), MNT_DETACH);
    mounted_here_.clear();
  }
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  pid_ = -1;
}

Result<int> Session::wait() {
  if (!mounted_here_.empty()) {
    end();
    return 0;
  }
  root_fd_.reset();
  sock_.reset();  // a no-command helper waits for this EOF, then exits 0
  if (pid_ <= 0) return Error{"session: no helper to wait for"};
  // Like system(): the terminal's ^C goes to the command; moat just waits.
  struct sigaction ign {}, old_int {}, old_quit {};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGINT, &ign, &old_int);
  sigaction(SIGQUIT, &ign, &old_quit);
  int status = 0;
  int rc;
  while ((rc = waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
  }
  int err = errno;
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGQUIT, &old_quit, nullptr);
  if (rc < 0) return sys_error("wait for the session", err);
  pid_ = -1;
  return exit_status_of(status);
}

Result<Session> Session::start_here(const SessionSpec& spec) {
  std::vector<std::string> lowers(spec.lowers.rbegin(), spec.lowers.rend());
  Session s;
  auto merged = mount_session_tree(lowers, spec.target, &s.ready_.method);
  if (!merged) {
    Error e = std::move(merged).error();
    if (e.hint.empty()) e.hint = hint_for("mount", e.sys_errno);
    // What is mounted already goes with the namespace's last process; detach it now all the same.
    umount2(spec.target.c_str(), MNT_DETACH);
    return e;
  }
  s.mounted_here_ = spec.target;
  s.ready_.root = *merged;
  s.ready_.id_mapping = "subuid";
  s.root_fd_ = Fd(::open(merged->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!s.root_fd_.valid()) return sys_error("open the merged root " + *merged);
  if (spec.verbose) {
    int entries = 0;
    if (DIR* d = fdopendir(::openat(s.root_fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC))) {
      while (dirent* e = readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ++entries;
      closedir(d);
    }
    s.ready_.root_entries = entries;
  }
  return s;
}

Result<Session> Session::start(const SessionSpec& spec) {
  // Already root of moat's namespace, with a mount namespace of its own: no
  // helper needed to mount (namespace.h).
  if (spec.argv.empty() && in_moat_userns()) return start_here(spec);
  IdMapPlan plan = plan_id_mapping();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return sys_error("socketpair");
  Fd mine(sv[0]), theirs(sv[1]);

  // Everything the child needs is prepared before fork: after fork in a
  // threaded process only async-signal-safe calls are allowed.
  std::string fd_arg = std::to_string(theirs.get());
  std::string arg0 = "moat", arg1 = kSessionArg;
  char* child_argv[] = {arg0.data(), arg1.data(), fd_arg.data(), nullptr};
  pid_t parent = getpid();
  Session s;
  s.pid_ = fork();
  if (s.pid_ < 0) return sys_error("fork the session helper");
  if (s.pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // moat killed: its namespace goes with it
    if (getppid() != parent) _exit(2);
    fcntl(theirs.get(), F_SETFD, 0);
    execv("/proc/self/exe", child_argv);
    _exit(127);
  }
  theirs.reset();
  s.sock_ = std::move(mine);

  json req{{"lowers", json::array()}, {"target", spec.target}, {"argv", spec.argv}, {"verbose", spec.verbose}};
  for (auto it = spec.lowers.rbegin(); it != spec.lowers.rend(); ++it) req["lowers"].push_back(*it);
  MOAT_TRY(send_line(s.sock_.get(), req));

  auto as_error = [](const json& m) {
    Error e{m.value("message", std::string("session failed")), m.value("errno", 0), m.value("hint", std::string())};
    return e;
  };
  MOAT_ASSIGN_OR_RETURN(json m, recv_line(s.sock_.get()));
  if (m.value("ev", "") == "error") return as_error(m);
  if (m.value("ev", "") != "unshared") return Error{"session: unexpected message " + m.dump()};

  std::string mapping = plan.kind;
  if (plan.kind == "subuid" && !in_moat_userns()) {
    // newuidmap/newgidmap write the helper's maps from here (they must be run
    // by the namespace's parent side; the helper has no privilege over subuids).
    Status st = run_map_tool("newuidmap", s.pid_, plan.uids);
    if (st) st = run_map_tool("newgidmap", s.pid_, plan.gids);
    if (!st) {
      if (spec.verbose) std::fprintf(stderr, "moat: %s; using a single mapping\n", st.error().describe().c_str());
      mapping = "single";  // newuidmap wrote nothing it could not finish: the helper maps itself
    }
  }
  MOAT_TRY(send_line(s.sock_.get(), json{{"map", mapping}}));
  MOAT_ASSIGN_OR_RETURN(m, recv_line(s.sock_.get()));
  if (m.value("ev", "") == "error") return as_error(m);
  if (m.value("ev", "") != "ready") return Error{"session: unexpected message " + m.dump()};
  s.ready_.root = m.value("root", "");
  s.ready_.method = m.value("method", "");
  s.ready_.id_mapping = mapping;
  if (spec.argv.empty()) {
    MOAT_ASSIGN_OR_RETURN(m, recv_line(s.sock_.get()));
    if (m.value("ev", "") == "error") return as_error(m);
    s.ready_.root_entries = m.value("entries", int64_t{-1});
    MOAT_ASSIGN_OR_RETURN(s.root_fd_, recv_fd(s.sock_.get()));
  }
  return s;
}

// ---- helper side (a fresh, single-threaded process) ----

namespace {

struct HelperFail {
  std::string stage;
  Error error;
};

// Sets up the namespace and the mount; returns the merged root.
Result<std::string> helper_setup(int sock, const json& req, std::string* method, std::string* stage) {
  uid_t uid = getuid();
  gid_t gid = getgid();
  bool root = geteuid() == 0;
  const char* seam = deny_seam();
  std::string deny = seam ? seam : "";
  if (deny == "1") deny = "unshare";

  *stage = "unshare";
  if (deny == "unshare") return Error{"unshare(CLONE_NEWUSER) [simulated by MOAT_TEST_DENY_USERNS]", EPERM};
  // Real root needs no user namespace; its own mount namespace is enough.
  if (unshare(root ? CLONE_NEWNS : (CLONE_NEWUSER | CLONE_NEWNS)) != 0)
    return sys_error(root ? "unshare(CLONE_NEWNS)" : "unshare(CLONE_NEWUSER|CLONE_NEWNS)");
  MOAT_TRY(send_line(sock, json{{"ev", "unshared"}}));
  MOAT_ASSIGN_OR_RETURN(json m, recv_line(sock));
  std::string mapping = m.value("map", "");

  *stage = "idmap";
  if (!root) {
    if (deny == "idmap") return Error{"write /proc/self/uid_map [simulated by MOAT_TEST_DENY_USERNS]", EPERM};
    if (mapping == "single") {
      // bubblewrap's order: uid_map, setgroups deny, gid_map (an unprivileged
      // gid_map write needs setgroups denied first).
      MOAT_TRY(write_proc("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1\n"));
      MOAT_TRY(write_proc("/proc/self/setgroups", "deny"));
      MOAT_TRY(write_proc("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1\n"));
    }
    // Become root of the namespace for real, saved and effective ids; the
    // command exec'ed later then keeps full capabilities inside it (and only there).
    if (setresgid(0, 0, 0) != 0) return sys_error("setresgid(0) in the namespace");
    if (mapping == "subuid" && setgroups(0, nullptr) != 0) return sys_error("setgroups in the namespace");
    if (setresuid(0, 0, 0) != 0) return sys_error("setresuid(0) in the namespace");
  }

  *stage = "mount";
  return mount_session_tree(req.value("lowers", std::vector<std::string>{}), req.value("target", ""), method);
}

}  // namespace

int session_helper_main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "moat: %s is internal\n", kSessionArg);
    return 2;
  }
  int sock = std::atoi(argv[2]);
  if (sock < 3 || fcntl(sock, F_SETFD, FD_CLOEXEC) != 0) {
    std::fprintf(stderr, "moat: %s is internal\n", kSessionArg);
    return 2;
  }
  auto req = recv_line(sock);
  if (!req) return 2;
  std::string method, stage;
  auto root = helper_setup(sock, *req, &method, &stage);
  if (!root) {
    Error e = std::move(root).error();
    if (e.hint.empty()) e.hint = hint_for(stage, e.sys_errno);
    (void)send_line(sock, error_json(stage, e));
    return 2;
  }
  if (!send_line(sock, json{{"ev", "ready"}, {"root", *root}, {"method", method}})) return 2;

  std::vector<std::string> args = req->value("argv", std::vector<std::string>{});
  if (args.empty()) {
    // No command (moat scan): prove the merged root is readable, hand it to
    // the parent, and hold the namespace until the parent is done with it.
    int rfd = open(root->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    // A directory stream of its own: a dup would share (and exhaust) the handed-over fd's offset.
    DIR* d = rfd < 0 ? nullptr : opendir(root->c_str());
    if (!d) {
      (void)send_line(sock, error_json("mount", sys_error("open the merged root " + *root)));
      return 2;
    }
    Fd root_owner(rfd);
    int entries = 0;
    while (dirent* e = readdir(d))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ++entries;
    closedir(d);
    if (!send_line(sock, json{{"ev", "probe"}, {"entries", entries}}) || !send_fd(sock, rfd)) return 2;
    for (;;) {  // until EOF: the parent ended the session (or died)
      char c;
      ssize_t n = read(sock, &c, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
    }
    return 0;
  }
  if (chdir(root->c_str()) != 0) {
    std::perror("moat: chdir to the merged root");
    return 2;
  }
  setenv("MOAT_ROOT", root->c_str(), 1);
  std::vector<char*> av;
  for (auto& a : args) av.push_back(a.data());
  av.push_back(nullptr);
  // A host program, found on the host's PATH: nothing of the image is executed
  // (and the mount is noexec anyway).
  execvp(av[0], av.data());
  std::fprintf(stderr, "moat: cannot run %s: %s\n", printable(args[0]).c_str(), std::strerror(errno));
  return errno == ENOENT ? 127 : 126;
}

namespace {

// Makes this (single-threaded) process root of a new user namespace with the
// subuid mapping `plan`, and of a mount namespace of its own. `unshared` is
// set once there is no way back (the process is in the new namespace).
Status enter_subuid_userns(const IdMapPlan& plan, bool* unshared) {
  *unshared = false;
  std::string deny = deny_seam() ? deny_seam() : "";
  if (deny == "1" || deny == "unshare")
    return Error{"unshare(CLONE_NEWUSER) [simulated by MOAT_TEST_DENY_USERNS]", EPERM, hint_for("unshare", EPERM)};
  if (deny == "idmap")
    return Error{"write /proc/self/uid_map [simulated by MOAT_TEST_DENY_USERNS]", EPERM, hint_for("idmap", EPERM)};
  // newuidmap/newgidmap must run in the parent namespace: a child forked
  // now stays there and maps this process once it has unshared. (Forked from
  // a single-threaded process, the child may do anything.)
  int go[2], done[2];
  if (pipe2(go, O_CLOEXEC) != 0) return sys_error("pipe");
  Fd go_r(go[0]), go_w(go[1]);
  if (pipe2(done, O_CLOEXEC) != 0) return sys_error("pipe");
  Fd done_r(done[0]), done_w(done[1]);
  const pid_t self = getpid();
  const pid_t child = fork();
  if (child < 0) return sys_error("fork the id mapper");
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != self) _exit(2);
    go_w.reset();
    done_r.reset();
    char c;
    ssize_t n;
    while ((n = read(go_r.get(), &c, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1) _exit(0);  // the parent could not unshare: nothing to map
    Status st = run_map_tool("newuidmap", self, plan.uids);
    if (st) st = run_map_tool("newgidmap", self, plan.gids);
    char r = st ? 'y' : 'n';
    while (write(done_w.get(), &r, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  go_r.reset();
  done_w.reset();
  auto reap = [&] {
    while (waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
    }
  };
  if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
    Error e = sys_error("unshare(CLONE_NEWUSER|CLONE_NEWNS)");
    e.hint = hint_for("unshare", e.sys_errno);
    go_w.reset();  // EOF: the child exits
    reap();
    return e;
  }
  *unshared = true;
  char c = 'g', r = 'n';
  while (write(go_w.get(), &c, 1) < 0 && errno == EINTR) {
  }
  ssize_t n;
  while ((n = read(done_r.get(), &r, 1)) < 0 && errno == EINTR) {
  }
  reap();
  if (n != 1 || r != 'y') {
    // newuidmap wrote nothing it could not finish: map the caller alone, as a
    // session helper does (bubblewrap's order: uid_map, setgroups, gid_map).
    Status m = write_proc("/proc/self/uid_map", "0 " + std::to_string(getuid()) + " 1\n");
    if (m) m = write_proc("/proc/self/setgroups", "deny");
    if (m) m = write_proc("/proc/self/gid_map", "0 " + std::to_string(getgid()) + " 1\n");
    if (!m) {
      Error e = m.error();
      if (e.hint.empty()) e.hint = hint_for("idmap", e.sys_errno);
      return e;
    }
  }
  // Root of the namespace for real, saved and effective ids.
  if (setresgid(0, 0, 0) != 0) return sys_error("setresgid(0) in the namespace");
  if (r == 'y' && setgroups(0, nullptr) != 0) return sys_error("setgroups in the namespace");
  if (setresuid(0, 0, 0) != 0) return sys_error("setresuid(0) in the namespace");
  setenv("MOAT_IN_USERNS", "subuid", 1);  // this process and what it runs know where they are
  return ok_status();
}

}  // namespace

std::optional<int> maybe_enter_userns(int argc, char** argv) {
  // The default for a user with a subuid range, as rootless podman keeps its
  // storage; MOAT_USERNS_STORE=0 keeps the store in the caller's own ids
  // (owners then live in the index and override_stat only), =1 insists and
  // says when it cannot.
  const char* want = getenv("MOAT_USERNS_STORE");
  bool forced = want && std::strcmp(want, "1") == 0;
  if ((want && std::strcmp(want, "0") == 0) || getenv("MOAT_IN_USERNS") || geteuid() == 0) return std::nullopt;
  // A simulated refusal (test seam) stands for a host without user namespaces:
  // there the store stays in the caller's ids, so do not try.
  if (!forced && getenv("MOAT_TEST_DENY_USERNS")) return std::nullopt;
  // Only commands that touch the store need it (not help, version or rules).
  std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd != "scan" && cmd != "mount" && cmd != "image") return std::nullopt;
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) return std::nullopt;
  IdMapPlan plan = plan_id_mapping();
  if (plan.kind != "subuid") {
    if (forced) std::fprintf(stderr, "moat: MOAT_USERNS_STORE ignored: %s\n", plan.why.c_str());
    return std::nullopt;
  }
  bool unshared = false;
  Status st = enter_subuid_userns(plan, &unshared);
  if (st) return std::nullopt;  // root of the namespace: the command runs right here
  // No user namespace here: carry on in the caller's ids (not once inside one).
  if (!forced && !unshared) return std::nullopt;
  std::fprintf(stderr, "moat: error: MOAT_USERNS_STORE: %s\n", st.error().describe().c_str());
  if (!st.error().hint.empty()) std::fprintf(stderr, "moat: hint: %s\n", st.error().hint.c_str());
  return 2;
}

Result<int> run_command_in(const std::string& dir, const std::vector<std::string>& argv) {
  if (argv.empty()) return Error{"no command to run"};
  std::vector<std::string> args = argv;
  std::vector<char*> av;
  for (auto& a : args) av.push_back(a.data());
  av.push_back(nullptr);
  std::string env_root = dir;
  // The environment is built before fork: after fork in a threaded process
  // only async-signal-safe calls are allowed (no setenv, no malloc).
  std::vector<std::string> env_strings = {"MOAT_ROOT=" + dir};
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "MOAT_ROOT=", 10) != 0) env_strings.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return sys_error("fork");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(2);
    if (chdir(env_root.c_str()) != 0) _exit(2);
    execvpe(av[0], av.data(), envp.data());
    _exit(errno == ENOENT ? 127 : 126);
  }
  // Like system(): the terminal's ^C goes to the command; moat just waits.
  struct sigaction ign {}, old_int {}, old_quit {};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGINT, &ign, &old_int);
  sigaction(SIGQUIT, &ign, &old_quit);
  int status = 0;
  int rc;
  while ((rc = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGQUIT, &old_quit, nullptr);
  if (rc < 0) return sys_error("wait for the command");
  return exit_status_of(status);
}

}  // namespace moat
