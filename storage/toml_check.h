// Checks a TOML file's text before toml11 parses it, for what toml11 3.7
// (Debian 12) does not survive (all found by tests/fuzz/registries_conf):
// invalid UTF-8 inside a string makes it read out of bounds while reporting
// it (toml11 issue #199); arrays or inline tables nested thousands deep
// overflow the stack (it recurses per level); and a binary integer of 63 or
// more digits overflows a signed integer (parse_binary_integer doubles its
// place value once per digit, 2^63 after the 63rd: undefined behaviour).
// TOML must be UTF-8 anyway, no containers configuration nests more than a
// few levels, and none has a binary integer of 63 digits (leading zeros
// count: it is the digits toml11 loops over).
#pragma once

#include <cctype>
#include <string>
#include <toml.hpp>

#include "storage/result.h"

namespace moat {

// An Error "FILE is not valid TOML: ..." (`what` names the file), or ok.
inline Status check_toml_text(const std::string& text, const std::string& what) {
  if (auto bad = toml::detail::check_utf8_validity(text); bad >= 0)
    return Error{what + " is not valid TOML: invalid UTF-8 at byte " + std::to_string(bad)};
  constexpr int kMaxDepth = 64;
  int depth = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '#') {  // a comment, to the end of the line
      while (i < text.size() && text[i] != '\n') ++i;
    } else if (c == '"' || c == '\'') {  // a string: its brackets do not nest
      bool multi = text.compare(i, 3, std::string(3, c)) == 0;
      i += multi ? 3 : 1;
      while (i < text.size()) {
        if (c == '"' && text[i] == '\\') {
          i += 2;
          continue;
        }
        if (multi ? text.compare(i, 3, std::string(3, c)) == 0 : text[i] == c) break;
        if (!multi && text[i] == '\n') break;
        ++i;
      }
      if (multi) i += 2;
    } else if (c == '0' && i + 1 < text.size() && text[i + 1] == 'b' &&
               (i == 0 || !(std::isalnum(static_cast<unsigned char>(text[i - 1])) || text[i - 1] == '_' ||
                            text[i - 1] == '-'))) {
      // A binary integer (not the middle of a bare key): count its digits.
      size_t digits = 0, j = i + 2;
      for (; j < text.size() && (text[j] == '0' || text[j] == '1' || text[j] == '_'); ++j) digits += text[j] != '_';
      if (digits >= 63)
        return Error{what + " is not valid TOML here: a binary integer of " + std::to_string(digits) +
                     " digits at byte " + std::to_string(i) + " (moat reads at most 62)"};
      i = j - 1;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth)
        return Error{what + " is not valid TOML: arrays or tables nested more than " + std::to_string(kMaxDepth) + " deep"};
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return ok_status();
}

}  // namespace moat
