#include "scanner/checks/secret_scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>
#include <unordered_map>
#include <unordered_set>

#include "scanner/checks/checks.h"
#include "scanner/checks/secret_context.h"
#include "storage/fd.h"
#include "storage/fsutil.h"
#include "storage/json_check.h"
#include "storage/layer_index.h"

namespace moat {

namespace {

using json = nlohmann::json;

constexpr const char* kCacheSchema = "moat.secrets-cache/v1";
constexpr const char* kWhy =
    "A credential in an image ships to everyone who can pull the image. Deleting or overwriting it in a later "
    "layer does not remove it: the earlier layer still holds it, and `docker save` or any registry client gets it back.";
constexpr const char* kFix =
    "Revoke and rotate the credential now, then rebuild without it: pass build-time secrets with "
    "`RUN --mount=type=secret` (never ARG, ENV or COPY) and runtime secrets through the orchestrator.";

std::string cache_name(const std::string& version) {  // version: "sha256:<hex>"
  return "secrets-" + version.substr(version.find(':') + 1, 16) + ".json";
}

std::optional<LayerSecrets> load_cache(const Store& store, const std::string& diff_id, const std::string& version) {
  Fd dir(::open(store.layer_dir(diff_id).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return std::nullopt;
  auto text = read_file_beneath(dir.get(), cache_name(version), 1u << 30);
  if (!text) return std::nullopt;
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("schema", "") != kCacheSchema ||
      j.value("diff_id", "") != diff_id || j.value("rules_version", "") != version)
    return std::nullopt;
  try {
    LayerSecrets out;
    out.cached = true;
    out.files = j.at("files").get<uint64_t>();
    out.bytes = j.at("bytes").get<uint64_t>();
    for (const auto& h : j.at("hits")) {
      auto path = unescape_field(h.at(0).get<std::string>());
      auto red = unescape_field(h.at(3).get<std::string>());
      if (!path || !red) return std::nullopt;
      out.hits.push_back(LayerSecretHit{*path, h.at(1).get<std::string>(), h.at(2).get<uint64_t>(), *red,
                                        h.at(4).get<std::string>()});
    }
    for (const auto& e : j.at("errors")) {
      auto s = unescape_field(e.get<std::string>());
      if (!s) return std::nullopt;
      out.errors.push_back(*s);
    }
    return out;
  } catch (const json::exception&) {
    return std::nullopt;  // a damaged cache is only a miss
  }
}

// Best effort: a store we cannot write (read-only, another user's layer
// directory) only costs a rescan next time.
void save_cache(const Store& store, const std::string& diff_id, const std::string& version, const LayerSecrets& s) {
  json j;
  j["schema"] = kCacheSchema;
  j["diff_id"] = diff_id;
  j["rules_version"] = version;
  j["files"] = s.files;
  j["bytes"] = s.bytes;
  j["hits"] = json::array();
  // Paths and redacted text are image bytes: escaped as in index.tsv, so the JSON stays valid.
  for (const auto& h : s.hits)
    j["hits"].push_back({escape_field(h.path), h.rule_id, h.line, escape_field(h.redacted), h.secret_fp});
  j["errors"] = json::array();
  for (const auto& e : s.errors) j["errors"].push_back(escape_field(e));
  Fd dir(::open(store.layer_dir(diff_id).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return;
  const std::string name = cache_name(version);
  if (!write_file_atomic(dir.get(), name, j.dump() + "\n", 0600).ok()) return;
  // One cache per layer: results of other rule sets (an older moat, other
  // --rules) go, so a store does not grow with every rule change.
  if (DIR* d = fdopendir(::openat(dir.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC))) {
    std::vector<std::string> stale;
    while (dirent* e = readdir(d)) {
      std::string_view n = e->d_name;
      if (n.starts_with("secrets-") && n.ends_with(".json") && n != name) stale.emplace_back(n);
    }
    for (const auto& n : stale) ::unlinkat(dirfd(d), n.c_str(), 0);
    closedir(d);
  }
}

bool hit_less(const LayerSecretHit& a, const LayerSecretHit& b) {
  return std::tie(a.path, a.line, a.rule_id, a.secret_fp) < std::tie(b.path, b.line, b.rule_id, b.secret_fp);
}

std::unordered_map<std::string_view, const secrets::SecretRule*> rules_by_id(const secrets::SecretScanner& s) {
  std::unordered_map<std::string_view, const secrets::SecretRule*> m;
  for (const auto& r : s.rules().rules) m.emplace(r.id, &r);
  return m;
}

Finding make_secret_finding(const secrets::SecretRule* rule, const std::string& rule_id, const std::string& redacted,
                            uint64_t line, const std::string& secret_fp) {
  Finding f;
  f.rule_id = rule_id;
  f.category = Category::Secret;
  f.severity = rule ? parse_severity(rule->severity).value_or(Severity::High) : Severity::High;
  f.title = rule ? rule->title : rule_id;
  f.description = kWhy;
  f.remediation = kFix;
  f.secret = SecretInfo{rule_id, redacted, line};
  // One finding per distinct secret at a place: the secret's own
  // fingerprint (never the secret) tells two keys in one file apart.
  f.detail = secret_fp;
  return f;
}

}  // namespace

Result<LayerSecrets> scan_layer_secrets(const Store& store, const std::string& diff_id,
                                        const secrets::SecretScanner& scanner) {
  const std::string& version = scanner.rules_version();
  if (auto c = load_cache(store, diff_id, version)) return std::move(*c);
  // Shared with the merged view the scan builds meanwhile (one parse of each index).
  MOAT_ASSIGN_OR_RETURN(auto idx, store.shared_layer_index(diff_id));
  Fd root(::open(store.diff_dir(diff_id).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return sys_error("open layer " + diff_id);
  MOAT_ASSIGN_OR_RETURN(LayerSecrets out, scan_tree_secrets(root.get(), *idx, scanner));
  save_cache(store, diff_id, version, out);
  return out;
}

void save_layer_secrets(const Store& store, const std::string& diff_id, const secrets::SecretScanner& scanner,
                        const LayerSecrets& s) {
  save_cache(store, diff_id, scanner.rules_version(), s);
}

std::vector<const IndexEntry*> secret_scan_files(const std::vector<IndexEntry>& idx) {
  // Every regular file with content. A hardlink to a file of this layer is
  // the same bytes (scanned once, at the target); one to a lower layer's file
  // is a copy of it here, and is scanned.
  std::unordered_set<std::string_view> files;
  for (const auto& e : idx)
    if (e.type == EntryType::File) files.insert(e.path);
  std::vector<const IndexEntry*> todo;
  for (const auto& e : idx)
    if (e.size > 0 && (e.type == EntryType::File || (e.type == EntryType::Hardlink && !files.count(e.link))))
      todo.push_back(&e);
  return todo;
}

LayerSecrets merge_layer_secrets(std::vector<LayerSecrets>&& parts) {
  LayerSecrets out;
  for (auto& l : parts) {
    out.files += l.files;
    out.bytes += l.bytes;
    for (auto& h : l.hits) out.hits.push_back(std::move(h));
    for (auto& e : l.errors) out.errors.push_back(std::move(e));
  }
  std::sort(out.hits.begin(), out.hits.end(), hit_less);
  std::sort(out.errors.begin(), out.errors.end());
  return out;
}

Result<LayerSecrets> scan_tree_secrets(int root_fd, const std::vector<IndexEntry>& idx,
                                       const secrets::SecretScanner& scanner) {
  std::vector<const IndexEntry*> todo = secret_scan_files(idx);

  // The work items: a large file alone, small files of one directory in
  // batches. A batch opens its directory once (beneath the layer, no
  // symlinks, O_PATH so a search-only directory works as before) and each
  // file by its name relative to it: resolving every full path from the
  // layer root was about a tenth of the scan's CPU time on a 35,000-entry
  // layer (benchmarks/scan.sh).
  // Largest first, so one huge file does not start last and run alone.
  constexpr uint64_t kAlone = 1u << 20;        // a file this large is its own item
  constexpr uint64_t kBatchBytes = 1u << 20;   // a batch stops at this many bytes
  constexpr size_t kBatchFiles = 64;           // or this many files
  auto dir_of = [](const IndexEntry* e) { return std::string_view(e->path).substr(0, e->path.rfind('/')); };
  std::stable_sort(todo.begin(), todo.end(),
                   [&](const IndexEntry* a, const IndexEntry* b) { return dir_of(a) < dir_of(b); });
  struct Item {
    size_t begin, end;  // a range of todo, all in one directory
    uint64_t bytes;
  };
  std::vector<Item> items;
  for (size_t i = 0; i < todo.size(); ++i) {
    const IndexEntry* e = todo[i];
    Item* last = items.empty() ? nullptr : &items.back();
    if (e->size < kAlone && last && last->end == i && todo[last->begin]->size < kAlone &&
        dir_of(todo[last->begin]) == dir_of(e) && last->bytes < kBatchBytes && last->end - last->begin < kBatchFiles) {
      last->end = i + 1;
      last->bytes += e->size;
    } else {
      items.push_back({i, i + 1, e->size});
    }
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.bytes > b.bytes; });

  // One file, opened by its name in `parent` (or `parent_error` when its
  // directory could not be opened).
  auto scan_file = [&](LayerSecrets& mine, const IndexEntry& e, int parent, std::string_view name,
                       const Error* parent_error) {
    Result<Fd> fd = parent_error ? Result<Fd>(*parent_error)
                                 : open_beneath(parent, std::string(name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (fd && (fstat(fd->get(), &st) != 0 || !S_ISREG(st.st_mode))) fd = Error{"is not a regular file on disk"};
    if (!fd) {
      mine.errors.push_back(printable(e.path, 4096) + ": " + fd.error().describe());
      return;
    }
    std::set<std::pair<std::string, std::string>> seen;  // (rule, secret fp) once per file
    size_t before = mine.hits.size();
    auto stats = scanner.scan_fd(fd->get(), UINT64_MAX, [&](const secrets::SecretFinding& s) {
      if (seen.emplace(s.rule_id, s.fingerprint).second)
        mine.hits.push_back(LayerSecretHit{e.path, s.rule_id, s.line, s.redacted, s.fingerprint});
      return secrets::SinkAction::kContinue;
    }, static_cast<uint64_t>(st.st_size));
    if (!stats) {
      mine.hits.resize(before);
      mine.errors.push_back(printable(e.path, 4096) + ": " + stats.error().describe());
      return;
    }
    ++mine.files;
    mine.bytes += stats->bytes;
  };

  tbb::enumerable_thread_specific<LayerSecrets> local;
  tbb::parallel_for(tbb::blocked_range<size_t>(0, items.size(), 1), [&](const tbb::blocked_range<size_t>& r) {
    LayerSecrets& mine = local.local();
    for (size_t k = r.begin(); k != r.end(); ++k) {
      const Item& item = items[k];
      const std::string_view dir = dir_of(todo[item.begin]);  // "" for the layer's root
      int parent = root_fd;
      std::optional<Fd> dir_fd;
      std::optional<Error> dir_error;
      if (!dir.empty()) {
        auto d = open_beneath(root_fd, std::string(dir.substr(1)), O_PATH | O_DIRECTORY);
        if (d) {
          dir_fd = std::move(d).value();
          parent = dir_fd->get();
        } else {
          dir_error = std::move(d).error();
        }
      }
      for (size_t i = item.begin; i != item.end; ++i)
        scan_file(mine, *todo[i], parent, std::string_view(todo[i]->path).substr(dir.size() + 1),
                  dir_error ? &*dir_error : nullptr);
    }
  });
  std::vector<LayerSecrets> parts;
  for (auto& l : local) parts.push_back(std::move(l));
  return merge_layer_secrets(std::move(parts));
}

Result<std::vector<Finding>> secret_findings(const SecretScanContext& ctx, std::vector<std::string>& errors) {
  const ImageRecord& img = ctx.img;
  std::vector<std::optional<Result<LayerSecrets>>> per_layer(img.layers.size());
  tbb::parallel_for(size_t{0}, img.layers.size(), [&](size_t i) {
    if (ctx.in_place_index) {
      Fd root(::open(ctx.view.diff_dir(i).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      per_layer[i] = root.valid() ? scan_tree_secrets(root.get(), *ctx.in_place_index, ctx.scanner)
                                  : Result<LayerSecrets>(sys_error("open " + ctx.view.diff_dir(i)));
      return;
    }
    per_layer[i] = scan_layer_secrets(ctx.store, img.layers[i].diff_id, ctx.scanner);
  });
  auto rules = rules_by_id(ctx.scanner);
  std::vector<Finding> out;
  for (size_t li = 0; li < per_layer.size(); ++li) {
    if (!per_layer[li]->ok())
      return std::move(*per_layer[li]).error().context("secret scan of layer " + std::to_string(li));
    const LayerSecrets& ls = per_layer[li]->value();
    if (ctx.verbose)
      std::fprintf(stderr, "moat: layer %zu: %s: %llu files, %s, %zu secrets\n", li,
                   ls.cached ? "secrets from the cache" : "secrets scanned",
                   static_cast<unsigned long long>(ls.files), human_bytes(ls.bytes).c_str(), ls.hits.size());
    for (const auto& e : ls.errors) errors.push_back("layer " + std::to_string(li) + ": " + e);
    if (ls.hits.empty()) continue;
    // Owner and mode of this layer's copy: from its own index. A hit the
    // view shows from this very layer, not as a hardlink, has exactly that
    // entry in the view (the last one at its path, as below), so the index
    // (a second parse of index.tsv) is read only for the other hits.
    std::unordered_map<std::string_view, const IndexEntry*> meta;
    bool idx_loaded = false;
    auto meta_of = [&](const std::string& path, const ViewEntry* ve) -> Result<const IndexEntry*> {
      if (ve && ve->layer == li && ve->hardlink_to.empty()) return &ve->entry;
      if (!idx_loaded) {
        // The view's own copy of the index: no second parse of index.tsv.
        for (const auto& e : ctx.in_place_index ? *ctx.in_place_index : ctx.view.layer_index(li)) meta[e.path] = &e;
        idx_loaded = true;
      }
      auto m = meta.find(path);
      return m == meta.end() ? nullptr : m->second;
    };
    LayerRef layer{img.layers[li].index, img.layers[li].diff_id, img.layers[li].created_by};
    for (const auto& h : ls.hits) {
      auto rit = rules.find(h.rule_id);
      Finding f = make_secret_finding(rit == rules.end() ? nullptr : rit->second, h.rule_id, h.redacted, h.line,
                                      h.secret_fp);
      f.target = Target::Filesystem;
      f.path = h.path;
      f.layer = layer;
      const ViewEntry* ve = ctx.view.find(h.path);
      f.deleted = !ve || ve->layer != li;
      MOAT_ASSIGN_OR_RETURN(const IndexEntry* m, meta_of(h.path, ve));
      if (m) {
        f.owner = ctx.identity.owner(m->uid, m->gid);
        f.mode = m->mode & 07777;
      }
      if (const std::string* pkg = ctx.packages.owner_of(h.path)) f.package = *pkg;
      f.message = f.title + " in " + printable(h.path, 4096) +
                  (h.line ? " line " + std::to_string(h.line) : std::string(" (binary content)")) +
                  (f.deleted ? ", deleted later but still in layer " + std::to_string(li) : "");
      finalize_finding(f);
      out.push_back(std::move(f));
    }
  }
  mark_package_material(out, ctx.store, ctx.packages, errors);  // scanner/checks/secret_context.h
  return out;
}

Result<std::vector<Finding>> config_secret_findings(const ImageRecord& img, const secrets::SecretScanner& scanner) {
  std::vector<Finding> out;
  if (img.config.empty()) return out;
  json cfg = parse_json_or_discarded(img.config);  // storage/json_check.h
  if (cfg.is_discarded() || !cfg.is_object()) return Error{"image config is not a JSON object"};
  auto rules = rules_by_id(scanner);
  const json empty = json::object();
  const json& c = cfg.contains("config") && cfg["config"].is_object() ? cfg["config"] : empty;

  // Scans one config string; `what` names where it is (never its value).
  auto scan = [&](const std::string& text, const std::string& field, const std::string& what,
                  const std::optional<LayerRef>& layer) -> Status {
    std::set<std::pair<std::string, std::string>> seen;
    auto st = scanner.scan_buffer(text.data(), text.size(), [&](const secrets::SecretFinding& s) {
      if (!seen.emplace(s.rule_id, s.fingerprint).second) return secrets::SinkAction::kContinue;
      auto rit = rules.find(s.rule_id);
      Finding f = make_secret_finding(rit == rules.end() ? nullptr : rit->second, s.rule_id, s.redacted, s.line,
                                      s.fingerprint);
      f.target = Target::Config;
      f.config_field = field;
      f.layer = layer;
      // Two variables holding one token are two places to fix.
      f.detail = what + "\n" + s.fingerprint;
      f.message = f.title + " in the image config: " + what;
      finalize_finding(f);
      out.push_back(std::move(f));
      return secrets::SinkAction::kContinue;
    });
    if (!st) return std::move(st).error().context("image config " + field);
    return ok_status();
  };

  if (c.contains("Env") && c["Env"].is_array()) {
    std::vector<std::string> reported;  // Env names a rule reported
    for (const auto& e : c["Env"])
      if (e.is_string()) {
        std::string s = e.get<std::string>();
        size_t before = out.size();
        // The name is printed: a token pasted as a name is redacted there too.
        MOAT_TRY(scan(s, "Env", "Env " + printable(redact_text(s.substr(0, s.find('=')), scanner), 128), std::nullopt));
        if (out.size() != before) reported.push_back(s.substr(0, s.find('=')));
      }
    for (auto& f : env_credential_findings(c["Env"], reported, scanner)) out.push_back(std::move(f));
  }
  if (c.contains("Labels") && c["Labels"].is_object())
    for (const auto& [k, v] : c["Labels"].items())
      if (v.is_string())
        MOAT_TRY(scan(k + "=" + v.get<std::string>(), "Labels", "label " + printable(redact_text(k, scanner), 128), std::nullopt));

  // The User is printed by config-runs-as-root; "root:TOKEN" ships the token too.
  if (c.contains("User") && c["User"].is_string()) MOAT_TRY(scan(c["User"].get<std::string>(), "User", "User", std::nullopt));
  for (const HistoryStep& h : history_steps(img, cfg)) {
    // The finding's layer reference prints the layer's created_by: redacted, as in redact_for_report().
    std::optional<LayerRef> layer = h.layer;
    if (layer) layer->created_by = redact_text(layer->created_by, scanner);
    MOAT_TRY(scan(h.created_by, "History", "history step " + std::to_string(h.index), layer));
  }
  return out;
}

std::string redact_text(const std::string& text, const secrets::SecretScanner& scanner, bool credential_values) {
  std::vector<std::pair<uint64_t, uint64_t>> spans;  // [begin, end) of each secret
  auto st = scanner.scan_buffer(text.data(), text.size(), [&](const secrets::SecretFinding& s) {
    spans.emplace_back(s.offset, s.offset + s.length);
    return secrets::SinkAction::kContinue;
  });
  // A line the engine cannot scan is not shown at all rather than shown whole.
  if (!st) return "(text withheld: " + st.error().describe() + ")";
  // Values behind credential-looking names and flags, whether or not a rule
  // reported them (scanner/checks/secret_context.h).
  if (credential_values)
    for (const auto& sp : credential_spans(text)) spans.push_back(sp);
  if (spans.empty()) return text;
  std::sort(spans.begin(), spans.end());
  std::string out;
  uint64_t pos = 0;
  for (size_t i = 0; i < spans.size();) {
    uint64_t b = spans[i].first, e = spans[i].second;
    for (++i; i < spans.size() && spans[i].first < e; ++i) e = std::max(e, spans[i].second);  // merge overlaps
    if (b < pos) b = pos;
    if (e > text.size()) e = text.size();
    out.append(text, pos, b - pos);
    out += secrets::redact(std::string_view(text).substr(b, e - b));
    pos = e;
  }
  out.append(text, pos, std::string::npos);
  return out;
}

void redact_findings(std::vector<Finding>& findings, std::vector<std::string>& errors,
                     const secrets::SecretScanner& scanner) {
  // An image with 100,000 world-writable files has as many findings, nearly
  // all of distinct paths: scanned in parallel (the engine keeps a scratch
  // per thread), not through a shared cache.
  auto fix = [&](std::string& s) {
    if (!s.empty()) s = redact_text(s, scanner, false);
  };
  tbb::parallel_for(size_t{0}, findings.size(), [&](size_t i) {
    Finding& f = findings[i];
    fix(f.path);
    fix(f.message);
    fix(f.package);
    if (f.owner) {
      if (f.owner->user) fix(*f.owner->user);
      if (f.owner->group) fix(*f.owner->group);
    }
  });
  for (std::string& e : errors) fix(e);
}

ImageRecord redact_for_report(const ImageRecord& img, const secrets::SecretScanner& scanner) {
  ImageRecord out = img;
  std::map<std::string, std::string> changed;
  auto fix = [&](const std::string& s) {
    auto it = changed.find(s);
    if (it == changed.end()) it = changed.emplace(s, redact_text(s, scanner)).first;
    return it->second;
  };
  for (auto& l : out.layers) l.created_by = fix(l.created_by);
  if (!img.config.empty()) {
    json cfg = parse_json_or_discarded(img.config);  // storage/json_check.h
    if (cfg.is_object()) {
      bool any = false;
      auto fix_field = [&](json& j, const char* key) {
        if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return;
        std::string was = j[key].get<std::string>(), now = fix(was);
        if (now != was) j[key] = now, any = true;
      };
      if (cfg.contains("history") && cfg["history"].is_array())
        for (auto& h : cfg["history"]) fix_field(h, "created_by");
      // config-runs-as-root prints the User ("root:TOKEN" is still root).
      if (cfg.contains("config")) fix_field(cfg["config"], "User");
      // The record's config is only read by the checks from here on; its
      // digest was verified at pull time against the original bytes.
      if (any) out.config = cfg.dump(-1, ' ', false, json::error_handler_t::replace);
    }
  }
  return out;
}

}  // namespace moat
