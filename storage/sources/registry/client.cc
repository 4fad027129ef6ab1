#include "storage/sources/registry/client.h"

#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "storage/base64.h"
#include "storage/digest.h"
#include "storage/fsutil.h"
#include "storage/json_check.h"
#include "storage/sources/registry/certs.h"
#include "storage/sources/registry/credentials.h"
#include "storage/sources/registry/http.h"
#include "storage/sources/registry/registries_conf.h"
#include "storage/sources/registry/responses.h"

namespace moat::registry {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {
std::mutex g_opt_mu;
Options& g_options() {
  static Options o;
  return o;
}

constexpr int kMaxRedirects = 5;
constexpr int kMaxRetries = 4;         // 429, 5xx and transport failures before any byte arrived
constexpr int kMaxRetryAfterSec = 60;  // one wait is never longer than this
constexpr int kMaxResumes = 5;         // Range resumes of one blob

const char* kAccept =
    "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v1+prettyjws, application/json";

long retry_after(const HttpResponse& r) { return parse_retry_after(r.header("retry-after")); }

bool transient_curl(int code) {
  // Connection refused/reset, timeouts, short reads, HTTP/2 stream errors.
  return code == 7 || code == 18 || code == 28 || code == 52 || code == 55 || code == 56 || code == 92 || code == 16;
}

}  // namespace

const Options& default_options() {
  std::lock_guard<std::mutex> g(g_opt_mu);
  return g_options();
}
void set_default_options(Options o) {
  std::lock_guard<std::mutex> g(g_opt_mu);
  g_options() = std::move(o);
}

struct Client::Impl {
  std::string registry;  // as in the reference
  std::string host;      // API host[:port]
  Options opt;
  bool insecure = false;
  std::string base;      // https://host or http://host
  TlsConfig tls;
  std::vector<std::string> cert_dirs_tried;

  std::mutex ping_mu;  // one ping at a time (it may switch base to plain HTTP)
  std::mutex mu;       // guards everything below
  bool pinged = false;
  Challenge challenge;  // from /v2/ (scheme empty: no authentication asked)
  std::map<std::string, CredentialSearch> creds;  // by repository
  struct Token {
    std::string value;
    Clock::time_point expires;
  };
  std::map<std::string, Token> tokens;  // by scope

  void log(const std::string& s) const {
    if (opt.log) opt.log(s);
  }

  Result<CredentialSearch> credentials(const std::string& repo) {
    std::lock_guard<std::mutex> g(mu);
    auto it = creds.find(repo);
    if (it != creds.end()) return it->second;
    if (!opt.credential_helpers && opt.creds.empty()) {
      MOAT_ASSIGN_OR_RETURN(RegistriesConf conf, load_registries_conf(opt.registries_conf));
      opt.credential_helpers = std::move(conf.credential_helpers);
    }
    MOAT_ASSIGN_OR_RETURN(CredentialSearch s, find_credentials(registry, repo, opt.creds, opt.authfile,
                                                               opt.credential_helpers.value_or(std::vector<std::string>{})));
    if (s.found) log("credentials for " + registry + "/" + repo + " from " + s.found->source);
    creds[repo] = s;
    return s;
  }

  Error tls_failure(const HttpResponse& r) const {
    std::string dirs;
    for (const auto& d : cert_dirs_tried) dirs += (dirs.empty() ? "" : ", ") + d;
    return Error{"TLS failure talking to " + host + ": " + r.curl_error + " (CAs: the system trust store" +
                 (tls.ca_pem.empty() ? "" : " and certs.d") + "; certs.d folders tried: " + dirs + ")"}
        .with_hint("put the registry's CA certificate in /etc/containers/certs.d/" + host + "/ca.crt or ~/.config/containers/certs.d/" +
                   host + "/ca.crt (or pass --cert-dir DIR); --tls-verify=false only on a network you trust");
  }

  Error transport_failure(const HttpResponse& r) const {
    if (r.tls_error) return tls_failure(r);
    return Error{"cannot reach registry " + host + ": " + r.curl_error}.with_hint(
        "check the name and port, and that the registry is up (curl " + base + "/v2/)");
  }

  // GET /v2/: which authentication the registry wants.
  Status ping() {
    std::lock_guard<std::mutex> pg(ping_mu);
    {
      std::lock_guard<std::mutex> g(mu);
      if (pinged) return ok_status();
    }
    HttpRequest req;
    req.url = base + "/v2/";
    req.tls = tls;
    HttpResponse r = http_perform(req);
    if (r.curl_code != 0 && insecure && base.rfind("https://", 0) == 0) {
      // registries.conf insecure = true: plain HTTP is allowed, as podman does.
      log(host + ": HTTPS failed (" + r.curl_error + "), trying HTTP (insecure registry)");
      base = "http://" + host;
      req.url = base + "/v2/";
      r = http_perform(req);
    }
    if (r.curl_code != 0) return transport_failure(r);
    std::lock_guard<std::mutex> g(mu);
    if (r.status == 401) challenge = parse_challenge(r.header("www-authenticate"));
    else if (r.status != 200)
      log(host + ": /v2/ answered " + std::to_string(r.status) + "; going on without authentication");
    pinged = true;
    return ok_status();
  }

  Error unauthorized(const std::string& repo, const std::string& detail) {
    auto cs = credentials(repo);
    std::string where;
    if (cs) {
      for (const auto& l : cs->looked) where += (where.empty() ? "" : ", ") + l;
    }
    std::string msg = "unauthorized: authentication required to pull " + registry + "/" + repo;
    if (cs && cs->found) msg += " (the credentials from " + cs->found->source + " were refused)";
    else msg += " (no credentials found; looked in: " + (where.empty() ? std::string("nothing") : where) + ")";
    if (!detail.empty()) msg += ": " + printable(detail, 200);
    return Error{msg}.with_hint("log in with `podman login " + registry + "`, or pass --creds USER:PASSWORD or --authfile FILE; "
                                "a repository that does not exist also answers unauthorized on some registries");
  }

  // Fetches a bearer token for `scope` (anonymous when there are no credentials).
  Result<std::string> fetch_token(const std::string& repo, const std::string& scope) {
    Challenge ch;
    {
      std::lock_guard<std::mutex> g(mu);
      ch = challenge;
    }
    std::string realm = ch.params["realm"];
    UrlParts rp;
    if (realm.empty() || !split_url(realm, rp))
      return Error{"registry " + host + " asks for a token but names no usable realm (\"" + printable(realm, 100) + "\")"};
    if (base.rfind("https://", 0) == 0 && rp.scheme == "http")
      return Error{"registry " + host + " sends credentials to a plain-HTTP token realm " + printable(realm, 100) + "; refused"};
    MOAT_ASSIGN_OR_RETURN(CredentialSearch cs, credentials(repo));
    HttpRequest req;
    req.tls = tls;
    req.max_body = 1u << 20;
    std::string q = "service=" + url_escape(ch.params["service"]) + "&scope=" + url_escape(scope);
    if (cs.found && !cs.found->identity_token.empty()) {
      req.method = "POST";
      req.url = realm;
      req.headers.push_back("Content-Type: application/x-www-form-urlencoded");
      req.body = "grant_type=refresh_token&client_id=moat&" + q + "&refresh_token=" + url_escape(cs.found->identity_token);
    } else {
      req.url = realm + (realm.find('?') == std::string::npos ? "?" : "&") + q;
      if (cs.found) req.headers.push_back("Authorization: Basic " + base64_encode(cs.found->username + ":" + cs.found->password));
    }
    log("token for " + scope + " from " + rp.origin() + (cs.found ? " with credentials from " + cs.found->source : " (anonymous)"));
    HttpResponse r = http_perform(req);
    if (r.curl_code != 0) {
      if (r.tls_error) return tls_failure(r);
      return Error{"cannot reach the token service " + rp.origin() + ": " + r.curl_error};
    }
    if (r.status == 401 || r.status == 403) return unauthorized(repo, registry_error(r.body).second);
    if (r.status != 200) return Error{"token service " + rp.origin() + " answered HTTP " + std::to_string(r.status)};
    TokenReply t = parse_token_reply(r.body);
    if (!t.is_json) return Error{"token service " + rp.origin() + " answered with something that is not JSON"};
    if (t.token.empty()) return Error{"token service " + rp.origin() + " answered without a token"};
    std::lock_guard<std::mutex> g(mu);
    tokens[scope] = Token{t.token, token_renew_at(t.expires_in, Clock::now())};
    return t.token;
  }

  // The Authorization header for a request to the registry itself, or "".
  Result<std::string> auth_header(const std::string& repo, const std::string& scope) {
    std::string scheme;
    {
      std::lock_guard<std::mutex> g(mu);
      scheme = challenge.scheme;
      if (scheme == "bearer") {
        auto it = tokens.find(scope);
        if (it != tokens.end() && it->second.expires > Clock::now()) return "Authorization: Bearer " + it->second.value;
      }
    }
    if (scheme == "bearer") {
      MOAT_ASSIGN_OR_RETURN(std::string tok, fetch_token(repo, scope));
      return "Authorization: Bearer " + tok;
    }
    if (scheme == "basic") {
      MOAT_ASSIGN_OR_RETURN(CredentialSearch cs, credentials(repo));
      if (cs.found && cs.found->identity_token.empty())
        return "Authorization: Basic " + base64_encode(cs.found->username + ":" + cs.found->password);
    }
    return std::string();
  }

  // One request to /v2/REPO/..., with authentication, redirects and retries.
  Result<HttpResponse> send(HttpRequest tmpl, const std::string& repo, const std::string& path) {
    MOAT_TRY(ping());
    std::string url = base + path;
    UrlParts origin;
    split_url(base, origin);
    std::string scope = "repository:" + repo + ":pull";
    bool auth_retried = false;
    int redirects = 0, retries = 0;
    while (true) {
      HttpRequest req = tmpl;
      req.url = url;
      req.tls = tls;
      UrlParts up;
      if (!split_url(url, up)) return Error{"registry " + host + " redirected to an unusable URL \"" + printable(url, 200) + "\""};
      // Credentials go only to the registry's own scheme, host and port.
      bool same = up.origin() == origin.origin();
      if (same) {
        MOAT_ASSIGN_OR_RETURN(std::string h, auth_header(repo, scope));
        if (!h.empty()) req.headers.push_back(h);
      }
      HttpResponse r = http_perform(req);
      if (r.curl_code != 0) {
        if (r.aborted || r.too_big) return r;
        if (!r.tls_error && transient_curl(r.curl_code) && r.body_bytes == 0 && retries < kMaxRetries) {
          long wait = 1L << retries++;
          log(host + ": " + r.curl_error + "; retrying in " + std::to_string(wait) + " s");
          std::this_thread::sleep_for(std::chrono::seconds(wait));
          continue;
        }
        if (r.body_bytes > 0) return r;  // a body cut short: the caller may resume
        return transport_failure(r);
      }
      if (r.status == 401 && same && !auth_retried) {
        Challenge ch = parse_challenge(r.header("www-authenticate"));
        std::lock_guard<std::mutex> g(mu);
        if (ch.scheme == "bearer") {
          // insufficient_scope names the scope wanted; an expired token is just renewed.
          if (ch.params.count("scope") && !ch.params["scope"].empty()) scope = ch.params["scope"];
          if (challenge.scheme != "bearer") challenge = ch;
          tokens.erase(scope);
          auth_retried = true;
          log(host + ": 401" + (ch.params.count("error") ? " (" + ch.params["error"] + ")" : std::string()) +
              ", fetching a new token for " + scope);
          continue;
        }
        if (ch.scheme == "basic" && challenge.scheme.empty()) {
          challenge = ch;
          auth_retried = true;
          continue;
        }
      }
      if (r.status == 401) return unauthorized(repo, registry_error(r.body).second);
      if (r.status >= 300 && r.status < 400 && r.status != 304) {
        std::string loc = r.header("location");
        if (loc.empty()) return Error{"registry " + host + " answered HTTP " + std::to_string(r.status) + " without a Location"};
        if (++redirects > kMaxRedirects) return Error{"registry " + host + " redirected more than " + std::to_string(kMaxRedirects) + " times"};
        std::string next = resolve_url(url, loc);
        UrlParts np;
        if (next.empty() || !split_url(next, np))
          return Error{"registry " + host + " redirected to an unusable URL \"" + printable(loc, 200) + "\""};
        if (up.scheme == "https" && np.scheme == "http")
          return Error{"registry " + host + " redirected from HTTPS to plain HTTP (" + np.origin() + "); refused"}.with_hint(
              "the registry or a proxy in front of it is misconfigured");
        log(host + ": redirected to " + np.origin() + (np.origin() == origin.origin() ? "" : " (no credentials sent there)"));
        url = next;
        continue;
      }
      if ((r.status == 429 || r.status == 500 || r.status == 502 || r.status == 503 || r.status == 504) &&
          retries < kMaxRetries && r.body_bytes < (64u << 10)) {
        long ra = retry_after(r);
        long wait = ra >= 0 ? ra : (1L << retries);
        if (wait <= kMaxRetryAfterSec) {
          ++retries;
          log(host + ": HTTP " + std::to_string(r.status) + ", retrying in " + std::to_string(wait) + " s");
          std::this_thread::sleep_for(std::chrono::seconds(wait));
          continue;
        }
      }
      if (r.status == 429) {
        long ra = retry_after(r);
        return Error{"rate limited by " + host + " (HTTP 429 TOOMANYREQUESTS)" +
                     (ra >= 0 ? "; the limit resets at " + utc_in(ra) : std::string())}
            .with_hint("wait and try again" + std::string(ra >= 0 ? " after " + utc_in(ra) : "") +
                       ", or log in (`podman login " + registry + "`) for a higher limit");
      }
      return r;
    }
  }

  Error http_error(const HttpResponse& r, const std::string& repo, const std::string& what, const std::string& ref) {
    auto [code, msg] = registry_error(r.body);
    if (r.status == 404 || code == "NAME_UNKNOWN" || code == "MANIFEST_UNKNOWN" || code == "BLOB_UNKNOWN") {
      if (code == "NAME_UNKNOWN")
        return Error{"repository " + registry + "/" + repo + " not found"}.with_hint(
            "check the repository name (skopeo list-tags docker://" + registry + "/" + repo + ")");
      if (what == "manifest")
        return Error{"manifest " + ref + " not found in " + registry + "/" + repo}.with_hint(
            "check the tag: skopeo list-tags docker://" + registry + "/" + repo);
      return Error{what + " " + ref + " not found in " + registry + "/" + repo}.with_hint("the image in the registry is incomplete");
    }
    if (r.status == 403 || code == "DENIED")
      return Error{"access to " + registry + "/" + repo + " denied" + (msg.empty() ? "" : ": " + printable(msg, 200))}.with_hint(
          "check that your account may pull this repository");
    return Error{"registry " + host + " answered HTTP " + std::to_string(r.status) + " for " + what + " " + ref +
                 (code.empty() ? "" : " (" + printable(code, 40) + (msg.empty() ? "" : ": " + printable(msg, 200)) + ")")};
  }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;
const std::string& Client::registry() const { return impl_->registry; }

Result<std::unique_ptr<Client>> Client::create(const std::string& registry, const Options& opt, bool insecure) {
  auto impl = std::make_unique<Impl>();
  impl->registry = registry;
  impl->host = api_host(registry);
  impl->opt = opt;
  // --tls-verify wins; else registries.conf's insecure decides.
  bool verify = opt.tls_verify.has_value() ? *opt.tls_verify : !insecure;
  impl->insecure = !verify;
  impl->base = "https://" + impl->host;
  MOAT_ASSIGN_OR_RETURN(impl->tls, tls_config_for(impl->host, opt.cert_dir, verify, &impl->cert_dirs_tried));
  if (!verify) impl->log(impl->host + ": TLS certificates are not verified (" +
                         std::string(opt.tls_verify.has_value() ? "--tls-verify=false" : "insecure = true in registries.conf") + ")");
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Result<Manifest> Client::get_manifest(const std::string& repo, const std::string& ref, size_t max_bytes) {
  HttpRequest req;
  req.headers.push_back(kAccept);
  req.max_body = max_bytes;
  MOAT_ASSIGN_OR_RETURN(HttpResponse r, impl_->send(req, repo, "/v2/" + repo + "/manifests/" + ref));
  std::string what = impl_->registry + "/" + repo + (is_valid_digest(ref) ? "@" : ":") + ref;
  if (r.too_big) return Error{"manifest of " + what + " is larger than " + human_bytes(max_bytes)}.with_hint("the registry serves something that is not an image manifest");
  if (r.curl_code != 0) return impl_->transport_failure(r);
  if (r.status == 404 && !is_valid_digest(ref) && registry_error(r.body).first != "NAME_UNKNOWN") {
    // A registry may say MANIFEST_UNKNOWN for a repository it does not have: its tag list tells them apart.
    HttpRequest tq;
    tq.max_body = 1u << 20;
    auto t = impl_->send(tq, repo, "/v2/" + repo + "/tags/list?n=10");
    if (t && t->curl_code == 0 && (t->status == 404 || registry_error(t->body).first == "NAME_UNKNOWN"))
      return Error{"repository " + impl_->registry + "/" + repo + " not found"}.with_hint(
          "check the repository name (skopeo list-tags docker://" + impl_->registry + "/" + repo + " lists a repository's tags)");
    std::string some;
    if (t && t->curl_code == 0 && t->status == 200 && json_too_deep_at(t->body) == std::string_view::npos) {
      try {
        json j = json::parse(t->body);
        if (j.contains("tags") && j["tags"].is_array())
          for (const auto& x : j["tags"])
            if (x.is_string() && some.size() < 200) some += (some.empty() ? "" : ", ") + printable(x.get<std::string>(), 60);
      } catch (...) {
      }
    }
    return Error{"manifest " + ref + " not found in " + impl_->registry + "/" + repo + ": no such tag"}.with_hint(
        (some.empty() ? std::string() : "it has tags such as " + some + "; ") + "list them with skopeo list-tags docker://" +
        impl_->registry + "/" + repo);
  }
  if (r.status != 200) return impl_->http_error(r, repo, "manifest", ref);
  MOAT_ASSIGN_OR_RETURN(Manifest m, manifest_from_body(std::move(r.body), r.header("content-type"), ref, what));
  impl_->log("manifest " + what + ": " + m.digest + " (" + m.media_type + ", " + std::to_string(m.bytes.size()) + " bytes)");
  return m;
}

Result<std::string> Client::get_blob(const std::string& repo, const std::string& digest, size_t max_bytes) {
  MOAT_TRY(checked_digest_hex(digest, "blob digest"));
  HttpRequest req;
  req.max_body = max_bytes;
  MOAT_ASSIGN_OR_RETURN(HttpResponse r, impl_->send(req, repo, "/v2/" + repo + "/blobs/" + digest));
  if (r.too_big) return Error{"blob " + digest + " of " + impl_->registry + "/" + repo + " is larger than " + human_bytes(max_bytes)};
  if (r.curl_code != 0) return impl_->transport_failure(r);
  if (r.status != 200) return impl_->http_error(r, repo, "blob", digest);
  std::string got = sha256_digest(r.body);
  if (got != digest)
    return Error{"blob " + digest + " of " + impl_->registry + "/" + repo + ": content does not match its digest (got " + got + ")"}.with_hint(
        "the registry or something between it and moat altered the blob");
  return std::move(r.body);
}

namespace {

// A blob's body as a Reader: a thread runs the transfer into a bounded queue
// (so the HTTP body, the digests, the decompressor and the unpacker all run
// as one stream), resuming with Range where a transfer is cut.
class BlobReader : public Reader {
 public:
  BlobReader(Client::Impl* c, std::string repo, std::string digest, int64_t size)
      : c_(c), repo_(std::move(repo)), digest_(std::move(digest)), size_(size) {
    thread_ = std::thread([this] { run(); });
  }
  ~BlobReader() override {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Result<size_t> read(char* buf, size_t n) override {
    std::unique_lock<std::mutex> g(mu_);
    cv_.wait(g, [&] { return !q_.empty() || done_; });
    if (q_.empty()) {
      if (err_) return *err_;
      return size_t{0};
    }
    std::string& front = q_.front();
    size_t k = std::min(n, front.size() - front_off_);
    memcpy(buf, front.data() + front_off_, k);
    front_off_ += k;
    queued_ -= k;
    if (front_off_ == front.size()) {
      q_.pop_front();
      front_off_ = 0;
    }
    cv_.notify_all();
    return k;
  }

 private:
  static constexpr size_t kQueueBytes = 8u << 20;

  bool push(const char* d, size_t n) {
    std::unique_lock<std::mutex> g(mu_);
    cv_.wait(g, [&] { return queued_ < kQueueBytes || stop_; });
    if (stop_) return false;
    offset_ += n;
    if (size_ >= 0 && static_cast<int64_t>(offset_) > size_) {
      too_long_ = true;
      return false;
    }
    q_.emplace_back(d, n);
    queued_ += n;
    cv_.notify_all();
    return true;
  }
  void finish(std::optional<Error> e) {
    std::lock_guard<std::mutex> g(mu_);
    err_ = std::move(e);
    done_ = true;
    cv_.notify_all();
  }
  void run() {
    std::string what = "blob " + digest_ + " of " + c_->registry + "/" + repo_;
    for (int attempt = 0;; ++attempt) {
      HttpRequest req;
      req.sink = [this](const char* d, size_t n) { return push(d, n); };
      uint64_t from;
      {
        std::lock_guard<std::mutex> g(mu_);
        from = offset_;
      }
      req.range_from = static_cast<int64_t>(from);
      auto r = c_->send(req, repo_, "/v2/" + repo_ + "/blobs/" + digest_);
      if (!r) return finish(std::move(r).error());
      bool stopped, too_long;
      {
        std::lock_guard<std::mutex> g(mu_);
        stopped = stop_;
        too_long = too_long_;
      }
      if (stopped) return finish(Error{"cancelled"});
      if (too_long) return finish(Error{what + " is longer than the manifest's size " + std::to_string(size_)});
      if (r->curl_code == 0 && r->status != 200 && r->status != 206)
        return finish(c_->http_error(*r, repo_, "blob", digest_));
      if (r->curl_code == 0 && r->status == 206 && from > 0) {
        // (the first byte was checked by the registry's Content-Range; a wrong one fails the digest)
        std::string cr = r->header("content-range");
        if (cr.rfind("bytes " + std::to_string(from) + "-", 0) != 0)
          return finish(Error{what + ": the registry resumed at the wrong offset (" + printable(cr, 80) + ")"});
      }
      uint64_t have;
      {
        std::lock_guard<std::mutex> g(mu_);
        have = offset_;
      }
      if (r->curl_code == 0) {
        if (size_ >= 0 && static_cast<int64_t>(have) != size_)
          return finish(Error{what + " ended after " + std::to_string(have) + " of " + std::to_string(size_) + " bytes"});
        return finish(std::nullopt);
      }
      if (attempt >= kMaxResumes)
        return finish(Error{what + ": transfer failed after " + std::to_string(attempt + 1) + " attempts: " + r->curl_error});
      c_->log(what + ": transfer cut after " + std::to_string(have) + " bytes (" + r->curl_error + "), resuming");
    }
  }

  Client::Impl* c_;
  std::string repo_, digest_;
  int64_t size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> q_;
  size_t front_off_ = 0, queued_ = 0;
  uint64_t offset_ = 0;
  bool done_ = false, stop_ = false, too_long_ = false;
  std::optional<Error> err_;
  std::thread thread_;
};

}  // namespace

Result<std::unique_ptr<Reader>> Client::open_blob(const std::string& repo, const std::string& digest, int64_t size) {
  MOAT_TRY(checked_digest_hex(digest, "blob digest"));
  return std::unique_ptr<Reader>(new BlobReader(impl_.get(), repo, digest, size));
}

}  // namespace moat::registry
