#include "storage/layer_index.h"

#include <fcntl.h>

#include <charconv>
#include <cstdio>

#include "storage/fd.h"
#include "storage/fsutil.h"

namespace moat {

std::string escape_field(std::string_view s, bool xattr_name) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\t') out += "\\t";
    else if (c == '\n') out += "\\n";
    else if (c < 0x20 || c == 0x7f || (xattr_name && (c == ';' || c == '='))) {
      char b[5];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

namespace {
int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t i = 0;
  for (;;) {
    size_t j = s.find(sep, i);
    if (j == std::string_view::npos) {
      out.push_back(s.substr(i));
      return out;
    }
    out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
}
template <typename T>
bool num(std::string_view s, T& v, int base = 10) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), v, base);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}
const char* kHex = "0123456789abcdef";
}  // namespace

Result<std::string> unescape_field(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (++i >= s.size()) return Error{"bad escape in index"};
    switch (s[i]) {
      case '\\': out += '\\'; break;
      case 't': out += '\t'; break;
      case 'n': out += '\n'; break;
      case 'x': {
        if (i + 2 >= s.size()) return Error{"bad escape in index"};
        int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
        if (h < 0 || l < 0) return Error{"bad escape in index"};
        out += static_cast<char>(h * 16 + l);
        i += 2;
        break;
      }
      default: return Error{"bad escape in index"};
    }
  }
  return out;
}

std::string format_index_line(const IndexEntry& e) {
  std::string x;
  for (const auto& [name, value] : e.xattrs) {
    if (!x.empty()) x += ';';
    x += escape_field(name, true);
    x += '=';
    for (unsigned char c : value) {
      x += kHex[c >> 4];
      x += kHex[c & 15];
    }
  }
  char mode[16];
  std::snprintf(mode, sizeof mode, "%04o", e.mode & 07777);
  std::string line = escape_field(e.path);
  line += '\t';
  line += static_cast<char>(e.type);
  line += '\t';
  line += mode;
  for (uint64_t v : {uint64_t{e.uid}, uint64_t{e.gid}, e.size, uint64_t{e.dev_major}, uint64_t{e.dev_minor}}) {
    line += '\t';
    line += std::to_string(v);
  }
  line += '\t';
  line += std::to_string(e.mtime);
  line += '\t';
  line += escape_field(e.link);
  line += '\t';
  line += x;
  return line;
}

Result<IndexEntry> parse_index_line(std::string_view line) {
  auto f = split(line, '\t');
  if (f.size() != 11) return Error{"index line has " + std::to_string(f.size()) + " fields, want 11"};
  IndexEntry e;
  MOAT_ASSIGN_OR_RETURN(e.path, unescape_field(f[0]));
  if (f[1].size() != 1 || std::string_view("fdlhpcbwo").find(f[1][0]) == std::string_view::npos)
    return Error{"index line has a bad type"};
  e.type = static_cast<EntryType>(f[1][0]);
  if (!num(f[2], e.mode, 8) || !num(f[3], e.uid) || !num(f[4], e.gid) || !num(f[5], e.size) ||
      !num(f[6], e.dev_major) || !num(f[7], e.dev_minor) || !num(f[8], e.mtime))
    return Error{"index line has a bad number"};
  // Only the 07777 bits are ever written; more would not read back the same (found by fuzz_small_formats).
  if (e.mode > 07777) return Error{"index line has a bad mode"};
  MOAT_ASSIGN_OR_RETURN(e.link, unescape_field(f[9]));
  if (!f[10].empty()) {
    for (auto kv : split(f[10], ';')) {
      size_t eq = kv.find('=');
      if (eq == std::string_view::npos || (kv.size() - eq - 1) % 2) return Error{"index line has a bad xattr"};
      MOAT_ASSIGN_OR_RETURN(std::string name, unescape_field(kv.substr(0, eq)));
      std::string value;
      for (size_t i = eq + 1; i < kv.size(); i += 2) {
        int h = hexval(kv[i]), l = hexval(kv[i + 1]);
        if (h < 0 || l < 0) return Error{"index line has a bad xattr"};
        value += static_cast<char>(h * 16 + l);
      }
      e.xattrs.emplace_back(std::move(name), std::move(value));
    }
  }
  return e;
}

std::string serialize_index(const std::vector<IndexEntry>& entries) {
  std::string out = "#moat-index v1\n";
  for (const auto& e : entries) {
    out += format_index_line(e);
    out += '\n';
  }
  return out;
}

Result<std::vector<IndexEntry>> read_index(const std::string& file) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sys_error("open " + file);
  Fd owner(fd);
  MOAT_ASSIGN_OR_RETURN(std::string text, read_all(fd, 1ull << 34));
  std::vector<IndexEntry> out;
  size_t i = 0, lineno = 0;
  while (i < text.size()) {
    size_t j = text.find('\n', i);
    if (j == std::string::npos) j = text.size();
    std::string_view line(text.data() + i, j - i);
    ++lineno;
    if (lineno == 1) {
      if (line != "#moat-index v1") return Error{file + ": not a moat index"};
    } else if (!line.empty()) {
      auto e = parse_index_line(line);
      if (!e) return std::move(e).error().context(file + ":" + std::to_string(lineno));
      out.push_back(std::move(e).value());
    }
    i = j + 1;
  }
  return out;
}

std::string override_stat_value(const IndexEntry& e) {
  std::string type;
  switch (e.type) {
    case EntryType::Dir: type = "dir"; break;
    case EntryType::Symlink: type = "symlink"; break;
    case EntryType::Fifo: type = "pipe"; break;
    case EntryType::Char: type = "char-" + std::to_string(e.dev_major) + "-" + std::to_string(e.dev_minor); break;
    case EntryType::Block: type = "block-" + std::to_string(e.dev_major) + "-" + std::to_string(e.dev_minor); break;
    default: type = "file";
  }
  char mode[16];
  std::snprintf(mode, sizeof mode, "%04o", e.mode & 07777);
  return std::to_string(e.uid) + ":" + std::to_string(e.gid) + ":" + mode + ":" + type;
}

}  // namespace moat
