// Checks a TOML file's text before toml11 parses it, for what toml11 3.7
// (Debian 12) does not survive (both found by tests/fuzz/registries_conf):
// invalid UTF-8 inside a string makes it read out of bounds while reporting
// it (toml11 issue #199), and arrays or inline tables nested thousands deep
// overflow the stack (it recurses per level). TOML must be UTF-8 anyway, and
// no containers configuration nests more than a few levels.
#pragma once

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
