// The layer store: where moat keeps the images it has pulled.
//
//   STORE/                  mode 0700, default $XDG_CACHE_HOME/moat or ~/.cache/moat
//     store.lock            flock: shared while pulling or scanning, exclusive for rm/prune
//     layers/<hex>/         one per diffID, shared by every image that uses it;
//       diff/               the unpacked tree, in the form overlayfs mounts rootless
//       index.tsv           the metadata index (layer_index.h)
//       layer.json          what was unpacked, from which blob, and how
//     locks/<hex>.lock      flock held by the one process unpacking that layer
//     tmp/<hex>.<pid>.<n>/  layers being unpacked; renamed into layers/ only when
//                           complete and verified, removed by the next unpacker
//     images/<id>.json      image records (id = config digest hex), written atomically
//
// Parallel moat processes share one store safely: per-layer locks are taken in
// one global order (sorted diffIDs), so each layer is unpacked by one process
// while the others wait and then reuse it, with no deadlock. A killed process
// leaves only tmp/ leftovers, which nothing reads and the next unpacker removes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <tbb/task_arena.h>

#include "storage/fd.h"
#include "storage/image.h"
#include "storage/layer_index.h"
#include "storage/limits.h"
#include "storage/result.h"

namespace moat {

struct LayerRecord {
  size_t index = 0;
  std::string diff_id, blob_digest, media_type, created_by;
  uint64_t blob_size = 0, tar_size = 0, entries = 0;
};

struct ImageRecord {
  std::string id;  // config digest hex (dir: trees: the tree's content digest hex)
  std::vector<std::string> names;
  std::string manifest_digest, config_digest, platform, config;
  std::vector<LayerRecord> layers;
  int64_t pulled = 0;  // unix time of the last pull
  std::vector<std::string> notes;  // this pull's warnings for the report (ImageDesc::notes); not saved
};

struct LayerInfo {
  std::string diff_id;
  uint64_t tar_size = 0, entries = 0, disk_usage = 0;
  int used_by = 0;
};

// Work that starts on an image's layers while the pull is still bringing
// the others in (moat scan's secret scan: scanner/checks/secret_prefetch.h).
// Store::pull calls it from its own threads; the observer only queues work
// there and runs it on threads of its own, so the download streams never wait
// for it. Every layer is named by its diffID.
class PullObserver {
 public:
  virtual ~PullObserver() = default;
  // oneTBB threads the observer's work may use beside the unpacking ones (the
  // pull raises the process-wide limit by this much while it runs).
  virtual int threads() const = 0;
  // The arena the pull unpacks in, with `layer_slots` slots for its layers and
  // threads() more, where the observer queues its own work
  // (task_arena::enqueue): one arena, since a separate arena of the
  // observer's got no oneTBB worker while the pull's had an idle slot
  // (measured with benchmarks/registry.sh). It is the observer's: its work
  // may go on after the pull has returned.
  virtual tbb::task_arena& arena(int layer_slots) = 0;
  // A layer starts unpacking into `diff_fd`, a directory in tmp/ that becomes
  // the layer's diff/ when published (the fd stays valid across the rename).
  // Returns what to call, on the unpacking thread, as each regular file is
  // complete (UnpackOptions::on_file), or nothing.
  virtual std::function<void(const IndexEntry&)> layer_started(const std::string& diff_id, int diff_fd) = 0;
  // The layer's stream ended and it matched its diffID (on the unpacking thread).
  virtual void layer_unpacked(const std::string& diff_id) = 0;
  // The layer is in layers/ with this final index. `replaced`: paths the pull
  // rewrote after the unpack (hardlinks to lower layers, now copies);
  // `dirs_changed`: directories the tar did not list got a lower layer's
  // attributes after the unpack.
  virtual void layer_published(const std::string& diff_id, const std::vector<IndexEntry>& index,
                               const std::vector<std::string>& replaced, bool dirs_changed) = 0;
  // The layer was in the store already (or was imported whole: dir:).
  virtual void layer_in_store(const std::string& diff_id) = 0;
  // The pull failed: drop the queued work and wait for what is running (it
  // reads the directories about to be removed).
  virtual void abandon() = 0;
};

struct PullOptions {
  Limits limits;
  std::function<void(uint64_t bytes)> progress;           // compressed bytes read, summed by the caller
  std::function<void(const std::string& what)> on_layer;  // a layer was unpacked or reused
  int jobs = 0;  // layers brought in at once (0: one per core); a registry pull streams several per core
  PullObserver* observer = nullptr;  // work to start on the layers as they land
};

struct PullStats {
  size_t unpacked = 0, reused = 0;
};

// An flock held for the life of the object.
class FileLock {
 public:
  // wait=false: a lock held by another process is the error EWOULDBLOCK.
  static Result<FileLock> acquire(const std::string& path, bool exclusive, bool wait = true);
  // Every lock of `paths`, exclusive, without ever waiting for one while
  // holding another: the waits of concurrent pulls then never chain (one
  // waits at most for one other pull's unpack).
  static Result<std::vector<FileLock>> acquire_all(const std::vector<std::string>& paths);
  FileLock(FileLock&&) = default;
  FileLock& operator=(FileLock&&) = default;
  void release() { fd_.reset(); }

 private:
  FileLock() = default;
  Fd fd_;
};

class Store {
 public:
  // How a command holds store.lock for its whole life: shared to pull, scan and
  // list (several at once), exclusive to remove (rm, prune).
  enum class Lock { None, Shared, Exclusive };
  // Opens (creating if needed) the store at `dir`, or the default when empty,
  // and takes store.lock as asked; the lock is released with the Store.
  static Result<Store> open(const std::string& dir, Lock lock = Lock::None);
  static std::string default_dir();

  const std::string& root() const { return root_; }

  // Brings every layer of the image in (unpacking the missing ones in parallel)
  // and records the image. The store is open with Lock::Shared.
  Result<ImageRecord> pull(const ImageSource& src, const PullOptions& opt, PullStats* stats = nullptr);

  Result<std::vector<ImageRecord>> images() const;
  Result<std::vector<LayerInfo>> layers() const;
  // By reference text (as given or canonical) or by a unique prefix of the id.
  Result<ImageRecord> find_image(const std::string& name_or_id) const;
  // Removes `name` from an image that has other names too (as `podman rmi` untags);
  // false when it is not one of several names. The store is open with Lock::Exclusive.
  Result<bool> untag(const ImageRecord& img, const std::string& name);
  // Removes the record, then every layer no remaining image uses. The store is open with Lock::Exclusive.
  Result<std::vector<std::string>> remove_image(const ImageRecord& img);
  // Removes layers no image uses and leftovers of interrupted unpacks. The store is open with Lock::Exclusive.
  Result<std::vector<std::string>> prune();

  std::string layer_dir(const std::string& diff_id) const { return root_ + "/layers/" + diff_id.substr(7); }
  std::string diff_dir(const std::string& diff_id) const { return layer_dir(diff_id) + "/diff"; }
  Result<std::vector<IndexEntry>> layer_index(const std::string& diff_id) const {
    return read_index(layer_dir(diff_id) + "/index.tsv");
  }
  // The same, parsed once for the life of this Store (and its copies) and
  // shared: a scan's secret pass and its merged view read the same layers,
  // and a base layer's index has tens of thousands of lines. Only for layers
  // the store already holds, whose index never changes; callers that wait
  // for one being parsed get that parse.
  Result<std::shared_ptr<const std::vector<IndexEntry>>> shared_layer_index(const std::string& diff_id) const;

 private:
  Status save_image(const ImageRecord& rec);
  Status save_with_names(ImageRecord& rec);
  std::string root_;
  Fd root_fd_;
  std::optional<FileLock> held_;
  struct IndexMemo;
  std::shared_ptr<IndexMemo> index_memo_;
};

std::string image_record_json(const ImageRecord& r);

}  // namespace moat
