// Digests: validation of `sha256:<64 hex>` strings and a streaming SHA-256.
//
// A digest from an image is untrusted text; it is validated here before it is
// ever used as a file name or compared (containers/image CVE-2024-3727).
#pragma once

#include <openssl/evp.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "storage/result.h"

namespace moat {

// True for exactly `sha256:` followed by 64 lowercase hex digits.
bool is_valid_digest(std::string_view d);
// The 64 hex digits of a valid digest (caller validated it).
inline std::string digest_hex(std::string_view d) { return std::string(d.substr(7)); }
// Validates and returns the hex part, or an Error naming `what`.
Result<std::string> checked_digest_hex(std::string_view d, const std::string& what);

// Streaming SHA-256 over OpenSSL's EVP interface (uses SHA-NI where present).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t n);
  // "sha256:<hex>"; the hasher must not be used afterwards.
  std::string finish();

 private:
  EVP_MD_CTX* ctx_;
};

std::string sha256_digest(std::string_view data);

}  // namespace moat
