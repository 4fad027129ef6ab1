#include "storage/sources/registry/responses.h"

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>

#include "storage/digest.h"
#include "storage/json_check.h"

namespace moat::registry {

using json = nlohmann::json;

constexpr long kMaxTokenLifetime = 24 * 3600;
constexpr long kMaxRetryAfter = 366L * 24 * 3600;

Challenge parse_challenge(const std::string& h) {
  Challenge c;
  size_t i = 0;
  while (i < h.size() && h[i] != ' ') c.scheme += static_cast<char>(tolower(static_cast<unsigned char>(h[i++])));
  while (i < h.size()) {
    while (i < h.size() && (h[i] == ' ' || h[i] == ',')) ++i;
    size_t eq = h.find('=', i);
    if (eq == std::string::npos) break;
    std::string key = h.substr(i, eq - i);
    for (auto& ch : key) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
    i = eq + 1;
    std::string val;
    if (i < h.size() && h[i] == '"') {
      ++i;
      while (i < h.size() && h[i] != '"') {
        if (h[i] == '\\' && i + 1 < h.size()) ++i;
        val += h[i++];
      }
      ++i;
    } else {
      while (i < h.size() && h[i] != ',') val += h[i++];
    }
    c.params[key] = val;
  }
  return c;
}

std::pair<std::string, std::string> registry_error(const std::string& body) {
  if (json_too_deep_at(body) != std::string_view::npos) return {"", ""};  // storage/json_check.h
  try {
    json j = json::parse(body);
    if (j.is_object() && j.contains("errors") && j["errors"].is_array() && !j["errors"].empty()) {
      const json& e = j["errors"][0];
      std::string code = e.contains("code") && e["code"].is_string() ? e["code"].get<std::string>() : "";
      std::string msg = e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
      return {code, msg};
    }
  } catch (...) {
  }
  return {"", ""};
}

TokenReply parse_token_reply(const std::string& body) {
  TokenReply t;
  json j;
  if (json_too_deep_at(body) != std::string_view::npos) return t;
  try {
    j = json::parse(body);
  } catch (...) {
    return t;
  }
  t.is_json = true;
  if (j.is_object() && j.contains("token") && j["token"].is_string()) t.token = j["token"];
  if (t.token.empty() && j.is_object() && j.contains("access_token") && j["access_token"].is_string()) t.token = j["access_token"];
  if (t.token.empty()) return t;
  // At least a minute, at most a day: a huge expires_in overflowed the renewal
  // time (found by tests/fuzz/registry_auth); a day-old token is just fetched again.
  if (j.contains("expires_in") && j["expires_in"].is_number_integer()) {
    const json& e = j["expires_in"];
    // (nlohmann keeps a non-negative integer as unsigned: compare it as one)
    t.expires_in = e.is_number_unsigned() ? static_cast<long>(std::clamp<uint64_t>(e.get<uint64_t>(), 60, kMaxTokenLifetime))
                                          : std::clamp<long>(e.get<long>(), 60, kMaxTokenLifetime);
  }
  return t;
}

std::chrono::steady_clock::time_point token_renew_at(long expires_in, std::chrono::steady_clock::time_point now) {
  // Renew a little early; a token that still expires in flight gets one 401 retry.
  return now + std::chrono::seconds(expires_in - 5);
}

long parse_retry_after(const std::string& v) {
  if (v.empty()) return -1;
  if (isdigit(static_cast<unsigned char>(v[0]))) {
    // At most a year: the 429 message adds it to the time of day, which a
    // huge value overflowed (found by tests/fuzz/registry_auth).
    try {
      return std::min(std::stol(v), kMaxRetryAfter);
    } catch (const std::out_of_range&) {
      return kMaxRetryAfter;
    } catch (...) {
      return -1;
    }
  }
  struct tm tm {};
  if (strptime(v.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
    long d = static_cast<long>(timegm(&tm) - time(nullptr));
    return d < 0 ? 0 : std::min(d, kMaxRetryAfter);
  }
  return -1;
}

std::string utc_in(long seconds) {
  time_t t = time(nullptr) + seconds;
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

Result<Manifest> manifest_from_body(std::string body, const std::string& content_type, const std::string& ref,
                                    const std::string& what) {
  Manifest m;
  m.bytes = std::move(body);
  m.digest = sha256_digest(m.bytes);
  if (is_valid_digest(ref) && m.digest != ref)
    return Error{"manifest " + what + ": content does not match its digest (got " + m.digest + ")"}.with_hint(
        "the registry or something between it and moat altered the manifest");
  MOAT_TRY(check_json_depth(m.bytes, "manifest of " + what));
  try {
    json j = json::parse(m.bytes);
    if (j.is_object() && j.contains("mediaType") && j["mediaType"].is_string()) m.media_type = j["mediaType"];
  } catch (...) {
    return Error{"manifest of " + what + " is not valid JSON"};
  }
  if (m.media_type.empty()) {
    m.media_type = content_type;
    m.media_type = m.media_type.substr(0, m.media_type.find(';'));
  }
  return m;
}

}  // namespace moat::registry
