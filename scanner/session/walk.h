// A parallel walk of a directory tree, from a directory fd, never following a
// symlink and never opening anything but directories.
//
// Modelled on ripgrep's ignore::WalkParallel: only directories are work items;
// oneTBB's parallel_for_each with a feeder lets idle threads steal them, and
// each directory is read with openat/getdents relative to its parent's fd, so
// no path is ever re-resolved from the root. An unreadable directory is an
// error value carried with its path; it never stops the walk.
//
// The visitor is called concurrently from several threads: it must be
// thread-safe (keep per-thread state, merge at the end).
#pragma once

#include <sys/stat.h>

#include <functional>
#include <string>
#include <vector>

#include "storage/result.h"

namespace moat {

struct WalkEntry {
  const std::string& path;  // absolute inside the tree: "/usr/bin/su" ("/" for the root)
  const struct stat& st;    // lstat of the entry (never through a symlink); with
                            // WalkStat::TypeOnly only st_mode's file type is set
                            // (the root and entries whose type readdir did not give
                            // are stat'ed all the same)
  int parent_fd;            // the directory holding it, valid during the call
  const char* name;         // its name in parent_fd ("." for the root)
};

struct WalkError {
  std::string path;
  Error error;
};

using WalkVisitor = std::function<void(const WalkEntry&)>;

// Full: every entry is lstat'ed. TypeOnly: the type readdir reports (d_type)
// is enough for the caller. On an overlay, a stat is a lookup of the name in
// every layer: stat'ing all 35,000 entries of an image was a tenth of a full
// scan's CPU time (benchmarks/README.md, "First run"), while its checks take
// owner and mode from the layer indexes and only need to know that the
// kernel's merged tree has the entry, with the same type.
enum class WalkStat { Full, TypeOnly };

// Walks the tree below root_fd (the visitor sees the root too). Returns the
// directories that could not be read; the walk goes on past them.
std::vector<WalkError> parallel_walk(int root_fd, const WalkVisitor& visit, size_t max_depth = 4096,
                                     WalkStat stat_mode = WalkStat::Full);

}  // namespace moat
