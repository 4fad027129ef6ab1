// One HTTP exchange over libcurl, and nothing more: no redirects followed, no
// authentication, no retries (client.cc decides all of that). Every easy handle
// shares one connection cache, DNS cache and TLS session cache, so requests to
// the same registry reuse connections across threads; HTTP/2 is negotiated
// over TLS where the server offers it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "storage/result.h"

namespace moat::registry {

struct TlsConfig {
  bool verify = true;
  std::string ca_pem;                  // extra CAs (certs.d *.crt), added to the system trust store
  std::string client_cert, client_key; // paths of a certs.d *.cert / *.key pair, or empty
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;    // "Name: value"
  std::string body;                    // for POST
  TlsConfig tls;
  size_t max_body = 1u << 20;          // collected bodies beyond this fail (too_big)
  int64_t range_from = -1;             // sends Range: bytes=N-
  // When set, a 2xx body is streamed here instead of collected; return false to abort.
  std::function<bool(const char*, size_t)> sink;
  long timeout_connect_s = 30;
  long low_speed_time_s = 60;          // abort when under 1 byte/s for this long
};

struct HttpResponse {
  long status = 0;
  std::multimap<std::string, std::string> headers;  // names lowercased
  std::string body;                    // collected: 2xx without a sink, or an error body (first 64 KiB)
  uint64_t body_bytes = 0;             // bytes of body received (streamed or collected)
  bool too_big = false;
  bool aborted = false;                // the sink returned false
  int curl_code = 0;                   // CURLE_OK on a complete exchange
  std::string curl_error;              // curl's message when curl_code != 0
  bool tls_error = false;              // the failure was certificate or TLS related
  std::string header(const std::string& lower_name) const;
};

// Performs one exchange. Transport failures are reported in the response
// (curl_code), not as an Error, so the caller can decide to retry or resume.
HttpResponse http_perform(const HttpRequest& req);

// Splits an absolute URL; false when it is not http(s)://HOST[:PORT]/...
struct UrlParts {
  std::string scheme, host, port;  // port "" when default
  std::string origin() const;      // scheme://host[:port]
};
bool split_url(const std::string& url, UrlParts& out);
// Resolves a Location header against the URL it came from.
std::string resolve_url(const std::string& base, const std::string& location);
std::string url_escape(const std::string& s);

}  // namespace moat::registry
