#include "storage/image.h"

#include <sys/stat.h>
#include <sys/utsname.h>

#include <nlohmann/json.hpp>

#include "storage/digest.h"
#include "storage/fsutil.h"
#include "storage/json_check.h"
#include "storage/sources/containers_storage/source.h"
#include "storage/sources/registry/client.h"
#include "storage/sources/registry/docker_ref.h"
#include "storage/sources/registry/registries_conf.h"
#include "storage/sources/registry/source.h"

namespace moat {

using json = nlohmann::json;

const char* compression_name(Compression c) {
  switch (c) {
    case Compression::None: return "none";
    case Compression::Gzip: return "gzip";
    case Compression::Zstd: return "zstd";
    default: return "unknown";
  }
}

namespace {

constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
constexpr const char* kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
constexpr const char* kDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr const char* kRefName = "org.opencontainers.image.ref.name";

Result<json> parse_json(const std::string& bytes, const std::string& what) {
  MOAT_TRY(check_json_depth(bytes, what));  // storage/json_check.h
  try {
    return json::parse(bytes);
  } catch (const json::exception& e) {
    return Error{what + " is not valid JSON: " + e.what()};
  }
}

std::string str_field(const json& j, const char* key) {
  if (j.is_object() && j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  return {};
}

struct Descriptor {
  std::string media_type, digest;
  int64_t size = -1;
  json platform, annotations;
};

Result<Descriptor> parse_descriptor(const json& j, const std::string& what) {
  if (!j.is_object()) return Error{what + " is not a descriptor object"};
  Descriptor d;
  d.media_type = str_field(j, "mediaType");
  d.digest = str_field(j, "digest");
  MOAT_TRY(checked_digest_hex(d.digest, what));
  if (j.contains("size")) {
    if (!j["size"].is_number_integer() || j["size"].get<int64_t>() < 0)
      return Error{what + " has an invalid size"};
    d.size = j["size"].get<int64_t>();
  }
  if (j.contains("platform")) d.platform = j["platform"];
  if (j.contains("annotations")) d.annotations = j["annotations"];
  return d;
}

// Reads a document blob and verifies its digest and size before it is parsed.
Result<std::string> read_verified(BlobTree& tree, const std::string& path, const std::string& digest, int64_t size,
                                  const Limits& limits, const std::string& what) {
  auto bytes = tree.read_small(path, limits.max_json_bytes);
  if (!bytes) {
    return std::move(bytes).error().context(what).with_hint(
        "the image is incomplete or damaged; export it again (e.g. with skopeo copy)");
  }
  if (!digest.empty()) {
    std::string got = sha256_digest(*bytes);
    if (got != digest) return Error{what + ": content does not match its digest " + digest + " (got " + got + ")"};
  }
  if (size >= 0 && static_cast<int64_t>(bytes->size()) != size)
    return Error{what + ": size " + std::to_string(bytes->size()) + " differs from the descriptor's " +
                 std::to_string(size)};
  return bytes;
}

std::string platform_of(const json& p) {
  std::string s = str_field(p, "os") + "/" + str_field(p, "architecture");
  std::string v = str_field(p, "variant");
  return v.empty() ? s : s + "/" + v;
}

Result<Descriptor> select_platform(const json& index, const Platform& want, const std::string& what) {
  if (!index.contains("manifests") || !index["manifests"].is_array()) return Error{what + " has no manifests"};
  std::string seen;
  std::optional<Descriptor> best;
  size_t n = 0;
  for (const auto& m : index["manifests"]) {
    MOAT_ASSIGN_OR_RETURN(Descriptor d, parse_descriptor(m, what + " manifest " + std::to_string(n++)));
    if (!d.platform.is_object()) continue;
    std::string os = str_field(d.platform, "os"), arch = str_field(d.platform, "architecture");
    std::string var = str_field(d.platform, "variant");
    seen += (seen.empty() ? "" : ", ") + platform_of(d.platform);
    if (os != want.os || arch != want.arch) continue;
    if (!want.variant.empty() && var != want.variant) continue;
    // Without a requested variant the first match wins, as in containers/image.
    if (!best) best = d;
  }
  if (!best)
    return Error{what + " has no image for " + want.text() + " (it has: " + (seen.empty() ? "none" : seen) + ")"}
        .with_hint("choose one with --platform OS/ARCH[/VARIANT]");
  return *best;
}

enum class DocKind { Manifest, Index, Schema1, Unknown };

DocKind doc_kind(const std::string& descriptor_type, const json& doc) {
  std::string t = str_field(doc, "mediaType");
  if (t.empty()) t = descriptor_type;
  if (t == kOciManifest || t == kDockerManifest) return DocKind::Manifest;
  if (t == kOciIndex || t == kDockerList) return DocKind::Index;
  if (t.find("manifest.v1") != std::string::npos) return DocKind::Schema1;
  if (t.empty()) {
    if (doc.contains("manifests")) return DocKind::Index;
    if (doc.contains("layers")) return DocKind::Manifest;
    if (doc.contains("fsLayers")) return DocKind::Schema1;
  }
  return DocKind::Unknown;
}

Result<Compression> layer_compression(const std::string& mt, const std::string& what) {
  static const std::pair<const char*, Compression> known[] = {
      {"application/vnd.oci.image.layer.v1.tar", Compression::None},
      {"application/vnd.oci.image.layer.v1.tar+gzip", Compression::Gzip},
      {"application/vnd.oci.image.layer.v1.tar+zstd", Compression::Zstd},
      {"application/vnd.oci.image.layer.nondistributable.v1.tar", Compression::None},
      {"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", Compression::Gzip},
      {"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", Compression::Zstd},
      {"application/vnd.docker.image.rootfs.diff.tar", Compression::None},
      {"application/vnd.docker.image.rootfs.diff.tar.gzip", Compression::Gzip},
      {"application/vnd.docker.image.rootfs.diff.tar.zstd", Compression::Zstd},
      {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Compression::Gzip},
  };
  for (const auto& [name, c] : known)
    if (mt == name) return c;
  return Error{what + " has unsupported media type \"" + printable(mt, 100) + "\""}.with_hint(
      "moat reads plain, gzip and zstd tar layers; encrypted or foreign layer types are not supported");
}

// Fills layers, platform and created_by from the verified config document.
Status apply_config(ImageDesc& d, const std::vector<Descriptor>* manifest_layers, const Limits& limits) {
  MOAT_ASSIGN_OR_RETURN(json cfg, parse_json(d.config, "config " + d.config_digest));
  if (!cfg.is_object()) return Error{"config " + d.config_digest + " is not a JSON object"};
  d.platform = platform_of(cfg);
  const json* ids = nullptr;
  if (cfg.contains("rootfs") && cfg["rootfs"].is_object() && cfg["rootfs"].contains("diff_ids") &&
      cfg["rootfs"]["diff_ids"].is_array())
    ids = &cfg["rootfs"]["diff_ids"];
  if (!ids) return Error{"config " + d.config_digest + " has no rootfs.diff_ids"};
  if (ids->size() > limits.max_layers)
    return Error{"image has " + std::to_string(ids->size()) + " layers, more than the limit of " +
                 std::to_string(limits.max_layers)}.with_hint("raise it with --max-layers if this is expected");
  size_t n_layers = manifest_layers ? manifest_layers->size() : d.layers.size();
  if (ids->size() != n_layers)
    return Error{"config " + d.config_digest + " lists " + std::to_string(ids->size()) + " diff_ids but the manifest has " +
                 std::to_string(n_layers) + " layers"};
  if (manifest_layers) d.layers.resize(n_layers);
  std::vector<std::string> created;
  if (cfg.contains("history") && cfg["history"].is_array()) {
    for (const auto& h : cfg["history"]) {
      if (!h.is_object()) continue;
      if (h.contains("empty_layer") && h["empty_layer"].is_boolean() && h["empty_layer"].get<bool>()) continue;
      created.push_back(str_field(h, "created_by"));
    }
  }
  for (size_t i = 0; i < n_layers; ++i) {
    LayerDesc& l = d.layers[i];
    l.index = i;
    l.diff_id = (*ids)[i].is_string() ? (*ids)[i].get<std::string>() : std::string();
    MOAT_TRY(checked_digest_hex(l.diff_id, "config diff_id of layer " + std::to_string(i)));
    if (created.size() == n_layers) l.created_by = created[i];
    if (manifest_layers) {
      const Descriptor& m = (*manifest_layers)[i];
      l.blob_digest = m.digest;
      l.media_type = m.media_type;
      l.size = m.size;
      MOAT_ASSIGN_OR_RETURN(l.compression, layer_compression(m.media_type, "layer " + std::to_string(i) + " (" + m.digest + ")"));
    }
  }
  return ok_status();
}

using BlobPath = std::string (*)(const std::string& hex);
std::string oci_blob_path(const std::string& hex) { return "blobs/sha256/" + hex; }
std::string dir_blob_path(const std::string& hex) { return hex; }

// Reads a manifest (following indexes to the wanted platform) and its config.
// Manifests are read at manifest_path_of(hex) (path_of when null): skopeo's
// dir: and the registry keep them apart from the other blobs.
Status load_manifest(ImageDesc& d, BlobTree& tree, Descriptor desc, BlobPath path_of, const Platform& want,
                     const Limits& limits, BlobPath manifest_path_of = nullptr) {
  for (int depth = 0; depth < 4; ++depth) {
    std::string hex = digest_hex(desc.digest);
    std::string path = manifest_path_of ? manifest_path_of(hex) : path_of(hex);
    MOAT_ASSIGN_OR_RETURN(std::string bytes, read_verified(tree, path, desc.digest, desc.size, limits, "manifest " + desc.digest));
    MOAT_ASSIGN_OR_RETURN(json doc, parse_json(bytes, "manifest " + desc.digest));
    switch (doc_kind(desc.media_type, doc)) {
      case DocKind::Index: {
        MOAT_ASSIGN_OR_RETURN(desc, select_platform(doc, want, "image index " + desc.digest));
        continue;
      }
      case DocKind::Schema1:
        return Error{"manifest " + desc.digest + " is Docker schema 1, which is obsolete and unsupported"}.with_hint(
            "convert it: skopeo copy --format v2s2 SRC DEST");
      case DocKind::Unknown:
        return Error{"manifest " + desc.digest + " has an unknown media type \"" +
                     printable(str_field(doc, "mediaType").empty() ? desc.media_type : str_field(doc, "mediaType"), 100) + "\""};
      case DocKind::Manifest: break;
    }
    d.manifest_digest = desc.digest;
    d.manifest = bytes;
    if (!doc.contains("config")) return Error{"manifest " + desc.digest + " has no config"};
    MOAT_ASSIGN_OR_RETURN(Descriptor cfg, parse_descriptor(doc["config"], "config of manifest " + desc.digest));
    std::vector<Descriptor> layers;
    if (!doc.contains("layers") || !doc["layers"].is_array()) return Error{"manifest " + desc.digest + " has no layers"};
    if (doc["layers"].size() > limits.max_layers)
      return Error{"image has " + std::to_string(doc["layers"].size()) + " layers, more than the limit of " +
                   std::to_string(limits.max_layers)}.with_hint("raise it with --max-layers if this is expected");
    for (size_t i = 0; i < doc["layers"].size(); ++i) {
      MOAT_ASSIGN_OR_RETURN(Descriptor l, parse_descriptor(doc["layers"][i], "layer " + std::to_string(i)));
      layers.push_back(std::move(l));
    }
    d.config_digest = cfg.digest;
    MOAT_ASSIGN_OR_RETURN(d.config, read_verified(tree, path_of(digest_hex(cfg.digest)), cfg.digest, cfg.size, limits,
                                                  "config " + cfg.digest));
    MOAT_TRY(apply_config(d, &layers, limits));
    for (auto& l : d.layers) {
      l.blob_path = path_of(digest_hex(l.blob_digest));
      if (!tree.exists(l.blob_path))
        return Error{"layer " + std::to_string(l.index) + " (" + l.blob_digest + ") is missing from the image"}.with_hint(
            "the image is incomplete; export it again with all its blobs");
    }
    return ok_status();
  }
  return Error{"image indexes nest too deeply"};
}

Status open_oci_layout(ImageDesc& d, BlobTree& tree, const Reference& ref, const Platform& want, const Limits& limits) {
  auto layout = tree.read_small("oci-layout", 1 << 16);
  if (!layout)
    return Error{ref.path + " is not an OCI image layout (no readable oci-layout file)"}.with_hint(
        "for a docker save tarball use docker-archive:; for an unpacked tree use dir:");
  MOAT_ASSIGN_OR_RETURN(json lj, parse_json(*layout, "oci-layout"));
  if (str_field(lj, "imageLayoutVersion").empty()) return Error{"oci-layout has no imageLayoutVersion"};
  MOAT_ASSIGN_OR_RETURN(std::string ib, tree.read_small("index.json", limits.max_json_bytes));
  MOAT_ASSIGN_OR_RETURN(json index, parse_json(ib, "index.json"));
  if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array())
    return Error{"index.json has no manifests list"};
  std::vector<Descriptor> all;
  for (size_t i = 0; i < index["manifests"].size(); ++i) {
    MOAT_ASSIGN_OR_RETURN(Descriptor dd, parse_descriptor(index["manifests"][i], "index.json manifest " + std::to_string(i)));
    all.push_back(std::move(dd));
  }
  if (all.empty()) return Error{"index.json lists no images"};
  std::optional<Descriptor> chosen;
  std::string tags;
  for (const auto& dd : all) {
    std::string name = str_field(dd.annotations, kRefName);
    if (!name.empty()) tags += (tags.empty() ? "" : ", ") + name;
    if (!ref.tag.empty() && name == ref.tag && !chosen) chosen = dd;
  }
  if (ref.tag.empty()) {
    if (all.size() == 1) chosen = all[0];
    else
      return Error{"the layout holds " + std::to_string(all.size()) + " images; name one (tags: " +
                   (tags.empty() ? "none" : tags) + ")"}.with_hint("add :TAG to the reference" +
                   (tags.empty() ? std::string() : ", e.g. oci:" + ref.path + ":" + tags.substr(0, tags.find(','))));
  }
  if (!chosen)
    return Error{"no image tagged \"" + ref.tag + "\" (tags: " + (tags.empty() ? "none" : tags) + ")"};
  return load_manifest(d, tree, *chosen, oci_blob_path, want, limits);
}

// docker-archive names images "name:tag" in RepoTags, usually fully qualified.
bool repo_tag_matches(const std::string& have, const std::string& want) {
  if (have == want) return true;
  for (const char* prefix : {"docker.io/library/", "docker.io/", "localhost/"}) {
    if (have == prefix + want) return true;
    if (want == prefix + have) return true;
  }
  if (want.find(':') == std::string::npos) return repo_tag_matches(have, want + ":latest");
  return false;
}

Status open_docker_archive(ImageDesc& d, BlobTree& tree, const Reference& ref, const Limits& limits) {
  auto mb = tree.read_small("manifest.json", limits.max_json_bytes);
  if (!mb)
    return std::move(mb).error().context(ref.path + " is not a docker-archive").with_hint(
        "docker-archive: expects a `docker save`/`podman save` tarball; for an OCI tarball use oci-archive:");
  MOAT_ASSIGN_OR_RETURN(json m, parse_json(*mb, "manifest.json"));
  if (!m.is_array() || m.empty()) return Error{"manifest.json lists no images"};
  const json* chosen = nullptr;
  std::string names;
  for (const auto& e : m)
    if (e.is_object() && e.contains("RepoTags") && e["RepoTags"].is_array())
      for (const auto& t : e["RepoTags"])
        if (t.is_string()) names += (names.empty() ? "" : ", ") + t.get<std::string>();
  if (ref.tag.empty()) {
    if (m.size() != 1)
      return Error{"the archive holds " + std::to_string(m.size()) + " images; name one (" + names + ")"}.with_hint(
          "add :NAME:TAG or :@INDEX to the reference");
    chosen = &m[0];
  } else if (ref.tag[0] == '@') {
    size_t idx = 0;
    try {
      idx = std::stoul(ref.tag.substr(1));
    } catch (...) {
      return Error{"\"" + ref.tag + "\" is not an image index"};
    }
    if (idx >= m.size())
      return Error{"the archive has no image @" + std::to_string(idx) + ": it holds " + std::to_string(m.size()) +
                   " (@0 to @" + std::to_string(m.size() - 1) + ")"};
    chosen = &m[idx];
  } else {
    for (const auto& e : m) {
      if (!e.is_object() || !e.contains("RepoTags") || !e["RepoTags"].is_array()) continue;
      for (const auto& t : e["RepoTags"])
        if (t.is_string() && repo_tag_matches(t.get<std::string>(), ref.tag)) chosen = chosen ? chosen : &e;
    }
    if (!chosen) return Error{"no image named \"" + ref.tag + "\" in the archive (it has: " + names + ")"};
  }
  std::string cfg_path = str_field(*chosen, "Config");
  if (cfg_path.empty()) return Error{"manifest.json entry has no Config"};
  MOAT_ASSIGN_OR_RETURN(d.config, tree.read_small(cfg_path, limits.max_json_bytes));
  d.config_digest = sha256_digest(d.config);
  // The config's file name is its digest in both the classic and the Docker 25 form.
  std::string base = cfg_path.substr(cfg_path.rfind('/') == std::string::npos ? 0 : cfg_path.rfind('/') + 1);
  if (base.size() >= 64) {
    std::string named = "sha256:" + base.substr(0, 64);
    if (is_valid_digest(named) && named != d.config_digest)
      return Error{"config " + printable(cfg_path) + ": content does not match its name (got " + d.config_digest + ")"};
  }
  if (!chosen->contains("Layers") || !(*chosen)["Layers"].is_array()) return Error{"manifest.json entry has no Layers"};
  const json& layers = (*chosen)["Layers"];
  if (layers.size() > limits.max_layers)
    return Error{"image has " + std::to_string(layers.size()) + " layers, more than the limit of " +
                 std::to_string(limits.max_layers)};
  d.layers.resize(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!layers[i].is_string()) return Error{"manifest.json layer " + std::to_string(i) + " is not a path"};
    d.layers[i].blob_path = layers[i].get<std::string>();
    if (!tree.exists(d.layers[i].blob_path))
      return Error{"layer " + std::to_string(i) + " (" + printable(d.layers[i].blob_path) + ") is missing from the archive"};
    const std::string& p = d.layers[i].blob_path;
    if (p.rfind("blobs/sha256/", 0) == 0 && is_valid_digest("sha256:" + p.substr(13)))
      d.layers[i].blob_digest = "sha256:" + p.substr(13);
  }
  MOAT_TRY(apply_config(d, nullptr, limits));
  return ok_status();
}

Status open_skopeo_dir(ImageDesc& d, BlobTree& tree, const Platform& want, const Limits& limits) {
  MOAT_ASSIGN_OR_RETURN(std::string version, tree.read_small("version", 4096));
  if (version.rfind("Directory Transport Version: 1.", 0) != 0)
    return Error{"unknown dir: version \"" + printable(version, 60) + "\""};
  MOAT_ASSIGN_OR_RETURN(std::string mb, tree.read_small("manifest.json", limits.max_json_bytes));
  Descriptor top;
  top.digest = sha256_digest(mb);
  top.size = static_cast<int64_t>(mb.size());
  // manifest.json is not stored under its digest: verify it as read, then go on by digest.
  MOAT_ASSIGN_OR_RETURN(json doc, parse_json(mb, "manifest.json"));
  DocKind k = doc_kind("", doc);
  if (k == DocKind::Index) {
    MOAT_ASSIGN_OR_RETURN(top, select_platform(doc, want, "manifest list in manifest.json"));
    // skopeo's dir: files every instance of a list as <hex>.manifest.json (the list itself is manifest.json).
    return load_manifest(d, tree, top, dir_blob_path, want, limits,
                         [](const std::string& hex) { return hex + ".manifest.json"; });
  }
  // A single manifest: reuse load_manifest by serving manifest.json under its digest.
  struct Alias : BlobTree {
    BlobTree& inner;
    std::string hex;
    Alias(BlobTree& t, std::string h) : inner(t), hex(std::move(h)) {}
    std::string map(const std::string& p) { return p == hex ? "manifest.json" : p; }
    bool exists(const std::string& p) override { return inner.exists(map(p)); }
    Result<std::string> read_small(const std::string& p, size_t m) override { return inner.read_small(map(p), m); }
    Result<std::unique_ptr<Reader>> open(const std::string& p) override { return inner.open(map(p)); }
  } alias(tree, digest_hex(top.digest));
  return load_manifest(d, alias, top, dir_blob_path, want, limits);
}

}  // namespace

Result<Platform> Platform::parse(const std::string& s) {
  Platform p;
  size_t a = s.find('/');
  if (a == std::string::npos || a == 0 || a + 1 >= s.size())
    return Error{"--platform \"" + s + "\" is not OS/ARCH[/VARIANT]"};
  p.os = s.substr(0, a);
  std::string rest = s.substr(a + 1);
  size_t b = rest.find('/');
  p.arch = rest.substr(0, b);
  if (b != std::string::npos) p.variant = rest.substr(b + 1);
  return p;
}

std::string Platform::text() const { return os + "/" + arch + (variant.empty() ? "" : "/" + variant); }

Platform host_platform() {
  Platform p;
  struct utsname u;
  std::string m = uname(&u) == 0 ? u.machine : "x86_64";
  if (m == "x86_64") p.arch = "amd64";
  else if (m == "aarch64") p.arch = "arm64";
  else if (m.rfind("armv7", 0) == 0) { p.arch = "arm"; p.variant = "v7"; }
  else if (m == "i686" || m == "i386") p.arch = "386";
  else p.arch = m;  // ppc64le, s390x, riscv64 match GOARCH already
  return p;
}

Result<std::unique_ptr<ImageSource>> open_image(const Reference& ref, const Platform& platform, const Limits& limits) {
  switch (ref.transport) {
    case Transport::OciLayout: {
      MOAT_ASSIGN_OR_RETURN(auto t, DirTree::open_dir(ref.path));
      return open_image_tree(std::move(t), ref, platform, limits);
    }
    case Transport::OciArchive:
    case Transport::DockerArchive: {
      MOAT_ASSIGN_OR_RETURN(auto t, TarTree::open_archive(ref.path, limits));
      return open_image_tree(std::move(t), ref, platform, limits);
    }
    case Transport::Dir: {
      MOAT_ASSIGN_OR_RETURN(auto t, DirTree::open_dir(ref.path));
      if (t->exists("version") && t->exists("manifest.json")) return open_image_tree(std::move(t), ref, platform, limits);
      // An unpacked root filesystem: one layer, brought in by walking it (see unpack.h).
      auto src = std::unique_ptr<ImageSource>(new ImageSource());
      ImageDesc& d = src->desc_;
      d.reference = ref.text;
      d.rootfs = true;
      d.rootfs_path = ref.path;
      d.platform = "";
      d.layers.resize(1);
      d.layers[0].created_by = "dir:" + ref.path;
      return src;
    }
    case Transport::ContainersStorage: {
      // podman's store (storage/sources/containers_storage): documents from the image's big data.
      bool not_found = false;
      auto t = cstorage::open_store_image(ref, limits, &not_found);
      if (!t && ref.bare && not_found) {
        // A bare name podman's store does not have: the registry, as `podman pull NAME`
        // finds it (a short name through registries.conf's aliases and unqualified-search-registries).
        const std::string why = ref.text + ": not in containers-storage; from the registry";
        std::string target = ref.text;
        bool had_host = false;
        if (parse_docker_ref(ref.text, &had_host) && !had_host) {
          auto conf = registry::load_registries_conf(registry::default_options().registries_conf);
          if (!conf) return std::move(conf).error().context(why);
          auto res = registry::resolve_short_name(*conf, ref.text);
          if (!res) return std::move(res).error().context(why);
          if (res->ambiguous) return registry::ambiguous_error(ref.text, *res).context(why);
          target = res->candidates.front().text();
        }
        auto reg = parse_reference("docker://" + target);
        if (!reg) return std::move(reg).error().context(why);
        auto from_registry = open_image(*reg, platform, limits);
        if (!from_registry) return std::move(from_registry).error().context(why);
        return from_registry;
      }
      if (!t) return std::move(t).error().context(ref.text);
      auto src = std::unique_ptr<ImageSource>(new ImageSource());
      ImageDesc& d = src->desc_;
      d.reference = ref.text;
      Platform want = platform;
      if (want.arch.empty()) want = host_platform();
      Descriptor top;
      top.digest = (*t)->manifest_digest();
      top.size = static_cast<int64_t>((*t)->manifest_size());
      cstorage::StoreTree& cs = **t;
      src->tree_ = std::move(t).value();
      Status st = load_manifest(d, cs, top, oci_blob_path, want, limits);
      if (st) st = cstorage::bind_layers(d, cs, limits);
      if (!st) return std::move(st).error().context(ref.text);
      return src;
    }
    case Transport::Docker: {
      // storage/sources/registry/source.h: registries.conf, the tag's manifest, then documents by digest.
      MOAT_ASSIGN_OR_RETURN(auto reg, registry::open_registry_image(ref, limits));
      registry::RegistryTree* rt = reg.tree.get();
      MOAT_ASSIGN_OR_RETURN(auto src, open_registry_tree(std::move(reg.tree), ref, reg.top_digest, reg.top_media_type,
                                                         reg.top_size, platform, limits));
      ImageDesc& d = src->desc_;
      for (const auto& l : d.layers) rt->expect_size(l.blob_path, l.size);
      // Layers the user's podman store already has are read from there, not downloaded.
      auto local = cstorage::use_local_layers(d, src->tree_, limits);
      if (local && *local > 0)
        d.notes_verbose.push_back(std::to_string(*local) + " of " + std::to_string(d.layers.size()) +
                                  " layers read from the podman store instead of the registry");
      return src;
    }
    default:
      return Error{"transport not supported"};
  }
}

Result<std::unique_ptr<ImageSource>> open_image_tree(std::unique_ptr<BlobTree> tree, const Reference& ref,
                                                     const Platform& platform, const Limits& limits) {
  auto src = std::unique_ptr<ImageSource>(new ImageSource());
  ImageDesc& d = src->desc_;
  d.reference = ref.text;
  Platform want = platform;
  if (want.arch.empty()) want = host_platform();
  src->tree_ = std::move(tree);
  Status st;
  switch (ref.transport) {
    case Transport::OciLayout:
    case Transport::OciArchive: st = open_oci_layout(d, *src->tree_, ref, want, limits); break;
    case Transport::DockerArchive: st = open_docker_archive(d, *src->tree_, ref, limits); break;
    case Transport::Dir: st = open_skopeo_dir(d, *src->tree_, want, limits); break;
    default: return Error{"transport not supported"};
  }
  if (!st) return std::move(st).error().context(ref.text);
  return src;
}

Result<std::unique_ptr<ImageSource>> open_registry_tree(std::unique_ptr<BlobTree> tree, const Reference& ref,
                                                        const std::string& top_digest, const std::string& top_media_type,
                                                        int64_t top_size, const Platform& platform, const Limits& limits) {
  auto src = std::unique_ptr<ImageSource>(new ImageSource());
  ImageDesc& d = src->desc_;
  d.reference = ref.text;
  Platform want = platform;
  if (want.arch.empty()) want = host_platform();
  src->tree_ = std::move(tree);
  Descriptor top;
  top.digest = top_digest;
  top.media_type = top_media_type;
  top.size = top_size;
  Status st = load_manifest(d, *src->tree_, top, registry::registry_blob_path, want, limits, registry::registry_manifest_path);
  if (!st) return std::move(st).error().context(ref.text);
  for (const auto& l : d.layers) {
    // The size bounds the download: a registry's layer without one is refused.
    if (l.size < 0)
      return Error{"manifest " + d.manifest_digest + " gives no size for layer " + std::to_string(l.index)}.context(ref.text);
  }
  return src;
}

Result<std::unique_ptr<Reader>> ImageSource::open_layer(size_t i) const {
  if (!tree_ || i >= desc_.layers.size()) return Error{"no such layer"};
  return tree_->open(desc_.layers[i].blob_path);
}

}  // namespace moat
