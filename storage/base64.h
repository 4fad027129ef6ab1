// Base64 (RFC 4648) for the encoded fields moat reads: signatures and sigstore
// payloads, auth.json's "auth", tar-split's payloads and raw names, apk's
// checksums. One codec with two strictnesses, instead of one per format.
// The input is untrusted: malformed text is nullopt, never a crash.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace moat {

// Standard alphabet, padded.
std::string base64_encode(std::string_view in);

// Standard alphabet, padding required (Go's base64.StdEncoding, which
// containers/image and cosign write): the length is a multiple of 4 and '='
// stands only in the last two places. nullopt when malformed.
std::optional<std::string> base64_decode(std::string_view in);

// As hand-written files carry it (auth.json, apk's Q1/Q2 checksums): standard
// or URL-safe alphabet, padding optional, line breaks ignored. nullopt on any
// other character.
std::optional<std::string> base64_decode_lenient(std::string_view in);

}  // namespace moat
