// Fuzz target: the secret engine (rules/secrets/engine.h) with the built-in
// rules over arbitrary bytes, and redact_text() (scanner/checks/secret_scan.h), which
// every history line of a report goes through.
//
// Invariants: every finding lies inside the input, its fingerprint is that of
// the bytes it covers, its redacted text does not hold the whole secret, and
// redact_text() leaves no whole secret behind (unless the same bytes also
// occur elsewhere in the input, outside every finding).
#include "rules/secrets/engine.h"
#include "scanner/checks/secret_scan.h"
#include "tests/fuzz/builtin_scanner.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;

namespace {

const secrets::SecretScanner& scanner() { return fuzz::builtin_scanner(); }

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)scanner();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  // Binary input is scanned as `strings` sees it (engine.h): with a NUL in
  // the first 64 KiB chunk, every byte outside printable ASCII and tab reads
  // as '\n'. Findings are about those bytes.
  std::string seen = text;
  if (size <= 65536 && text.find('\0') != std::string::npos)
    for (char& c : seen)
      if (!((c >= 0x20 && c < 0x7f) || c == '\t')) c = '\n';
  std::vector<std::string> secrets_found;
  bool any = false;
  auto st = scanner().scan_buffer(text.data(), text.size(), [&](const secrets::SecretFinding& f) {
    MOAT_FUZZ_ASSERT(f.offset <= text.size() && f.length <= text.size() - f.offset, "a finding outside the input");
    std::string_view s = std::string_view(seen).substr(f.offset, f.length);
    MOAT_FUZZ_ASSERT(f.fingerprint == secrets::fingerprint(f.rule_id, s), "a fingerprint of other bytes");
    MOAT_FUZZ_ASSERT(f.length == 0 || f.redacted.find(s) == std::string::npos, "a redacted text holds the secret");
    any = true;
    // Only a secret whose raw bytes are the ones the engine saw can be
    // looked for in the raw text below (binary input is mapped first).
    if (std::string_view(text).substr(f.offset, f.length) == s) secrets_found.emplace_back(s);
    return secrets::SinkAction::kContinue;
  });
  MOAT_FUZZ_ASSERT(st.ok(), "scanning a buffer failed");
  if (!any) return 0;
  std::string red = redact_text(text, scanner());
  for (const auto& s : secrets_found) {
    if (s.size() < 8 || s.find('*') != std::string::npos) continue;
    size_t first = text.find(s);
    if (text.find(s, first + 1) != std::string::npos) continue;  // the bytes occur twice
    MOAT_FUZZ_ASSERT(red.find(s) == std::string::npos, "redact_text left a whole secret");
  }
  return 0;
}
