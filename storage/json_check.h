// Checks the nesting of a JSON text from an image, a registry or a store
// before nlohmann::json parses it. The parser itself keeps its own stack, but
// dump(), copies and comparisons of the parsed value recurse once per level:
// an image config of a few hundred kilobytes of `[` overflowed the stack when
// moat re-serialized it (redact_for_report(), found by hand in session 8 with
// a 400 KB config; the fuzzers' 64 KiB inputs nest too shallowly to reach
// it). No document of the formats moat reads nests more than about ten
// levels (a cosign bundle is the deepest).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "storage/result.h"

namespace moat {

inline constexpr size_t kMaxJsonDepth = 128;

// The byte offset where `text` opens its (max_depth + 1)th nested array or
// object, or npos. Brackets inside strings do not count.
inline size_t json_too_deep_at(std::string_view text, size_t max_depth = kMaxJsonDepth) {
  size_t depth = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '"') {
      for (++i; i < text.size() && text[i] != '"'; ++i)
        if (text[i] == '\\') ++i;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::string_view::npos;
}

// An Error "WHAT nests arrays or objects more than 128 deep (at byte N)", or ok.
inline Status check_json_depth(std::string_view text, const std::string& what) {
  if (size_t at = json_too_deep_at(text); at != std::string_view::npos)
    return Error{what + " nests arrays or objects more than " + std::to_string(kMaxJsonDepth) + " deep (at byte " +
                 std::to_string(at) + "): not a document moat reads"};
  return ok_status();
}

// json::parse(text, nullptr, false) (a discarded value for invalid JSON),
// and a discarded value too when the text nests deeper than check_json_depth allows.
inline nlohmann::json parse_json_or_discarded(std::string_view text) {
  if (json_too_deep_at(text) != std::string_view::npos) return nlohmann::json(nlohmann::json::value_t::discarded);
  return nlohmann::json::parse(text, nullptr, false);
}

}  // namespace moat
