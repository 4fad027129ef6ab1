// parallel_walk (scanner/session/walk.h): Full and TypeOnly see the same
// entries with the same file types; TypeOnly stats only what readdir leaves open.
#include "scanner/session/walk.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include "storage/fd.h"

namespace moat {
namespace {

std::map<std::string, struct stat> walk_all(int root, WalkStat mode) {
  std::map<std::string, struct stat> out;
  std::mutex mu;
  auto errors = parallel_walk(root, [&](const WalkEntry& e) {
    std::lock_guard<std::mutex> g(mu);
    out[e.path] = e.st;
  }, 4096, mode);
  EXPECT_TRUE(errors.empty());
  return out;
}

TEST(Walk, TypeOnlySeesTheSameEntriesAndTypes) {
  char dir[] = "/tmp/moat-walk-test.XXXXXX";
  ASSERT_TRUE(mkdtemp(dir));
  const std::string d = dir;
  ASSERT_EQ(mkdir((d + "/sub").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((d + "/sub/deeper").c_str(), 0700), 0);
  {
    Fd f(::open((d + "/sub/file").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(f.valid());
    ASSERT_EQ(::write(f.get(), "hello", 5), 5);
  }
  ASSERT_EQ(symlink("/etc/passwd", (d + "/link").c_str()), 0);
  ASSERT_EQ(mkfifo((d + "/sub/deeper/fifo").c_str(), 0600), 0);
  Fd root(::open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(root.valid());

  auto full = walk_all(root.get(), WalkStat::Full);
  auto typed = walk_all(root.get(), WalkStat::TypeOnly);
  ASSERT_EQ(full.size(), 6u);  // "/", link, sub, sub/file, sub/deeper, sub/deeper/fifo
  ASSERT_EQ(typed.size(), full.size());
  for (const auto& [path, st] : full) {
    ASSERT_TRUE(typed.count(path)) << path;
    EXPECT_EQ(typed[path].st_mode & S_IFMT, st.st_mode & S_IFMT) << path;
  }
  EXPECT_TRUE(S_ISLNK(typed["/link"].st_mode));  // never followed
  EXPECT_TRUE(S_ISFIFO(typed["/sub/deeper/fifo"].st_mode));
  EXPECT_EQ(full["/sub/file"].st_size, 5);
  EXPECT_TRUE(S_ISDIR(typed["/"].st_mode));
  EXPECT_NE(typed["/"].st_ino, 0u);  // the root is always stat'ed

  std::string cmd = "rm -rf '" + d + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

}  // namespace
}  // namespace moat
