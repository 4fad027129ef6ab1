#include "scanner/trust/util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <vector>

#include "storage/fd.h"
#include "storage/json_check.h"

namespace moat::trust {
namespace {
struct DuplicateKey {
  std::string key;
};
}  // namespace

Result<nlohmann::json> parse_strict_json(std::string_view bytes, const std::string& what) {
  MOAT_TRY(check_json_depth(bytes, what));  // storage/json_check.h
  std::vector<std::set<std::string>> open;  // keys seen in each object being parsed
  auto cb = [&](int, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) -> bool {
    using E = nlohmann::json::parse_event_t;
    if (ev == E::object_start) open.emplace_back();
    else if (ev == E::object_end && !open.empty()) open.pop_back();
    else if (ev == E::key && !open.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!open.back().insert(k).second) throw DuplicateKey{k};
    }
    return true;
  };
  try {
    return nlohmann::json::parse(bytes.begin(), bytes.end(), cb, true, false);
  } catch (const DuplicateKey& d) {
    return Error{what + ": duplicate key \"" + printable_text(d.key, 80) + "\""};
  } catch (const nlohmann::json::exception& e) {
    return Error{what + ": invalid JSON: " + e.what()};
  }
}

Result<std::string> read_file_limited(const std::string& path, size_t max_bytes, bool nofollow) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (nofollow ? O_NOFOLLOW : 0)));
  if (!fd.valid()) return sys_error("open " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return sys_error("stat " + path);
  if (!S_ISREG(st.st_mode)) return Error{path + " is not a regular file"};
  if (static_cast<uint64_t>(st.st_size) > max_bytes)
    return Error{path + " is larger than " + std::to_string(max_bytes) + " bytes", EFBIG};
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("read " + path);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) return Error{path + " is larger than " + std::to_string(max_bytes) + " bytes", EFBIG};
  }
  return out;
}

std::string printable_text(std::string_view s, size_t max) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

}  // namespace moat::trust
