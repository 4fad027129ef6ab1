#include "storage/sources/registry/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <mutex>

namespace moat::registry {
namespace {

// The process-wide share handle: connections, DNS and TLS sessions.
struct Shared {
  CURLSH* sh = nullptr;
  std::mutex locks[CURL_LOCK_DATA_LAST];
  Shared() {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    sh = curl_share_init();
    curl_share_setopt(sh, CURLSHOPT_LOCKFUNC, +[](CURL*, curl_lock_data d, curl_lock_access, void* p) {
      static_cast<Shared*>(p)->locks[d].lock();
    });
    curl_share_setopt(sh, CURLSHOPT_UNLOCKFUNC, +[](CURL*, curl_lock_data d, void* p) {
      static_cast<Shared*>(p)->locks[d].unlock();
    });
    curl_share_setopt(sh, CURLSHOPT_USERDATA, this);
    curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  }
};
Shared& shared() {
  static Shared s;
  return s;
}

// The system trust store as a PEM blob, read once (curl's default CA file).
const std::string& system_cas() {
  static const std::string pem = [] {
    std::string out;
    const char* files[] = {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"};
    for (const char* f : files) {
      if (FILE* fp = fopen(f, "re")) {
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, fp)) > 0) out.append(buf, n);
        fclose(fp);
        break;
      }
    }
    return out;
  }();
  return pem;
}

struct Exchange {
  const HttpRequest* req;
  HttpResponse* resp;
  CURL* h;
  uint64_t skip = 0;  // a 200 answer to a Range request: the bytes the caller already has
};

size_t on_header(char* data, size_t size, size_t n, void* p) {
  auto* x = static_cast<Exchange*>(p);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    x->resp->headers.clear();  // a new response (after 100 Continue)
    return size * n;
  }
  size_t c = line.find(':');
  if (c == std::string::npos) return size * n;
  std::string name = line.substr(0, c);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
  std::string value = line.substr(c + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.pop_back();
  x->resp->headers.emplace(name, value);
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* p) {
  auto* x = static_cast<Exchange*>(p);
  size_t len = size * n;
  long code = 0;
  curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
  x->resp->body_bytes += len;
  bool success = code >= 200 && code < 300;
  if (success && x->req->sink) {
    if (code == 200 && x->req->range_from > 0 && x->skip < static_cast<uint64_t>(x->req->range_from)) {
      size_t drop = std::min<uint64_t>(len, x->req->range_from - x->skip);
      x->skip += drop;
      data += drop;
      len -= drop;
      if (len == 0) return size * n;
    }
    if (!x->req->sink(data, len)) {
      x->resp->aborted = true;
      return 0;
    }
    return size * n;
  }
  size_t cap = success ? x->req->max_body : 64u << 10;
  if (x->resp->body.size() + len > cap) {
    if (!success) return len;  // an error body: keep the start, drop the rest
    x->resp->too_big = true;
    return 0;
  }
  x->resp->body.append(data, len);
  return len;
}

}  // namespace

std::string HttpResponse::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

HttpResponse http_perform(const HttpRequest& req) {
  HttpResponse resp;
  CURL* h = curl_easy_init();
  if (!h) {
    resp.curl_code = CURLE_FAILED_INIT;
    resp.curl_error = "curl_easy_init failed";
    return resp;
  }
  Exchange x{&req, &resp, h};
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(h, CURLOPT_SHARE, shared().sh);
  curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, nullptr);  // bytes exactly as served: digests are over them
  curl_easy_setopt(h, CURLOPT_USERAGENT, "moat/" MOAT_VERSION);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, req.timeout_connect_s);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, req.low_speed_time_s);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
  curl_easy_setopt(h, CURLOPT_NETRC, static_cast<long>(CURL_NETRC_IGNORED));
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L << 10);
  // TLS: the system store plus certs.d CAs, as one PEM blob.
  std::string cas;
  if (req.tls.verify) {
    cas = system_cas() + "\n" + req.tls.ca_pem;
    curl_blob blob{cas.data(), cas.size(), CURL_BLOB_NOCOPY};
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
    curl_easy_setopt(h, CURLOPT_CAPATH, nullptr);
  } else {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (!req.tls.client_cert.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLCERT, req.tls.client_cert.c_str());
    curl_easy_setopt(h, CURLOPT_SSLKEY, req.tls.client_key.c_str());
  }
  curl_slist* hdrs = nullptr;
  for (const auto& hd : req.headers) hdrs = curl_slist_append(hdrs, hd.c_str());
  if (req.range_from > 0) hdrs = curl_slist_append(hdrs, ("Range: bytes=" + std::to_string(req.range_from) + "-").c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  if (req.method == "POST") {
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(req.body.size()));
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.c_str());
  } else if (req.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  }
  CURLcode rc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp.status);
  resp.curl_code = rc;
  if (rc != CURLE_OK) {
    resp.curl_error = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    resp.tls_error = rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CONNECT_ERROR ||
                     rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_SSL_CIPHER ||
                     rc == CURLE_SSL_ISSUER_ERROR;
  }
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  return resp;
}

std::string UrlParts::origin() const { return scheme + "://" + host + (port.empty() ? "" : ":" + port); }

bool split_url(const std::string& url, UrlParts& out) {
  CURLU* u = curl_url();
  bool ok = curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK;
  auto part = [&](CURLUPart p) {
    char* v = nullptr;
    std::string s;
    if (curl_url_get(u, p, &v, 0) == CURLUE_OK && v) s = v;
    curl_free(v);
    return s;
  };
  if (ok) {
    out.scheme = part(CURLUPART_SCHEME);
    out.host = part(CURLUPART_HOST);
    out.port = part(CURLUPART_PORT);
    std::transform(out.scheme.begin(), out.scheme.end(), out.scheme.begin(), ::tolower);
    std::transform(out.host.begin(), out.host.end(), out.host.begin(), ::tolower);
    if ((out.scheme == "https" && out.port == "443") || (out.scheme == "http" && out.port == "80")) out.port.clear();
    ok = (out.scheme == "http" || out.scheme == "https") && !out.host.empty();
  }
  curl_url_cleanup(u);
  return ok;
}

std::string resolve_url(const std::string& base, const std::string& location) {
  CURLU* u = curl_url();
  std::string out;
  if (curl_url_set(u, CURLUPART_URL, base.c_str(), 0) == CURLUE_OK &&
      curl_url_set(u, CURLUPART_URL, location.c_str(), CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK) {
    char* v = nullptr;
    if (curl_url_get(u, CURLUPART_URL, &v, 0) == CURLUE_OK && v) out = v;
    curl_free(v);
  }
  curl_url_cleanup(u);
  return out;
}

std::string url_escape(const std::string& s) {
  char* e = curl_easy_escape(nullptr, s.c_str(), static_cast<int>(s.size()));
  std::string out = e ? e : "";
  curl_free(e);
  return out;
}

}  // namespace moat::registry
