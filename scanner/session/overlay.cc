#include "scanner/session/overlay.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "scanner/session/namespace.h"
#include "storage/fd.h"

namespace moat {

std::string escape_overlay_path(const std::string& p) {
  std::string out;
  for (char c : p) {
    if (c == ',' || c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

namespace {

// The kernel explains a failed fsconfig/fsmount in messages read from the fs
// context fd ("e overlayfs: ..."). They are the best diagnosis there is.
std::string kernel_messages(int fsfd) {
  std::string out;
  char buf[1024];
  for (int i = 0; i < 16; ++i) {
    ssize_t n = read(fsfd, buf, sizeof buf - 1);
    if (n <= 0) break;
    if (!out.empty()) out += "; ";
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Error fs_error(const std::string& what, int err, int fsfd) {
  Error e = sys_error(what, err);
  std::string msgs = kernel_messages(fsfd);
  if (!msgs.empty()) e.message += " [kernel: " + msgs + "]";
  return e;
}

constexpr unsigned kMountAttrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;

// Returns EINVAL-from-"lowerdir+" as a distinct outcome so the caller can fall back.
struct FsconfigOutcome {
  bool unsupported = false;
};

Result<FsconfigOutcome> mount_with_fsconfig(const std::vector<std::string>& lowers, const std::string& target) {
  int raw = fsopen("overlay", FSOPEN_CLOEXEC);
  if (raw < 0) {
    if (errno == ENOSYS) return FsconfigOutcome{true};
    return sys_error("fsopen(overlay)").with_hint(
        errno == ENODEV ? "the kernel has no overlay filesystem: modprobe overlay" : "");
  }
  Fd fsfd(raw);
  for (size_t i = 0; i < lowers.size(); ++i) {
    if (fsconfig(fsfd.get(), FSCONFIG_SET_STRING, "lowerdir+", lowers[i].c_str(), 0) != 0) {
      int err = errno;
      // Kernels before 6.8 do not know "lowerdir+": the first call fails with EINVAL.
      if (i == 0 && err == EINVAL) {
        std::string msgs = kernel_messages(fsfd.get());
        if (msgs.find("nknown parameter") != std::string::npos || msgs.empty()) return FsconfigOutcome{true};
        return Error{"overlay lowerdir+ " + lowers[i] + " [kernel: " + msgs + "]", err};
      }
      return fs_error("overlay lowerdir+ " + lowers[i], err, fsfd.get());
    }
  }
  if (fsconfig(fsfd.get(), FSCONFIG_SET_FLAG, "userxattr", nullptr, 0) != 0)
    return fs_error("overlay option userxattr", errno, fsfd.get())
        .with_hint("unprivileged overlayfs with userxattr needs Linux 5.11+");
  if (fsconfig(fsfd.get(), FSCONFIG_SET_FLAG, "ro", nullptr, 0) != 0)
    return fs_error("overlay option ro", errno, fsfd.get());
  if (fsconfig(fsfd.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
    return fs_error("create overlay superblock", errno, fsfd.get());
  int m = fsmount(fsfd.get(), FSMOUNT_CLOEXEC, kMountAttrs);
  if (m < 0) return fs_error("fsmount overlay", errno, fsfd.get());
  Fd mfd(m);
  if (move_mount(mfd.get(), "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
    return sys_error("attach overlay at " + target);
  return FsconfigOutcome{false};
}

Status mount_with_short_names(const std::vector<std::string>& lowers, const std::string& scratch,
                              const std::string& target) {
  std::string links = scratch + "/l";
  if (mkdir(links.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("create " + links);
  // Link i is the i-th layer from the top; numbers keep each name within 3 bytes.
  std::string opts = "lowerdir=";
  for (size_t i = 0; i < lowers.size(); ++i) {
    std::string name = std::to_string(i);
    if (symlink(lowers[i].c_str(), (links + "/" + name).c_str()) != 0 && errno != EEXIST)
      return sys_error("create short name " + links + "/" + name);
    opts += (i ? ":" : "") + name;
  }
  opts += ",userxattr";
  if (opts.size() >= static_cast<size_t>(sysconf(_SC_PAGESIZE)))
    return Error{"overlay options for " + std::to_string(lowers.size()) + " layers exceed one page"};
  // lowerdir names are resolved relative to the cwd at mount time.
  Fd old_cwd(open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (chdir(links.c_str()) != 0) return sys_error("chdir " + links);
  int rc = mount("overlay", target.c_str(), "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, opts.c_str());
  int err = errno;
  if (old_cwd.valid() && fchdir(old_cwd.get()) != 0) {
    // The helper chdirs to the merged root next anyway; nothing depends on this cwd.
  }
  if (rc != 0) return sys_error("mount overlay (" + std::to_string(lowers.size()) + " lowers) at " + target, err);
  return ok_status();
}

}  // namespace

Result<std::string> mount_overlay(const OverlayPlan& plan) {
  std::vector<std::string> lowers = plan.lowers_top_first;
  if (lowers.empty()) return Error{"an image without layers cannot be mounted"};
  if (lowers.size() == 1) {
    // The kernel wants two lowers for a lowerdir-only mount: add an empty bottom.
    std::string empty = plan.scratch + "/empty";
    if (mkdir(empty.c_str(), 0755) != 0 && errno != EEXIST) return sys_error("create " + empty);
    lowers.push_back(empty);
  }
  if (lowers.size() > kMaxOverlayLayers)
    return Error{"the image has " + std::to_string(lowers.size()) + " layers; the kernel's overlayfs stacks at most " +
                 std::to_string(kMaxOverlayLayers), E2BIG};
  if (!plan.force_legacy) {
    MOAT_ASSIGN_OR_RETURN(FsconfigOutcome o, mount_with_fsconfig(lowers, plan.target));
    if (!o.unsupported) return std::string("fsconfig");
  }
  MOAT_TRY(mount_with_short_names(lowers, plan.scratch, plan.target));
  return std::string("mount");
}

}  // namespace moat
