#include "scanner/checks/checks.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "scanner/checks/caps.h"
#include "storage/fsutil.h"
#include "storage/json_check.h"

namespace moat {

namespace {

bool is_regular(const IndexEntry& e) { return e.type == EntryType::File; }
bool gate_setuid(const IndexEntry& e) { return is_regular(e) && (e.mode & 04000); }
// Setgid directories only make new files inherit the group: not findings.
bool gate_setgid(const IndexEntry& e) { return is_regular(e) && (e.mode & 02000); }
bool gate_capability(const IndexEntry& e) {
  return is_regular(e) && std::any_of(e.xattrs.begin(), e.xattrs.end(),
                                      [](const auto& x) { return x.first == "security.capability"; });
}
// Sticky world-writable directories (/tmp) are the safe, intended form.
bool gate_world_writable(const IndexEntry& e) {
  if (!(e.mode & 0002)) return false;
  if (e.type == EntryType::Dir) return !(e.mode & 01000);
  return is_regular(e);
}
bool gate_other_readable(const IndexEntry& e) { return is_regular(e) && (e.mode & 0004); }
// Every real entry has an owner; whiteouts and opaque markers are not entries.
bool gate_any_entry(const IndexEntry& e) { return e.type != EntryType::Whiteout && e.type != EntryType::Opaque; }
bool gate_device(const IndexEntry& e) { return e.type == EntryType::Char || e.type == EntryType::Block; }
bool gate_regular(const IndexEntry& e) { return is_regular(e); }
bool gate_dir(const IndexEntry& e) { return e.type == EntryType::Dir; }

using C = Category;
using S = Severity;

// Texts: title is what the table shows; description says why it matters;
// remediation what to do. Keep titles under ~60 columns (100-column table).
constexpr CheckInfo kChecks[] = {
    {"setuid-unpackaged", C::Setuid, S::High, "setuid binary not owned by any package",
     "A setuid file runs with its owner's privileges (usually root) whoever starts it. No package in the "
     "image's package database owns this one, so nothing vouches for what it is or keeps it patched.",
     "Remove the file or its setuid bit (chmod u-s) in the layer that adds it, or install it from a package.",
     1, gate_setuid},
    {"setuid-packaged", C::Setuid, S::Low, "setuid binary from a package",
     "A package ships this setuid file, but the distribution policy does not list it as expected. It runs "
     "with its owner's privileges whoever starts it, which widens the attack surface of a container.",
     "If the container does not need it, remove the package or the setuid bit (chmod u-s).", 1, gate_setuid},
    {"setuid-expected", C::Setuid, S::Info, "expected setuid binary of the distribution",
     "The distribution ships this setuid file on purpose (su, passwd, mount ...). Reported for the "
     "inventory; containers rarely need any of them.",
     "Containers that never change user can drop the bit (chmod u-s) or run with no-new-privileges.", 1,
     gate_setuid},
    {"setuid-script", C::Setuid, S::Critical, "setuid script",
     "The file is setuid and starts with '#!'. Linux ignores setuid on scripts, so the bit is either a "
     "mistake or the sign of an attempt to plant a privileged entry point for a wrapper that honours it.",
     "Remove the setuid bit (chmod u-s); use sudo or capabilities for scripts that need privileges.", 1,
     gate_setuid},
    {"setuid-writable", C::Setuid, S::Critical, "setuid binary writable by group or others",
     "Anyone in the group (or anyone at all) can replace the contents of this setuid file and run their "
     "own code with its owner's privileges.",
     "Make the file writable by its owner only (chmod go-w) or remove the setuid bit.", 1, gate_setuid},
    {"setgid-unpackaged", C::Setgid, S::Medium, "setgid binary not owned by any package",
     "A setgid file runs with its group's privileges whoever starts it, and no package in the image "
     "owns this one.",
     "Remove the file or its setgid bit (chmod g-s) in the layer that adds it, or install it from a package.",
     1, gate_setgid},
    {"setgid-packaged", C::Setgid, S::Low, "setgid binary from a package",
     "A package ships this setgid file, but the distribution policy does not list it as expected.",
     "If the container does not need it, remove the package or the setgid bit (chmod g-s).", 1, gate_setgid},
    {"setgid-expected", C::Setgid, S::Info, "expected setgid binary of the distribution",
     "The distribution ships this setgid file on purpose (chage, unix_chkpwd, ssh-agent ...). Reported "
     "for the inventory.",
     "Containers that do not need it can drop the bit (chmod g-s).", 1, gate_setgid},
    {"setgid-script", C::Setgid, S::High, "setgid script",
     "The file is setgid and starts with '#!'. Linux ignores setgid on scripts, so the bit is a mistake "
     "or an attempt to plant a privileged entry point.",
     "Remove the setgid bit (chmod g-s).", 1, gate_setgid},
    {"setgid-writable", C::Setgid, S::High, "setgid binary writable by group or others",
     "Anyone who can write this setgid file can run their own code with its group's privileges.",
     "Make the file writable by its owner only (chmod go-w) or remove the setgid bit.", 1, gate_setgid},
    {"capability", C::Capability, S::Medium, "file with Linux capabilities",
     "The file carries file capabilities (security.capability): whoever runs it gains those privileges, "
     "like a narrow setuid-root.",
     "Remove them with setcap -r unless the program needs them; prefer granting capabilities to the "
     "container at run time.",
     1, gate_capability},
    {"world-writable", C::Permission, S::Medium, "world-writable file or directory without sticky bit",
     "Any user in the container can change this file, or add, remove and rename entries of this directory "
     "(no sticky bit), which lets one user tamper with what another runs or reads.",
     "Remove write permission for others (chmod o-w), or set the sticky bit on shared directories (chmod +t).",
     1, gate_world_writable},
    {"shadow-readable", C::Permission, S::High, "password database readable by everyone",
     "/etc/shadow and /etc/gshadow hold password hashes; readable by others they can be cracked offline.",
     "chmod 0640 (owner root, group shadow) or 0600.", 1, gate_other_readable},
    {"private-key-readable", C::Permission, S::High, "private key readable by everyone",
     "A private key that any user in the container can read can be stolen by any compromised process.",
     "chmod 0600 (or 0640 with a dedicated group); better, do not bake private keys into images.", 1,
     gate_other_readable},
    {"unknown-owner", C::Ownership, S::Low, "file owned by a uid or gid the image does not define",
     "The owner is not in the image's /etc/passwd or /etc/group. A user or group created later with that "
     "id would silently own the file.",
     "chown the file to a defined user and group in the layer that adds it (COPY --chown).", 1,
     gate_any_entry},
    {"device-node", C::Device, S::Medium, "device node in the image",
     "Images should not carry device nodes: the runtime provides /dev. A device node in the filesystem can "
     "give raw access to host hardware or memory if the runtime allows it.",
     "Remove the node from the layer; let the container runtime create devices.", 1, gate_device},
    {"account-extra-uid0", C::Account, S::High, "account other than root with uid 0",
     "Every uid-0 account is root. An extra one is a classic backdoor and escapes audits that look for "
     "\"root\" by name.",
     "Remove the account or give it a uid of its own.", 1, nullptr},
    {"account-empty-password", C::Account, S::High, "account with an empty password",
     "An empty password field in /etc/passwd or /etc/shadow lets anyone log in or su to the account "
     "without a password (CVE-2019-5021 in Alpine images).",
     "Lock the account: set its password field to '*' or '!' (passwd -l).", 1, nullptr},
    {"account-duplicate", C::Account, S::Medium, "duplicate account name or id",
     "Two accounts share a name or an id, so file ownership and logins are ambiguous; often the result of "
     "appending to /etc/passwd by hand.",
     "Give every account a unique name and id (use useradd / groupadd).", 1, nullptr},
    {"integrity-mismatch", C::Integrity, S::High, "packaged file differs from its package",
     "The file's digest differs from the one its package recorded (dpkg md5sums, apk checksums): it was "
     "modified after installation, which is how a backdoored binary looks.",
     "Reinstall the package in a fresh layer, or find out which layer changed the file and why.", 1,
     gate_regular},
    {"sensitive-git-dir", C::SensitiveFile, S::Medium, ".git directory in the image",
     "A .git directory ships the whole history of the source, often with credentials in old commits and "
     "remote URLs.",
     "Add .git to .dockerignore or use a multi-stage build that copies only build outputs.", 1, gate_dir},
    {"sensitive-dotenv", C::SensitiveFile, S::Medium, ".env file in the image",
     ".env files hold environment configuration, usually including credentials and API keys.",
     "Add .env* to .dockerignore; pass configuration at run time (environment, secrets).", 1, gate_regular},
    {"sensitive-history", C::SensitiveFile, S::Low, "shell or REPL history in the image",
     "History files record the commands typed while the image was built or used, often with passwords or "
     "tokens on the command line.",
     "Delete the history in the same layer that created it, or do not run interactive shells in builds.", 1,
     gate_regular},
    {"sensitive-ssh-key", C::SensitiveFile, S::High, "SSH private key in the image",
     "Everyone who can pull the image has this key; for host keys, every container from the image shares "
     "one host identity.",
     "Remove the key; mount keys at run time, use BuildKit --mount=type=ssh for builds, generate host keys "
     "at first start.",
     1, gate_regular},
    {"sensitive-authorized-keys", C::SensitiveFile, S::Medium, "authorized_keys in the image",
     "An authorized_keys file grants SSH login to whoever holds the matching keys, in every container made "
     "from the image.",
     "Remove it; provision SSH access at run time if it is needed at all.", 1, gate_regular},
    {"sensitive-credentials-file", C::SensitiveFile, S::Medium, "credentials file in the image",
     "Package-manager and cloud credential files (.npmrc, .pypirc, docker config.json, .git-credentials, "
     "aws credentials ...) with credentials in them ship those credentials to everyone who pulls the image.",
     "Use build secrets (BuildKit --mount=type=secret) and remove the file in the same layer.", 1,
     gate_regular},
    {"config-runs-as-root", C::Config, S::Medium, "image runs as root",
     "The image config sets no User (or root / 0): containers run as root unless the runtime overrides it.",
     "Add a USER instruction with an unprivileged user.", 1, nullptr},
    {"config-ssh-port", C::Config, S::Medium, "image exposes the SSH port",
     "Port 22 is exposed: an SSH server in a container is usually unnecessary attack surface.",
     "Remove the SSH server and EXPOSE 22; use the runtime's exec for access.", 1, nullptr},
    {"config-add-url", C::Config, S::Low, "ADD from a URL in the image history",
     "ADD with a URL downloads without checksum verification (unless --checksum is given), so the build "
     "is not reproducible and trusts the network.",
     "Download with curl/wget and verify a checksum, or use ADD --checksum.", 1, nullptr},
    {"config-sudo", C::Config, S::Low, "sudo used in the image history",
     "Build steps already run as root; sudo in a build step suggests sudo is installed and configured in "
     "the image, which is rarely wanted.",
     "Remove sudo from build steps and from the image; switch users with USER.", 1, nullptr},
    {"config-no-healthcheck", C::Config, S::Info, "image has no HEALTHCHECK",
     "Without a HEALTHCHECK, runtimes that honour it cannot tell a hung container from a healthy one.",
     "Add a HEALTHCHECK instruction if the image runs a service.", 1, nullptr},
};

}  // namespace

std::span<const CheckInfo> all_checks() { return kChecks; }

const CheckInfo* find_check(std::string_view id) {
  for (const auto& c : kChecks)
    if (c.id == id) return &c;
  return nullptr;
}

Severity check_severity(const CheckInfo& c, const policy::Policy& p) {
  if (auto name = p.severity_of(c.id))
    if (auto s = parse_severity(*name)) return *s;
  return c.default_severity;
}

Finding make_finding(const CheckInfo& c, const policy::Policy& p) {
  Finding f;
  f.rule_id = std::string(c.id);
  f.category = c.category;
  f.severity = check_severity(c, p);
  f.title = std::string(c.title);
  f.description = std::string(c.description);
  f.remediation = std::string(c.remediation);
  f.target = c.category == Category::Config ? Target::Config : Target::Filesystem;
  return f;
}

Result<Finding> make_finding(std::string_view id, const policy::Policy& p) {
  const CheckInfo* c = find_check(id);
  if (!c) return Error{"no check has the id \"" + std::string(id) + "\""};
  return make_finding(*c, p);
}

Result<std::vector<const CheckInfo*>> select_checks(std::string_view list) {
  std::vector<const CheckInfo*> out;
  auto add = [&](const CheckInfo* c) {
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  };
  if (list.empty()) {
    for (const auto& c : kChecks) out.push_back(&c);
    return out;
  }
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view name = list.substr(pos, comma - pos);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    pos = comma + 1;
    if (name.empty()) continue;
    if (const CheckInfo* c = find_check(name)) {
      add(c);
    } else if (auto cat = parse_category(name)) {
      bool any = false;
      for (const auto& c2 : kChecks)
        if (c2.category == *cat) add(&c2), any = true;
      if (!any) return Error{"--checks: category \"" + std::string(name) + "\" has no checks in this version"};
    } else {
      return Error{"--checks: unknown check or category \"" + std::string(name) + "\""}.with_hint(
          "`moat rules list` lists them");
    }
  }
  // Registry order, whatever order the user typed.
  std::sort(out.begin(), out.end());
  return out;
}

std::string checks_cache_key(const std::vector<const CheckInfo*>& checks) {
  std::string key;
  for (const auto* c : checks) {
    if (!key.empty()) key += ',';
    key += std::string(c->id) + "@" + std::to_string(c->version);
  }
  return key;
}

PolicyMismatch policy_mismatches(const policy::Policy& p) {
  PolicyMismatch m;
  for (const auto& [rule, sev] : p.severities)
    if (!find_check(rule)) m.unknown_in_policy.push_back(rule);
  for (const auto& s : p.sensitive)
    if (!find_check(s.rule)) m.unknown_in_policy.push_back(s.rule);
  for (const auto& s : p.protected_files)
    if (!find_check(s.rule)) m.unknown_in_policy.push_back(s.rule);
  for (const auto& c : kChecks)
    if (!p.severity_of(c.id)) m.missing_from_policy.push_back(std::string(c.id));
  return m;
}

CheckSelection CheckSelection::all() {
  CheckSelection s;
  for (size_t i = 0; i < std::size(kChecks); ++i) s.bits_.set(i);
  return s;
}

CheckSelection CheckSelection::of(const std::vector<const CheckInfo*>& checks) {
  CheckSelection s;
  for (const auto* c : checks) {
    size_t i = static_cast<size_t>(c - kChecks);
    if (i < std::size(kChecks)) s.bits_.set(i);
  }
  return s;
}

bool CheckSelection::has(const CheckInfo& c) const {
  size_t i = static_cast<size_t>(&c - kChecks);
  return i < std::size(kChecks) && bits_.test(i);
}

bool CheckSelection::has(std::string_view id) const {
  const CheckInfo* c = find_check(id);
  return c && has(*c);
}

static_assert(std::size(kChecks) <= 64, "CheckSelection holds 64 bits");

namespace {

// Fills the subject fields every filesystem finding shares.
Finding entry_finding(const CheckContext& ctx, const EntryView& e, std::string_view rule) {
  Finding f = make_finding(*find_check(rule), ctx.policy);
  f.path = e.meta.path;
  f.layer = e.layer;
  f.deleted = e.deleted;
  f.owner = ctx.identity.owner(e.meta.uid, e.meta.gid);
  f.mode = e.meta.mode & 07777;
  if (const std::string* pkg = ctx.packages.owner_of(e.meta.path)) f.package = *pkg;
  return f;
}

Result<Flow> emit(FindingSink& sink, Finding f) {
  finalize_finding(f);
  return sink.on_finding(std::move(f));
}

std::string who(const Owner& o, bool group) {
  if (group) return o.group ? printable(*o.group, 64) : "gid " + std::to_string(o.gid);
  return o.user ? printable(*o.user, 64) : "uid " + std::to_string(o.uid);
}

// The setuid or setgid classification of one bit. Returns the rule id.
std::string_view classify_special(const CheckContext& ctx, const EntryView& e, bool setgid_bit, bool script) {
  if (e.meta.mode & 0022) return setgid_bit ? "setgid-writable" : "setuid-writable";
  if (script) return setgid_bit ? "setgid-script" : "setuid-script";
  if (!ctx.packages.owner_of(e.meta.path)) return setgid_bit ? "setgid-unpackaged" : "setuid-unpackaged";
  if (ctx.distro && ctx.distro->expects(e.meta.path, setgid_bit)) return setgid_bit ? "setgid-expected" : "setuid-expected";
  return setgid_bit ? "setgid-packaged" : "setuid-packaged";
}

}  // namespace

#define MOAT_EMIT(sink, finding)                           \
  do {                                                     \
    MOAT_ASSIGN_OR_RETURN(Flow _flow, emit(sink, finding)); \
    if (_flow == Flow::Stop) return {};                    \
  } while (0)

Status check_entry(const CheckContext& ctx, const EntryView& e, FindingSink& sink) {
  const IndexEntry& m = e.meta;
  const std::string where = printable(m.path, 4096);
  auto enabled = [&](std::string_view id) { return ctx.selection.has(id); };
  auto gate = [&](std::string_view id) {
    const CheckInfo* c = find_check(id);
    return c && ctx.selection.has(*c) && c->gate && c->gate(m);
  };

  // A deleted entry (a later layer removed or replaced it) ships in the image
  // but no container sees it: privilege and permission checks concern what a
  // container runs, so only the leak checks (sensitive-*) look at it.
  const bool visible = !e.deleted;

  // setuid / setgid: the script test reads two bytes, once, and only here.
  bool any_special = false;
  for (std::string_view id : {"setuid-unpackaged", "setuid-packaged", "setuid-expected", "setuid-script",
                              "setuid-writable", "setgid-unpackaged", "setgid-packaged", "setgid-expected",
                              "setgid-script", "setgid-writable"})
    any_special |= enabled(id);
  bool suid = visible && any_special && gate_setuid(m), sgid = visible && any_special && gate_setgid(m);
  if (suid || sgid) {
    bool script = false;
    if (e.read_head) {
      auto head = e.read_head(2);
      if (head.ok()) script = head->rfind("#!", 0) == 0;
      else sink.on_error(where + ": " + head.error().describe());
    }
    for (bool g : {false, true}) {
      if (g ? !sgid : !suid) continue;
      std::string_view rule = classify_special(ctx, e, g, script);
      if (!enabled(rule)) continue;
      Finding f = entry_finding(ctx, e, rule);
      std::string bit = g ? "setgid" : "setuid";
      std::string as = g ? who(*f.owner, true) : who(*f.owner, false);
      f.message = bit + " (" + as + ") " + where;
      if (rule.ends_with("writable")) f.message += " is writable by " + std::string(m.mode & 0002 ? "everyone" : "its group");
      else if (rule.ends_with("script")) f.message += " is a script (#!)";
      else if (rule.ends_with("unpackaged")) f.message += " is not owned by any package";
      else f.message += " from package " + printable(f.package, 64);
      MOAT_EMIT(sink, std::move(f));
    }
  }

  if (visible && gate("capability")) {
    for (const auto& [name, value] : m.xattrs) {
      if (name != "security.capability") continue;
      auto caps = decode_file_caps(value);
      if (!caps.ok()) {
        sink.on_error(where + ": " + caps.error().describe());
        continue;
      }
      Finding f = entry_finding(ctx, e, "capability");
      f.detail = caps->text();
      f.message = where + " has file capabilities " + (f.detail.empty() ? "(empty set)" : f.detail);
      if (caps->rootid) f.message += " for the user namespace whose root is uid " + std::to_string(*caps->rootid);
      MOAT_EMIT(sink, std::move(f));
    }
  }

  if (visible && gate("world-writable")) {
    Finding f = entry_finding(ctx, e, "world-writable");
    f.message = std::string(m.type == EntryType::Dir ? "directory " : "file ") + where +
                " is writable by everyone" + (m.type == EntryType::Dir ? " and has no sticky bit" : "");
    MOAT_EMIT(sink, std::move(f));
  }

  if (visible && is_regular(m) && (m.mode & 0004)) {
    if (const policy::ProtectedFiles* pf = ctx.policy.match_protected(m.path); pf && gate(pf->rule)) {
      Finding f = entry_finding(ctx, e, pf->rule);
      f.message = where + " is readable by everyone (mode " + mode_string(m.mode) + ")";
      MOAT_EMIT(sink, std::move(f));
    }
  }

  if (visible && gate("unknown-owner")) {
    bool bad_uid = m.uid != 0 && !ctx.identity.users.empty() && !ctx.identity.has_uid(m.uid);
    bool bad_gid = m.gid != 0 && !ctx.identity.groups.empty() && !ctx.identity.has_gid(m.gid);
    if (bad_uid || bad_gid) {
      Finding f = entry_finding(ctx, e, "unknown-owner");
      std::string what;
      if (bad_uid) what = "uid " + std::to_string(m.uid);
      if (bad_gid) what += (what.empty() ? "" : " and ") + std::string("gid ") + std::to_string(m.gid);
      f.message = where + " is owned by " + what + ", which the image's " +
                  (bad_uid && bad_gid ? "/etc/passwd and /etc/group do" : bad_uid ? "/etc/passwd does" : "/etc/group does") +
                  " not define";
      MOAT_EMIT(sink, std::move(f));
    }
  }

  if (visible && gate("device-node")) {
    Finding f = entry_finding(ctx, e, "device-node");
    f.message = std::string(m.type == EntryType::Char ? "character" : "block") + " device " + where + " (" +
                std::to_string(m.dev_major) + ":" + std::to_string(m.dev_minor) + ")";
    MOAT_EMIT(sink, std::move(f));
  }

  if (visible && gate("integrity-mismatch") && e.hash) {
    if (const ExpectedDigest* want = ctx.packages.digest_of(m.path)) {
      auto got = e.hash(want->algo);
      if (!got.ok()) {
        sink.on_error(where + ": " + got.error().describe());
      } else if (*got != want->hex) {
        Finding f = entry_finding(ctx, e, "integrity-mismatch");
        f.package = want->package;
        f.detail = *got;  // a second, different change is a new finding
        f.message = where + " differs from package " + printable(want->package, 64) + ": " +
                    std::string(digest_algo_name(want->algo)) + " " + got->substr(0, 16) + "..., recorded " +
                    want->hex.substr(0, 16) + "...";
        MOAT_EMIT(sink, std::move(f));
      }
    }
  }

  if (m.type == EntryType::File || m.type == EntryType::Dir) {
    const policy::SensitivePattern* sp = ctx.policy.match_sensitive(m.path, m.type == EntryType::Dir);
    if (sp && gate(sp->rule) && m.size >= sp->min_size) {
      bool confirmed = !sp->needs_content();
      if (!confirmed && e.read_head) {
        auto head = e.read_head(policy::kContentWindow);
        if (head.ok()) confirmed = sp->matches_content(*head);
        else sink.on_error(where + ": " + head.error().describe());
      }
      if (confirmed) {
        Finding f = entry_finding(ctx, e, sp->rule);
        f.message = std::string(find_check(sp->rule)->title) + ": " + where;
        MOAT_EMIT(sink, std::move(f));
      }
    }
  }
  return {};
}

namespace {

bool word_at(const std::string& s, size_t pos, std::string_view w) {
  if (s.compare(pos, w.size(), w) != 0) return false;
  auto boundary = [](char c) { return !(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'); };
  bool left = pos == 0 || boundary(s[pos - 1]);
  bool right = pos + w.size() >= s.size() || boundary(s[pos + w.size()]);
  return left && right;
}

bool has_word(const std::string& s, std::string_view w) {
  for (size_t pos = s.find(w); pos != std::string::npos; pos = s.find(w, pos + 1))
    if (word_at(s, pos, w)) return true;
  return false;
}

// "ADD [--flags] https://... dest": Dockerfile ADD of a URL without --checksum.
bool add_from_url(const std::string& s) {
  for (size_t pos = s.find("ADD"); pos != std::string::npos; pos = s.find("ADD", pos + 1)) {
    if (!word_at(s, pos, "ADD")) continue;
    std::string rest = s.substr(pos + 3);
    if (rest.find("--checksum") != std::string::npos) continue;
    size_t url = rest.find("://");
    if (url == std::string::npos) continue;
    size_t start = rest.rfind(' ', url);
    std::string scheme = rest.substr(start == std::string::npos ? 0 : start + 1, url - (start == std::string::npos ? 0 : start + 1));
    if (scheme == "http" || scheme == "https") return true;
  }
  return false;
}

}  // namespace

std::vector<HistoryStep> history_steps(const ImageRecord& img, const nlohmann::json& cfg) {
  using json = nlohmann::json;
  std::vector<HistoryStep> out;
  if (!cfg.is_object() || !cfg.contains("history") || !cfg["history"].is_array()) return out;
  const json& hist = cfg["history"];
  auto empty_layer = [](const json& h) {
    auto it = h.find("empty_layer");
    return it != h.end() && it->is_boolean() && it->get<bool>();
  };
  size_t made = 0;
  for (const auto& h : hist)
    if (h.is_object() && !empty_layer(h)) ++made;
  const bool mapped = made == img.layers.size();
  size_t li = 0;
  for (size_t i = 0; i < hist.size(); ++i) {
    const json& h = hist[i];
    if (!h.is_object()) continue;
    HistoryStep step;
    step.index = i;
    if (auto cb = h.find("created_by"); cb != h.end() && cb->is_string()) step.created_by = cb->get<std::string>();
    if (!empty_layer(h)) {
      if (mapped && li < img.layers.size())
        step.layer = LayerRef{img.layers[li].index, img.layers[li].diff_id, img.layers[li].created_by};
      ++li;
    }
    out.push_back(std::move(step));
  }
  return out;
}

Result<std::vector<Finding>> config_findings(const ImageRecord& img, const CheckContext& ctx) {
  using json = nlohmann::json;
  std::vector<Finding> out;
  if (img.config.empty()) return out;
  json cfg = parse_json_or_discarded(img.config);  // storage/json_check.h
  if (cfg.is_discarded() || !cfg.is_object()) return Error{"image config is not a JSON object"};
  const json empty = json::object();
  const json& c = cfg.contains("config") && cfg["config"].is_object() ? cfg["config"] : empty;

  auto add = [&](std::string_view rule, const std::string& field, std::optional<LayerRef> layer, std::string detail,
                 std::string message) {
    if (!ctx.selection.has(rule)) return;
    Finding f = make_finding(*find_check(rule), ctx.policy);
    f.config_field = field;
    f.layer = std::move(layer);
    f.detail = std::move(detail);
    f.message = std::move(message);
    finalize_finding(f);
    out.push_back(std::move(f));
  };

  std::string user = c.contains("User") && c["User"].is_string() ? c["User"].get<std::string>() : "";
  std::string uname = user.substr(0, user.find(':'));
  if (uname.empty() || uname == "root" || uname == "0")
    add("config-runs-as-root", "User", std::nullopt, "",
        user.empty() ? "the image config sets no User: containers run as root"
                     : "the image config runs as " + printable(user, 64));

  if (c.contains("ExposedPorts") && c["ExposedPorts"].is_object())
    for (const auto& [port, v] : c["ExposedPorts"].items())
      if (port == "22" || port == "22/tcp")
        add("config-ssh-port", "ExposedPorts", std::nullopt, port, "the image exposes port " + port + " (SSH)");

  bool has_hc = false;
  if (c.contains("Healthcheck") && c["Healthcheck"].is_object()) {
    const json& t = c["Healthcheck"].value("Test", json::array());
    has_hc = !(t.is_array() && (t.empty() || (t[0].is_string() && t[0].get<std::string>() == "NONE")));
  }
  if (!has_hc) add("config-no-healthcheck", "Healthcheck", std::nullopt, "", "the image config has no HEALTHCHECK");

  for (const HistoryStep& h : history_steps(img, cfg)) {
    if (h.created_by.empty()) continue;
    std::string step = printable(h.created_by, 120), n = std::to_string(h.index);
    if (add_from_url(h.created_by))
      add("config-add-url", "History", h.layer, h.created_by, "history step " + n + " ADDs from a URL: " + step);
    if (has_word(h.created_by, "sudo"))
      add("config-sudo", "History", h.layer, h.created_by, "history step " + n + " uses sudo: " + step);
  }
  return out;
}

}  // namespace moat
