#include "storage/sources/containers_storage/source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "storage/digest.h"
#include "storage/fsutil.h"
#include "storage/sources/containers_storage/diff_tar.h"
#include "storage/sources/containers_storage/tar_split.h"

namespace moat::cstorage {

namespace {

const char* kLayerPrefix = "cs-layer/";


// Read locks on a store's layers.lock then images.lock, as c/storage's readers take them.
Result<std::vector<ReadLock>> lock_store(const StoreDb& db) {
  std::vector<ReadLock> locks;
  MOAT_ASSIGN_OR_RETURN(ReadLock l, ReadLock::acquire(db.layers_dir() + "/layers.lock"));
  locks.push_back(std::move(l));
  MOAT_ASSIGN_OR_RETURN(ReadLock i, ReadLock::acquire(db.images_dir() + "/images.lock"));
  locks.push_back(std::move(i));
  return locks;
}

// A reader that holds c/storage's read locks as long as it lives.
class LockedReader : public Reader {
 public:
  LockedReader(std::vector<ReadLock> locks, std::unique_ptr<Reader> inner)
      : locks_(std::move(locks)), inner_(std::move(inner)) {}
  Result<size_t> read(char* buf, size_t n) override { return inner_->read(buf, n); }

 private:
  std::vector<ReadLock> locks_;
  std::unique_ptr<Reader> inner_;
};

bool file_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

}  // namespace

Result<std::pair<StoreSpec, std::string>> parse_location(const std::string& loc) {
  StoreSpec spec;
  std::string name = loc;
  const std::string hint = "write containers-storage:[DRIVER@GRAPHROOT+RUNROOT]NAME, e.g. "
                           "containers-storage:[overlay@/var/lib/containers/storage]alpine, or containers-storage:NAME";
  if (!loc.empty() && loc[0] == '[') {
    size_t close = loc.find(']');
    if (close == std::string::npos) return Error{"containers-storage:" + loc + " has '[' without ']'"}.with_hint(hint);
    std::string s = loc.substr(1, close - 1);
    name = loc.substr(close + 1);
    spec.given = true;
    if (size_t at = s.find('@'); at != std::string::npos) {
      spec.driver = s.substr(0, at);
      s = s.substr(at + 1);
    }
    if (size_t plus = s.find('+'); plus != std::string::npos) {
      spec.graphroot = s.substr(0, plus);
      spec.runroot = s.substr(plus + 1);
      if (size_t c = spec.runroot.find(':'); c != std::string::npos) {
        spec.options = spec.runroot.substr(c + 1);
        spec.runroot = spec.runroot.substr(0, c);
      }
    } else {
      spec.graphroot = s;
      if (size_t c = spec.graphroot.find(':'); c != std::string::npos) {
        spec.options = spec.graphroot.substr(c + 1);
        spec.graphroot = spec.graphroot.substr(0, c);
      }
    }
    for (const std::string* p : {&spec.graphroot, &spec.runroot})
      if (!p->empty() && (*p)[0] != '/')
        return Error{"containers-storage: store path \"" + printable(*p) + "\" is not absolute"}.with_hint(hint);
    if (!spec.driver.empty() && spec.driver != "overlay" && spec.driver != "overlay2" && spec.driver != "vfs")
      return Error{"containers-storage: driver \"" + printable(spec.driver) + "\" is not one moat reads (overlay, vfs)"};
  }
  if (name.empty()) return Error{"containers-storage:" + loc + " names no image"}.with_hint(hint);
  return std::make_pair(spec, name);
}

Result<std::unique_ptr<StoreTree>> open_store_image(const Reference& ref, const Limits& limits, bool* not_found) {
  if (not_found) *not_found = false;
  MOAT_ASSIGN_OR_RETURN(auto parsed, parse_location(ref.path));
  auto& [spec, name] = parsed;
  MOAT_ASSIGN_OR_RETURN(StoreLocation loc, find_store(spec));
  struct stat st;
  if (::stat(loc.graphroot.c_str(), &st) != 0) {
    if (not_found) *not_found = true;
    return sys_error("no podman store at " + loc.graphroot).with_hint(
        "podman keeps images there once it has pulled or built one; `podman info` shows the store it uses" +
        std::string(loc.config_file.empty() ? "" : " (configured in " + loc.config_file + ")"));
  }
  // Real root reads only root's stores: another user's files belong to that user's ids.
  if (geteuid() == 0 && host_uid() == 0 && st.st_uid != 0)
    return Error{"the podman store at " + loc.graphroot + " belongs to uid " + std::to_string(st.st_uid) +
                 "; moat does not read another user's store as root"}
        .with_hint("run moat as that user: it reads the store in a user namespace with podman's own id mapping");
  MOAT_ASSIGN_OR_RETURN(std::string driver, detect_driver(loc.graphroot, loc.driver));
  auto tree = std::unique_ptr<StoreTree>(new StoreTree());
  tree->limits_ = limits;
  std::vector<std::pair<std::string, bool>> roots{{loc.graphroot, false}};
  for (const auto& a : loc.additional)
    if (!a.empty() && a[0] == '/' && a != loc.graphroot) roots.push_back({a, true});
  for (const auto& [root, ro] : roots) {
    if (ro && !file_exists(root + "/" + driver + "-images")) continue;  // c/storage skips missing ones
    StoreDb probe;
    probe.graphroot = root;
    probe.driver = driver;
    auto locks = lock_store(probe);
    if (!locks) return std::move(locks).error().with_hint(subid_hint());
    auto db = load_store(root, driver, ro);
    if (!db) {
      Error e = std::move(db).error();
      if (e.sys_errno == EACCES) e = std::move(e).with_hint(subid_hint());
      return e;
    }
    tree->stores_.push_back(std::move(db).value());
  }
  auto m = resolve_image(tree->stores_, name);
  if (!m) {
    if (not_found) *not_found = true;
    Error e = std::move(m).error();
    if (e.hint.empty())
      e = std::move(e).with_hint("`podman images` lists what the store at " + loc.graphroot + " holds");
    return e;
  }
  tree->image_store_ = m->store;
  tree->image_ = *m->image;
  const StoreDb& db = tree->stores_[m->store];
  {
    auto locks = lock_store(db);
    if (!locks) return std::move(locks).error();
    auto man = read_big_data(db, tree->image_, "manifest", limits.max_json_bytes);
    if (!man && !tree->image_.digest.empty())
      man = read_big_data(db, tree->image_, "manifest-" + tree->image_.digest, limits.max_json_bytes);
    if (!man)
      return std::move(man).error().context("containers-storage image " + tree->image_.id.substr(0, 12) +
                                            " has no readable manifest");
    tree->manifest_ = std::move(man).value();
  }
  tree->manifest_digest_ = sha256_digest(tree->manifest_);
  std::string shown = m->matched_name.empty() ? tree->image_.id : m->matched_name;
  tree->canonical_ = "containers-storage:[" + driver + "@" + loc.graphroot + "+" + loc.runroot + "]" + shown;
  return tree;
}

bool StoreTree::exists(const std::string& path) {
  // Layer blobs are not files here: bind_layers() checks each against the store's chain.
  return path.rfind("blobs/sha256/", 0) == 0 && is_valid_digest("sha256:" + path.substr(13));
}

Result<std::string> StoreTree::read_small(const std::string& path, size_t max_bytes) {
  if (path.rfind("blobs/sha256/", 0) != 0) return Error{"no " + printable(path) + " in containers-storage"};
  std::string dg = "sha256:" + path.substr(13);
  if (!is_valid_digest(dg)) return Error{"bad digest " + printable(path)};
  if (dg == manifest_digest_) return manifest_;
  const StoreDb& db = stores_[image_store_];
  for (const std::string& key : {dg, "manifest-" + dg}) {
    if (std::find(image_.big_data_names.begin(), image_.big_data_names.end(), key) == image_.big_data_names.end())
      continue;
    auto locks = lock_store(db);
    if (!locks) return std::move(locks).error();
    return read_big_data(db, image_, key, max_bytes);
  }
  return Error{"containers-storage image " + image_.id.substr(0, 12) + " has no " + dg + " in its big data"};
}

Result<std::unique_ptr<Reader>> StoreTree::open(const std::string& path) {
  if (path.rfind(kLayerPrefix, 0) != 0) return Error{"no " + printable(path) + " in containers-storage"};
  size_t i = std::stoul(path.substr(std::string(kLayerPrefix).size()));
  if (i >= chain_.size()) return Error{"no layer " + std::to_string(i)};
  return open_layer(i);
}

Result<std::unique_ptr<Reader>> StoreTree::open_layer(size_t i) {
  const ChainLayer& cl = chain_[i];
  const StoreDb& db = stores_[cl.store];
  std::string label = "podman layer " + cl.id;
  std::vector<ReadLock> locks;
  {
    MOAT_ASSIGN_OR_RETURN(ReadLock l, ReadLock::acquire(db.layers_dir() + "/layers.lock"));
    locks.push_back(std::move(l));
    MOAT_ASSIGN_OR_RETURN(ReadLock im, ReadLock::acquire(stores_[image_store_].images_dir() + "/images.lock"));
    locks.push_back(std::move(im));
  }
  // Under the lock: is the layer still the one we planned to read?
  auto now = load_store(db.graphroot, db.driver, db.read_only);
  if (!now) return std::move(now).error();
  auto it = now->layers.find(cl.id);
  if (it == now->layers.end())
    return Error{label + " was removed from the podman store while moat read the image (podman rmi?)"}.with_hint(
        "scan it again; if it is gone, pull or build it again first");
  if (it->second.incomplete) return Error{label + " is being written by podman (incomplete)"}.with_hint("scan it again when podman is done");
  if (it->second.diff_digest != cl.diff_digest) return Error{label + " changed while moat read the image"};
  std::string files = db.layer_files(cl.id);
  if (cl.generated) {
    Fd dir(::open(files.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (!dir.valid()) return sys_error(label + ": open its files " + files);
    return std::unique_ptr<Reader>(
        new LockedReader(std::move(locks), std::make_unique<DiffTarReader>(std::move(dir), label, limits_)));
  }
  std::string ts = db.layers_dir() + "/" + cl.id + ".tar-split.gz";
  Fd gz(::open(ts.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!gz.valid()) {
    Error e = sys_error(label + ": open its tar-split " + ts);
    if (e.sys_errno == EACCES) e = std::move(e).with_hint(subid_hint());
    return e;
  }
  Fd dir(::open(files.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!dir.valid()) {
    Error e = sys_error(label + ": open its files " + files);
    if (e.sys_errno == EACCES) e = std::move(e).with_hint(subid_hint());
    return e;
  }
  return std::unique_ptr<Reader>(new TarSplitReader(std::move(gz), std::move(dir), label, std::move(locks)));
}

Status bind_layers(ImageDesc& d, StoreTree& t, const Limits& limits) {
  // The image's layer chain, bottom first: the top layer, then parents, found
  // in the image's own store first (an additional store keeps its layers).
  std::vector<StoreTree::ChainLayer> chain;
  std::string next = t.image_.top_layer;
  while (!next.empty()) {
    if (chain.size() > limits.max_layers)
      return Error{"the podman layer chain of image " + t.image_.id.substr(0, 12) + " is longer than --max-layers (or loops)"};
    const CsLayer* found = nullptr;
    size_t where = 0;
    for (size_t k = 0; k <= t.stores_.size() && !found; ++k) {
      size_t s = k == 0 ? t.image_store_ : k - 1;
      if (s >= t.stores_.size()) continue;
      auto it = t.stores_[s].layers.find(next);
      if (it != t.stores_[s].layers.end()) {
        found = &it->second;
        where = s;
      }
    }
    if (!found)
      return Error{"podman layer " + next + " of image " + t.image_.id.substr(0, 12) + " is not in the store"}.with_hint(
          "the podman store is damaged; `podman images` may say the same");
    StoreTree::ChainLayer cl{where, found->id, found->diff_digest};
    if (found->incomplete)
      return Error{"podman layer " + found->id + " is being written by podman (incomplete)"}.with_hint(
          "scan it again when podman is done");
    chain.push_back(cl);
    next = found->parent;
  }
  std::reverse(chain.begin(), chain.end());
  if (chain.size() != d.layers.size())
    return Error{"image " + t.image_.id.substr(0, 12) + " has " + std::to_string(chain.size()) +
                 " layers in the podman store but its config lists " + std::to_string(d.layers.size()) + " diffIDs"};
  std::string unverifiable;
  for (size_t i = 0; i < chain.size(); ++i) {
    auto& cl = chain[i];
    const StoreDb& db = t.stores_[cl.store];
    if (cl.diff_digest.empty()) {
      cl.unverifiable = true;
      cl.why = "no diff-digest (a zstd:chunked partial pull)";
    } else if (cl.diff_digest != d.layers[i].diff_id) {
      return Error{"podman layer " + cl.id + " has diff-digest " + cl.diff_digest + " but the config's diffID of layer " +
                   std::to_string(i) + " is " + d.layers[i].diff_id}.with_hint("the podman store is damaged; pull the image again");
    } else if (!file_exists(db.layers_dir() + "/" + cl.id + ".tar-split.gz")) {
      cl.unverifiable = true;
      cl.why = "no tar-split";
    }
    if (cl.unverifiable)
      unverifiable += (unverifiable.empty() ? "" : "; ") + std::string("layer ") + std::to_string(i) + " (podman layer " +
                      cl.id.substr(0, 12) + "): " + cl.why;
    LayerDesc& l = d.layers[i];
    l.compression = Compression::None;  // the stream is the reassembled tar
    l.size = -1;
    l.stream_is_tar = true;
    l.blob_path = kLayerPrefix + std::to_string(i);
  }
  if (!unverifiable.empty() && !limits.allow_unverified)
    return Error{"cannot verify " + unverifiable}.with_hint(
        "moat reassembles each layer from its tar-split to check it against the image's diffIDs; re-pull the image "
        "with podman, export it (skopeo copy containers-storage:IMAGE oci-archive:image.tar), or scan it anyway "
        "with --allow-unverified");
  t.chain_ = std::move(chain);
  d.reference = t.canonical_;
  // --allow-unverified: each such layer is read once here to learn the digest of
  // what will be unpacked; moat's store keys the layer by that digest, never by
  // the config's diffID it could not confirm.
  for (size_t i = 0; i < t.chain_.size(); ++i) {
    auto& cl = t.chain_[i];
    if (!cl.unverifiable) continue;
    const StoreDb& db = t.stores_[cl.store];
    if (cl.why == "no tar-split") {
      if (db.driver == "vfs")
        return Error{"cannot verify layer " + std::to_string(i) + " (podman layer " + cl.id.substr(0, 12) +
                     "): no tar-split, and a vfs layer holds its parents' files too, so it cannot be rebuilt from them"}
            .with_hint("re-pull the image with podman, or export it: skopeo copy containers-storage:IMAGE oci-archive:image.tar");
      cl.generated = true;
    }
    MOAT_ASSIGN_OR_RETURN(auto rd, t.open_layer(i));
    Sha256 h;
    std::unique_ptr<char[]> buf(new char[1 << 17]);
    for (;;) {
      MOAT_ASSIGN_OR_RETURN(size_t n, rd->read(buf.get(), 1 << 17));
      if (n == 0) break;
      h.update(buf.get(), n);
    }
    std::string got = h.finish();
    if (got == d.layers[i].diff_id) continue;  // it does match the config after all
    d.notes.push_back("layer " + std::to_string(i) + " (podman layer " + cl.id.substr(0, 12) + ") is NOT verified: " +
                      cl.why + "; scanned as " + (cl.generated ? "a tar made from its files" : "its tar-split") +
                      " (" + got + "), not checked against the config's diffID " + d.layers[i].diff_id +
                      " (--allow-unverified)");
    d.layers[i].diff_id = got;
  }
  return ok_status();
}

namespace {

// The registry's tree, with some layers served from the podman store.
class LocalFirstTree : public BlobTree {
 public:
  LocalFirstTree(std::unique_ptr<BlobTree> remote, std::unique_ptr<StoreTree> local)
      : remote_(std::move(remote)), local_(std::move(local)) {}
  bool exists(const std::string& p) override { return remote_->exists(p); }
  Result<std::string> read_small(const std::string& p, size_t m) override { return remote_->read_small(p, m); }
  Result<std::unique_ptr<Reader>> open(const std::string& p) override {
    if (p.rfind(kLayerPrefix, 0) == 0) return local_->open(p);
    return remote_->open(p);
  }

 private:
  std::unique_ptr<BlobTree> remote_;
  std::unique_ptr<StoreTree> local_;
};

}  // namespace

Result<size_t> use_local_layers(ImageDesc& d, std::unique_ptr<BlobTree>& tree, const Limits& limits) {
  if (d.layers.empty() || d.rootfs) return size_t{0};
  auto loc = find_store(StoreSpec{});
  if (!loc) return size_t{0};
  struct stat st;
  if (::stat(loc->graphroot.c_str(), &st) != 0) return size_t{0};
  if (geteuid() == 0 && host_uid() == 0 && st.st_uid != 0) return size_t{0};  // another user's store
  auto driver = detect_driver(loc->graphroot, loc->driver);
  if (!driver) return size_t{0};
  auto local = std::unique_ptr<StoreTree>(new StoreTree());
  local->limits_ = limits;
  {
    StoreDb probe;
    probe.graphroot = loc->graphroot;
    probe.driver = *driver;
    auto locks = lock_store(probe);
    if (!locks) return size_t{0};
    auto db = load_store(loc->graphroot, *driver, false);
    if (!db) return size_t{0};
    local->stores_.push_back(std::move(db).value());
  }
  const StoreDb& db = local->stores_[0];
  std::map<std::string, const CsLayer*> by_diff;
  for (const auto& [id, l] : db.layers)
    if (!l.incomplete && !l.diff_digest.empty() && !by_diff.count(l.diff_digest)) by_diff[l.diff_digest] = &l;
  size_t used = 0;
  for (auto& l : d.layers) {
    auto it = by_diff.find(l.diff_id);
    if (it == by_diff.end()) continue;
    const CsLayer& cl = *it->second;
    // Only what moat can read here and now (a rootless store outside its namespace may not be).
    std::string ts = db.layers_dir() + "/" + cl.id + ".tar-split.gz";
    if (access(ts.c_str(), R_OK) != 0 || access(db.layer_files(cl.id).c_str(), R_OK | X_OK) != 0) continue;
    local->chain_.push_back(StoreTree::ChainLayer{0, cl.id, cl.diff_digest});
    l.blob_path = kLayerPrefix + std::to_string(local->chain_.size() - 1);
    l.compression = Compression::None;
    l.size = -1;
    l.stream_is_tar = true;
    ++used;
  }
  if (used == 0) return size_t{0};
  // images.lock of the store is taken with each layer, as for a containers-storage image.
  tree = std::make_unique<LocalFirstTree>(std::move(tree), std::move(local));
  return used;
}

}  // namespace moat::cstorage
