// compile_curve: what a run-time compile of secret rules costs (the built-in
// rules ship precompiled, rules/secrets/database.h; a user's --rules set is
// compiled when moat runs). CPU time of the calling thread, so a busy
// machine shifts the numbers less than wall time would.
//
//   secrets_compile_curve            each built-in rule alone (slowest 15),
//                                    then random subsets of 10/30/50/100/all
//
// Measurements only; nothing here is part of ctest.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "rules/secrets/database.h"

using namespace moat::secrets;

static double cpu_now() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

static double compile_cpu(const std::vector<const SecretRule*>& rules) {
  std::vector<uint32_t> widths;
  double t0 = cpu_now();
  auto db = compile_database(rules, nullptr, widths);
  double s = cpu_now() - t0;
  if (!db.ok()) {
    std::fprintf(stderr, "%s\n", db.error().describe().c_str());
    return -1;
  }
  hs_free_database(*db);
  return s;
}

int main() {
  auto set = load_builtin_rules();
  if (!set.ok()) {
    std::fprintf(stderr, "%s\n", set.error().describe().c_str());
    return 2;
  }
  std::vector<const SecretRule*> all;
  for (const auto& r : set->rules) all.push_back(&r);
  std::vector<std::pair<double, std::string>> alone;
  double sum = 0;
  for (const SecretRule* r : all) {
    double s = compile_cpu({r});
    sum += s;
    alone.emplace_back(s, r->id);
  }
  std::sort(alone.rbegin(), alone.rend());
  std::printf("each rule alone: %zu rules, %.3f s CPU in total; the slowest:\n", all.size(), sum);
  for (size_t i = 0; i < 15 && i < alone.size(); ++i)
    std::printf("  %6.1f ms  %s\n", alone[i].first * 1e3, alone[i].second.c_str());
  std::mt19937 rng(1);
  for (size_t n : {size_t{10}, size_t{30}, size_t{50}, size_t{100}, all.size()}) {
    double best = 1e9, worst = 0;
    for (int k = 0; k < 5; ++k) {
      auto v = all;
      std::shuffle(v.begin(), v.end(), rng);
      v.resize(n);
      double s = compile_cpu(v);
      best = std::min(best, s);
      worst = std::max(worst, s);
    }
    std::printf("%3zu random built-in rules together: %.3f-%.3f s CPU (5 draws)\n", n, best, worst);
  }
  return 0;
}
