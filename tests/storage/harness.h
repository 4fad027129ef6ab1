// Test harness for the storage suites: temporary directories, running the real
// moat binary, and looking at what it left on disk.
//
// End-to-end tests run the binary (not the library) because the contract under
// test is the command's: exit status, the error text a user sees, and the
// store's on-disk form that a later overlay mount and the checks rely on.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tests/fixture/fixture.h"

namespace moat::test {

// A fresh directory under $TMPDIR or /tmp, removed (0000 dirs included) on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "moat-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

struct RunResult {
  int exit_code = -1;  // -1: killed by a signal
  std::string out, err;
};

// Runs argv[0] with the rest as arguments, stdin from /dev/null; waits.
RunResult run(const std::vector<std::string>& argv);
// Runs the moat binary under test.
RunResult moat(const std::vector<std::string>& args);
std::string moat_bin();

// Writes or reads a whole file; read_file returns nullopt if it cannot be read.
void write_file(const std::string& path, const std::string& data, mode_t mode = 0644);
std::optional<std::string> read_file(const std::string& path);

// lstat() or nullopt.
std::optional<struct stat> lstat_of(const std::string& path);
// An xattr's value (lgetxattr, never following a symlink) or nullopt.
std::optional<std::string> xattr_of(const std::string& path, const std::string& name);
std::vector<std::string> xattr_names(const std::string& path);

// Every path under `root` (relative, sorted) with type, mode, size and a hash
// of the content, never following symlinks. Used to prove a directory is untouched.
std::map<std::string, std::string> snapshot(const std::string& root);
// Names directly inside a directory (sorted), empty if it cannot be listed.
std::vector<std::string> list_dir(const std::string& dir);

// The index.tsv lines of a layer (header dropped), keyed by their path field.
std::map<std::string, std::vector<std::string>> index_lines(const std::string& layer_dir);

// Builds a fixture with the library into dir/name; returns what was built.
fixture::Built build_fixture(const nlohmann::json& spec, const std::string& out);

// The "rich" three-layer image every transport test pulls: one gzip, one zstd
// and one uncompressed layer holding every entry kind the store must handle
// (setuid/setgid, capabilities, foreign owners, in-layer and cross-layer
// hardlinks, 0000/0500 directories, devices, a fifo, symlinks, whiteouts, an
// opaque directory, forged overlay/override xattrs, non-UTF-8 and tab/newline
// names, a 300 kB file).
nlohmann::json rich_layers();
// Checks a store holding the rich image. `as_root`: owners were applied (the
// pull ran as root); otherwise files belong to `owner` and the truth is in
// override_stat. Uses gtest assertions.
void verify_rich_store(const std::string& store, const fixture::BuiltPlatform& img, bool as_root, uid_t owner);

// The hex part of a digest.
inline std::string hex_of(const std::string& digest) { return digest.substr(digest.find(':') + 1); }

}  // namespace moat::test
