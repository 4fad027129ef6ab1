// Fuzz target: registries.d YAML files (containers-registries.d) through
// parse_registries_yaml() (scanner/trust/registries_d.h), two files into one
// configuration as load_registries_d() reads a directory, then the lookaside
// and use-sigstore-attachments chosen for a few references.
//
// Input: two YAML files separated by "\n@@@@\n".
#include "scanner/trust/docker_ref.h"
#include "scanner/trust/registries_d.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;
using namespace moat::trust;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data), size), 2);
  RegistriesD d;
  d.dir = "/etc/containers/registries.d";
  for (size_t i = 0; i < parts.size(); ++i) {
    Status st = parse_registries_yaml(parts[i], d.dir + "/" + std::to_string(i) + ".yaml", d);
    if (!st.ok()) {
      MOAT_FUZZ_ASSERT(!st.error().describe().empty(), "an error without a message");
      return 0;
    }
  }
  static const std::vector<DockerRef> refs = [] {
    std::vector<DockerRef> v;
    for (const char* t : {"busybox", "quay.io/ns/app:1", "localhost:5000/a/b/c@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"})
      v.push_back(*parse_docker_ref(t));
    return v;
  }();
  for (const auto& r : refs) {
    std::string origin;
    (void)d.lookaside_base(r, r.text(), &origin);
    (void)d.use_sigstore_attachments(r, r.text());
  }
  return 0;
}
