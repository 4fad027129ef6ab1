// File capabilities: decoding the `security.capability` xattr (struct
// vfs_cap_data, linux/capability.h) into libcap's text form, e.g.
// "cap_net_raw+ep" or "cap_chown+eip cap_net_admin+ep".
//
// Layout, all little-endian u32: magic_etc (revision in the top byte, bit 0 =
// VFS_CAP_FLAGS_EFFECTIVE), then {permitted, inheritable} for bits 0-31, then
// for revision 2 and 3 {permitted, inheritable} for bits 32-63, then for
// revision 3 the rootid: the uid that is root in the user namespace that set
// the capability (a v3 capability only takes effect in that namespace).
// Sizes are exact: 12 (v1), 20 (v2), 24 (v3) bytes; anything else is an
// Error, since the value is image data.
//
// Text form: libcap's (cap_to_text) with '+' for every clause: capabilities
// with the same flags are grouped, "names+flags" with flags in the order e, i,
// p; clauses ordered by their lowest capability number; names ascending. The
// effective flag is one bit for the whole file: it applies to every capability
// that is permitted or inheritable. Numbers without a name (newer kernels) are
// written "cap_N". An empty set gives "".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "storage/result.h"

namespace moat {

struct FileCaps {
  int revision = 0;  // 1, 2 or 3
  uint64_t permitted = 0, inheritable = 0;
  bool effective = false;
  std::optional<uint32_t> rootid;  // revision 3 only

  std::string text() const;
};

Result<FileCaps> decode_file_caps(std::string_view raw);

// "cap_net_raw" for 13; "cap_N" for numbers this table does not know.
std::string cap_name(unsigned bit);

}  // namespace moat
