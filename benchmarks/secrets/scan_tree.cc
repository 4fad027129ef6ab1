// scan_tree: content-scan throughput of the secret engine over a real tree.
//
//   scan_tree [--rules N|all] [--skip ID,...] [--threads T] [--cache DIR] [--show] [--max-file BYTES] DIR...
//   scan_tree --each DIR...   time every rule alone over the first 256 MB
//   scan_tree --only ID,... DIR...   scan with just these rules
//   --beneath: open each file as the layer scan does (scanner/checks/
//   secret_scan.cc): by name beneath its directory's fd with openat2
//   (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS ...), fstat, and the size as the
//   read hint, which also lets the scan skip an ELF file's machine code
//   (rules/secrets/elf_code.h; the bytes skipped are printed as
//   code_skipped, and are not in bytes= or MB/s); without it, open(2) by the
//   full path and read every byte to EOF
//   --compile: compile the kept rules at run time instead of taking the
//   shipped database, which always holds every built-in rule (a subset
//   from it drops the other rules' matches but still scans for them), so
//   that --rules N, --skip and --only time that subset's own Vectorscan work
//
// Walks the directories (no symlinks followed), scans every regular file with
// SecretScanner::scan_fd, and prints bytes, seconds, MB/s, MB/s per thread and
// the findings per rule. --rules N keeps the first N built-in rules (load
// order), so the same tree can be timed with 10, 100 and all rules. Run the
// tree once before timing so it is read from page cache, and compare with
// `grep -rIl LITERAL DIR...` on the same tree (see README.md).
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "rules/secrets/engine.h"
#include "rules/secrets/rules.h"

using namespace moat::secrets;

// User + system CPU time of the process: "per core" throughput that holds
// even when other work shares the machine.
static double cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Which rules cost the most: each rule compiled alone, timed over the same
// in-memory sample (the first 256 MB of regular files). CPU time, not wall
// time: the machine is shared, and a single rule's figure is small.
static int time_each_rule(const RuleSet& all, const std::vector<std::string>& dirs) {
  std::vector<std::string> sample;
  size_t total = 0;
  for (const auto& d : dirs) {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(
             d, std::filesystem::directory_options::skip_permission_denied, ec);
         it != std::filesystem::recursive_directory_iterator() && total < (256u << 20); it.increment(ec)) {
      if (ec || !it->is_regular_file(ec) || it->is_symlink(ec)) continue;
      int fd = ::open(it->path().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) continue;
      std::string buf;
      char tmp[65536];
      ssize_t r;
      while ((r = ::read(fd, tmp, sizeof tmp)) > 0) buf.append(tmp, static_cast<size_t>(r));
      ::close(fd);
      total += buf.size();
      sample.push_back(std::move(buf));
    }
  }
  std::vector<std::pair<double, std::string>> times;
  for (const auto& r : all.rules) {
    RuleSet one;
    one.rules.push_back(r);
    auto tc = std::chrono::steady_clock::now();
    auto sc = SecretScanner::create(one);
    if (!sc.ok()) continue;
    double compile_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - tc).count();
    double c0 = cpu_seconds();
    uint64_t n = 0;
    for (const auto& b : sample) {
      auto st = (*sc)->scan_buffer(b.data(), b.size(), [&](const SecretFinding&) { ++n; return SinkAction::kContinue; });
      (void)st;
    }
    double s = cpu_seconds() - c0;
    times.emplace_back(s, r.id + " findings=" + std::to_string(n) + " compile_ms=" + std::to_string(static_cast<int>(compile_s * 1000)));
  }
  std::sort(times.rbegin(), times.rend());
  std::printf("sample: %zu files, %zu bytes\n", sample.size(), total);
  for (const auto& [s, id] : times) std::printf("%8.3f s  %6.0f MB/s  %s\n", s, static_cast<double>(total) / 1e6 / s, id.c_str());
  return 0;
}

int main(int argc, char** argv) {
  size_t nrules = SIZE_MAX;
  unsigned threads = 1;
  bool show = false, each = false, compile = false, beneath = false;
  uint64_t max_file = UINT64_MAX;
  SecretScanner::Options opts;
  std::vector<std::string> dirs, skip, only;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--rules" && i + 1 < argc) {
      std::string v = argv[++i];
      nrules = v == "all" ? SIZE_MAX : std::strtoull(v.c_str(), nullptr, 10);
    } else if (a == "--threads" && i + 1 < argc) {
      threads = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
    } else if (a == "--max-file" && i + 1 < argc) {
      max_file = std::strtoull(argv[++i], nullptr, 10);
    } else if ((a == "--skip" || a == "--only") && i + 1 < argc) {
      std::string v = argv[++i];
      auto& list = a == "--skip" ? skip : only;
      for (size_t p = 0, q; p <= v.size(); p = q + 1) {
        q = v.find(',', p);
        if (q == std::string::npos) q = v.size();
        list.push_back(v.substr(p, q - p));
      }
    } else if (a == "--cache" && i + 1 < argc) {
      opts.cache_dir = argv[++i];
    } else if (a == "--beneath") {
      beneath = true;
    } else if (a == "--compile") {
      compile = true;
    } else if (a == "--each") {
      each = true;
    } else if (a == "--show") {
      show = true;
    } else {
      dirs.push_back(a);
    }
  }
  if (dirs.empty() || threads == 0) {
    std::fprintf(stderr, "usage: scan_tree [--rules N|all] [--skip ID,...|--only ID,...] [--compile] [--beneath] [--each] [--threads T] [--show] [--max-file BYTES] DIR...\n");
    return 2;
  }
  auto set = load_builtin_rules();
  if (!set.ok()) {
    std::fprintf(stderr, "%s\n", set.error().describe().c_str());
    return 2;
  }
  if (nrules < set->rules.size()) set->rules.resize(nrules);
  if (!only.empty()) {
    for (const auto& r : set->rules)
      if (std::find(only.begin(), only.end(), r.id) == only.end()) skip.push_back(r.id);
  }
  if (auto st = set->disable(skip); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.error().describe().c_str());
    return 2;
  }
  if (compile)
    for (auto& r : set->rules) r.title += " ";  // another digest: not in the shipped database
  if (each) return time_each_rule(*set, dirs);
  auto t0 = std::chrono::steady_clock::now();
  auto sc = SecretScanner::create(std::move(set).value(), opts);
  if (!sc.ok()) {
    std::fprintf(stderr, "%s\n", sc.error().describe().c_str());
    return 2;
  }
  double compile_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::vector<std::string> files;
  for (const auto& d : dirs) {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(
             d, std::filesystem::directory_options::skip_permission_denied, ec);
         it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) continue;
      if (it->is_regular_file(ec) && !it->is_symlink(ec)) files.push_back(it->path().string());
    }
  }

  std::atomic<size_t> next{0};
  std::atomic<uint64_t> bytes{0}, nfindings{0}, nbinary{0}, nskipped{0};
  std::mutex mu;
  std::map<std::string, uint64_t> per_rule;
  auto work = [&] {
    std::string dir;  // --beneath: the directory `dfd` is open on
    int dfd = -1;
    for (size_t i = next++; i < files.size(); i = next++) {
      int fd = -1;
      uint64_t size_hint = UINT64_MAX;
      if (beneath) {
        const std::string& path = files[i];
        size_t slash = path.rfind('/');
        std::string d = path.substr(0, slash), name = path.substr(slash + 1);
        if (d != dir || dfd < 0) {
          if (dfd >= 0) ::close(dfd);
          dfd = ::open(d.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
          dir = d;
        }
        open_how how{};
        how.flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
        fd = static_cast<int>(::syscall(SYS_openat2, dfd, name.c_str(), &how, sizeof how));
        struct stat sb;
        if (fd >= 0 && ::fstat(fd, &sb) == 0) size_hint = static_cast<uint64_t>(sb.st_size);
      } else {
        fd = ::open(files[i].c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      }
      if (fd < 0) continue;
      auto st = (*sc)->scan_fd(fd, max_file, [&](const SecretFinding& f) {
        std::lock_guard<std::mutex> g(mu);
        ++per_rule[f.rule_id];
        if (show)
          std::printf("%s:%llu: %s %s\n", files[i].c_str(), static_cast<unsigned long long>(f.line),
                      f.rule_id.c_str(), f.redacted.c_str());
        return SinkAction::kContinue;
      }, size_hint);
      ::close(fd);
      if (st.ok()) {
        bytes += st->bytes;
        nfindings += st->findings;
        nbinary += st->binary;
        nskipped += st->code_skipped;
      }
    }
    if (dfd >= 0) ::close(dfd);
  };
  auto t1 = std::chrono::steady_clock::now();
  double cpu0 = cpu_seconds();
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t) ts.emplace_back(work);
  for (auto& t : ts) t.join();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  double cpu = cpu_seconds() - cpu0;
  double mb = static_cast<double>(bytes.load()) / 1e6;
  std::printf("rules=%zu threads=%u files=%zu binary=%llu bytes=%llu seconds=%.3f cpu_seconds=%.3f MB/s=%.0f "
              "MB/s/cpu=%.0f compile_s=%.3f findings=%llu code_skipped=%llu\n",
              (*sc)->rule_count(), threads, files.size(), static_cast<unsigned long long>(nbinary.load()),
              static_cast<unsigned long long>(bytes.load()), s, cpu, mb / s, mb / cpu, compile_s,
              static_cast<unsigned long long>(nfindings.load()), static_cast<unsigned long long>(nskipped.load()));
  std::printf("database: %s\n", (*sc)->database_note().c_str());
  for (const auto& [id, n] : per_rule) std::printf("  %-40s %llu\n", id.c_str(), static_cast<unsigned long long>(n));
  return 0;
}
