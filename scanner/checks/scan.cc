#include "scanner/checks/scan.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <memory>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <mutex>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include "scanner/checks/accounts.h"
#include "scanner/image/identity.h"
#include "scanner/image/packages.h"
#include "scanner/image/packages_md5.h"
#include "scanner/checks/secret_scan.h"
#include "scanner/session/walk.h"
#include "scanner/checks/secret_context.h"
#include "storage/fd.h"
#include "storage/fsutil.h"
#include "storage/tree.h"

namespace moat {

namespace {

constexpr int kMaxSymlinkHops = 40;

// The view entry at `path` after following the image's symlinks inside the
// image. `resolved` gets the final path.
const ViewEntry* resolve_in_view(const MergedView& view, const std::string& path, std::string* resolved) {
  std::vector<std::string> todo = split_path(path);
  std::reverse(todo.begin(), todo.end());  // a stack: next component at the back
  std::string cur = "/";
  int hops = 0;
  const ViewEntry* ve = view.find("/");
  while (!todo.empty()) {
    std::string comp = std::move(todo.back());
    todo.pop_back();
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") {
      size_t slash = cur.rfind('/');
      cur = slash == 0 ? "/" : cur.substr(0, slash);
      ve = view.find(cur);
      continue;
    }
    std::string next = cur == "/" ? "/" + comp : cur + "/" + comp;
    ve = view.find(next);
    if (!ve) return nullptr;
    if (ve->entry.type == EntryType::Symlink) {
      if (++hops > kMaxSymlinkHops) return nullptr;
      std::vector<std::string> target = split_path(ve->entry.link);
      for (auto it = target.rbegin(); it != target.rend(); ++it) todo.push_back(*it);
      if (!ve->entry.link.empty() && ve->entry.link[0] == '/') cur = "/";
      ve = view.find(cur);
      continue;
    }
    cur = std::move(next);
  }
  if (resolved) *resolved = cur;
  return ve;
}

LayerRef layer_ref(const ImageRecord& img, size_t i) {
  const LayerRecord& l = img.layers[i];
  return LayerRef{l.index, l.diff_id, l.created_by};
}

// One file's content for the checks: opened on first use, read with pread so
// read_head and hash share one descriptor and never disturb each other.
class LazyContent {
 public:
  explicit LazyContent(std::function<Result<Fd>()> opener) : opener_(std::move(opener)) {}

  Result<std::string> head(size_t max) {
    MOAT_ASSIGN_OR_RETURN(int fd, get());
    std::string out(max, '\0');
    size_t got = 0;
    while (got < max) {
      ssize_t n = pread(fd, out.data() + got, max - got, static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return sys_error("read");
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    out.resize(got);
    return out;
  }

  Result<std::string> hash(DigestAlgo algo) {
    MOAT_ASSIGN_OR_RETURN(int fd, get());
    FileHasher h(algo);
    std::unique_ptr<char[]> buf(new char[kChunk]);
    off_t off = 0;
    for (;;) {
      ssize_t n = pread(fd, buf.get(), kChunk, off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return sys_error("read");
      if (n == 0) break;
      h.update(buf.get(), static_cast<size_t>(n));
      off += n;
    }
    return h.finish_hex();
  }

 private:
  static constexpr size_t kChunk = 256 * 1024;
  Result<int> get() {
    if (!fd_) {
      auto r = opener_();
      if (!r) return std::move(r).error();
      // Only a regular file is ever read: the index said so, the disk must agree.
      struct stat st;
      if (fstat(r->get(), &st) != 0) return sys_error("stat");
      if (!S_ISREG(st.st_mode)) return Error{"is not a regular file on disk, although the layer index says it is"};
      fd_ = std::move(r).value();
    }
    return fd_->get();
  }
  std::function<Result<Fd>()> opener_;
  std::optional<Fd> fd_;
};

bool is_regular_meta(const IndexEntry& e) { return e.type == EntryType::File || e.type == EntryType::Hardlink; }

// Digests of hardlinked files, by (layer, target path, algorithm): the
// integrity check hashes a file once per name (as md5sum -c does), and a
// driver hardlinked under 13 names is 13 times the bytes (Mesa's, 26 MB each,
// were a third of all the bytes hashed in benchmarks/first-run.sh's image).
class DigestMemo {
 public:
  // `targets`: paths some hardlink of the view points to.
  explicit DigestMemo(const MergedView& view) {
    for (const auto& [p, ve] : view.entries())
      if (!ve.hardlink_to.empty()) targets_.insert(ve.hardlink_to);
  }
  // The memo key of a view entry's content, or "" when it has no other name.
  std::string key(const ViewEntry& ve, const std::string& path) const {
    const std::string& file = ve.hardlink_to.empty() ? path : ve.hardlink_to;
    if (ve.hardlink_to.empty() && !targets_.count(path)) return {};
    return std::to_string(ve.layer) + "\n" + file;
  }
  // The MD5 of every visible file the package database records one for,
  // sixteen files at a time (packages_md5.h), before the walk: the
  // integrity check then finds each digest here instead of hashing one file
  // at a time. Content comes from the layers' diff dirs beneath the store,
  // as in userspace mode (MergedView::open); a file that cannot be read
  // here is hashed by the check itself, which reports the error.
  void prefill_md5(const MergedView& view, const PackageDb& packages) {
    if (!md5_files_multi_buffer() || packages.digests() == 0) return;
    struct Job {
      std::string key;
      const std::string* path;
      size_t layer;
      uint64_t size;
    };
    std::vector<Job> jobs;
    std::unordered_set<std::string> keys;
    for (const auto& [p, ve] : view.entries()) {
      if (ve.entry.type != EntryType::File || ve.entry.size == 0) continue;
      const ExpectedDigest* d = packages.digest_of(p);
      if (!d || d->algo != DigestAlgo::Md5) continue;
      std::string k = key_or_path(ve, p);
      if (keys.insert(k).second) jobs.push_back({std::move(k), &p, ve.layer, ve.entry.size});
    }
    if (jobs.empty()) return;
    // Files of 64 KiB and more first, largest first, so none starts last and
    // runs alone in its lanes; then the small ones by layer and directory, so
    // that each directory is opened once and each file by its name in it (a
    // full path resolved beneath the layer root for each of 18,000 files was
    // a third of these opens' cost). The lanes refill one by one, so mixed
    // sizes do not hold each other up, but a chunk's last file runs alone: at
    // 1 MiB, such tails cost more CPU than the opens saved.
    constexpr uint64_t kLarge = 64u << 10;
    auto dir_of = [](const Job& j) { return std::string_view(*j.path).substr(0, j.path->rfind('/')); };
    std::sort(jobs.begin(), jobs.end(), [&](const Job& a, const Job& b) {
      const bool al = a.size >= kLarge, bl = b.size >= kLarge;
      if (al != bl) return al;
      if (al) return a.size > b.size;
      if (a.layer != b.layer) return a.layer < b.layer;
      if (int c = dir_of(a).compare(dir_of(b)); c != 0) return c < 0;
      return a.size > b.size;
    });
    std::vector<Fd> roots;
    for (size_t l = 0; l < view.layers(); ++l) roots.emplace_back(::open(view.diff_dir(l).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    std::vector<std::optional<std::string>> got(jobs.size());
    const size_t grain = std::max<size_t>(64, jobs.size() / 32);
    tbb::parallel_for(tbb::blocked_range<size_t>(0, jobs.size(), grain), [&](const tbb::blocked_range<size_t>& r) {
      // The directory of the last small file opened (O_PATH, beneath the layer root).
      size_t dir_layer = SIZE_MAX;
      std::string_view dir_path;
      std::optional<Fd> dir_fd;
      auto h = md5_files(r.size(), [&](size_t i) -> Result<Md5Input> {
        const Job& j = jobs[r.begin() + i];
        const Fd& root = roots[j.layer];
        if (!root.valid()) return Error{"layer not open"};
        Result<Fd> opened = Error{"not opened"};
        const std::string_view dir = dir_of(j);
        if (j.size >= kLarge || dir.empty()) {
          opened = open_beneath(root.get(), j.path->substr(1), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        } else {
          if (dir_layer != j.layer || dir_path != dir) {
            dir_fd.reset();
            dir_layer = j.layer;
            dir_path = dir;
            if (auto d = open_beneath(root.get(), std::string(dir.substr(1)), O_PATH | O_DIRECTORY)) dir_fd = std::move(d).value();
          }
          if (!dir_fd) return Error{"directory not open"};
          opened = open_beneath(dir_fd->get(), j.path->substr(dir.size() + 1), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        }
        MOAT_ASSIGN_OR_RETURN(Fd fd, std::move(opened));
        struct stat st;
        if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return Error{"not a regular file"};
        return Md5Input{std::move(fd), static_cast<uint64_t>(st.st_size)};
      });
      for (size_t i = 0; i < h.size(); ++i) got[r.begin() + i] = std::move(h[i]);
    });
    for (size_t i = 0; i < jobs.size(); ++i)
      if (got[i]) md5_.emplace(std::move(jobs[i].key), std::move(*got[i]));
  }
  // The memo key of a file for the prefilled MD5s: key() or, for a file
  // with one name, its path.
  std::string key_or_path(const ViewEntry& ve, const std::string& path) const {
    std::string k = key(ve, path);
    return k.empty() ? "\n" + path : k;
  }
  // The key make_view() gets: with prefilled MD5s every file goes through the memo.
  std::string view_key(const ViewEntry& ve, const std::string& path) const {
    return md5_.empty() ? key(ve, path) : key_or_path(ve, path);
  }

  Result<std::string> hash(const std::string& key, DigestAlgo a, LazyContent& content) {
    if (a == DigestAlgo::Md5)
      if (auto it = md5_.find(key); it != md5_.end()) return it->second;
    std::string k = key + "\n" + std::string(digest_algo_name(a));
    {
      std::lock_guard<std::mutex> g(mu_);
      if (auto it = done_.find(k); it != done_.end()) return it->second;
    }
    auto r = content.hash(a);
    if (r) {
      std::lock_guard<std::mutex> g(mu_);
      done_.emplace(k, *r);
    }
    return r;
  }

 private:
  std::unordered_set<std::string> targets_;
  std::mutex mu_;
  std::unordered_map<std::string, std::string> done_;
  std::unordered_map<std::string, std::string> md5_;  // prefill_md5(): memo key -> hex
};

EntryView make_view(const IndexEntry& meta, std::optional<LayerRef> layer, bool deleted, LazyContent* content,
                    DigestMemo* memo = nullptr, std::string memo_key = {}) {
  EntryView v{meta, std::move(layer), deleted, {}, {}};
  if (content && is_regular_meta(meta)) {
    v.read_head = [content](size_t max) { return content->head(max); };
    if (memo && !memo_key.empty())
      v.hash = [content, memo, k = std::move(memo_key)](DigestAlgo a) { return memo->hash(k, a, *content); };
    else
      v.hash = [content](DigestAlgo a) { return content->hash(a); };
  }
  return v;
}

// A view entry's metadata under the path it is seen at (a hardlink carries
// its target's type, mode and owner, but it is reported at its own path).
IndexEntry meta_at(const ViewEntry& ve, const std::string& path) {
  IndexEntry m = ve.entry;
  m.path = path;
  if (!ve.hardlink_to.empty()) m.type = EntryType::File;
  return m;
}

struct Sinks {
  tbb::enumerable_thread_specific<VectorSink> local;
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::optional<Error> first_error;

  void check(const CheckContext& ctx, const EntryView& v) {
    if (failed.load(std::memory_order_relaxed)) return;
    Status s = check_entry(ctx, v, local.local());
    if (!s.ok()) {
      std::lock_guard<std::mutex> g(mu);
      if (!first_error) first_error = s.error();
      failed = true;
    }
  }
};

}  // namespace

Result<std::optional<std::string>> read_image_file(const MergedView& view, const std::string& path, size_t max_bytes) {
  std::string at;
  const ViewEntry* ve = resolve_in_view(view, path, &at);
  // (A hardlink's view entry carries its target's type, File.)
  if (!ve || ve->entry.type != EntryType::File) return std::optional<std::string>();
  if (ve->entry.size > max_bytes)
    return Error{printable(path) + " is " + human_bytes(ve->entry.size) + ", more than the " + human_bytes(max_bytes) +
                 " moat reads of a database file"};
  auto fd = view.open(at, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  if (!fd) return std::move(fd).error().context("open " + printable(path));
  auto text = read_all(fd->get(), max_bytes);
  if (!text) return std::move(text).error().context("read " + printable(path));
  return std::optional<std::string>(std::move(text).value());
}

Result<CheckRunResult> run_checks(const Store& store, const ImageRecord& img, const ScanMount& mount,
                                  const MergedView& view, const policy::Policy& policy, const CheckRunOptions& opt) {
  CheckRunResult out;
  if (opt.checks.empty() && !opt.secrets) return out;
  ReadImageFile read = [&](const std::string& p) { return read_image_file(view, p); };

  // The image's databases: an unreadable one fails the scan rather than
  // silently turning every owner "unknown" or every setuid file "unpackaged".
  std::string texts[3];
  const char* files[3] = {"/etc/passwd", "/etc/group", "/etc/shadow"};
  AccountSources sources;
  std::optional<LayerRef>* src[3] = {&sources.passwd, &sources.group, &sources.shadow};
  for (int i = 0; i < 3; ++i) {
    auto t = read(files[i]);
    // Fedora and RHEL ship /etc/shadow with mode 0000: without a subuid range
    // the store's copy is the caller's with mode 0000, which the caller cannot
    // read. Only the shadow checks lose their input; say so and go on.
    if (!t && i == 2 && t.error().sys_errno == EACCES) {
      out.errors.push_back("/etc/shadow: " + t.error().describe() +
                           " (mode 0000; with a subuid range moat reads it): its account checks were skipped");
      continue;
    }
    if (!t) return std::move(t).error().context("the image's " + std::string(files[i]));
    if (*t) texts[i] = std::move(**t);
    std::string at;
    if (const ViewEntry* ve = resolve_in_view(view, files[i], &at); ve && *t) *src[i] = layer_ref(img, ve->layer);
  }
  Identity identity = parse_identity(texts[0], texts[1], texts[2]);
  for (auto& e : identity.errors) out.errors.push_back(std::move(e));

  auto pkgs = load_package_db(read);
  if (!pkgs) return std::move(pkgs).error().context("the image's package database");
  PackageDb packages = std::move(pkgs).value();
  // Merged /usr: /bin is a symlink into usr/bin (Debian 12, Fedora, Arch ...).
  if (const ViewEntry* bin = view.find("/bin"); bin && bin->entry.type == EntryType::Symlink)
    packages.set_merged_usr(bin->entry.link == "usr/bin" || bin->entry.link == "/usr/bin");
  for (auto& e : packages.errors) out.errors.push_back(std::move(e));
  out.packages = packages.managers();

  std::vector<std::string> ids;
  for (const char* p : {"/etc/os-release", "/usr/lib/os-release"}) {
    auto t = read(p);
    if (!t) return std::move(t).error().context("the image's " + std::string(p));
    if (*t) {
      ids = os_release_ids(**t);
      break;
    }
  }
  const policy::Distribution* distro = policy.distribution_for(ids);
  if (distro) out.distribution = distro->name;
  if (opt.verbose)
    std::fprintf(stderr, "moat: image has %zu users, %zu groups, %zu packages (%s), distribution %s\n",
                 identity.users.size(), identity.groups.size(), packages.packages.size(),
                 out.packages.empty() ? "no package database" : out.packages.c_str(),
                 distro ? distro->name.c_str() : "not in the policy");

  auto phase = [&](const std::string& what) {
    if (opt.phase) opt.phase(what);
  };
  if (!opt.checks.empty()) phase("checking " + std::to_string(view.entries().size()) + " entries");
  CheckContext ctx{policy, identity, packages, distro, CheckSelection::of(opt.checks)};
  Sinks sinks;
  // What only the registry checks use is not built for a secrets-only scan
  // (--checks secret): the digest memo goes over every entry of the view.
  auto memo = opt.checks.empty() ? nullptr : std::make_shared<DigestMemo>(view);
  if (memo && ctx.selection.has("integrity-mismatch")) memo->prefill_md5(view, packages);

  // The merged tree. `order` is the view in path order, for marking what the walk saw.
  std::vector<std::pair<const std::string*, const ViewEntry*>> order;
  std::unique_ptr<std::atomic<bool>[]> seen;
  if (memo) {
    order.reserve(view.entries().size());
    for (const auto& [p, ve] : view.entries()) order.emplace_back(&p, &ve);
    seen.reset(new std::atomic<bool>[order.size()]);
    for (size_t i = 0; i < order.size(); ++i) seen[i] = false;
  }
  auto index_of = [&](const std::string& p) -> size_t {
    auto it = std::lower_bound(order.begin(), order.end(), p,
                               [](const auto& a, const std::string& b) { return *a.first < b; });
    return it != order.end() && *it->first == p ? static_cast<size_t>(it - order.begin()) : SIZE_MAX;
  };
  std::mutex err_mu;
  auto add_error = [&](std::string e) {
    std::lock_guard<std::mutex> g(err_mu);
    out.errors.push_back(std::move(e));
  };

  if (!opt.checks.empty() && mount.session) {
    // The kernel's merged tree, walked from the host side.
    auto walk_errors = parallel_walk(mount.session->root_fd(), [&](const WalkEntry& we) {
      size_t i = index_of(we.path);
      if (i == SIZE_MAX) {
        add_error(printable(we.path, 4096) + ": the overlay shows an entry the layer indexes do not have");
        return;
      }
      const ViewEntry& ve = *order[i].second;
      IndexEntry meta = meta_at(ve, we.path);
      // The store records device nodes and keeps an empty regular file in
      // their place (it cannot and should not create them): that is expected,
      // and such an entry is checked from the index without reading it.
      const bool device = meta.type == EntryType::Char || meta.type == EntryType::Block;
      const bool regular = S_ISREG(we.st.st_mode) && !device;
      if (S_ISREG(we.st.st_mode) != (is_regular_meta(meta) || device)) {
        // Not marked seen: the view-based pass below still checks it.
        add_error(printable(we.path, 4096) + ": the overlay and the layer index disagree on the file type");
        return;
      }
      seen[i] = true;
      const int parent = we.parent_fd;
      const char* name = we.name;
      LazyContent content([parent, name]() -> Result<Fd> {
        int fd = openat(parent, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) return sys_error("open");
        return Fd(fd);
      });
      sinks.check(ctx, make_view(meta, layer_ref(img, ve.layer), false, regular ? &content : nullptr, memo.get(),
                                 memo->view_key(ve, we.path)));
    }, 4096, WalkStat::TypeOnly);  // owner and mode come from the indexes (walk.h)
    // A directory the caller cannot list (mode 0000 without a subuid range) is
    // not a gap: its entries are checked from the view below, and a check that
    // then cannot read a file's content reports that file.
    if (opt.verbose)
      for (const auto& e : walk_errors) {
        std::string line = printable(e.path, 4096) + ": " + e.error.describe();
        if (opt.redactor) line = redact_text(line, *opt.redactor);
        std::fprintf(stderr, "moat: overlay walk: %s (checked from the layer index)\n", line.c_str());
      }
  }
  // Userspace mode, and in overlay mode what the walk could not reach: from the view.
  std::atomic<size_t> unreached{0};
  if (!opt.checks.empty()) tbb::parallel_for(tbb::blocked_range<size_t>(0, order.size(), 256), [&](const tbb::blocked_range<size_t>& r) {
    for (size_t i = r.begin(); i != r.end(); ++i) {
      if (seen[i]) continue;
      if (mount.session) ++unreached;
      const std::string& path = *order[i].first;
      const ViewEntry& ve = *order[i].second;
      IndexEntry meta = meta_at(ve, path);
      LazyContent content([&view, &path]() { return view.open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY); });
      sinks.check(ctx, make_view(meta, layer_ref(img, ve.layer), false, &content, memo.get(), memo->view_key(ve, path)));
    }
  });
  if (opt.verbose && mount.session && unreached)
    std::fprintf(stderr, "moat: %zu entries the overlay walk could not reach were checked from the layer index\n",
                 unreached.load());

  // What a later layer removed or replaced: it ships in the image all the same.
  std::atomic<size_t> deleted_count{0};
  // (An in-place tree is one layer: nothing in it was removed.)
  for (size_t li = 0; li < img.layers.size() && !opt.checks.empty() && !opt.in_place_index; ++li) {
    const std::string diff = view.diff_dir(li);
    Fd root(::open(diff.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root.valid()) return sys_error("open layer " + std::to_string(li));
    const std::vector<IndexEntry>& entries = view.layer_index(li);  // as the view was built from it
    tbb::parallel_for(tbb::blocked_range<size_t>(0, entries.size(), 256), [&](const tbb::blocked_range<size_t>& r) {
      for (size_t k = r.begin(); k != r.end(); ++k) {
        const IndexEntry& e = entries[k];
        if (e.type != EntryType::File && e.type != EntryType::Hardlink && e.type != EntryType::Dir) continue;
        const ViewEntry* ve = view.find(e.path);
        bool gone = !ve || (e.type == EntryType::Dir ? ve->entry.type != EntryType::Dir : ve->layer != li);
        if (!gone) continue;
        ++deleted_count;
        IndexEntry meta = e;
        if (meta.type == EntryType::Hardlink) meta.type = EntryType::File;
        int rootfd = root.get();
        LazyContent content([rootfd, &e]() {
          return open_beneath(rootfd, e.path.substr(1), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW);
        });
        sinks.check(ctx, make_view(meta, layer_ref(img, li), true, &content));
      }
    });
    if (sinks.failed) break;
  }
  if (sinks.first_error) return *sinks.first_error;
  out.entries = view.entries().size() + deleted_count.load();

  VectorSink all;
  for (auto& s : sinks.local) all.merge(std::move(s));
  out.findings = std::move(all.findings);
  for (auto& e : all.errors) out.errors.push_back(std::move(e));

  if (opt.secrets) {
    if (opt.before_secrets) opt.before_secrets();
    phase("scanning " + std::to_string(img.layers.size()) + " layers for secrets");
    SecretScanContext sctx{store, img, view, identity, packages, *opt.secrets, opt.verbose, opt.in_place_index};
    MOAT_ASSIGN_OR_RETURN(auto secrets, secret_findings(sctx, out.errors));
    for (auto& f : secrets) out.findings.push_back(std::move(f));
  }
  for (auto& f : account_findings(identity, sources, policy))
    if (ctx.selection.has(f.rule_id)) out.findings.push_back(std::move(f));
  auto cfg = config_findings(img, ctx);
  if (!cfg) return std::move(cfg).error().context("the image config");
  for (auto& f : *cfg) out.findings.push_back(std::move(f));
  merge_key_file_findings(out.findings);  // a baked-in SSH key: one finding (scanner/checks/secret_context.h)
  sort_findings(out.findings);
  std::sort(out.errors.begin(), out.errors.end());
  struct Retained {
    PackageDb packages;
    std::shared_ptr<DigestMemo> memo;
    std::vector<std::pair<const std::string*, const ViewEntry*>> order;
    std::unique_ptr<std::atomic<bool>[]> seen;
  };
  out.retained = std::make_shared<Retained>(Retained{std::move(packages), std::move(memo), std::move(order), std::move(seen)});
  return out;
}

}  // namespace moat
