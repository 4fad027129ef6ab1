// Small helpers of the trust code: strict JSON (duplicate keys are an error,
// which nlohmann alone would resolve silently by keeping the last), base64,
// bounded file reads, printable text for reports.
#pragma once

#include "storage/base64.h"  // base64_decode (strict, as Go writes it), base64_encode

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "storage/result.h"

namespace moat::trust {

// Parses one JSON document; any object with a key given twice, invalid JSON or
// trailing data is an Error naming `what`.
Result<nlohmann::json> parse_strict_json(std::string_view bytes, const std::string& what);


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
