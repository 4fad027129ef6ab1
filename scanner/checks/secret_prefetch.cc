#include "scanner/checks/secret_prefetch.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tbb/info.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "scanner/checks/secret_scan.h"
#include "storage/fd.h"
#include "storage/fsutil.h"

namespace moat {

namespace {
// A batch is handed to the arena at this many files or bytes: large enough
// that the per-batch cost (one scan_tree_secrets) stays small beside the
// bytes, small enough that the last one of a layer is quick.
constexpr size_t kBatchFiles = 256;
constexpr uint64_t kBatchBytes = 8u << 20;
}  // namespace

struct SecretPrefetch::Batch {
  std::vector<IndexEntry> files;
  std::vector<uint64_t> seq;  // each file's write number (Layer::latest)
  uint64_t bytes = 0;
  std::optional<Result<LayerSecrets>> result;
};

struct SecretPrefetch::Layer {
  std::string diff_id;
  Fd diff;  // the layer's diff/ (in tmp/, then in layers/: the same directory)
  // Written by the unpacking thread only, read once the layer is published.
  uint64_t writes = 0;
  std::unordered_map<std::string, uint64_t> latest;  // path -> number of its last write
  std::unique_ptr<Batch> open;                       // being filled
  // Under mu.
  std::mutex mu;
  std::vector<std::unique_ptr<Batch>> batches;  // handed to the arena
  int outstanding = 0;
  bool published = false, finalized = false;
  std::vector<IndexEntry> index;
  std::vector<std::string> replaced;
  bool dirs_changed = false;
};

SecretPrefetch::SecretPrefetch(const Store& store, const secrets::SecretScanner& scanner,
                               std::function<void(const std::string&)> log)
    : store_(store),
      scanner_(scanner),
      log_(std::move(log)),
      // Beside the unpacking threads, one fewer than the cores: most of the
      // pull's own work is on a core too (inflating, hashing, writing).
      threads_(std::max(1, tbb::info::default_concurrency() - 1)) {}

SecretPrefetch::~SecretPrefetch() noexcept { abandon(); }

void SecretPrefetch::enqueue(std::function<void()> f) {
  std::lock_guard<std::mutex> g(arena_mu_);
  if (arena_) arena_->enqueue(group_.defer(std::move(f)));
  else queued_.push_back(std::move(f));
}

tbb::task_arena& SecretPrefetch::arena(int layer_slots) {
  std::lock_guard<std::mutex> g(arena_mu_);
  if (!arena_) arena_.emplace(layer_slots + threads_);
  for (auto& f : queued_) arena_->enqueue(group_.defer(std::move(f)));
  queued_.clear();
  return *arena_;
}

void SecretPrefetch::wait() {
  tbb::task_arena* a;
  {
    std::lock_guard<std::mutex> g(arena_mu_);
    a = arena_ ? &*arena_ : nullptr;
  }
  if (a) a->execute([this] { group_.wait(); });
  else group_.wait();
}



std::shared_ptr<SecretPrefetch::Layer> SecretPrefetch::find(const std::string& diff_id) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = layers_.find(diff_id);
  return it == layers_.end() ? nullptr : it->second;
}

std::function<void(const IndexEntry&)> SecretPrefetch::layer_started(const std::string& diff_id, int diff_fd) {
  auto l = std::make_shared<Layer>();
  l->diff_id = diff_id;
  l->diff.reset(fcntl(diff_fd, F_DUPFD_CLOEXEC, 0));
  if (!l->diff.valid()) return {};  // no early scan of this layer: the scan after the pull does it
  {
    std::lock_guard<std::mutex> g(mu_);
    layers_[diff_id] = l;
  }
  return [this, l](const IndexEntry& e) {
    uint64_t n = ++l->writes;
    l->latest[e.path] = n;
    if (e.size == 0 || cancel_.load(std::memory_order_relaxed)) return;  // nothing to scan in it
    if (!l->open) l->open = std::make_unique<Batch>();
    l->open->files.push_back(e);
    l->open->seq.push_back(n);
    l->open->bytes += e.size;
    if (l->open->files.size() >= kBatchFiles || l->open->bytes >= kBatchBytes) submit(l);
  };
}

void SecretPrefetch::submit(const std::shared_ptr<Layer>& l) {
  Batch* b = l->open.get();
  {
    std::lock_guard<std::mutex> g(l->mu);
    l->batches.push_back(std::move(l->open));
    ++l->outstanding;
  }
  enqueue([this, l, b] { run_batch(l, b); });
}

void SecretPrefetch::run_batch(const std::shared_ptr<Layer>& l, Batch* b) {
  if (!cancel_.load()) b->result = scan_tree_secrets(l->diff.get(), b->files, scanner_);
  bool last;
  {
    std::lock_guard<std::mutex> g(l->mu);
    --l->outstanding;
    last = l->published && l->outstanding == 0 && !l->finalized;
    if (last) l->finalized = true;
  }
  if (last) finalize(*l);
}

void SecretPrefetch::layer_unpacked(const std::string& diff_id) {
  auto l = find(diff_id);
  if (l && l->open && !cancel_.load()) submit(l);
}

void SecretPrefetch::layer_published(const std::string& diff_id, const std::vector<IndexEntry>& index,
                                     const std::vector<std::string>& replaced, bool dirs_changed) {
  auto l = find(diff_id);
  if (!l || cancel_.load()) return;
  if (l->open) submit(l);
  bool now;
  {
    std::lock_guard<std::mutex> g(l->mu);
    l->index = index;
    l->replaced = replaced;
    l->dirs_changed = dirs_changed;
    l->published = true;
    now = l->outstanding == 0 && !l->finalized;
    if (now) l->finalized = true;
  }
  if (now) enqueue([this, l] { finalize(*l); });
}

void SecretPrefetch::layer_in_store(const std::string& diff_id) {
  if (cancel_.load()) return;
  // Its cache, or a scan that leaves one.
  enqueue([this, diff_id] {
    if (!cancel_.load()) (void)scan_layer_secrets(store_, diff_id, scanner_);
  });
}

void SecretPrefetch::finalize(Layer& l) {
  if (cancel_.load()) return;
  // What one scan of the published layer scans.
  std::vector<const IndexEntry*> todo = secret_scan_files(l.index);
  std::unordered_set<std::string_view> final_files;
  for (const IndexEntry* e : todo)
    if (e->type == EntryType::File) final_files.insert(e->path);
  // Without root, a directory that ends without search permission hides its
  // files from the scan after the pull (an error per file), not from a batch
  // that read them before the directory got its mode.
  bool trust = true;
  if (geteuid() != 0) {
    trust = !l.dirs_changed;
    for (const auto& e : l.index)
      if (e.type == EntryType::Dir && !(e.mode & S_IXUSR)) trust = false;
  }
  std::unordered_set<std::string_view> replaced(l.replaced.begin(), l.replaced.end());
  std::unordered_set<std::string_view> covered;
  std::vector<LayerSecrets> parts;
  for (auto& b : l.batches) {
    if (!trust || !b->result || !b->result->ok()) continue;
    bool valid = true;
    for (size_t k = 0; k < b->files.size() && valid; ++k) {
      const std::string& p = b->files[k].path;
      auto it = l.latest.find(p);
      valid = it != l.latest.end() && it->second == b->seq[k] && !replaced.count(p) && final_files.count(p);
    }
    if (!valid) continue;
    for (const auto& f : b->files) covered.insert(f.path);
    parts.push_back(std::move(*b->result).value());
  }
  std::vector<IndexEntry> rest;
  for (const IndexEntry* e : todo)
    if (!covered.count(e->path)) rest.push_back(*e);
  if (!rest.empty()) {
    auto r = scan_tree_secrets(l.diff.get(), rest, scanner_);
    if (!r) return;  // no cache: the scan after the pull meets the same problem and reports it
    parts.push_back(std::move(r).value());
  }
  save_layer_secrets(store_, l.diff_id, scanner_, merge_layer_secrets(std::move(parts)));
  if (log_)
    log_("layer " + l.diff_id + ": secrets of " + std::to_string(covered.size()) + " of " +
         std::to_string(todo.size()) + " files scanned as they landed, " + std::to_string(rest.size()) +
         " after the layer was complete");
  // The layer is done: its copies of index entries go now, not at the end of the scan.
  covered.clear();
  l.batches.clear();
  l.latest.clear();
  l.index = {};
}

void SecretPrefetch::abandon() {
  cancel_ = true;
  wait();
}

void SecretPrefetch::finish() {
  std::vector<std::function<void()>> left;
  {
    std::lock_guard<std::mutex> g(arena_mu_);
    left.swap(queued_);
  }
  for (auto& f : left) group_.run(std::move(f));
  wait();
}

}  // namespace moat
