// Fuzz target: registries.conf (version 2) and the references it rewrites,
// through storage/sources/registry/registries_conf.h and docker_ref.h: the
// TOML parsed by parse_registries_conf(), then for each reference line
// parse_docker_ref(), and pull_sources() (prefix match, blocked, mirrors,
// the prefix rewrite) for a qualified one or resolve_short_name() (aliases,
// unqualified-search) for a short one.
//
// Input: registries.conf, "\n@@@@\n", then references, one per line (at most 8).
#include "storage/sources/registry/docker_ref.h"
#include "storage/sources/registry/registries_conf.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;
using namespace moat::registry;

namespace {

void check_ref(const DockerRef& r) {
  MOAT_FUZZ_ASSERT(!r.registry.empty() && !r.repository.empty(), "a reference without registry or repository");
  MOAT_FUZZ_ASSERT(!r.tag.empty() || !r.digest.empty(), "a reference without tag or digest");
  // What moat pulls is written back as text and read again (pull_sources does): it must read the same.
  auto again = parse_docker_ref(r.text());
  MOAT_FUZZ_ASSERT(again.ok(), "a normalized reference does not parse again");
  MOAT_FUZZ_ASSERT(again->text() == r.text(), "a normalized reference reads back differently");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data), size), 2);
  auto conf = parse_registries_conf(parts[0], "registries.conf");
  if (!conf.ok()) MOAT_FUZZ_ASSERT(!conf.error().describe().empty(), "an error without a message");
  std::string_view refs = parts.size() > 1 ? std::string_view(parts[1]) : std::string_view("alpine\nquay.io/a/b:1\n");
  for (int n = 0; n < 8 && !refs.empty(); ++n) {
    size_t nl = refs.find('\n');
    std::string line(refs.substr(0, nl));
    refs = nl == std::string_view::npos ? std::string_view() : refs.substr(nl + 1);
    bool had_host = false;
    auto ref = parse_docker_ref(line, &had_host);
    if (!ref.ok()) continue;
    check_ref(*ref);
    if (!conf.ok()) continue;
    if (had_host) {
      auto src = pull_sources(*conf, *ref);
      if (src.ok()) {
        MOAT_FUZZ_ASSERT(!src->empty(), "no pull source and no error");
        for (const auto& s : *src) check_ref(s.ref);
      }
    } else {
      auto res = resolve_short_name(*conf, line);
      if (!res.ok()) continue;
      for (const auto& c : res->candidates) check_ref(c);
      if (res->ambiguous) (void)ambiguous_error(line, *res);
    }
  }
  return 0;
}
