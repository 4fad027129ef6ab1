// The namespace session: a private user + mount namespace holding a read-only
// overlay of an image's layers, owned by one helper process.
//
// Why a helper process: unshare(CLONE_NEWUSER) fails with EINVAL in a
// multi-threaded process, and by the time moat knows which layers to mount it
// has pulled them with oneTBB threads. So the CLI re-executes its own binary
// (/proc/self/exe) as the hidden subcommand kSessionArg; that fresh process is
// single-threaded when it unshares, and everything that needs the namespace
// (the mount, the command of `moat mount`, later the filesystem checks) runs
// in it. fork() without exec was rejected: the child of a threaded parent
// inherits oneTBB's and malloc's state half-locked and could not use threads.
//
// Lifetime: the mount exists only in the helper's private mount namespace
// (propagation made private first), on a tmpfs the helper mounts over
// STORE/mnt. Nothing appears in the host's mount table, and when the last
// process of the namespace exits -- normally or by SIGKILL at any moment --
// the kernel tears it all down: there is nothing to clean up. The helper has
// PR_SET_PDEATHSIG(SIGKILL), so killing moat kills it too.
//
// Protocol on a socketpair (one JSON object per line):
//   parent -> helper  {"lowers":[...top first...],"target":DIR,"argv":[...]}
//   helper -> parent  {"ev":"unshared"}            (or {"ev":"error",...})
//   parent -> helper  {"map":"subuid"|"single"|"none"}  after running newuidmap/newgidmap
//   helper -> parent  {"ev":"ready","root":DIR,"method":"fsconfig"|"mount",...}
// then the helper either execs argv (cwd = the merged root, MOAT_ROOT set) or,
// with an empty argv (`moat scan`), reports {"ev":"probe","entries":N}, hands
// an O_DIRECTORY fd of the merged root to the parent (SCM_RIGHTS, with one
// byte) and keeps the namespace alive until the parent closes the socket.
// The parent walks the overlay through that fd with its own host credentials:
// it reads what the caller owns (the whole store, unless a mode like 0000
// locks the owner out) but has no capability over it.
//
// Test seams (documented in docs/mount.md):
//   MOAT_TEST_DENY_USERNS=1|unshare  unshare(CLONE_NEWUSER) fails with EPERM
//   MOAT_TEST_DENY_USERNS=idmap      the uid_map write fails with EPERM (AppArmor-like)
//   MOAT_TEST_DENY_USERNS=mount      the overlay mount fails with EACCES (AppArmor-like)
//   MOAT_TEST_LEGACY_MOUNT=1         use mount(2) with short names, as on kernels < 6.8
// Set by moat itself: MOAT_IN_USERNS=subuid once maybe_enter_userns (below)
// has made the process root of its subuid namespace (inherited by the commands
// it runs).
//
// Inside that namespace (the default for a user with a subuid range) the scan
// needs no helper: the process already owns a private mount namespace (made
// with its user namespace), so Session::start of a no-command session mounts
// the tmpfs and the overlay right there, in the scanning process itself, and
// detaches them when the session ends. The three processes that cost (the
// helper, its re-exec, the mount helper) each loaded moat's 52 shared
// libraries: about 10 ms of CPU and 20-30 ms of wall time apiece.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "storage/fd.h"
#include "storage/result.h"

namespace moat {

inline constexpr const char* kSessionArg = "__moat-session";
// The kernel's overlayfs stacks at most this many lower layers (OVL_MAX_STACK).
inline constexpr size_t kMaxOverlayLayers = 500;

// One line of a uid_map/gid_map: `count` ids from `inside` map to `outside`.
struct IdRange {
  uint32_t inside = 0, outside = 0, count = 0;
};

struct IdMapPlan {
  std::string kind;  // "subuid" (caller -> 0, subordinate range -> 1..N), "single" (caller -> 0), "none" (real root)
  std::vector<IdRange> uids, gids;
  std::string why;   // why not "subuid", for --verbose
};

// Decides the mapping for the calling user: subuid when newuidmap/newgidmap
// exist and /etc/subuid and /etc/subgid give the user a range, else single.
// Real root gets "none": it needs no user namespace, only a mount namespace.
IdMapPlan plan_id_mapping();
// Parses /etc/subuid-format text for `user` (name or numeric uid).
std::vector<IdRange> parse_subid(const std::string& text, const std::string& user, uint32_t uid);

struct SessionSpec {
  std::vector<std::string> lowers;  // absolute layer diff dirs, bottom layer first (image order)
  std::string target;               // an existing directory the session's tmpfs is mounted on
  std::vector<std::string> argv;    // command to exec in the namespace; empty: hand over the root fd
  bool verbose = false;
};

struct SessionReady {
  std::string root;        // the merged tree (valid inside the namespace only)
  std::string id_mapping;  // subuid | single | none
  std::string method;      // fsconfig | mount
  int64_t root_entries = -1;  // no-command sessions: entries in the merged root
};

// The one owner of a helper process and, through it, of the namespace.
class Session {
 public:
  // Starts the helper and returns once the overlay is mounted (the command,
  // if any, is being exec'ed). Errors carry errno, the stage that failed and a
  // hint saying how to enable the overlay path.
  static Result<Session> start(const SessionSpec& spec);
  Session(Session&& o) noexcept;
  Session& operator=(Session&& o) noexcept;  // ends the session it held, then takes o's
  Session(const Session&) = delete;
  ~Session();  // kills and reaps a helper still running

  const SessionReady& ready() const { return ready_; }
  // Sessions without a command: the merged root, usable until wait(). To read
  // it as a directory stream, openat(root_fd(), ".") first: a dup shares its offset.
  int root_fd() const { return root_fd_.get(); }
  pid_t pid() const { return pid_; }
  // Waits for the helper (or the command it became); returns its exit status,
  // 128+N when killed by signal N. Ends a no-command session (closes root_fd).
  Result<int> wait();

 private:
  Session() = default;
  void end();  // kills and reaps a helper still running
  static Result<Session> start_here(const SessionSpec& spec);
  pid_t pid_ = -1;
  Fd sock_;
  Fd root_fd_;
  SessionReady ready_;
  std::string mounted_here_;  // start_here(): the tmpfs to detach at the end (with the overlay on it)
};

// Store with true owners (default with a subuid range; MOAT_USERNS_STORE=0 opts out), as rootless podman
// keeps its storage: the whole moat command runs as root of a user namespace
// with the subuid mapping, so unpacking gives files their real owners on disk
// (within the range) and `moat mount` shows them. Every moat command on such a
// store must run the same way (rm/prune outside it would meet files owned by
// subordinate ids).
//
// The process enters the namespace itself, without an exec: it forks a child
// that stays in the initial namespace, unshares (user + mount namespace), the
// child runs newuidmap/newgidmap on it (they must be run from the parent
// namespace) and exits, and the process becomes root of the namespace
// (setresuid/setresgid 0). unshare(CLONE_NEWUSER) needs a single-threaded
// process: main() calls this first, before anything can start a thread.
// Returns nullopt to carry on with the command (inside the namespace, or in
// the caller's own ids when it does not apply: opted out, already inside,
// real root, no subuid range, or no user namespace can be made), or an exit
// status when it must not go on (MOAT_USERNS_STORE=1 and no namespace, or a
// namespace entered whose ids could not be mapped).
std::optional<int> maybe_enter_userns(int argc, char** argv);
// True inside a namespace made by maybe_enter_userns (euid 0 there is not host root).
bool in_moat_userns();

// The helper's entry point: main() calls it when argv[1] == kSessionArg,
// before anything else (and before any thread exists).
int session_helper_main(int argc, char** argv);

// Runs argv from the host (never from the image) with cwd `dir` and MOAT_ROOT
// set; returns its exit status (128+N when killed by signal N).
Result<int> run_command_in(const std::string& dir, const std::vector<std::string>& argv);

}  // namespace moat
