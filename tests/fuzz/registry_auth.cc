// Fuzz target: what a registry and its token service answer about
// authentication, through the parsers client.cc uses
// (storage/sources/registry/responses.h, http.h).
//
// Input: parts separated by "\n@@@@\n":
//   0  a WWW-Authenticate header value   parse_challenge(); its realm through
//                                         split_url(), service and scope through url_escape()
//   1  a token service body              parse_token_reply(), token_renew_at()
//   2  a registry error body             registry_error()
//   3  a Retry-After value               parse_retry_after(), utc_in() (the 429 message)
//   4  a Location header                 resolve_url() against the registry URL, split_url()
#include <chrono>

#include "storage/sources/registry/http.h"
#include "storage/sources/registry/responses.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;
using namespace moat::registry;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data), size), 5);
  parts.resize(5);

  Challenge c = parse_challenge(parts[0]);
  for (char ch : c.scheme) MOAT_FUZZ_ASSERT(!(ch >= 'A' && ch <= 'Z'), "the challenge scheme is not lowercased");
  for (const auto& [k, v] : c.params) {
    for (char ch : k) MOAT_FUZZ_ASSERT(!(ch >= 'A' && ch <= 'Z'), "a challenge parameter name is not lowercased");
    (void)url_escape(v);
  }
  UrlParts rp;
  auto realm = c.params.find("realm");
  if (realm != c.params.end() && split_url(realm->second, rp)) (void)rp.origin();

  TokenReply t = parse_token_reply(parts[1]);
  if (!t.token.empty()) {
    MOAT_FUZZ_ASSERT(t.is_json && t.expires_in >= 60, "a token reply with a lifetime under 60 s");
    auto now = std::chrono::steady_clock::now();
    MOAT_FUZZ_ASSERT(token_renew_at(t.expires_in, now) > now, "a fresh token is renewed before it was fetched");
  }

  (void)registry_error(parts[2]);

  long ra = parse_retry_after(parts[3]);
  if (ra >= 0) {
    MOAT_FUZZ_ASSERT(ra <= 366L * 24 * 3600, "a Retry-After beyond a year (its date overflowed)");
    MOAT_FUZZ_ASSERT(!utc_in(ra).empty(), "no time for a Retry-After");
  }

  std::string next = resolve_url("https://registry.example:5000/v2/library/alpine/manifests/latest", parts[4]);
  UrlParts np;
  if (!next.empty() && split_url(next, np)) (void)np.origin();
  return 0;
}
