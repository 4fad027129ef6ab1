#include "storage/sources/registry/source.h"

#include <fcntl.h>
#include <unistd.h>

#include "storage/digest.h"
#include "storage/fsutil.h"
#include "storage/sources/registry/registries_conf.h"

namespace moat::registry {
namespace {
std::mutex g_cache_mu;
std::string g_cache_dir;

std::string cache_dir() {
  std::lock_guard<std::mutex> g(g_cache_mu);
  return g_cache_dir;
}
}  // namespace

void use_document_cache(const std::string& store_root) {
  std::lock_guard<std::mutex> g(g_cache_mu);
  g_cache_dir = store_root.empty() ? "" : store_root + "/registry";
  if (!g_cache_dir.empty() && !make_dirs(g_cache_dir, 0700).ok()) g_cache_dir.clear();
}

std::string registry_blob_path(const std::string& hex) { return "blobs/sha256:" + hex; }
std::string registry_manifest_path(const std::string& hex) { return "manifests/sha256:" + hex; }

RegistryTree::RegistryTree(std::unique_ptr<Client> client, std::string repository, std::string cache_dir)
    : client_(std::move(client)), repository_(std::move(repository)), cache_dir_(std::move(cache_dir)) {}

bool RegistryTree::exists(const std::string& path) {
  // Layers are not asked for up front: a missing one fails its download with a clear error.
  return path.rfind("blobs/sha256:", 0) == 0 || path.rfind("manifests/sha256:", 0) == 0;
}

void RegistryTree::expect_size(const std::string& path, int64_t size) {
  std::lock_guard<std::mutex> g(mu_);
  sizes_[path] = size;
}

void RegistryTree::remember(const std::string& path, std::string bytes) {
  std::lock_guard<std::mutex> g(mu_);
  docs_[path] = std::move(bytes);
}

Result<std::string> RegistryTree::read_small(const std::string& path, size_t max_bytes) {
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = docs_.find(path);
    if (it != docs_.end()) return it->second;
  }
  bool manifest = path.rfind("manifests/", 0) == 0;
  std::string digest = path.substr(manifest ? 10 : 6);
  MOAT_ASSIGN_OR_RETURN(std::string hex, checked_digest_hex(digest, "document digest"));
  // The store's copy, verified again: it is only a cache.
  if (!cache_dir_.empty()) {
    int fd = ::open((cache_dir_ + "/" + hex).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      auto bytes = read_all(fd, max_bytes);
      ::close(fd);
      if (bytes && sha256_digest(*bytes) == digest) return bytes;
    }
  }
  std::string bytes;
  if (manifest) {
    MOAT_ASSIGN_OR_RETURN(Manifest m, client_->get_manifest(repository_, digest, max_bytes));
    bytes = std::move(m.bytes);
  } else {
    MOAT_ASSIGN_OR_RETURN(bytes, client_->get_blob(repository_, digest, max_bytes));
  }
  if (!cache_dir_.empty()) {
    int dfd = ::open(cache_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)write_file_atomic(dfd, hex, bytes);  // best effort: only a cache
      ::close(dfd);
    }
  }
  return bytes;
}

Result<std::unique_ptr<Reader>> RegistryTree::open(const std::string& path) {
  if (path.rfind("blobs/", 0) != 0) return Error{"not a blob: " + printable(path)};
  int64_t size = -1;
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = sizes_.find(path);
    if (it != sizes_.end()) size = it->second;
  }
  return client_->open_blob(repository_, path.substr(6), size);
}

Result<OpenedRegistryImage> open_registry_image(const Reference& ref, const Limits& limits) {
  const Options& opt = default_options();
  MOAT_ASSIGN_OR_RETURN(DockerRef want, parse_docker_ref(ref.text.substr(std::string("docker://").size())));
  MOAT_ASSIGN_OR_RETURN(RegistriesConf conf, load_registries_conf(opt.registries_conf));
  if (opt.log)
    for (const auto& f : conf.files) opt.log("registries.conf: read " + f);
  MOAT_ASSIGN_OR_RETURN(std::vector<PullSource> sources, pull_sources(conf, want));
  std::optional<Error> first_error;
  for (const auto& s : sources) {
    if (opt.log) opt.log("pulling " + want.text() + " from " + s.ref.text() + (s.mirror ? " (mirror)" : ""));
    Options with_helpers = opt;
    with_helpers.credential_helpers = conf.credential_helpers;
    auto client = Client::create(s.ref.registry, with_helpers, s.insecure);
    if (!client) return std::move(client).error();
    auto m = (*client)->get_manifest(s.ref.repository, s.ref.tag_or_digest(), limits.max_json_bytes);
    if (!m) {
      // A mirror that fails is skipped, as in podman; the primary location's error is the one reported.
      if (s.mirror && opt.log) opt.log("mirror " + s.ref.registry + " failed: " + m.error().describe());
      if (!s.mirror || !first_error) first_error = std::move(m).error();
      if (!s.mirror) return *first_error;
      continue;
    }
    OpenedRegistryImage out;
    out.text = s.ref.text();
    out.top_digest = m->digest;
    out.top_media_type = m->media_type;
    out.top_size = static_cast<int64_t>(m->bytes.size());
    out.tree = std::make_unique<RegistryTree>(std::move(client).value(), s.ref.repository, cache_dir());
    out.tree->remember(registry_manifest_path(digest_hex(m->digest)), std::move(m->bytes));
    return out;
  }
  return first_error ? *first_error : Error{"no source to pull " + want.text() + " from"};
}

}  // namespace moat::registry
