// Where podman's store is: containers-storage.conf(5) as containers/storage
// reads it, for the user moat runs for.
//
// Lookup (c/storage's DefaultStoreOptions): $CONTAINERS_STORAGE_CONF alone when
// set; else, rootless, $XDG_CONFIG_HOME/containers/storage.conf (or
// ~/.config/containers/storage.conf) when it exists; else the system file
// /etc/containers/storage.conf (or /usr/share/containers/storage.conf). A
// rootless user reading the system file takes its driver and options but not
// its graphroot/runroot: those are `rootless_storage_path` when set, else
// $XDG_DATA_HOME/containers/storage (or ~/.local/share/containers/storage) and
// $XDG_RUNTIME_DIR/containers. Root defaults to /var/lib/containers/storage
// and /run/containers/storage. $STORAGE_DRIVER overrides the driver. With no
// driver configured, c/storage keeps the one the store already has
// (a DRIVER-layers directory in the graphroot), which is what moat does.
//
// "Rootless" means the host uid is not 0. Inside moat's own user namespace
// (scanner/session/namespace.h) getuid() is 0 but the host uid is the caller's: it is
// read from /proc/self/uid_map.
#pragma once

#include <string>
#include <vector>

#include "storage/result.h"

namespace moat::cstorage {

struct StoreLocation {
  std::string driver;     // overlay | vfs (empty: not configured, detected from the graphroot)
  std::string graphroot;  // absolute
  std::string runroot;    // absolute (only used to name the store, never read)
  std::vector<std::string> additional;  // additionalimagestores (read-only graphroots)
  std::string config_file;              // the storage.conf used, or "" for built-in defaults
  bool rootless = true;
};

// The store spec of a reference, `[[DRIVER@]GRAPHROOT[+RUNROOT][:OPTIONS]]`;
// each empty part is taken from the configuration.
struct StoreSpec {
  std::string driver, graphroot, runroot, options;
  bool given = false;
};

// The host uid of the calling process (its uid outside any user namespace).
uint32_t host_uid();

// What to do when a rootless store's files cannot be read (EACCES): the user
// namespace with podman's mapping is missing.
std::string subid_hint();

// The store podman would use, with the spec's parts applied over it.
Result<StoreLocation> find_store(const StoreSpec& spec);

// Parses storage.conf text (TOML) over `loc` (only the keys present change it).
// `rootless_from_system`: a rootless user reading the system file (graphroot and
// runroot stay, rootless_storage_path applies).
Status apply_storage_conf(const std::string& text, const std::string& file, bool rootless_from_system,
                          StoreLocation& loc);

// Expands $VAR and ${VAR} from the environment (c/storage: os.ExpandEnv), with
// $UID and $HOME of the host user.
std::string expand_env(const std::string& s);

}  // namespace moat::cstorage
