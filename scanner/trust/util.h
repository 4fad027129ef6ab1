// Small helpers of the trust code: strict JSON (duplicate keys are an error,
// which nlohmann alone would resolve silently by keeping the last), base64,
// bounded file reads, printable text for reports.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "storage/result.h"

namespace moat::trust {

// Parses one JSON document; any object with a key given twice, invalid JSON or
// trailing data is an Error naming `what`.
Result<nlohmann::json> parse_strict_json(std::string_view bytes, const std::string& what);

// RFC 4648 standard alphabet with padding (Go's base64.StdEncoding); nullopt when malformed.
std::optional<std::string> base64_decode(std::string_view in);
std::string base64_encode(std::string_view in);

// Reads a regular file of at most max_bytes; larger files are an Error with sys_errno EFBIG.
// `nofollow`: a symlink as the last component is an Error (ELOOP), so a file
// of an image can never make moat read a host file.
Result<std::string> read_file_limited(const std::string& path, size_t max_bytes, bool nofollow = false);

// The largest signature moat reads (containers/image uses the same 4 MiB).
inline constexpr size_t kMaxSignatureBytes = 4u << 20;
// The most signatures read from one source: more is an attack, not a use.
inline constexpr size_t kMaxSignatures = 64;

// A short printable form of untrusted text for messages (control bytes escaped, cut at `max`).
std::string printable_text(std::string_view s, size_t max = 200);

}  // namespace moat::trust
