// The per-layer metadata index: the image's truth about every entry of a layer.
//
// Whatever the unpacking user could or could not put on disk (owners other than
// its own, file capabilities, device nodes), this index records what the tar
// said: path, type, full mode with setuid/setgid/sticky, uid, gid, size, device
// numbers, mtime, link target and the kept xattrs. Checks read ownership and
// modes from here, so they are right under any id mapping.
//
// On disk it is `index.tsv` beside the layer's diff/: a header line
// "#moat-index v1", then one line per entry with tab-separated fields
//   path type mode uid gid size major minor mtime link xattrs
// path and link are the image's bytes with '\\', tab, newline and other control
// bytes escaped as \\, \t, \n, \xHH; mode is octal; xattrs are name=HEX pairs
// joined by ';' (names escaped the same way, plus ';' and '=').
// Types: f file, d dir, l symlink, h hardlink (link = absolute target path),
// p fifo, c char device, b block device, w whiteout (path = the hidden name),
// o opaque marker (path = the directory made opaque).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "storage/result.h"

namespace moat {

enum class EntryType : char {
  File = 'f', Dir = 'd', Symlink = 'l', Hardlink = 'h', Fifo = 'p',
  Char = 'c', Block = 'b', Whiteout = 'w', Opaque = 'o',
};

struct IndexEntry {
  std::string path;  // absolute inside the image: "/usr/bin/su", "/" for the root
  EntryType type = EntryType::File;
  uint32_t mode = 0;  // 07777 bits
  uint32_t uid = 0, gid = 0;
  uint64_t size = 0;
  uint32_t dev_major = 0, dev_minor = 0;
  int64_t mtime = 0;
  std::string link;
  std::vector<std::pair<std::string, std::string>> xattrs;  // name, raw value
};

std::string escape_field(std::string_view s, bool xattr_name = false);
Result<std::string> unescape_field(std::string_view s);

std::string format_index_line(const IndexEntry& e);
Result<IndexEntry> parse_index_line(std::string_view line);

// Reads a whole index.tsv.
Result<std::vector<IndexEntry>> read_index(const std::string& file);
// Serializes entries (header included).
std::string serialize_index(const std::vector<IndexEntry>& entries);

// containers/storage's user.containers.override_stat value: "uid:gid:mode:type".
std::string override_stat_value(const IndexEntry& e);

}  // namespace moat
