#include "scanner/session/merged_view.h"

#include <fcntl.h>
#include <tbb/parallel_for.h>

#include <optional>

#include "storage/fsutil.h"

namespace moat {

namespace {

bool valid_image_path(const std::string& p) { return !p.empty() && p[0] == '/'; }

std::string parent_of(const std::string& p) {
  size_t s = p.rfind('/');
  return s == 0 || s == std::string::npos ? "/" : p.substr(0, s);
}

}  // namespace

void MergedView::erase_subtree(const std::string& path, bool keep_self) {
  if (path == "/") {
    // Everything but the root itself.
    auto root = entries_.find("/");
    ViewEntry keep;
    bool had = root != entries_.end();
    if (had) keep = root->second;
    entries_.clear();
    if (had && keep_self) entries_.emplace("/", std::move(keep));
    return;
  }
  if (!keep_self) entries_.erase(path);
  // Children are exactly the keys in [path + "/", path + "0"): '0' follows '/'.
  auto lo = entries_.lower_bound(path + "/");
  auto hi = entries_.lower_bound(path + "0");
  entries_.erase(lo, hi);
}

Status MergedView::apply_layer(size_t layer, const std::vector<IndexEntry>& idx) {
  // 1. What this layer hides in the layers below it.
  for (const auto& e : idx) {
    if (!valid_image_path(e.path)) return Error{"layer " + std::to_string(layer) + ": bad index path"};
    if (e.type == EntryType::Opaque) erase_subtree(e.path, true);
    else if (e.type == EntryType::Whiteout) erase_subtree(e.path, false);
  }
  // 2. What it adds, in tar order.
  for (const auto& e : idx) {
    if (e.type == EntryType::Opaque || e.type == EntryType::Whiteout) continue;
    ViewEntry v;
    v.layer = layer;
    v.entry = e;
    if (e.type == EntryType::Hardlink) {
      // A hardlink shows its target's inode: same type, mode, owner, xattrs.
      auto t = entries_.find(e.link);
      if (t != entries_.end() && t->second.entry.type != EntryType::Dir) {
        const IndexEntry& te = t->second.entry;
        v.entry.type = te.type == EntryType::Hardlink ? EntryType::File : te.type;
        v.entry.mode = te.mode;
        v.entry.uid = te.uid;
        v.entry.gid = te.gid;
        v.entry.size = te.size;
        v.entry.xattrs = te.xattrs;
      } else {
        v.entry.type = EntryType::File;  // the unpacker refused links to dirs; a missing target was an error
      }
      v.hardlink_to = e.link;
    }
    auto it = entries_.find(e.path);
    if (it != entries_.end()) {
      bool both_dirs = it->second.entry.type == EntryType::Dir && e.type == EntryType::Dir;
      if (!both_dirs) erase_subtree(e.path, true);
      it->second = std::move(v);
    } else {
      // Parents the tar left out exist on disk all the same (the unpacker
      // records them as 0755 root dirs); a non-directory parent is replaced.
      std::string p = parent_of(e.path);
      std::vector<std::string> missing;
      while (true) {
        auto pit = entries_.find(p);
        if (pit != entries_.end()) {
          if (pit->second.entry.type != EntryType::Dir) {
            erase_subtree(p, false);
            missing.push_back(p);
          }
          break;
        }
        missing.push_back(p);
        if (p == "/") break;
        p = parent_of(p);
      }
      for (const auto& m : missing) {
        ViewEntry d;
        d.layer = layer;
        d.entry.path = m;
        d.entry.type = EntryType::Dir;
        d.entry.mode = 0755;
        entries_.emplace(m, std::move(d));
      }
      entries_.emplace(e.path, std::move(v));
    }
    if (entries_.size() > max_entries_)
      return Error{"the merged view has more than " + std::to_string(max_entries_) + " entries"};
  }
  return ok_status();
}

Result<MergedView> MergedView::from_layers(std::vector<std::vector<IndexEntry>> indexes,
                                           std::vector<std::string> diff_dirs, size_t max_entries) {
  std::vector<SharedIndex> shared;
  for (auto& idx : indexes) shared.push_back(std::make_shared<const std::vector<IndexEntry>>(std::move(idx)));
  return from_shared(std::move(shared), std::move(diff_dirs), max_entries);
}

Result<MergedView> MergedView::from_shared(std::vector<SharedIndex> indexes, std::vector<std::string> diff_dirs,
                                           size_t max_entries) {
  if (indexes.size() != diff_dirs.size()) return Error{"merged view: indexes and layers differ in number"};
  MergedView v;
  v.diff_dirs_ = std::move(diff_dirs);
  v.max_entries_ = max_entries;
  for (size_t i = 0; i < indexes.size(); ++i) MOAT_TRY(v.apply_layer(i, *indexes[i]));
  v.indexes_ = std::move(indexes);
  if (v.entries_.find("/") == v.entries_.end()) {
    ViewEntry root;
    root.entry.path = "/";
    root.entry.type = EntryType::Dir;
    root.entry.mode = 0755;
    v.entries_.emplace("/", std::move(root));
  }
  return v;
}

Result<MergedView> MergedView::build(const Store& store, const ImageRecord& img, size_t max_entries) {
  // The indexes are parsed in parallel (a base layer's has tens of thousands
  // of lines), or taken from the store's memo when the secret scan has parsed
  // them already; the first error in layer order is the one reported.
  std::vector<std::optional<Result<SharedIndex>>> got(img.layers.size());
  tbb::parallel_for(size_t{0}, img.layers.size(),
                    [&](size_t i) { got[i] = store.shared_layer_index(img.layers[i].diff_id); });
  std::vector<SharedIndex> idx;
  std::vector<std::string> dirs;
  for (size_t i = 0; i < img.layers.size(); ++i) {
    const auto& l = img.layers[i];
    if (!*got[i]) return std::move(*got[i]).error().context("layer " + std::to_string(l.index) + " (" + l.diff_id + ")");
    idx.push_back(std::move(*got[i]).value());
    dirs.push_back(store.diff_dir(l.diff_id));
  }
  return from_shared(std::move(idx), std::move(dirs), max_entries);
}

const ViewEntry* MergedView::find(const std::string& path) const {
  auto it = entries_.find(path);
  return it == entries_.end() ? nullptr : &it->second;
}

Result<Fd> MergedView::open(const std::string& path, int flags) const {
  const ViewEntry* v = find(path);
  if (!v) return Error{"\"" + printable(path) + "\" is not in the image", ENOENT};
  int raw = ::open(diff_dirs_[v->layer].c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (raw < 0) return sys_error("open layer " + std::to_string(v->layer));
  Fd root(raw);
  std::string rel = path == "/" ? "" : path.substr(1);
  // A FIFO opened for reading would block: only O_PATH for those.
  if (v->entry.type == EntryType::Fifo && !(flags & O_PATH)) flags |= O_NONBLOCK;
  return open_beneath(root.get(), rel, flags | O_NOFOLLOW);
}

}  // namespace moat
