#include "storage/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <unordered_map>

#include "storage/digest.h"
#include "storage/fsutil.h"
#include "storage/unpack.h"

namespace moat {

using json = nlohmann::json;

Result<FileLock> FileLock::acquire(const std::string& path, bool exclusive, bool wait) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return sys_error("open lock " + path);
  FileLock l;
  l.fd_.reset(fd);
  while (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB)) != 0) {
    if (errno != EINTR) return sys_error("lock " + path);
  }
  return l;
}

Result<std::vector<FileLock>> FileLock::acquire_all(const std::vector<std::string>& paths) {
  std::vector<FileLock> held;
  std::vector<FileLock> waited;  // none, or the one lock taken by waiting, kept for the next try
  size_t waited_at = 0;
  for (;;) {
    held.clear();
    size_t busy = paths.size();
    for (size_t i = 0; i < paths.size() && busy == paths.size(); ++i) {
      if (!waited.empty() && i == waited_at) {
        held.push_back(std::move(waited.back()));
        waited.clear();
        continue;
      }
      auto l = acquire(paths[i], true, false);
      if (l) held.push_back(std::move(l).value());
      else if (l.error().sys_errno == EWOULDBLOCK) busy = i;
      else return std::move(l).error();
    }
    if (busy == paths.size()) return held;
    held.clear();  // wait holding nothing
    MOAT_ASSIGN_OR_RETURN(FileLock l, acquire(paths[busy], true));
    waited.push_back(std::move(l));
    waited_at = busy;
  }
}

std::string Store::default_dir() {
  if (const char* x = getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/moat";
  if (const char* h = getenv("HOME"); h && *h) return std::string(h) + "/.cache/moat";
  return "/tmp/moat-" + std::to_string(getuid());
}

Result<Store> Store::open(const std::string& dir_in, Lock lock) {
  std::string dir = dir_in.empty() ? default_dir() : dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  size_t slash = dir.rfind('/');
  if (slash != std::string::npos && slash > 0) MOAT_TRY(make_dirs(dir.substr(0, slash), 0700));
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("create store " + dir);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return sys_error("open store " + dir).with_hint("--store must name a directory you own");
  Store s;
  s.index_memo_ = std::make_shared<IndexMemo>();
  s.root_ = dir;
  s.root_fd_.reset(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) return sys_error("stat store " + dir);
  if (st.st_uid != geteuid())
    return Error{"store " + dir + " belongs to uid " + std::to_string(st.st_uid) + ", not to you"}.with_hint(
        "use a store of your own with --store DIR");
  if ((st.st_mode & 07777) != 0700) fchmod(fd, 0700);  // the store holds setuid files: nobody else may enter
  for (const char* sub : {"layers", "locks", "tmp", "images"}) {
    if (mkdirat(fd, sub, 0700) != 0 && errno != EEXIST) return sys_error("create " + dir + "/" + sub);
  }
  if (lock != Lock::None) {
    MOAT_ASSIGN_OR_RETURN(FileLock l, FileLock::acquire(dir + "/store.lock", lock == Lock::Exclusive));
    s.held_ = std::move(l);
  }
  return s;
}

namespace {

json layer_json(const LayerRecord& l) {
  return json{{"index", l.index}, {"diff_id", l.diff_id}, {"blob_digest", l.blob_digest}, {"media_type", l.media_type},
              {"created_by", l.created_by}, {"blob_size", l.blob_size}, {"tar_size", l.tar_size}, {"entries", l.entries}};
}

// What a published layer's layer.json says of its sizes (zeros if it cannot be read).
LayerRecord read_layer_json(const std::string& layer_dir) {
  LayerRecord lr;
  int fd = ::open((layer_dir + "/layer.json").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return lr;
  Fd owner(fd);
  auto txt = read_all(fd, 1 << 20);
  if (!txt) return lr;
  try {
    json j = json::parse(*txt);
    lr.tar_size = j.value("tar_size", uint64_t{0});
    lr.entries = j.value("entries", uint64_t{0});
    lr.blob_digest = j.value("blob_digest", std::string());
    lr.blob_size = j.value("blob_size", uint64_t{0});
  } catch (const json::exception&) {
  }
  return lr;
}

std::string unique_suffix() {
  static std::mt19937_64 rng{std::random_device{}()};
  static std::mutex mu;
  std::lock_guard<std::mutex> g(mu);
  return std::to_string(getpid()) + "." + std::to_string(rng() % 1000000000);
}

struct Work {
  size_t layer;          // index in the image
  std::string hex;       // diffID hex
  std::string tmp_name;  // tmp/<hex>.<pid>.<n>
  Fd diff_fd;
  UnpackResult result;
  std::function<void(const IndexEntry&)> on_file;  // PullObserver::layer_started()
  std::vector<std::string> replaced;               // hardlinks to lower layers, copied after the unpack
  bool dirs_changed = false;                       // implicit parents given a lower layer's attributes
};

// Finds what the lower layers show at `target` (a file for a pending hardlink,
// a directory for an implicit parent), honouring whiteouts and opaque
// directories of the layers in between.
const IndexEntry* find_in_lowers(const std::string& target,
                                 const std::vector<const std::unordered_map<std::string, const IndexEntry*>*>& lowers,
                                 size_t* which, bool want_dir = false) {
  for (size_t k = lowers.size(); k-- > 0;) {
    const auto& m = *lowers[k];
    auto it = m.find(target);
    if (it != m.end()) {
      const IndexEntry* e = it->second;
      bool match = want_dir ? e->type == EntryType::Dir : (e->type == EntryType::File || e->type == EntryType::Hardlink);
      if (match) {
        *which = k;
        return e;
      }
      return nullptr;  // anything else (a whiteout, a symlink...) hides what is below
    }
    // An opaque or whited-out ancestor in this layer hides everything below it.
    std::string p = target;
    while (true) {
      size_t s = p.rfind('/');
      if (s == 0 || s == std::string::npos) break;
      p = p.substr(0, s);
      auto a = m.find(p);
      if (a != m.end() && a->second->type != EntryType::Dir) return nullptr;
      auto o = m.find("\x01opaque" + p);
      if (o != m.end()) return nullptr;
    }
  }
  return nullptr;
}

}  // namespace

struct Store::IndexMemo {
  std::mutex mu;
  std::map<std::string, std::shared_future<Result<std::shared_ptr<const std::vector<IndexEntry>>>>> parsed;
};

Result<std::shared_ptr<const std::vector<IndexEntry>>> Store::shared_layer_index(const std::string& diff_id) const {
  using Parsed = Result<std::shared_ptr<const std::vector<IndexEntry>>>;
  std::promise<Parsed> mine;
  std::shared_future<Parsed> f;
  bool parse_here;
  {
    std::lock_guard<std::mutex> g(index_memo_->mu);
    auto [it, fresh] = index_memo_->parsed.try_emplace(diff_id);
    if (fresh) it->second = mine.get_future().share();
    f = it->second;
    parse_here = fresh;
  }
  if (parse_here) {
    auto idx = layer_index(diff_id);
    if (idx) mine.set_value(std::make_shared<const std::vector<IndexEntry>>(std::move(idx).value()));
    else mine.set_value(std::move(idx).error());
  }
  return f.get();
}

std::string image_record_json(const ImageRecord& r) {
  json layers = json::array();
  for (const auto& l : r.layers) layers.push_back(layer_json(l));
  json j{{"id", r.id},
         {"names", r.names},
         {"manifest_digest", r.manifest_digest},
         {"config_digest", r.config_digest},
         {"platform", r.platform},
         {"layers", layers},
         {"pulled", r.pulled},
         {"config", r.config}};
  return j.dump(2) + "\n";
}

Status Store::save_image(const ImageRecord& rec) {
  int fd = ::open((root_ + "/images").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return sys_error("open " + root_ + "/images");
  Fd owner(fd);
  return write_file_atomic(fd, rec.id + ".json", image_record_json(rec));
}

Result<ImageRecord> Store::pull(const ImageSource& src, const PullOptions& opt, PullStats* stats) {
  const ImageDesc& d = src.desc();
  ImageRecord rec;
  rec.names = {d.reference};
  rec.manifest_digest = d.manifest_digest;
  rec.config_digest = d.config_digest;
  rec.platform = d.platform;
  rec.config = d.config;
  rec.pulled = time(nullptr);
  std::atomic<uint64_t> image_bytes{0};
  std::atomic<bool> cancel{false};

  int tmp_fd_raw = ::open((root_ + "/tmp").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (tmp_fd_raw < 0) return sys_error("open " + root_ + "/tmp");
  Fd tmp_fd(tmp_fd_raw);
  auto layer_name = [&](size_t i) {
    const LayerDesc& l = d.layers[i];
    return "layer " + std::to_string(i) + (l.blob_digest.empty() ? "" : " (" + l.blob_digest + ")");
  };

  if (d.rootfs) {
    // dir: an unpacked tree. Its id is known only after the copy, so copy first, then lock and publish.
    std::string tmp = "rootfs." + unique_suffix();
    if (mkdirat(tmp_fd.get(), tmp.c_str(), 0700) != 0 || mkdirat(tmp_fd.get(), (tmp + "/diff").c_str(), 0700) != 0)
      return sys_error("create " + root_ + "/tmp/" + tmp);
    auto cleanup = [&] { (void)remove_tree(tmp_fd.get(), tmp); };
    auto dfd = open_beneath(tmp_fd.get(), tmp + "/diff", O_RDONLY | O_DIRECTORY);
    if (!dfd) { cleanup(); return std::move(dfd).error(); }
    UnpackOptions uo;
    uo.chown = geteuid() == 0;
    uo.limits = opt.limits;
    uo.image_bytes = &image_bytes;
    auto r = import_rootfs(d.rootfs_path, dfd->get(), uo);
    if (!r) { cleanup(); return std::move(r).error().context(d.reference); }
    std::string hex = digest_hex(r->diff_id);
    LayerRecord lr{0, r->diff_id, "", "", d.layers[0].created_by, 0, r->tar_size, r->entries};
    int tdir = ::open((root_ + "/tmp/" + tmp).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    Fd tdir_owner(tdir);
    MOAT_TRY(write_file_atomic(tdir, "index.tsv", serialize_index(r->index)));
    MOAT_TRY(write_file_atomic(tdir, "layer.json", layer_json(lr).dump(2) + "\n"));
    MOAT_ASSIGN_OR_RETURN(FileLock lk, FileLock::acquire(root_ + "/locks/" + hex + ".lock", true));
    std::string final_path = root_ + "/layers/" + hex;
    if (rename((root_ + "/tmp/" + tmp).c_str(), final_path.c_str()) != 0) {
      cleanup();  // the same tree is already in the store
      if (stats) stats->reused++;
    } else if (stats) {
      stats->unpacked++;
    }
    if (opt.observer) opt.observer->layer_in_store(r->diff_id);
    rec.id = hex;
    rec.layers = {lr};
    MOAT_TRY(save_with_names(rec));
    return rec;
  }

  // The locks of the layers not in the store yet, none held while waiting
  // for another: no deadlock, and no chain of waits (FileLock::acquire_all).
  // A published layer needs none: it never changes, and prune (which removes
  // layers) waits for our shared store.lock.
  std::map<std::string, std::vector<size_t>> by_hex;
  for (size_t i = 0; i < d.layers.size(); ++i) by_hex[digest_hex(d.layers[i].diff_id)].push_back(i);
  auto published = [&](const std::string& hex) {
    struct stat st;
    return stat((root_ + "/layers/" + hex + "/layer.json").c_str(), &st) == 0;
  };
  std::vector<std::string> lock_paths;
  std::map<std::string, size_t> lock_of;  // hex -> its lock in `locks`
  for (const auto& [hex, idx] : by_hex) {
    if (published(hex)) continue;
    lock_of[hex] = lock_paths.size();
    lock_paths.push_back(root_ + "/locks/" + hex + ".lock");
  }
  MOAT_ASSIGN_OR_RETURN(std::vector<FileLock> locks, FileLock::acquire_all(lock_paths));
  std::vector<std::unique_ptr<Work>> work;
  for (const auto& [hex, idx] : by_hex) {
    if (published(hex)) {
      // Another pull published it while we waited: let the next waiter go at once.
      if (auto l = lock_of.find(hex); l != lock_of.end()) locks[l->second].release();
      if (stats) stats->reused++;
      if (opt.on_layer) opt.on_layer("reused " + layer_name(idx[0]));
      if (opt.observer) opt.observer->layer_in_store(d.layers[idx[0]].diff_id);
      continue;
    }
    // Leftovers of a killed unpack of this layer: we hold its lock, nobody else writes them.
    if (DIR* dir = fdopendir(fcntl(tmp_fd.get(), F_DUPFD_CLOEXEC, 0))) {
      rewinddir(dir);  // the dup shares tmp_fd's offset, left at the end by the previous layer's scan
      std::vector<std::string> stale;
      while (dirent* e = readdir(dir))
        if (std::string(e->d_name).rfind(hex + ".", 0) == 0) stale.push_back(e->d_name);
      closedir(dir);
      for (const auto& s : stale) MOAT_TRY(remove_tree(tmp_fd.get(), s));
    }
    auto w = std::make_unique<Work>();
    w->layer = idx[0];
    w->hex = hex;
    w->tmp_name = hex + "." + unique_suffix();
    if (mkdirat(tmp_fd.get(), w->tmp_name.c_str(), 0700) != 0 ||
        mkdirat(tmp_fd.get(), (w->tmp_name + "/diff").c_str(), 0700) != 0)
      return sys_error("create " + root_ + "/tmp/" + w->tmp_name);
    MOAT_ASSIGN_OR_RETURN(w->diff_fd, open_beneath(tmp_fd.get(), w->tmp_name + "/diff", O_RDONLY | O_DIRECTORY));
    if (opt.observer) w->on_file = opt.observer->layer_started(d.layers[w->layer].diff_id, w->diff_fd.get());
    work.push_back(std::move(w));
  }
  // The arena: a slot per layer brought in at once (no more: oneTBB keeps
  // workers in idle slots), and with an observer, its slots too (store.h).
  const int extra = opt.observer ? std::max(1, opt.observer->threads()) : 0;
  const int cores = static_cast<int>(tbb::this_task_arena::max_concurrency());
  const int layer_slots = std::max(1, std::min(opt.jobs > 0 ? opt.jobs : cores, static_cast<int>(work.size())));
  std::optional<tbb::global_control> gc;
  std::optional<tbb::task_arena> own_arena;
  tbb::task_arena* arena = nullptr;
  if (opt.jobs > 0 || opt.observer) {
    // Downloads wait on the network more than on a core: allow more threads than cores.
    gc.emplace(tbb::global_control::max_allowed_parallelism, static_cast<size_t>(std::max(opt.jobs, cores) + extra));
    arena = opt.observer ? &opt.observer->arena(layer_slots) : &own_arena.emplace(layer_slots);
  }
  auto discard_all = [&] {
    if (opt.observer) opt.observer->abandon();  // its queued reads of these directories first
    for (auto& w : work) (void)remove_tree(tmp_fd.get(), w->tmp_name);
  };

  std::mutex err_mu;
  std::optional<Error> first_error;
  auto unpack_one = [&](std::unique_ptr<Work>& w) {
    if (cancel.load()) return;
    UnpackOptions uo;
    uo.chown = geteuid() == 0;
    uo.limits = opt.limits;
    uo.image_bytes = &image_bytes;
    uo.progress = opt.progress;
    uo.cancel = &cancel;
    uo.on_file = w->on_file;
    auto fail = [&](Error e) {
      std::lock_guard<std::mutex> g(err_mu);
      if (!first_error || first_error->message.find("cancelled") != std::string::npos)
        first_error = std::move(e).context(d.reference + ": " + layer_name(w->layer));
      cancel = true;
    };
    auto rd = src.open_layer(w->layer);
    if (!rd) return fail(std::move(rd).error());
    auto r = unpack_layer(**rd, d.layers[w->layer], w->diff_fd.get(), uo);
    if (!r) return fail(std::move(r).error());
    w->result = std::move(r).value();
    if (opt.observer) opt.observer->layer_unpacked(d.layers[w->layer].diff_id);
    if (opt.on_layer) opt.on_layer("unpacked " + layer_name(w->layer) + ", " + human_bytes(w->result.tar_size));
  };
  // Largest blob first, each slot taking the next layer when it is done with
  // one: the biggest layer bounds the pull's wall time, so it must not wait
  // behind a small one (oneTBB's range splitting gives no order).
  std::vector<std::unique_ptr<Work>*> order;
  for (auto& w : work) order.push_back(&w);
  std::stable_sort(order.begin(), order.end(), [&](const auto* x, const auto* y) {
    return d.layers[(*x)->layer].size > d.layers[(*y)->layer].size;
  });
  std::atomic<size_t> next{0};
  auto slot = [&](int) {
    for (size_t k; (k = next.fetch_add(1)) < order.size();) unpack_one(*order[k]);
  };
  auto run_slots = [&] { tbb::parallel_for(0, layer_slots, slot, tbb::simple_partitioner()); };
  if (arena) {
    // Isolated: waiting for the other layers, this thread runs no observer
    // work, which could hold it long after the last layer is in.
    arena->execute([&] { tbb::this_task_arena::isolate(run_slots); });
  } else {
    run_slots();
  }
  if (first_error) {
    discard_all();
    return *first_error;
  }

  // Hardlinks to files of lower layers become copies, bottom-up, now that every lower is here.
  std::vector<std::vector<IndexEntry>> loaded(d.layers.size());
  std::vector<std::unordered_map<std::string, const IndexEntry*>> maps(d.layers.size());
  std::vector<int> roots(d.layers.size(), -1);
  std::vector<Fd> root_owners;
  std::map<std::string, Work*> work_by_hex;
  for (auto& w : work) work_by_hex[w->hex] = w.get();
  bool any_pending = false;
  for (auto& w : work) any_pending |= !w->result.pending_links.empty() || !w->result.implicit_dirs.empty();
  if (any_pending) {
    for (size_t i = 0; i < d.layers.size(); ++i) {
      std::string hex = digest_hex(d.layers[i].diff_id);
      auto it = work_by_hex.find(hex);
      if (it != work_by_hex.end()) {
        loaded[i] = it->second->result.index;
        roots[i] = it->second->diff_fd.get();
      } else {
        auto idx = layer_index(d.layers[i].diff_id);
        if (!idx) { discard_all(); return std::move(idx).error(); }
        loaded[i] = std::move(idx).value();
        int fd = ::open(diff_dir(d.layers[i].diff_id).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) { discard_all(); return sys_error("open " + diff_dir(d.layers[i].diff_id)); }
        root_owners.emplace_back(fd);
        roots[i] = fd;
      }
      for (const auto& e : loaded[i]) {
        if (e.type == EntryType::Opaque) maps[i]["\x01opaque" + e.path] = &e;
        else maps[i][e.path] = &e;
      }
    }
    for (size_t i = 0; i < d.layers.size(); ++i) {
      auto it = work_by_hex.find(digest_hex(d.layers[i].diff_id));
      if (it == work_by_hex.end() || it->second->layer != i) continue;
      std::vector<const std::unordered_map<std::string, const IndexEntry*>*> lowers;
      for (size_t k = 0; k < i; ++k) lowers.push_back(&maps[k]);
      for (const auto& link : it->second->result.pending_links) {
        size_t which = 0;
        const IndexEntry* src_e = find_in_lowers(link.link, lowers, &which);
        if (!src_e) {
          discard_all();
          return Error{d.reference + ": " + layer_name(i) + ": entry \"" + printable(link.path) +
                       "\": hardlink to \"" + printable(link.link) + "\", which neither this layer nor a lower one has"};
        }
        Status st = copy_from_lower(roots[i], link, roots[which], *src_e, geteuid() == 0);
        if (!st) {
          discard_all();
          return std::move(st).error().context(d.reference + ": " + layer_name(i) + ": entry \"" + printable(link.path) + "\"");
        }
        it->second->replaced.push_back(link.path);
        // The copy is a file of this layer now, with the lower file's metadata.
        for (auto& e : it->second->result.index) {
          if (e.path != link.path) continue;
          std::string keep_path = e.path;
          e = *src_e;
          e.path = keep_path;
          e.type = EntryType::File;
          e.link.clear();
        }
      }
      // Parents the tar did not list take the lower directory's attributes,
      // children before parents (a 0000 parent is closed last).
      const auto& implicit = it->second->result.implicit_dirs;
      for (auto p = implicit.rbegin(); p != implicit.rend(); ++p) {
        size_t which = 0;
        const IndexEntry* lower = find_in_lowers(*p, lowers, &which, true);
        Status st;
        if (lower) {
          st = apply_lower_dir(roots[i], *p, *lower, geteuid() == 0);
          it->second->dirs_changed = true;
        } else {
          // No lower has it: it is a new 0755 root directory, as docker makes it; say so in the index.
          IndexEntry made;
          made.path = *p;
          made.type = EntryType::Dir;
          made.mode = 0755;
          auto& idx = it->second->result.index;  // before its children, as a tar would list it
          idx.insert(idx.begin(), made);
        }
        if (!st) {
          discard_all();
          return std::move(st).error().context(d.reference + ": " + layer_name(i) + ": directory \"" + printable(*p) + "\"");
        }
      }
    }
  }

  // Publish: index and record first, then one atomic rename per layer.
  for (auto& w : work) {
    const LayerDesc& l = d.layers[w->layer];
    LayerRecord lr{w->layer, l.diff_id, w->result.blob_digest, l.media_type, l.created_by,
                   w->result.blob_size, w->result.tar_size, w->result.entries};
    int tdir = ::open((root_ + "/tmp/" + w->tmp_name).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (tdir < 0) { discard_all(); return sys_error("open " + w->tmp_name); }
    Fd tdir_owner(tdir);
    json info = layer_json(lr);
    info["compression"] = compression_name(w->result.compression);
    info["owners_applied"] = geteuid() == 0;
    info["moat_version"] = MOAT_VERSION;
    Status st = write_file_atomic(tdir, "index.tsv", serialize_index(w->result.index));
    if (st) st = write_file_atomic(tdir, "layer.json", info.dump(2) + "\n");
    if (!st) { discard_all(); return std::move(st).error(); }
    w->diff_fd.reset();
    if (rename((root_ + "/tmp/" + w->tmp_name).c_str(), (root_ + "/layers/" + w->hex).c_str()) != 0) {
      discard_all();
      return sys_error("publish layer " + w->hex);
    }
    if (opt.observer) opt.observer->layer_published(l.diff_id, w->result.index, w->replaced, w->dirs_changed);
    if (stats) stats->unpacked++;
  }
  locks.clear();

  for (size_t i = 0; i < d.layers.size(); ++i) {
    const LayerDesc& l = d.layers[i];
    LayerRecord lr{i, l.diff_id, l.blob_digest, l.media_type, l.created_by, 0, 0, 0};
    // Sizes: this pull's own numbers, or the record of the earlier pull that unpacked the layer.
    auto fresh = work_by_hex.find(digest_hex(l.diff_id));
    LayerRecord sizes;
    if (fresh != work_by_hex.end()) {
      const UnpackResult& u = fresh->second->result;
      sizes = LayerRecord{i, l.diff_id, u.blob_digest, l.media_type, l.created_by, u.blob_size, u.tar_size, u.entries};
    } else {
      sizes = read_layer_json(layer_dir(l.diff_id));
    }
    lr.tar_size = sizes.tar_size;
    lr.entries = sizes.entries;
    lr.blob_size = sizes.blob_size;
    if (lr.blob_digest.empty()) lr.blob_digest = sizes.blob_digest;
    rec.layers.push_back(lr);
  }
  rec.id = digest_hex(d.config_digest);
  MOAT_TRY(save_with_names(rec));
  return rec;
}

Status Store::save_with_names(ImageRecord& rec) {
  // Records are merged (names accumulate) under a lock of their own.
  MOAT_ASSIGN_OR_RETURN(FileLock lk, FileLock::acquire(root_ + "/images.lock", true));
  auto old = find_image(rec.id);
  if (old) {
    for (const auto& n : old->names)
      if (std::find(rec.names.begin(), rec.names.end(), n) == rec.names.end()) rec.names.push_back(n);
  }
  return save_image(rec);
}

namespace {
Result<ImageRecord> parse_record(const std::string& text, const std::string& file) {
  try {
    json j = json::parse(text);
    ImageRecord r;
    r.id = j.at("id").get<std::string>();
    r.names = j.at("names").get<std::vector<std::string>>();
    r.manifest_digest = j.value("manifest_digest", "");
    r.config_digest = j.value("config_digest", "");
    r.platform = j.value("platform", "");
    r.config = j.value("config", "");
    r.pulled = j.value("pulled", int64_t{0});
    for (const auto& l : j.at("layers")) {
      LayerRecord lr;
      lr.index = l.value("index", size_t{0});
      lr.diff_id = l.value("diff_id", "");
      lr.blob_digest = l.value("blob_digest", "");
      lr.media_type = l.value("media_type", "");
      lr.created_by = l.value("created_by", "");
      lr.blob_size = l.value("blob_size", uint64_t{0});
      lr.tar_size = l.value("tar_size", uint64_t{0});
      lr.entries = l.value("entries", uint64_t{0});
      if (!is_valid_digest(lr.diff_id)) return Error{file + ": bad diff_id"};
      r.layers.push_back(lr);
    }
    return r;
  } catch (const std::exception& e) {
    return Error{file + ": damaged image record: " + e.what()};
  }
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") out.push_back(n);
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t disk_usage(int dirfd, int depth = 0) {
  uint64_t total = 0;
  int dup = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  DIR* d = fdopendir(dup);
  if (!d) {
    close(dup);
    return 0;
  }
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    struct stat st;
    if (fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    total += static_cast<uint64_t>(st.st_blocks) * 512;
    if (S_ISDIR(st.st_mode) && depth < 512) {
      int sub = openat(dirfd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) {
        total += disk_usage(sub, depth + 1);
        close(sub);
      }
    }
  }
  closedir(d);
  return total;
}
}  // namespace

Result<std::vector<ImageRecord>> Store::images() const {
  std::vector<ImageRecord> out;
  for (const auto& n : list_dir(root_ + "/images")) {
    if (n.size() != 64 + 5 || n.substr(64) != ".json") continue;
    int fd = ::open((root_ + "/images/" + n).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    Fd o(fd);
    MOAT_ASSIGN_OR_RETURN(std::string text, read_all(fd, 64 << 20));
    MOAT_ASSIGN_OR_RETURN(ImageRecord r, parse_record(text, root_ + "/images/" + n));
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<LayerInfo>> Store::layers() const {
  MOAT_ASSIGN_OR_RETURN(auto imgs, images());
  std::map<std::string, int> users;
  for (const auto& i : imgs) {
    std::set<std::string> seen;
    for (const auto& l : i.layers)
      if (seen.insert(l.diff_id).second) users[l.diff_id]++;
  }
  std::vector<LayerInfo> out;
  for (const auto& n : list_dir(root_ + "/layers")) {
    LayerInfo li;
    li.diff_id = "sha256:" + n;
    if (!is_valid_digest(li.diff_id)) continue;
    LayerRecord sizes = read_layer_json(root_ + "/layers/" + n);
    li.tar_size = sizes.tar_size;
    li.entries = sizes.entries;
    int dfd = ::open((root_ + "/layers/" + n).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      li.disk_usage = disk_usage(dfd);
      close(dfd);
    }
    li.used_by = users[li.diff_id];
    out.push_back(li);
  }
  return out;
}

namespace {
// As podman matches a short name against the images of its store: NAME is
// NAME:latest without a tag, and it names a stored containers-storage: image
// whose name is NAME or ends in "/NAME" (localhost/NAME, quay.io/team/NAME).
bool short_name_matches(const std::string& stored, const std::string& given) {
  const std::string pfx = "containers-storage:";
  if (stored.rfind(pfx, 0) != 0 || given.empty()) return false;
  std::string img = stored.substr(pfx.size());
  if (!img.empty() && img[0] == '[') {  // [DRIVER@GRAPHROOT+RUNROOT]NAME
    size_t e = img.find(']');
    if (e == std::string::npos) return false;
    img = img.substr(e + 1);
  }
  std::string want = given;
  size_t slash = want.rfind('/');
  if (want.find('@') == std::string::npos && want.find(':', slash == std::string::npos ? 0 : slash) == std::string::npos)
    want += ":latest";
  if (img == want) return true;
  return img.size() > want.size() && img.compare(img.size() - want.size(), want.size(), want) == 0 &&
         img[img.size() - want.size() - 1] == '/';
}

// Whether `stored` (one of an image's names) is what the user wrote.
bool name_matches(const std::string& stored, const std::string& given) {
  if (stored == given) return true;
  auto ref = parse_reference(given);
  if (!ref) return false;
  return stored == ref->text || (ref->bare && short_name_matches(stored, given));
}
}  // namespace

Result<ImageRecord> Store::find_image(const std::string& name_or_id) const {
  MOAT_ASSIGN_OR_RETURN(auto imgs, images());
  std::vector<const ImageRecord*> hits;
  for (const auto& i : imgs) {
    bool named = false;
    for (const auto& n : i.names) named |= name_matches(n, name_or_id);
    std::string id = name_or_id.rfind("sha256:", 0) == 0 ? name_or_id.substr(7) : name_or_id;
    bool by_id = id.size() >= 3 && i.id.rfind(id, 0) == 0;
    if (named || by_id) hits.push_back(&i);
  }
  if (hits.empty())
    return Error{"no image \"" + name_or_id + "\" in the store"}.with_hint("`moat image ls` lists the images it holds");
  if (hits.size() > 1) return Error{"\"" + name_or_id + "\" names more than one image; give more of the id"};
  return *hits[0];
}

Result<bool> Store::untag(const ImageRecord& img, const std::string& name) {
  ImageRecord rec = img;
  auto it = std::find_if(rec.names.begin(), rec.names.end(), [&](const std::string& n) { return name_matches(n, name); });
  if (it == rec.names.end() || rec.names.size() < 2) return false;
  rec.names.erase(it);
  MOAT_ASSIGN_OR_RETURN(FileLock lk, FileLock::acquire(root_ + "/images.lock", true));
  MOAT_TRY(save_image(rec));
  return true;
}

Result<std::vector<std::string>> Store::remove_image(const ImageRecord& img) {
  if (unlink((root_ + "/images/" + img.id + ".json").c_str()) != 0 && errno != ENOENT)
    return sys_error("remove image record " + img.id);
  return prune();
}

Result<std::vector<std::string>> Store::prune() {
  MOAT_ASSIGN_OR_RETURN(auto imgs, images());
  std::set<std::string> used;
  for (const auto& i : imgs)
    for (const auto& l : i.layers) used.insert(digest_hex(l.diff_id));
  std::vector<std::string> removed;
  int lfd = ::open((root_ + "/layers").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (lfd < 0) return sys_error("open " + root_ + "/layers");
  Fd lo(lfd);
  for (const auto& n : list_dir(root_ + "/layers")) {
    if (used.count(n)) continue;
    MOAT_TRY(remove_tree(lfd, n));
    unlink((root_ + "/locks/" + n + ".lock").c_str());
    removed.push_back("sha256:" + n);
  }
  // Leftovers of interrupted unpacks: the exclusive store lock means none is running.
  int tfd = ::open((root_ + "/tmp").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (tfd >= 0) {
    Fd to(tfd);
    for (const auto& n : list_dir(root_ + "/tmp")) MOAT_TRY(remove_tree(tfd, n));
  }
  // docker:// documents (storage/sources/registry/source.h) no remaining image names.
  std::set<std::string> docs;
  for (const auto& i : imgs)
    for (const auto* dg : {&i.manifest_digest, &i.config_digest})
      if (is_valid_digest(*dg)) docs.insert(digest_hex(*dg));
  for (const auto& n : list_dir(root_ + "/registry"))
    if (!docs.count(n)) unlink((root_ + "/registry/" + n).c_str());
  return removed;
}

}  // namespace moat
