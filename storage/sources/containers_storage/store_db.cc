#include "storage/sources/containers_storage/store_db.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "storage/digest.h"
#include "storage/fd.h"
#include "storage/fsutil.h"
#include "storage/json_check.h"

namespace moat::cstorage {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxStoreJson = 256u << 20;  // images.json/layers.json of a very large store

Result<json> parse(const std::string& text, const std::string& file) {
  MOAT_TRY(check_json_depth(text, file));  // storage/json_check.h
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    return Error{file + " is not valid JSON: " + e.what()}.with_hint(
        "the podman store is damaged; `podman images` should say the same");
  }
}

Result<std::string> opt_string(const json& o, const char* key, const std::string& what) {
  if (!o.contains(key) || o[key].is_null()) return std::string();
  if (!o[key].is_string()) return Error{what + ": \"" + key + "\" is not a string"};
  return o[key].get<std::string>();
}

Result<std::vector<std::string>> opt_strings(const json& o, const char* key, const std::string& what) {
  std::vector<std::string> out;
  if (!o.contains(key) || o[key].is_null()) return out;
  if (!o[key].is_array()) return Error{what + ": \"" + key + "\" is not a list"};
  for (const auto& v : o[key]) {
    if (!v.is_string()) return Error{what + ": \"" + key + "\" holds a non-string"};
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<std::string> read_capped(const std::string& path, size_t max) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return sys_error("open " + path);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return sys_error("stat " + path);
  if (!S_ISREG(st.st_mode)) return Error{path + " is not a regular file"};
  auto r = read_all(fd.get(), max);
  if (!r) return std::move(r).error().context(path);
  return r;
}

bool has_domain(const std::string& name) {
  size_t slash = name.find('/');
  if (slash == std::string::npos) return false;
  std::string first = name.substr(0, slash);
  return first == "localhost" || first.find('.') != std::string::npos || first.find(':') != std::string::npos;
}

bool has_tag(const std::string& name) {
  size_t slash = name.rfind('/');
  return name.find(':', slash == std::string::npos ? 0 : slash) != std::string::npos;
}

// The repository part of a stored name ("docker.io/library/a:1" -> "docker.io/library/a").
std::string repo_of(const std::string& n) {
  size_t at = n.find('@');
  std::string s = n.substr(0, at);
  size_t slash = s.rfind('/');
  size_t colon = s.find(':', slash == std::string::npos ? 0 : slash);
  return s.substr(0, colon);
}

bool valid_name_chars(const std::string& s) {
  if (s.empty() || s.size() > 4096) return false;
  for (unsigned char c : s)
    if (c <= ' ' || c >= 0x7f) return false;
  return true;
}

}  // namespace

bool is_hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::string StoreDb::layer_files(const std::string& id) const {
  if (driver == "vfs") return graphroot + "/vfs/dir/" + id;
  return graphroot + "/" + driver + "/" + id + "/diff";
}

Result<std::vector<CsImage>> parse_images_json(const std::string& text, const std::string& file) {
  MOAT_ASSIGN_OR_RETURN(json j, parse(text, file));
  std::vector<CsImage> out;
  if (j.is_null()) return out;
  if (!j.is_array()) return Error{file + " is not a list of images"};
  size_t n = 0;
  for (const auto& o : j) {
    std::string what = file + " entry " + std::to_string(n++);
    if (!o.is_object()) return Error{what + " is not an object"};
    CsImage img;
    MOAT_ASSIGN_OR_RETURN(img.id, opt_string(o, "id", what));
    if (!is_hex64(img.id)) return Error{what + ": id \"" + printable(img.id, 80) + "\" is not 64 hex digits"};
    what = file + " image " + img.id.substr(0, 12);
    MOAT_ASSIGN_OR_RETURN(img.digest, opt_string(o, "digest", what));
    if (!img.digest.empty() && !is_valid_digest(img.digest)) img.digest.clear();  // other algorithms: not used
    MOAT_ASSIGN_OR_RETURN(img.digests, opt_strings(o, "digests", what));
    MOAT_ASSIGN_OR_RETURN(img.names, opt_strings(o, "names", what));
    MOAT_ASSIGN_OR_RETURN(img.top_layer, opt_string(o, "layer", what));
    if (!img.top_layer.empty() && !is_hex64(img.top_layer))
      return Error{what + ": layer \"" + printable(img.top_layer, 80) + "\" is not 64 hex digits"};
    MOAT_ASSIGN_OR_RETURN(img.big_data_names, opt_strings(o, "big-data-names", what));
    out.push_back(std::move(img));
  }
  return out;
}

Result<std::map<std::string, CsLayer>> parse_layers_json(const std::string& text, const std::string& file) {
  MOAT_ASSIGN_OR_RETURN(json j, parse(text, file));
  std::map<std::string, CsLayer> out;
  if (j.is_null()) return out;
  if (!j.is_array()) return Error{file + " is not a list of layers"};
  size_t n = 0;
  for (const auto& o : j) {
    std::string what = file + " entry " + std::to_string(n++);
    if (!o.is_object()) return Error{what + " is not an object"};
    CsLayer l;
    MOAT_ASSIGN_OR_RETURN(l.id, opt_string(o, "id", what));
    if (!is_hex64(l.id)) return Error{what + ": id \"" + printable(l.id, 80) + "\" is not 64 hex digits"};
    what = file + " layer " + l.id;
    MOAT_ASSIGN_OR_RETURN(l.parent, opt_string(o, "parent", what));
    if (!l.parent.empty() && !is_hex64(l.parent)) return Error{what + ": parent is not 64 hex digits"};
    MOAT_ASSIGN_OR_RETURN(l.diff_digest, opt_string(o, "diff-digest", what));
    if (!l.diff_digest.empty() && !is_valid_digest(l.diff_digest))
      return Error{what + ": diff-digest \"" + printable(l.diff_digest, 80) + "\" is not a sha256 digest"};
    MOAT_ASSIGN_OR_RETURN(l.compressed_digest, opt_string(o, "compressed-diff-digest", what));
    if (!l.compressed_digest.empty() && !is_valid_digest(l.compressed_digest)) l.compressed_digest.clear();
    if (o.contains("diff-size")) {
      if (!o["diff-size"].is_number_integer()) return Error{what + ": diff-size is not an integer"};
      l.diff_size = o["diff-size"].get<int64_t>();
    }
    if (o.contains("flags") && o["flags"].is_object() && o["flags"].contains("incomplete")) {
      const auto& f = o["flags"]["incomplete"];
      l.incomplete = !(f.is_boolean() && !f.get<bool>()) && !f.is_null();
    }
    if (out.count(l.id)) return Error{what + " is listed twice"};
    out.emplace(l.id, std::move(l));
  }
  return out;
}

Result<std::string> detect_driver(const std::string& graphroot, const std::string& configured) {
  if (!configured.empty()) {
    if (configured != "overlay" && configured != "vfs")
      return Error{"the podman store at " + graphroot + " uses the \"" + printable(configured, 40) +
                   "\" driver, which moat does not read"}.with_hint(
          "moat reads overlay and vfs stores; export the image: skopeo copy containers-storage:IMAGE oci-archive:image.tar");
    return configured;
  }
  std::vector<std::string> found;
  for (const char* d : {"overlay", "vfs", "btrfs", "zfs", "aufs", "devicemapper"}) {
    struct stat st;
    if (::stat((graphroot + "/" + d + "-layers").c_str(), &st) == 0 && S_ISDIR(st.st_mode)) found.push_back(d);
  }
  if (found.empty())
    return Error{"no podman store at " + graphroot + " (no overlay-layers or vfs-layers in it)"}.with_hint(
        "`podman info --format '{{.Store.GraphRoot}}'` prints where podman keeps images; name it with "
        "containers-storage:[DRIVER@GRAPHROOT]IMAGE");
  if (found.size() > 1)
    return Error{"the podman store at " + graphroot + " has layers of several drivers (" + found[0] + ", " + found[1] +
                 ") and no storage.conf says which is used"}.with_hint("name it: containers-storage:[DRIVER@" + graphroot + "]IMAGE");
  return detect_driver(graphroot, found[0]);
}

Result<StoreDb> load_store(const std::string& graphroot, const std::string& driver, bool read_only) {
  StoreDb db;
  db.graphroot = graphroot;
  db.driver = driver;
  db.read_only = read_only;
  std::string ij = db.images_dir() + "/images.json";
  auto itext = read_capped(ij, kMaxStoreJson);
  if (!itext) {
    if (itext.error().sys_errno != ENOENT) return std::move(itext).error();
  } else {
    MOAT_ASSIGN_OR_RETURN(db.images, parse_images_json(*itext, ij));
  }
  std::string lj = db.layers_dir() + "/layers.json";
  auto ltext = read_capped(lj, kMaxStoreJson);
  if (!ltext) {
    if (ltext.error().sys_errno != ENOENT) return std::move(ltext).error();
  } else {
    MOAT_ASSIGN_OR_RETURN(db.layers, parse_layers_json(*ltext, lj));
  }
  return db;
}

std::string big_data_file(const std::string& key) {
  bool plain = !key.empty();
  for (char c : key) plain &= c == '.' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z');
  if (plain && key != "." && key != "..") return key;
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out = "=";
  size_t i = 0;
  for (; i + 2 < key.size(); i += 3) {
    uint32_t v = (uint8_t(key[i]) << 16) | (uint8_t(key[i + 1]) << 8) | uint8_t(key[i + 2]);
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += tbl[v & 63];
  }
  if (i + 1 == key.size()) {
    uint32_t v = uint8_t(key[i]) << 16;
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == key.size()) {
    uint32_t v = (uint8_t(key[i]) << 16) | (uint8_t(key[i + 1]) << 8);
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

Result<std::string> read_big_data(const StoreDb& db, const CsImage& img, const std::string& key, size_t max_bytes) {
  // The id was validated; the file name is [.0-9a-z] or base64 (no '/').
  std::string path = db.images_dir() + "/" + img.id + "/" + big_data_file(key);
  auto r = read_capped(path, max_bytes);
  if (!r) return std::move(r).error().context("image " + img.id.substr(0, 12) + ": " + printable(key, 100));
  return r;
}

std::string normalize_name(const std::string& name_in) {
  if (!valid_name_chars(name_in)) return {};
  std::string name = name_in;
  std::string suffix;
  if (size_t at = name.find('@'); at != std::string::npos) {
    suffix = name.substr(at);
    name = name.substr(0, at);
  }
  if (name.empty()) return {};
  if (!has_domain(name)) name = (name.find('/') == std::string::npos ? "docker.io/library/" : "docker.io/") + name;
  else if (name.rfind("index.docker.io/", 0) == 0) name = "docker.io/" + name.substr(16);
  if (name.rfind("docker.io/", 0) == 0 && name.find('/', 10) == std::string::npos) name = "docker.io/library/" + name.substr(10);
  if (suffix.empty() && !has_tag(name)) name += ":latest";
  return name + suffix;
}

Result<Match> resolve_image(const std::vector<StoreDb>& stores, const std::string& what_in) {
  std::string what = what_in;
  if (what.rfind("sha256:", 0) == 0 && is_hex64(what.substr(7))) what = what.substr(7);
  std::vector<Match> hits;
  auto add = [&](size_t s, const CsImage* img, const std::string& name) {
    for (const auto& h : hits)
      if (h.image->id == img->id) return;  // an image in two stores: the first (primary) wins
    hits.push_back({s, img, name});
  };
  auto each = [&](auto&& fn) {
    for (size_t s = 0; s < stores.size(); ++s)
      for (const auto& img : stores[s].images) fn(s, img);
  };
  auto done = [&]() -> Result<Match> {
    if (hits.size() == 1) return hits[0];
    std::string list;
    for (const auto& h : hits)
      list += (list.empty() ? "" : ", ") + h.image->id.substr(0, 12) +
              (h.image->names.empty() ? "" : " (" + printable(h.image->names[0], 100) + ")");
    return Error{"\"" + printable(what_in, 200) + "\" names more than one image in containers-storage: " + list}.with_hint(
        "give the full name with registry and tag, or the image id");
  };
  // 1. A full id; NAME@ID.
  std::string id = what;
  if (size_t at = what.rfind('@'); at != std::string::npos && is_hex64(what.substr(at + 1))) id = what.substr(at + 1);
  if (is_hex64(id)) {
    each([&](size_t s, const CsImage& img) {
      if (img.id == id) add(s, &img, "");
    });
    if (!hits.empty()) return done();
    if (id == what) return Error{"no image with id " + id + " in containers-storage"};
  }
  // 2. A name exactly as stored, then its normalised forms.
  std::vector<std::string> cands{what};
  std::string norm = normalize_name(what);
  if (!norm.empty()) {
    bool short_name = !has_domain(what);
    std::string tagged = what;
    if (what.find('@') == std::string::npos && !has_tag(what)) tagged += ":latest";
    if (short_name) cands.push_back("localhost/" + tagged);
    cands.push_back(norm);
  }
  size_t at = what.find('@');
  if (at != std::string::npos && is_valid_digest(what.substr(at + 1))) {
    // NAME@sha256:MANIFEST: the repository must be one of the image's, the digest its manifest's.
    std::string dg = what.substr(at + 1);
    std::vector<std::string> repos;
    for (const auto& c : cands) repos.push_back(repo_of(c));
    each([&](size_t s, const CsImage& img) {
      bool dmatch = img.digest == dg || std::find(img.digests.begin(), img.digests.end(), dg) != img.digests.end();
      if (!dmatch) return;
      for (const auto& n : img.names)
        if (std::find(repos.begin(), repos.end(), repo_of(n)) != repos.end()) return add(s, &img, n);
    });
    if (!hits.empty()) return done();
  } else {
    for (const auto& c : cands) {
      each([&](size_t s, const CsImage& img) {
        if (std::find(img.names.begin(), img.names.end(), c) != img.names.end()) add(s, &img, c);
      });
      if (!hits.empty()) return done();
    }
  }
  // 3. A unique id prefix (c/storage's truncindex), at least 3 hex digits.
  bool hex = what.size() >= 3 && what.size() < 64 &&
             std::all_of(what.begin(), what.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
  if (hex) {
    each([&](size_t s, const CsImage& img) {
      if (img.id.rfind(what, 0) == 0) add(s, &img, "");
    });
    if (!hits.empty()) return done();
  }
  // 4. A short name matching the end of a stored repository path (podman: "demo" finds "localhost/x/demo:latest").
  if (!has_domain(what) && at == std::string::npos && valid_name_chars(what)) {
    std::string tagged = has_tag(what) ? what : what + ":latest";
    each([&](size_t s, const CsImage& img) {
      for (const auto& n : img.names)
        if (n.size() > tagged.size() && n.compare(n.size() - tagged.size(), tagged.size(), tagged) == 0 &&
            n[n.size() - tagged.size() - 1] == '/')
          return add(s, &img, n);
    });
    if (!hits.empty()) return done();
  }
  return Error{"no image \"" + printable(what_in, 200) + "\" in containers-storage"};
}

}  // namespace moat::cstorage
