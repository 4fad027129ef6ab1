// moat: the command line. The only place where storage, the namespace
// session, the checks and the report writers meet.
//
// Exit status (the contract in cli-and-report.md): 0 scan completed with no
// finding at or above --fail-on; 1 at least one such finding; 2 the scan could
// not be completed (usage error, bad reference, damaged or tampered image,
// limit exceeded). A failed scan never exits 0 or 1.
#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "scanner/session/mount_cmd.h"
#include "scanner/session/namespace.h"
#include "rules/secrets/cli.h"
#include "scanner/checks/checks.h"
#include "scanner/report/ignore.h"
#include "scanner/report/report.h"
#include "scanner/report/sarif.h"
#include "scanner/checks/scan.h"
#include "scanner/checks/secret_prefetch.h"
#include "scanner/checks/secret_scan.h"
#include "rules/secrets/database.h"
#include "scanner/session/inplace.h"
#include "scanner/trust/commands.h"
#include "storage/fd.h"
#include "storage/fsutil.h"
#include "storage/image.h"
#include "storage/reference.h"
#include "storage/sources/registry/client.h"
#include "storage/sources/registry/source.h"
#include "storage/store.h"
#include "storage/unpack.h"

namespace moat {
namespace {

constexpr int kExitClean = 0;
constexpr int kExitFailed = 2;

struct Common {
  std::string store;
  std::string platform;
  bool quiet = false, verbose = false;
  Limits limits;
  registry::Options registry;  // docker:// (storage/sources/registry/client.h)
  std::string tls_verify;      // --tls-verify true|false
};

void add_common(CLI::App* c, Common& o) {
  c->add_option("--store", o.store, "Layer store directory (default $XDG_CACHE_HOME/moat or ~/.cache/moat)");
  c->add_flag("-q,--quiet", o.quiet, "Print nothing on stderr but errors");
  c->add_flag("-v,--verbose", o.verbose, "Say what is being done on stderr");
}

void add_pull_options(CLI::App* c, Common& o) {
  c->add_option("--platform", o.platform, "OS/ARCH[/VARIANT] to pick from a multi-platform image (default: the host's)");
  c->add_option("--max-image-bytes", o.limits.max_image_bytes, "Limit on the uncompressed size of all layers")
      ->capture_default_str();
  c->add_option("--max-layer-entries", o.limits.max_layer_entries, "Limit on entries in one layer")->capture_default_str();
  c->add_option("--max-path-length", o.limits.max_path_length, "Limit on the bytes of one path")->capture_default_str();
  c->add_option("--max-path-depth", o.limits.max_path_depth, "Limit on the components of one path")->capture_default_str();
  c->add_option("--max-layers", o.limits.max_layers, "Limit on the layers of one image")->capture_default_str();
  c->add_flag("--allow-unverified", o.limits.allow_unverified,
              "containers-storage: scan layers moat cannot check against their diffID (no tar-split, a zstd:chunked "
              "layer without diffID); the report lists them");
  // docker:// (docs/registries.md)
  c->add_option("--authfile", o.registry.authfile, "docker://: read credentials from this file only (default: podman's auth.json search)");
  c->add_option("--creds", o.registry.creds, "docker://: USER[:PASSWORD] for the registry");
  c->add_option("--tls-verify", o.tls_verify, "docker://: true|false; false skips TLS verification (default true unless registries.conf says insecure)")
      ->check(CLI::IsMember({"true", "false"}));
  c->add_option("--cert-dir", o.registry.cert_dir, "docker://: use the CAs (*.crt) and client pair (*.cert, *.key) of DIR instead of certs.d");
  c->add_option("--registries-conf", o.registry.registries_conf, "docker://: read this registries.conf (and the registries.conf.d drop-in folders, as podman with $CONTAINERS_REGISTRIES_CONF)");
  c->add_option("--jobs", o.registry.jobs, "docker://: layers downloaded at once")->capture_default_str()->check(CLI::Range(1, 64));
}

int report_error(const std::string& image, const Error& e) {
  std::fprintf(stderr, "moat: error: %s%s\n", image.empty() ? "" : (image + ": ").c_str(), e.describe().c_str());
  if (!e.hint.empty()) std::fprintf(stderr, "moat: hint: %s\n", e.hint.c_str());
  else if (e.sys_errno == ENOSPC || e.sys_errno == EDQUOT)  // what was written has been removed (store.h)
    std::fprintf(stderr, "moat: hint: the disk (or quota) of the store or the output is full: free space, "
                         "remove unused layers with `moat image prune`, or use --store DIR on a larger disk\n");
  return kExitFailed;
}

// Progress on a terminal only: one line, rewritten at most ten times a second.
class Progress {
 public:
  explicit Progress(bool enabled) : on_(enabled) {}
  ~Progress() { done(); }
  void bytes(uint64_t n) {
    if (!on_) return;
    std::lock_guard<std::mutex> g(mu_);
    total_ += n;
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    std::fprintf(stderr, "\r\033[Kpulling: %s read", human_bytes(total_).c_str());
    dirty_ = true;
  }
  // A line for --verbose: printed on a terminal or not, clearing the progress line first.
  void line(const std::string& s) {
    std::lock_guard<std::mutex> g(mu_);
    std::fprintf(stderr, on_ ? "\r\033[Kmoat: %s\n" : "moat: %s\n", s.c_str());
    dirty_ = false;
  }
  void done() {
    if (on_ && dirty_) std::fprintf(stderr, "\r\033[K");
    dirty_ = false;
  }

 private:
  bool on_;
  std::mutex mu_;
  uint64_t total_ = 0;
  bool dirty_ = false;
  std::chrono::steady_clock::time_point last_{};
};

// `gate` (moat scan --policy) runs once the manifest is read and before any
// layer is requested; an Error from it stops the pull.
// `observer` (moat scan's secret prefetch) starts work on the layers as they land.
Result<ImageRecord> pull_image(const std::string& image, const Common& o, Store& store,
                               const std::function<Status(const ImageSource&)>& gate = {},
                               PullObserver* observer = nullptr) {
  MOAT_ASSIGN_OR_RETURN(Reference ref, parse_reference(image));
  Platform plat;
  if (!o.platform.empty()) {
    MOAT_ASSIGN_OR_RETURN(plat, Platform::parse(o.platform));
  }
  Progress progress(isatty(2) && !o.quiet);
  // A bare name may go on to the registry (storage/image.cc).
  if (ref.transport == Transport::Docker || ref.bare) registry::use_document_cache(store.root());
  MOAT_ASSIGN_OR_RETURN(auto src, open_image(ref, plat, o.limits));
  if (gate) MOAT_TRY(gate(*src));
  PullOptions po;
  if (ref.transport == Transport::Docker || ref.bare) po.jobs = o.registry.jobs;
  po.limits = o.limits;
  po.observer = observer;
  po.progress = [&](uint64_t n) { progress.bytes(n); };
  po.on_layer = [&](const std::string& s) {
    if (o.verbose) progress.line(s);
  };
  PullStats stats;
  auto rec = store.pull(*src, po, &stats);
  progress.done();
  if (rec) {
    rec->notes = src->desc().notes;
    for (const auto& n : rec->notes) std::fprintf(stderr, "moat: warning: %s\n", n.c_str());
    if (o.verbose)
      for (const auto& n : src->desc().notes_verbose) std::fprintf(stderr, "moat: %s\n", n.c_str());
  }
  if (rec && o.verbose)
    std::fprintf(stderr, "moat: %zu layers unpacked, %zu reused from the store (gzip: %s)\n", stats.unpacked,
                 stats.reused, gzip_inflater().c_str());
  return rec;
}

struct ScanArgs {
  std::string image, format = "table", output, fail_on = "high", mount_mode = "auto";
  std::string checks;      // --checks LIST (empty: all)
  std::string ignorefile;  // --ignorefile FILE (empty: ./.moatignore when present)
  secrets::RulesOptions rules_opts;  // --rules DIR, --disable ID
  trust::TrustOptions trust;         // --policy, --registries.d
};

// "a, b,,c" -> {"a", "b", "c"}
std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    std::string item = s.substr(pos, comma - pos);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.push_back(item);
    pos = comma + 1;
  }
  return out;
}

// Writes all of text to fd.
Status write_fd(int fd, const std::string& text, const std::string& what) {
  for (size_t off = 0; off < text.size();) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("write " + what);
    off += static_cast<size_t>(n);
  }
  return ok_status();
}

// Writes the report to stdout or, via a temporary file and a rename, to FILE:
// a reader of FILE never sees half a report. A FILE that exists and is not a
// regular file (/dev/null, /dev/stdout, a FIFO) is written in place: a rename
// would replace the device node itself.
Status write_report(const std::string& text, const std::string& output) {
  if (output.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    if (std::fflush(stdout) != 0) return sys_error("write the report to stdout");
    return ok_status();
  }
  struct stat st;
  if (::stat(output.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    if (S_ISDIR(st.st_mode)) return Error{output + " is a directory", EISDIR, "give -o a file name"};
    Fd fd(::open(output.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd.valid()) return sys_error("open " + output);
    return write_fd(fd.get(), text, output);
  }
  std::string tmp = output + ".tmp." + std::to_string(getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    f.close();
    if (!f.good()) {
      ::unlink(tmp.c_str());
      return sys_error("write " + output);
    }
  }
  if (::rename(tmp.c_str(), output.c_str()) != 0) {
    Error e = sys_error("write " + output);
    ::unlink(tmp.c_str());
    return e;
  }
  return ok_status();
}

// The secret engine for the rules, its compiled database cached in the
// store's cache/ (without a cache it compiles each time).
Result<std::unique_ptr<secrets::SecretScanner>> store_scanner(const Store& store, secrets::RuleSet rules) {
  secrets::SecretScanner::Options sopt;
  sopt.cache_dir = store.root() + "/cache";
  if (!make_dirs(sopt.cache_dir, 0700).ok()) sopt.cache_dir.clear();
  return secrets::SecretScanner::create(std::move(rules), sopt);
}

// `e` with every rule match in its message redacted.
Error redacted(Error e, const secrets::SecretScanner& scanner) {
  e.message = redact_text(e.message, scanner, false);
  return e;
}

int cmd_scan(const ScanArgs& a, const Common& o) {
  auto t0 = std::chrono::steady_clock::now();
  // Everything the user typed is checked before any work.
  static const char* severities[] = {"critical", "high", "medium", "low", "info", "none"};
  bool sev_ok = false;
  for (const char* s : severities) sev_ok |= a.fail_on == s;
  if (!sev_ok) return report_error("", Error{"--fail-on must be one of critical, high, medium, low, info, none"});
  // "secret" (the category of issue 5's rules) is not in the check registry:
  // it switches the secret scan, everything else selects registry checks.
  bool secrets_on = a.checks.empty();
  std::string registry_list;
  for (const auto& name : split_list(a.checks)) {
    if (name == "secret" || name == "secrets") secrets_on = true;
    else registry_list += (registry_list.empty() ? "" : ",") + name;
  }
  std::vector<const CheckInfo*> none;
  auto checks = a.checks.empty() || !registry_list.empty() ? select_checks(registry_list) : Result(none);
  if (!checks) return report_error("", checks.error());
  auto rules = secrets::load_rules(a.rules_opts.rule_dirs, a.rules_opts.disabled, a.rules_opts.builtin);
  if (!rules) return report_error("", rules.error());
  const auto& pol = policy::builtin_policy();
  if (!pol) return report_error("", pol.error());
  IgnoreList ignores;
  {
    auto l = a.ignorefile.empty() ? load_ignore_file(".moatignore", false) : load_ignore_file(a.ignorefile, true);
    if (!l) return report_error("", l.error());
    ignores = std::move(l).value();
  }

  auto store = Store::open(o.store, Store::Lock::Shared);
  if (!store) return report_error("", store.error());
  // dir: of an unpacked tree is scanned where it is (scanner/session/inplace.h).
  auto inplace = in_place_target(a.image, o.limits);
  if (!inplace) return report_error(a.image, inplace.error());
  if (*inplace && a.mount_mode != "auto" && !o.quiet)
    std::fprintf(stderr, "moat: note: --mount %s does not apply: an unpacked dir: tree is scanned in place\n",
                 a.mount_mode.c_str());
  // The secret engine. It runs even without the secret checks: every history
  // line the report shows goes through it, so no output holds a whole secret.
  auto scanner = store_scanner(*store, std::move(rules).value());
  if (!scanner) return report_error("", scanner.error());
  if (o.verbose) std::fprintf(stderr, "moat: secret rules: %s\n", (*scanner)->database_note().c_str());
  // From here an error can name an image's entry, file or account, and a
  // token can be that name: the message goes through the engine too.
  auto fail = [&](const std::string& image, const Error& e) { return report_error(image, redacted(e, **scanner)); };
  // The secret scan of each layer starts as the layer lands (secret_prefetch.h),
  // overlapping the download of the others. Destroyed before the scanner and the store.
  std::optional<SecretPrefetch> prefetch;
  if (secrets_on && !*inplace) {
    std::function<void(const std::string&)> log;
    if (o.verbose) log = [](const std::string& s) { std::fprintf(stderr, "moat: %s\n", s.c_str()); };
    prefetch.emplace(*store, **scanner, std::move(log));
  }
  // The trust gate: a rejected image is reported without a single layer fetched.
  std::optional<trust::TrustResult> trusted;
  auto decide = [&](const ImageDesc& desc) -> Status {
    trusted = trust::evaluate_image(a.trust, a.image, desc);
    if (trusted->decision == trust::Decision::Error)
      return Error{"trust could not be evaluated: " + trusted->reason, 0, trusted->hint};
    if (trusted->decision == trust::Decision::Rejected) return Error{"rejected by the trust policy"};
    return ok_status();
  };
  auto gate = [&](const ImageSource& src) { return decide(src.desc()); };
  auto rec = [&]() -> Result<ImageRecord> {
    if (*inplace) {
      if (!a.trust.policy.empty()) MOAT_TRY(decide(ImageDesc{}));  // an unpacked tree: no manifest, no signature
      return (*inplace)->record;
    }
    PullObserver* obs = prefetch ? &*prefetch : nullptr;
    return a.trust.policy.empty() ? pull_image(a.image, o, *store, {}, obs) : pull_image(a.image, o, *store, gate, obs);
  }();
  if (!rec && trusted && trusted->decision == trust::Decision::Rejected) {
    Report rej;
    rej.reference = a.image;
    rej.image.manifest_digest = trusted->manifest_digest;
    rej.image.platform = trusted->platform;
    rej.scan.trust = "rejected";
    rej.trust = trust::trust_json(*trusted);
    rej.findings.push_back(*trust::trust_finding(*trusted));
    std::fprintf(stderr, "moat: %s: rejected by the trust policy: %s\nmoat: hint: `moat verify %s --policy %s` shows "
                 "every requirement and signature\n", a.image.c_str(), trusted->reason.c_str(), a.image.c_str(),
                 a.trust.policy.c_str());
    std::string text = a.format == "json" ? report_json(rej) : a.format == "sarif" ? report_sarif(rej, *pol)
                       : report_table(rej, TableOptions{a.output.empty() && isatty(1) && !getenv("NO_COLOR"), o.verbose, 100});
    if (auto w = write_report(text, a.output); !w.ok()) return report_error("", w.error());
    return 1;  // enforcement the user asked for, whatever --fail-on says
  }
  if (!rec) return fail("", rec.error());
  Report r;
  if (trusted) {
    r.scan.trust = trust::decision_name(trusted->decision);
    r.trust = trust::trust_json(*trusted);
  }
  r.reference = rec->names.empty() ? a.image : parse_reference(a.image).ok() ? parse_reference(a.image)->text : a.image;
  // containers-storage (and bare names): the store and the name it resolved to say where the image came from.
  if (auto p = parse_reference(a.image); p && p->transport == Transport::ContainersStorage && !rec->names.empty())
    r.reference = rec->names.front();
  r.image = *rec;
  r.errors = rec->notes;  // unverified layers (--allow-unverified)
  r.scan.rootless = geteuid() != 0 || in_moat_userns();
  auto mounted = *inplace ? in_place_mount(**inplace)
                          : run_scan_mount(*store, *rec, a.mount_mode, o.quiet, o.verbose);  // scanner/session/mount_cmd.h
  if (!mounted) return fail(a.image, mounted.error());
  r.scan.mode = mounted->mode;
  r.scan.id_mapping = mounted->id_mapping;
  for (const CheckInfo* c : *checks) r.scan.checks.emplace_back(c->id);
  if (secrets_on) r.scan.checks.emplace_back("secret");

  std::vector<Finding> config_secrets;
  if (secrets_on) {
    auto cs = config_secret_findings(*rec, **scanner);
    if (!cs) return fail(a.image, cs.error());
    config_secrets = std::move(cs).value();
  }
  const ImageRecord shown = redact_for_report(*rec, **scanner);
  r.image = shown;

  // The view: the userspace merge already is one; an overlay scan builds it
  // from the indexes for the metadata truth.
  std::optional<MergedView> built;
  if (!mounted->view) {
    auto v = MergedView::build(*store, *rec);
    if (!v) return fail(a.image, v.error());
    built = std::move(v).value();
  }
  const MergedView& view = mounted->view ? *mounted->view : *built;
  CheckRunOptions copt;
  copt.checks = *checks;
  copt.verbose = o.verbose;
  const bool tty = isatty(2) && !o.quiet && !o.verbose;  // -v prints its own lines
  if (tty) copt.phase = [](const std::string& what) { std::fprintf(stderr, "\r\033[Kmoat: %s ...", what.c_str()); };
  if (secrets_on) copt.secrets = scanner->get();
  copt.redactor = scanner->get();
  if (prefetch) copt.before_secrets = [&] { prefetch->finish(); };
  if (*inplace) copt.in_place_index = &(*inplace)->index;
  auto run = run_checks(*store, shown, *mounted, view, *pol, copt);
  if (tty) std::fprintf(stderr, "\r\033[K");
  if (!run) return fail(a.image, run.error());
  for (auto& f : config_secrets) run->findings.push_back(std::move(f));
  mounted = Error{"ended"};  // the namespace is no longer needed
  for (auto& e : run->errors) r.errors.push_back(std::move(e));
  if (*inplace) r.errors.insert(r.errors.end(), (*inplace)->errors.begin(), (*inplace)->errors.end());

  IgnoreOutcome ign = apply_ignores(std::move(run->findings), ignores, today_utc());
  for (const auto& e : ign.expired)
    std::fprintf(stderr, "moat: warning: ignore entry %s has expired and no longer applies\n", e.describe().c_str());
  if (o.verbose)
    for (const auto& e : ign.unused) std::fprintf(stderr, "moat: ignore entry %s matched nothing\n", e.describe().c_str());
  r.findings = std::move(ign.kept);
  // After the ignores, which match the real paths.
  redact_findings(r.findings, r.errors, **scanner);
  if (trusted)
    if (auto tf = trust::trust_finding(*trusted)) r.findings.push_back(std::move(*tf));
  r.suppressed = ign.suppressed.size();
  auto status = fail_on_status(r.findings, a.fail_on);
  if (!status) return report_error("", status.error());

  r.scan.duration_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  std::string text;
  if (a.format == "json") text = report_json(r);
  else if (a.format == "sarif") text = report_sarif(r, *pol);
  else text = report_table(r, TableOptions{a.output.empty() && isatty(1) && !getenv("NO_COLOR"), o.verbose, 100});
  if (auto w = write_report(text, a.output); !w.ok()) return report_error("", w.error());
  // Done: leave without freeing. The view, the layer indexes, the package
  // database and the checks' results are hundreds of thousands of small
  // allocations, and freeing them was the serial tail of every scan (20 ms
  // idle, over 100 ms at load 10, after the report was already written). The
  // kernel takes back memory, descriptors and the store's lock (flock); the
  // overlay was detached above, the report is complete, nothing else is open
  // for writing, and every thread is idle.
  std::fflush(nullptr);
  _exit(*status);
}

// A pull error can name an image's entry, and a token can be that name, as
// in a scan's errors. `moat image pull` and `moat mount` need no secret
// engine otherwise: it is made (with the built-in rules) only when there is
// such a text to print.
std::string redact_with_builtin_rules(const std::string& text, const Store& store) {
  auto rules = secrets::load_rules({}, {}, true);
  if (!rules) return text;
  auto scanner = store_scanner(store, std::move(rules).value());
  return scanner ? redact_text(text, **scanner, false) : text;
}

Error redact_pull_error(Error e, const Store& store) {
  e.message = redact_with_builtin_rules(e.message, store);
  return e;
}

int cmd_pull(const std::string& image, const Common& o) {
  auto store = Store::open(o.store, Store::Lock::Shared);
  if (!store) return report_error("", store.error());
  auto rec = pull_image(image, o, *store);
  if (!rec) return report_error("", redact_pull_error(rec.error(), *store));
  std::printf("%s\n", rec->id.c_str());
  return kExitClean;
}

int cmd_ls(const Common& o, bool json_out) {
  auto store = Store::open(o.store, Store::Lock::Shared);
  if (!store) return report_error("", store.error());
  auto imgs = store->images();
  if (!imgs) return report_error("", imgs.error());
  auto layers = store->layers();
  if (!layers) return report_error("", layers.error());
  std::map<std::string, LayerInfo> by_id;
  for (const auto& l : *layers) by_id[l.diff_id] = l;
  if (json_out) {
    nlohmann::ordered_json j;
    j["store"] = store->root();
    j["images"] = nlohmann::ordered_json::array();
    for (const auto& i : *imgs) {
      nlohmann::ordered_json ij;
      ij["id"] = i.id;
      ij["names"] = i.names;
      ij["config_digest"] = i.config_digest;
      ij["manifest_digest"] = i.manifest_digest;
      uint64_t size = 0;
      ij["layers"] = nlohmann::ordered_json::array();
      for (const auto& l : i.layers) {
        size += by_id[l.diff_id].tar_size;
        ij["layers"].push_back(l.diff_id);
      }
      ij["size"] = size;
      j["images"].push_back(ij);
    }
    j["layers"] = nlohmann::ordered_json::array();
    for (const auto& l : *layers)
      j["layers"].push_back({{"diff_id", l.diff_id}, {"size", l.tar_size}, {"disk_usage", l.disk_usage},
                             {"entries", l.entries}, {"used_by", l.used_by}});
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return kExitClean;
  }
  std::printf("%-12s  %6s  %10s  %s\n", "IMAGE ID", "LAYERS", "SIZE", "NAMES");
  for (const auto& i : *imgs) {
    uint64_t size = 0;
    for (const auto& l : i.layers) size += by_id[l.diff_id].tar_size;
    std::string names;
    for (const auto& n : i.names) names += (names.empty() ? "" : ", ") + printable(n);
    std::printf("%-12s  %6zu  %10s  %s\n", i.id.substr(0, 12).c_str(), i.layers.size(), human_bytes(size).c_str(),
                names.c_str());
  }
  std::printf("\n%-19s  %10s  %10s  %8s  %s\n", "LAYER (DIFF ID)", "SIZE", "ON DISK", "ENTRIES", "USED BY");
  for (const auto& l : *layers)
    std::printf("%-19s  %10s  %10s  %8llu  %d\n", l.diff_id.substr(0, 19).c_str(), human_bytes(l.tar_size).c_str(),
                human_bytes(l.disk_usage).c_str(), static_cast<unsigned long long>(l.entries), l.used_by);
  return kExitClean;
}

int cmd_rm(const std::string& image, const Common& o) {
  auto store = Store::open(o.store, Store::Lock::Exclusive);
  if (!store) return report_error("", store.error());
  auto img = store->find_image(image);
  if (!img) return report_error("", img.error());
  // By one of several names: only that name goes. By id or by its last name: the image goes.
  auto untagged = store->untag(*img, image);
  if (!untagged) return report_error("", untagged.error());
  if (*untagged) {
    std::printf("untagged %s (image %s keeps its other names)\n", image.c_str(), img->id.substr(0, 12).c_str());
    return kExitClean;
  }
  auto removed = store->remove_image(*img);
  if (!removed) return report_error("", removed.error());
  std::printf("removed image %s (%zu layers no longer used)\n", img->id.substr(0, 12).c_str(), removed->size());
  return kExitClean;
}

int cmd_prune(const Common& o) {
  auto store = Store::open(o.store, Store::Lock::Exclusive);
  if (!store) return report_error("", store.error());
  auto removed = store->prune();
  if (!removed) return report_error("", removed.error());
  for (const auto& l : *removed) std::printf("removed layer %s\n", l.c_str());
  std::printf("%zu layers removed\n", removed->size());
  return kExitClean;
}

int run(int argc, char** argv) {
  CLI::App app{"moat: a rootless container-image scanner.\n\n"
               "IMAGE is TRANSPORT:LOCATION: oci:PATH[:TAG], oci-archive:PATH[:TAG],\n"
               "docker-archive:PATH[:NAME:TAG|:@INDEX], dir:PATH (an unpacked tree or skopeo's dir: format),\n"
               "containers-storage:[[DRIVER@]GRAPHROOT[+RUNROOT]]NAME|ID (podman's and buildah's store),\n"
               "docker://[HOST[:PORT]/]REPO[:TAG|@DIGEST] (a registry, as podman reads it), or a bare\n"
               "NAME[:TAG]|ID: the image of that name in your containers-storage, else the registry.\n\n"
               "Exit status: 0 clean, 1 a finding at or above --fail-on, 2 the scan could not be completed.",
               "moat"};
  app.require_subcommand(1);
  app.footer(
      "Environment:\n"
      "  XDG_CACHE_HOME         the default store is $XDG_CACHE_HOME/moat (else ~/.cache/moat)\n"
      "  REGISTRY_AUTH_FILE     docker://: the only credentials file read (as --authfile)\n"
      "  CONTAINERS_REGISTRIES_CONF  docker://: the registries.conf to read (as --registries-conf)\n"
      "  MOAT_USERNS_STORE=0|1  with a subuid range, store commands run as root of your user namespace so\n"
      "                         files keep their real owners (default); 0 opts out, 1 insists (docs/mount.md)\n"
      "  NO_COLOR               never colour the table\n"
      "  CONTAINERS_STORAGE_CONF, XDG_CONFIG_HOME, XDG_DATA_HOME, STORAGE_DRIVER\n"
      "                         where containers-storage: finds podman's store, as podman does\n"
      "See README.md and docs/ for the store layout, limits and the report format.");
  Common common;

  std::string image, mount_mode = "auto";
  ScanArgs sa;
  auto* scan = app.add_subcommand("scan", "Scan an image (pulls what the store lacks)");
  scan->add_option("IMAGE", sa.image,
                   "The image to scan; dir: of an unpacked tree is scanned in place (nothing copied into the "
                   "store, owners as on disk)")
      ->required();
  scan->add_option("-f,--format", sa.format, "Report format: table, json (moat.report/v1), sarif (SARIF 2.1.0)")
      ->check(CLI::IsMember({"table", "json", "sarif"}))->capture_default_str();
  scan->add_option("-o,--output", sa.output, "Write the report to FILE instead of stdout");
  scan->add_option("--fail-on", sa.fail_on, "Exit 1 when a finding has at least this severity "
                   "(critical, high, medium, low, info, none)")->capture_default_str();
  scan->add_option("--checks", sa.checks, "Run only these checks: comma-separated check ids and/or categories "
                   "(setuid, setgid, capability, permission, ownership, device, account, integrity, "
                   "sensitive-file, config, secret); default all");
  scan->add_option("--rules", sa.rules_opts.rule_dirs, "Add the secret rule files of DIR (repeatable; "
                   "rules/README.md has the format)");
  scan->add_option("--disable", sa.rules_opts.disabled, "Disable the secret rule with this id (repeatable)");
  scan->add_option("--ignorefile", sa.ignorefile, "Accepted findings (docs/moatignore.md); default .moatignore "
                   "in the working directory when present");
  add_common(scan, common);
  add_pull_options(scan, common);
  trust::add_trust_options(scan, sa.trust, true);
  scan->add_option("--mount", sa.mount_mode, "How to see the merged image: auto (overlay, else userspace), overlay, userspace")
      ->check(CLI::IsMember({"auto", "overlay", "userspace"}))->capture_default_str();

  auto* img = app.add_subcommand("image", "Manage the local layer store");
  img->require_subcommand(1);
  auto* pull = img->add_subcommand("pull", "Bring an image into the store without scanning it");
  pull->add_option("IMAGE", image, "The image to pull")->required();
  add_common(pull, common);
  add_pull_options(pull, common);
  bool ls_json = false;
  auto* ls = img->add_subcommand("ls", "List images and layers in the store, with sizes");
  ls->add_flag("--json", ls_json, "Print JSON");
  add_common(ls, common);
  auto* rm = img->add_subcommand("rm", "Remove an image (by name or id prefix) and the layers only it used");
  rm->add_option("IMAGE", image, "Name (reference) or id prefix")->required();
  add_common(rm, common);
  auto* prune = img->add_subcommand("prune", "Remove layers no image uses and leftovers of interrupted pulls");
  add_common(prune, common);

  MountCmdOptions mount_opts;  // scanner/session/mount_cmd.h
  auto* mnt = app.add_subcommand("mount", "Mount an image read-only in a user namespace and run CMD (default $SHELL) "
                                          "with the merged tree as its working directory");
  mnt->add_option("IMAGE", image, "The image to mount (pulled if missing); then -- CMD [ARG...]")->required();
  mnt->add_option("--mount", mount_mode, "auto (overlay, else userspace), overlay, userspace")
      ->check(CLI::IsMember({"auto", "overlay", "userspace"}))->capture_default_str();
  add_common(mnt, common);
  add_pull_options(mnt, common);

  secrets::RulesOptions rules_opts;
  auto* rules = app.add_subcommand("rules", "List the secret rules, or compile and self-test every rule");
  rules->require_subcommand(1);
  auto add_rules_opts = [&](CLI::App* c) {
    c->add_option("--rules", rules_opts.rule_dirs, "Add the rule files of DIR (repeatable; an id of a built-in rule replaces it)");
    c->add_option("--disable", rules_opts.disabled, "Disable the rule with this id (repeatable)");
    c->add_flag("!--no-builtin", rules_opts.builtin, "Only the rules given with --rules");
  };
  auto* rules_list = rules->add_subcommand("list", "List every enabled rule");
  rules_list->add_flag("--json", rules_opts.json, "Print JSON, with the patterns");
  add_rules_opts(rules_list);
  auto* rules_check = rules->add_subcommand("check", "Compile every rule; every example must match, every negative example must not");
  add_rules_opts(rules_check);

  trust::VerifyArgs verify_args;  // scanner/trust/commands.h
  auto* verify = app.add_subcommand("verify", "Evaluate the trust policy (signatures) for an image: exit 0 accepted, "
                                              "1 rejected, 2 could not evaluate");
  trust::add_verify_options(verify, verify_args);
  add_pull_options(verify, common);  // --platform, limits, docker:// options

  auto* version = app.add_subcommand("version", "Print the version");
  bool version_verbose = false;
  version->add_flag("-v,--verbose", version_verbose,
                    "Also print build choices: the gzip inflater and the shipped secret rule database");

  // `moat mount IMAGE -- CMD...`: CMD is split off before CLI11 sees it (CLI11
  // would rewrite an argument like "[ -f x ]"), so it reaches the command byte for byte.
  if (argc > 1 && std::string(argv[1]) == "mount") {
    for (int i = 2; i < argc; ++i)
      if (std::string(argv[i]) == "--") {
        mount_opts.argv.assign(argv + i + 1, argv + argc);
        argc = i;
        break;
      }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // A usage error is a failed scan: exit 2, never 0 or 1.
    std::string what = e.what();
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
      known |= argc > 1 && sub->get_name() == argv[1];
    if (argc > 1 && argv[1][0] != '-' && !known) what = std::string("unknown command \"") + argv[1] + "\"";
    std::string more = known ? std::string(" or `moat ") + argv[1] + " --help`" : "";
    std::fprintf(stderr, "moat: error: %s\nmoat: hint: see `moat --help`%s\n", what.c_str(), more.c_str());
    return kExitFailed;
  }

  if (!common.tls_verify.empty()) common.registry.tls_verify = common.tls_verify == "true";
  if (common.verbose) common.registry.log = [](const std::string& s) { std::fprintf(stderr, "moat: %s\n", s.c_str()); };
  registry::set_default_options(common.registry);
  if (*rules_list) return secrets::rules_list(rules_opts, std::cout, std::cerr);
  if (*rules_check) return secrets::rules_check(rules_opts, std::cout, std::cerr);
  if (*version) {
    std::printf("moat %s\n", MOAT_VERSION);
    if (version_verbose)
      std::printf("gzip layers: %s\nVectorscan: %s\nsecret rule database: %s\n", gzip_inflater().c_str(), hs_version(),
                  secrets::shipped_database_status().c_str());
    return kExitClean;
  }
  if (*scan) return cmd_scan(sa, common);
  if (*verify) {
    verify_args.platform = common.platform;
    verify_args.limits = common.limits;
    return trust::cmd_verify(verify_args);
  }
  if (*mnt) {
    mount_opts.image = image;
    mount_opts.mode = mount_mode;
    mount_opts.store_dir = common.store;
    mount_opts.quiet = common.quiet;
    mount_opts.verbose = common.verbose;
    mount_opts.redact = redact_with_builtin_rules;
    return cmd_mount(mount_opts, [&](Store& s) { return pull_image(image, common, s); });
  }
  if (*pull) return cmd_pull(image, common);
  if (*ls) return cmd_ls(common, ls_json);
  if (*rm) return cmd_rm(image, common);
  if (*prune) return cmd_prune(common);
  return kExitFailed;
}

}  // namespace
}  // namespace moat

int main(int argc, char** argv) {
  umask(077);
  // The namespace helper (scanner/session/namespace.h): a fresh process, before any thread exists.
  if (argc > 1 && std::string(argv[1]) == moat::kSessionArg) return moat::session_helper_main(argc, argv);
  // With a subuid range (unless MOAT_USERNS_STORE=0), the whole command runs as root of the subuid user namespace
  // (true owners on disk), entered by this process before any thread exists.
  // Not for an in-place scan of an unpacked tree: it reports the tree's owners
  // as the host sees them, which the namespace would show as nobody.
  if (!moat::is_in_place_scan(argc, argv))
    if (auto rc = moat::maybe_enter_userns(argc, argv)) return *rc;
  try {
    return moat::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moat: internal error: %s\n", e.what());
    return 2;
  }
}
