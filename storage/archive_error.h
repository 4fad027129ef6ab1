// libarchive's error text for messages. archive_error_string() returns NULL
// when a reader fails without setting an error (found by the unpack_tar fuzz
// target: a damaged header made it so, and the NULL reached std::string).
#pragma once

#include <archive.h>

#include <string>

namespace moat {

inline std::string archive_message(struct archive* a) {
  const char* s = archive_error_string(a);
  return s ? s : "unknown libarchive error";
}

}  // namespace moat
