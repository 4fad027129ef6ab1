// The parsers of what a registry (or its token service) answers, apart from
// the exchange itself so that client.cc and the fuzz targets (tests/fuzz/
// registry_auth, registry_manifest) run the same code. Every byte is untrusted.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <utility>

#include "storage/result.h"
#include "storage/sources/registry/client.h"

namespace moat::registry {

// WWW-Authenticate: Scheme k="v", k2=v2
struct Challenge {
  std::string scheme;  // lowercased: basic, bearer
  std::map<std::string, std::string> params;
};
Challenge parse_challenge(const std::string& header);

// The registry's error body {"errors":[{"code":..,"message":..}]}: the first
// error's code and message, empty when the body is not that.
std::pair<std::string, std::string> registry_error(const std::string& body);

// A token service's answer: {"token": T} or {"access_token": T}, "expires_in" seconds.
struct TokenReply {
  bool is_json = false;  // false: the body is not JSON at all
  std::string token;     // empty: no usable token in it
  long expires_in = 60;  // seconds, 60 to 86400 whatever the body says
};
TokenReply parse_token_reply(const std::string& body);
// When a token of that lifetime, fetched `now`, is renewed (a little early).
std::chrono::steady_clock::time_point token_renew_at(long expires_in, std::chrono::steady_clock::time_point now);

// Retry-After: seconds (at most a year) or an HTTP date; -1 when absent or unreadable.
long parse_retry_after(const std::string& value);
// The UTC time `seconds` from now, for messages ("2026-11-30 14:00:00 UTC").
std::string utc_in(long seconds);

// A manifest body as GET /v2/REPO/manifests/REF served it: its digest computed
// (and checked when REF is a digest), its media type from the body's
// mediaType, else from Content-Type. `what` names it in errors.
Result<Manifest> manifest_from_body(std::string body, const std::string& content_type, const std::string& ref,
                                    const std::string& what);

}  // namespace moat::registry
