#include "scanner/checks/caps.h"

#include <vector>

namespace moat {

namespace {

// linux/capability.h, CAP_CHOWN (0) .. CAP_CHECKPOINT_RESTORE (40).
constexpr const char* kCapNames[] = {
    "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid", "cap_kill",
    "cap_setgid", "cap_setuid", "cap_setpcap", "cap_linux_immutable", "cap_net_bind_service",
    "cap_net_broadcast", "cap_net_admin", "cap_net_raw", "cap_ipc_lock", "cap_ipc_owner", "cap_sys_module",
    "cap_sys_rawio", "cap_sys_chroot", "cap_sys_ptrace", "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot",
    "cap_sys_nice", "cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod", "cap_lease",
    "cap_audit_write", "cap_audit_control", "cap_setfcap", "cap_mac_override", "cap_mac_admin", "cap_syslog",
    "cap_wake_alarm", "cap_block_suspend", "cap_audit_read", "cap_perfmon", "cap_bpf", "cap_checkpoint_restore",
};

constexpr uint32_t kRevisionMask = 0xFF000000u;
constexpr uint32_t kFlagEffective = 0x000001u;

uint32_t le32(std::string_view raw, size_t off) {
  auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(raw[off + i])); };
  return b(0) | (b(1) << 8) | (b(2) << 16) | (b(3) << 24);
}

}  // namespace

std::string cap_name(unsigned bit) {
  if (bit < std::size(kCapNames)) return kCapNames[bit];
  return "cap_" + std::to_string(bit);
}

Result<FileCaps> decode_file_caps(std::string_view raw) {
  if (raw.size() < 4) return Error{"security.capability: " + std::to_string(raw.size()) + " bytes, too short"};
  uint32_t magic = le32(raw, 0);
  FileCaps c;
  size_t want;
  switch (magic & kRevisionMask) {
    case 0x01000000u: c.revision = 1, want = 12; break;
    case 0x02000000u: c.revision = 2, want = 20; break;
    case 0x03000000u: c.revision = 3, want = 24; break;
    default: return Error{"security.capability: unknown revision 0x" + [&] {
        char b[16];
        std::snprintf(b, sizeof b, "%08x", magic & kRevisionMask);
        return std::string(b);
      }()};
  }
  if (raw.size() != want)
    return Error{"security.capability: revision " + std::to_string(c.revision) + " needs " + std::to_string(want) +
                 " bytes, got " + std::to_string(raw.size())};
  c.effective = magic & kFlagEffective;
  c.permitted = le32(raw, 4);
  c.inheritable = le32(raw, 8);
  if (c.revision >= 2) {
    c.permitted |= static_cast<uint64_t>(le32(raw, 12)) << 32;
    c.inheritable |= static_cast<uint64_t>(le32(raw, 16)) << 32;
  }
  if (c.revision == 3) c.rootid = le32(raw, 20);
  return c;
}

std::string FileCaps::text() const {
  // Flags of each capability as a small mask: 4 = e, 2 = i, 1 = p.
  auto flags_of = [&](unsigned bit) {
    bool p = (permitted >> bit) & 1, i = (inheritable >> bit) & 1;
    int f = (p ? 1 : 0) | (i ? 2 : 0);
    if (f && effective) f |= 4;
    return f;
  };
  std::vector<int> order;  // flag sets in order of their lowest capability
  std::string clauses[8];
  for (unsigned bit = 0; bit < 64; ++bit) {
    int f = flags_of(bit);
    if (!f) continue;
    if (clauses[f].empty()) order.push_back(f);
    else clauses[f] += ',';
    clauses[f] += cap_name(bit);
  }
  std::string out;
  for (int f : order) {
    if (!out.empty()) out += ' ';
    out += clauses[f] + '+';
    if (f & 4) out += 'e';
    if (f & 2) out += 'i';
    if (f & 1) out += 'p';
  }
  return out;
}

}  // namespace moat
