// The secret scan of each layer, started while the pull is still bringing
// the image in, so that little of it is left when the last byte arrives.
//
// Store::pull tells this observer (store.h: PullObserver) about each regular
// file the moment the unpacker has written it; files are collected into
// batches and queued in the arena the pull unpacks in, where slots of their
// own run them (never an unpacking thread: it only queues), overlapping the
// download of the rest of the layer and of the other layers, and, once the
// pull has returned, the mount and the other checks. A layer already in the
// store is scanned (or read from its cache) in the same way.
//
// When a layer is published with its final index, what the batches saw is
// checked against it: a batch counts only if every file in it is still the
// last thing the tar wrote at its path, is still a regular file of the final
// index, and was not rewritten by the pull afterwards (a hardlink to a lower
// layer becomes a copy); and, for a caller who is not root, only if no
// directory of the layer ends up without search permission (the scan after
// the pull could not have opened the files below it). Whatever no valid batch
// covered is scanned then. The parts are joined exactly as one scan of the
// layer joins them (merge_layer_secrets) and stored as the layer's secret
// cache (secret_scan.h), where secret_findings() reads them: the findings are
// byte for byte those of a scan after the pull. A layer whose result could
// not be made here has no cache, and the scan after the pull does it.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <tbb/task_arena.h>
#include <tbb/task_group.h>

#include "rules/secrets/engine.h"
#include "storage/store.h"

namespace moat {

class SecretPrefetch final : public PullObserver {
 public:
  // `log`: one line per layer for -v (may be empty).
  SecretPrefetch(const Store& store, const secrets::SecretScanner& scanner,
                 std::function<void(const std::string&)> log = {});
  ~SecretPrefetch() noexcept override;  // abandons what is queued and waits for what runs

  int threads() const override { return threads_; }
  tbb::task_arena& arena(int layer_slots) override;
  std::function<void(const IndexEntry&)> layer_started(const std::string& diff_id, int diff_fd) override;
  void layer_unpacked(const std::string& diff_id) override;
  void layer_published(const std::string& diff_id, const std::vector<IndexEntry>& index,
                       const std::vector<std::string>& replaced, bool dirs_changed) override;
  void layer_in_store(const std::string& diff_id) override;
  void abandon() override;

  // Runs what was queued outside a pull (a dir: image) and waits until every
  // layer's result is in its cache (or known not to be).
  void finish();

  struct Layer;
  struct Batch;

 private:
  void submit(const std::shared_ptr<Layer>& l);
  void run_batch(const std::shared_ptr<Layer>& l, Batch* b);
  void finalize(Layer& l);
  void enqueue(std::function<void()> f);
  void wait();
  std::shared_ptr<Layer> find(const std::string& diff_id);

  const Store& store_;
  const secrets::SecretScanner& scanner_;
  std::function<void(const std::string&)> log_;
  const int threads_;
  std::atomic<bool> cancel_{false};
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Layer>> layers_;
  std::mutex arena_mu_;
  std::optional<tbb::task_arena> arena_;       // made by the pull's first call of arena()
  std::vector<std::function<void()>> queued_;  // work queued before there was an arena
  tbb::task_group group_;
};

}  // namespace moat
