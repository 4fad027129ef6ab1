// In-place scan of an unpacked tree. See inplace.h.
#include "scanner/session/inplace.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <tbb/enumerable_thread_specific.h>

#include "scanner/session/walk.h"
#include "storage/digest.h"
#include "storage/fd.h"
#include "storage/fsutil.h"
#include "storage/image.h"
#include "storage/reference.h"

namespace moat {
namespace {

// The xattrs a layer keeps (unpack.cc keep_xattr): user.* and security.*,
// never overlay markers or a forged containers override.
bool keep_xattr(const std::string& name) {
  if (name.find(".overlay.") != std::string::npos) return false;
  if (name.rfind("user.containers.", 0) == 0) return false;
  return name.rfind("user.", 0) == 0 || name.rfind("security.", 0) == 0;
}

// Reads the entry's xattrs without opening it and without following it:
// /proc/self/fd/PARENT/NAME with the l* calls (the parent is the walk's own
// directory fd; the last component is never dereferenced).
void read_xattrs(int parent_fd, const char* name, IndexEntry& e) {
  std::string p = "/proc/self/fd/" + std::to_string(parent_fd) + "/" + name;
  char names[4096];
  ssize_t n = ::llistxattr(p.c_str(), names, sizeof names);
  if (n <= 0) return;
  for (ssize_t off = 0; off < n;) {
    std::string xn(names + off);
    off += static_cast<ssize_t>(xn.size()) + 1;
    if (!keep_xattr(xn)) continue;
    char val[4096];
    ssize_t v = ::lgetxattr(p.c_str(), xn.c_str(), val, sizeof val);
    if (v >= 0) e.xattrs.emplace_back(xn, std::string(val, static_cast<size_t>(v)));
  }
  std::sort(e.xattrs.begin(), e.xattrs.end());
}

struct Local {
  std::vector<IndexEntry> entries;
  std::vector<std::pair<std::pair<dev_t, ino_t>, size_t>> links;  // (dev, ino) of multi-link files -> entries index
  std::vector<std::string> errors;
};

}  // namespace

Result<InPlaceTree> walk_in_place(const std::string& path, const Limits& limits) {
  InPlaceTree out;
  out.root = path;
  // The root itself is the user's own path and may be reached through a
  // symlink they chose; nothing below it is.
  Fd root(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return sys_error("open " + path);

  tbb::enumerable_thread_specific<Local> locals;
  std::atomic<uint64_t> count{0};
  std::atomic<bool> too_many{false};
  auto walk_errors = parallel_walk(
      root.get(),
      [&](const WalkEntry& we) {
        if (count.fetch_add(1) >= limits.max_layer_entries) {
          too_many = true;
          return;
        }
        Local& l = locals.local();
        if (we.path.size() > limits.max_path_length) {
          l.errors.push_back(printable(we.path, 256) + ": path longer than " +
                             std::to_string(limits.max_path_length) + " bytes, not checked");
          return;
        }
        IndexEntry e;
        e.path = we.path;
        const struct stat& st = we.st;
        e.mode = st.st_mode & 07777;
        e.uid = st.st_uid;
        e.gid = st.st_gid;
        e.mtime = st.st_mtime;
        if (S_ISREG(st.st_mode)) {
          e.type = EntryType::File;
          e.size = static_cast<uint64_t>(st.st_size);
        } else if (S_ISDIR(st.st_mode)) {
          e.type = EntryType::Dir;
        } else if (S_ISLNK(st.st_mode)) {
          e.type = EntryType::Symlink;
          char buf[4097];
          ssize_t n = ::readlinkat(we.parent_fd, we.name, buf, sizeof buf - 1);
          if (n < 0) {
            l.errors.push_back(printable(we.path, 4096) + ": " + sys_error("readlink").describe());
            return;
          }
          e.link.assign(buf, static_cast<size_t>(n));
        } else if (S_ISFIFO(st.st_mode)) {
          e.type = EntryType::Fifo;
        } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
          e.type = S_ISCHR(st.st_mode) ? EntryType::Char : EntryType::Block;
          e.dev_major = major(st.st_rdev);
          e.dev_minor = minor(st.st_rdev);
        } else {
          return;  // a socket: no layer can hold one
        }
        if (e.type == EntryType::File || e.type == EntryType::Dir) read_xattrs(we.parent_fd, we.name, e);
        if (e.type == EntryType::File && st.st_nlink > 1) l.links.push_back({{st.st_dev, st.st_ino}, l.entries.size()});
        l.entries.push_back(std::move(e));
      },
      limits.max_path_depth);
  if (too_many)
    return Error{path + " has more than " + std::to_string(limits.max_layer_entries) + " entries"}.with_hint(
        "raise the limit with --max-layer-entries if the tree is trusted");

  // Merge, then sort by path (a parent precedes its children).
  std::vector<std::pair<std::pair<dev_t, ino_t>, std::string>> links;
  for (auto& l : locals) {
    for (auto& [id, i] : l.links) links.push_back({id, l.entries[i].path});
    for (auto& e : l.entries) out.index.push_back(std::move(e));
    for (auto& e : l.errors) out.errors.push_back(std::move(e));
  }
  std::sort(out.index.begin(), out.index.end(), [](const IndexEntry& a, const IndexEntry& b) { return a.path < b.path; });
  // Hardlinks: per inode, the first path is the file, the others link to it.
  std::sort(links.begin(), links.end());
  std::map<std::string, std::string> link_to;  // path -> first path of its inode
  for (size_t i = 0; i < links.size();) {
    size_t j = i + 1;
    while (j < links.size() && links[j].first == links[i].first) link_to[links[j++].second] = links[i].second;
    i = j;
  }
  for (auto& e : out.index) {
    auto it = link_to.find(e.path);
    if (it == link_to.end()) continue;
    e.type = EntryType::Hardlink;
    e.link = it->second;
  }
  for (const auto& we : walk_errors) out.errors.push_back(printable(we.path, 4096) + ": " + we.error.describe());
  std::sort(out.errors.begin(), out.errors.end());

  // The tree's identity for the report: a digest of the walk's metadata (no
  // content is hashed; that was the cost of copying the tree into the store).
  Sha256 meta;
  uint64_t bytes = 0;
  for (const auto& e : out.index) {
    std::string line = format_index_line(e);
    meta.update(line.data(), line.size());
    if (e.type == EntryType::File) bytes += e.size;
  }
  std::string digest = meta.finish();
  ImageRecord& rec = out.record;
  rec.id = digest_hex(digest);
  rec.names = {"dir:" + path};
  LayerRecord lr;
  lr.index = 0;
  lr.diff_id = digest;
  lr.created_by = "dir:" + path;
  lr.tar_size = bytes;
  lr.entries = out.index.size();
  rec.layers = {lr};
  return out;
}

Result<std::optional<InPlaceTree>> in_place_target(const std::string& image, const Limits& limits) {
  auto ref = parse_reference(image);
  if (!ref || ref->transport != Transport::Dir) return std::optional<InPlaceTree>();
  // open_image() decides between skopeo's dir: format and an unpacked tree.
  MOAT_ASSIGN_OR_RETURN(auto src, open_image(*ref, Platform{}, limits));
  if (!src->desc().rootfs) return std::optional<InPlaceTree>();
  MOAT_ASSIGN_OR_RETURN(InPlaceTree t, walk_in_place(src->desc().rootfs_path, limits));
  return std::optional<InPlaceTree>(std::move(t));
}

bool is_in_place_scan(int argc, char** argv) {
  if (argc < 3 || std::string_view(argv[1]) != "scan") return false;
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") break;
    if (!a.starts_with("dir:")) continue;
    std::string p(a.substr(4));
    struct stat st;
    return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
           !(::access((p + "/version").c_str(), F_OK) == 0 && ::access((p + "/manifest.json").c_str(), F_OK) == 0);
  }
  return false;
}

Result<ScanMount> in_place_mount(const InPlaceTree& tree) {
  ScanMount m;
  m.mode = "in-place";
  m.id_mapping = "none";
  MOAT_ASSIGN_OR_RETURN(MergedView v, MergedView::from_layers({tree.index}, {tree.root}));
  m.view = std::move(v);
  return m;
}

}  // namespace moat
