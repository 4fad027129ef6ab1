#include "tests/storage/harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>

#include "storage/fsutil.h"

namespace moat::test {

TempDir::TempDir(const std::string& tag) {
  const char* t = getenv("TMPDIR");
  std::string tmpl = std::string(t && *t ? t : "/tmp") + "/" + tag + ".XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp " + tmpl + ": " + std::strerror(errno));
  path_ = tmpl;
}

TempDir::~TempDir() {
  size_t slash = path_.rfind('/');
  int fd = ::open(path_.substr(0, slash).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)remove_tree(fd, path_.substr(slash + 1));
    ::close(fd);
  }
}

namespace {
std::string slurp_fd(int fd) {
  std::string out;
  char buf[8192];
  lseek(fd, 0, SEEK_SET);
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}
}  // namespace

RunResult run(const std::vector<std::string>& argv) {
  // Output goes to unlinked temporary files, not pipes: no deadlock however much is printed.
  int out = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  int err = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (out < 0 || err < 0) throw std::runtime_error("O_TMPFILE in /tmp");
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp_fd(out);
  r.err = slurp_fd(err);
  ::close(out);
  ::close(err);
  return r;
}

std::string moat_bin() { return MOAT_BIN_PATH; }

RunResult moat(const std::vector<std::string>& args) {
  std::vector<std::string> argv{moat_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

void write_file(const std::string& path, const std::string& data, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error("create " + path + ": " + std::strerror(errno));
  if (::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) throw std::runtime_error("write " + path);
  ::close(fd);
}

std::optional<std::string> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return std::nullopt;
  std::string s = slurp_fd(fd);
  ::close(fd);
  return s;
}

std::optional<struct stat> lstat_of(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  return st;
}

std::optional<std::string> xattr_of(const std::string& path, const std::string& name) {
  char buf[4096];
  ssize_t n = lgetxattr(path.c_str(), name.c_str(), buf, sizeof buf);
  struct stat st;
  if (n < 0 && errno == EACCES && ::lstat(path.c_str(), &st) == 0 && st.st_uid == geteuid() && S_ISREG(st.st_mode)) {
    // user.* xattrs need read permission, even for the owner of a 0000 file
    // (a device placeholder): a test running unprivileged opens it for the look.
    chmod(path.c_str(), (st.st_mode & 07777) | S_IRUSR);
    n = lgetxattr(path.c_str(), name.c_str(), buf, sizeof buf);
    chmod(path.c_str(), st.st_mode & 07777);
  }
  if (n < 0) return std::nullopt;
  return std::string(buf, static_cast<size_t>(n));
}

std::vector<std::string> xattr_names(const std::string& path) {
  char buf[8192];
  ssize_t n = llistxattr(path.c_str(), buf, sizeof buf);
  std::vector<std::string> out;
  for (ssize_t i = 0; i < n;) {
    std::string name(buf + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    out.push_back(name);
  }
  return out;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") out.push_back(n);
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::map<std::string, std::string> snapshot(const std::string& root) {
  std::map<std::string, std::string> out;
  std::function<void(const std::string&)> walk = [&](const std::string& rel) {
    std::string full = rel.empty() ? root : root + "/" + rel;
    auto st = lstat_of(full);
    if (!st) return;
    std::string d = std::to_string(st->st_mode) + " " + std::to_string(st->st_size) + " " +
                    std::to_string(st->st_uid) + ":" + std::to_string(st->st_gid) + " n" + std::to_string(st->st_nlink) + " " +
                    std::to_string(st->st_mtim.tv_sec) + "." + std::to_string(st->st_mtim.tv_nsec);
    if (S_ISREG(st->st_mode)) d += " " + fixture::sha256_hex(read_file(full).value_or("<unreadable>"));
    out[rel.empty() ? "." : rel] = d;
    if (S_ISDIR(st->st_mode))
      for (const auto& n : list_dir(full)) walk(rel.empty() ? n : rel + "/" + n);
  };
  walk("");
  return out;
}

std::map<std::string, std::vector<std::string>> index_lines(const std::string& layer_dir) {
  std::map<std::string, std::vector<std::string>> out;
  auto text = read_file(layer_dir + "/index.tsv");
  if (!text) return out;
  size_t i = 0;
  while (i < text->size()) {
    size_t j = text->find('\n', i);
    if (j == std::string::npos) j = text->size();
    std::string line = text->substr(i, j - i);
    i = j + 1;
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f;
    size_t a = 0;
    for (;;) {
      size_t b = line.find('\t', a);
      f.push_back(line.substr(a, b == std::string::npos ? std::string::npos : b - a));
      if (b == std::string::npos) break;
      a = b + 1;
    }
    out[f[0]] = f;
  }
  return out;
}

fixture::Built build_fixture(const nlohmann::json& spec, const std::string& out) { return fixture::build(spec, out); }

}  // namespace moat::test

// ---- the rich image ----


namespace moat::test {

namespace {
// A file capability (VFS_CAP_REVISION_2, cap_net_raw permitted+effective), as setcap writes it.
const char* kCapHex = "0100000200200000000000000000000000000000";
}  // namespace

nlohmann::json rich_layers() {
  using nlohmann::json;
  json base = {
      {{"path", "etc"}, {"type", "dir"}},
      {{"path", "etc/passwd"}, {"content", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"}},
      {{"path", "etc/shadow"}, {"mode", "0640"}, {"content", "root:*:19000::::::\n"}},
      {{"path", "bin/su"}, {"mode", "4755"}, {"content", "ELF-su"}},
      {{"path", "bin/wall"}, {"mode", "2755"}, {"gid", 5}, {"content", "ELF-wall"}},
      {{"path", "usr/bin/ping"}, {"mode", "0755"}, {"content", "ELF-ping"},
       {"xattrs", {{"security.capability", {{"hex", kCapHex}}}, {"user.note", "kept"}}}},
      // A layer may not decide what is hidden, nor forge the store's own record of owners.
      {{"path", "forged"}, {"content", "f"},
       {"xattrs", {{"user.containers.override_stat", "0:0:4755:file"}, {"trusted.overlay.opaque", "y"},
                   {"user.overlay.redirect", "/etc"}}}},
      {{"path", "fakeopq"}, {"type", "dir"}, {"xattrs", {{"user.overlay.opaque", "y"}, {"trusted.overlay.opaque", "y"}}}},
      {{"path", "fakeopq/f"}, {"content", "x"}},
      {{"path", "home/user"}, {"type", "dir"}, {"uid", 1000}, {"gid", 1000}, {"mode", "0700"}},
      {{"path", "home/user/notes"}, {"uid", 1000}, {"gid", 1000}, {"mode", "0640"}, {"content", "mine"}},
      {{"path", "a/f1"}, {"content", "linked"}},
      {{"path", "a/f2"}, {"type", "hardlink"}, {"link", "a/f1"}},
      {{"path", "b/f3"}, {"type", "hardlink"}, {"link", "./a//f1"}},
      // Directories that would lock the unpacker out if their mode came first.
      {{"path", "locked"}, {"type", "dir"}, {"mode", "0000"}},
      {{"path", "locked/inner"}, {"type", "dir"}, {"mode", "0500"}},
      {{"path", "locked/inner/f"}, {"mode", "0400"}, {"content", "deep"}},
      {{"path", "ro"}, {"type", "dir"}, {"mode", "0500"}},
      {{"path", "ro/f"}, {"content", "r"}},
      {{"path", "dev/null"}, {"type", "char"}, {"major", 1}, {"minor", 3}, {"mode", "0666"}},
      {{"path", "dev/sda"}, {"type", "block"}, {"major", 8}, {"minor", 0}, {"mode", "0660"}, {"gid", 6}},
      {{"path", "run/fifo"}, {"type", "fifo"}, {"mode", "0600"}},
      {{"path", "lib"}, {"type", "symlink"}, {"link", "usr/lib"}},
      {{"path", "abs-link"}, {"type", "symlink"}, {"link", "/etc/shadow"}},
      {{"path", "odd/\\xff\\xfe"}, {"content", "bytes"}},
      {{"path", "odd/tab\there\nnl"}, {"content", "t"}},
      {{"path", "opq/old"}, {"content", "old"}},
      {{"path", "tmp"}, {"type", "dir"}, {"mode", "1777"}},
  };
  json upper = {
      {{"path", "etc/.wh.shadow"}},
      {{"path", "opq"}, {"type", "dir"}},
      {{"path", "opq/.wh..wh..opq"}},
      {{"path", "opq/new"}, {"content", "new"}},
      {{"path", "su-copy"}, {"type", "hardlink"}, {"link", "bin/su"}},
      {{"path", "home/user/notes-copy"}, {"type", "hardlink"}, {"link", "home/user/notes"}},
  };
  json top = {
      {{"path", "big"}, {"content", {{"repeat", "0123456789"}, {"size", 300000}}}},
  };
  return json::array({
      {{"compression", "gzip"}, {"created_by", "ADD base.tar /"}, {"entries", base}},
      {{"compression", "zstd"}, {"created_by", "RUN rm /etc/shadow"}, {"entries", upper}},
      {{"compression", "none"}, {"created_by", "COPY big /"}, {"entries", top}},
  });
}

void verify_rich_store(const std::string& store, const fixture::BuiltPlatform& img, bool as_root, uid_t owner) {
  ASSERT_EQ(img.diff_ids.size(), 3u);
  std::vector<std::string> want_layers;
  for (const auto& d : img.diff_ids) want_layers.push_back(hex_of(d));
  std::sort(want_layers.begin(), want_layers.end());
  ASSERT_EQ(list_dir(store + "/layers"), want_layers);
  EXPECT_EQ(list_dir(store + "/tmp"), std::vector<std::string>{}) << "a successful pull leaves nothing in tmp/";
  EXPECT_EQ(list_dir(store + "/images"), std::vector<std::string>{hex_of(img.config_digest) + ".json"});
  auto store_st = lstat_of(store);
  ASSERT_TRUE(store_st);
  EXPECT_EQ(store_st->st_mode & 07777, 0700u) << "the store holds setuid files: nobody else may enter";

  const std::string l0 = store + "/layers/" + hex_of(img.diff_ids[0]);
  const std::string l1 = store + "/layers/" + hex_of(img.diff_ids[1]);
  const std::string l2 = store + "/layers/" + hex_of(img.diff_ids[2]);
  const std::string d0 = l0 + "/diff", d1 = l1 + "/diff", d2 = l2 + "/diff";
  auto ix0 = index_lines(l0), ix1 = index_lines(l1), ix2 = index_lines(l2);
  auto owner_of = [&](uid_t image_uid) { return as_root ? image_uid : owner; };
  // Index fields: 0 path 1 type 2 mode 3 uid 4 gid 5 size 6 major 7 minor 8 mtime 9 link 10 xattrs
  auto field = [](const std::map<std::string, std::vector<std::string>>& ix, const std::string& p, size_t f) {
    auto it = ix.find(p);
    return it == ix.end() ? std::string("<missing " + p + ">") : it->second.at(f);
  };

  // layer.json records what was unpacked, from which blob.
  auto lj = read_file(l0 + "/layer.json");
  ASSERT_TRUE(lj);
  auto j = nlohmann::json::parse(*lj);
  EXPECT_EQ(j.value("diff_id", ""), img.diff_ids[0]);
  EXPECT_EQ(j.value("created_by", ""), "ADD base.tar /");

  // Plain content and the image's mtimes.
  EXPECT_EQ(read_file(d0 + "/etc/passwd").value_or(""),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n");
  auto su = lstat_of(d0 + "/bin/su");
  ASSERT_TRUE(su);
  EXPECT_EQ(su->st_mode & 07777, 04755u) << "setuid is kept on disk";
  EXPECT_EQ(su->st_uid, owner_of(0));
  EXPECT_EQ(su->st_mtim.tv_sec, 1700000000);
  EXPECT_EQ(field(ix0, "/bin/su", 1), "f");
  EXPECT_EQ(field(ix0, "/bin/su", 2), "4755");
  EXPECT_EQ(field(ix0, "/bin/su", 3), "0");
  EXPECT_EQ(field(ix0, "/bin/su", 8), "1700000000");
  auto wall = lstat_of(d0 + "/bin/wall");
  ASSERT_TRUE(wall);
  EXPECT_EQ(wall->st_mode & 07777, 02755u);
  EXPECT_EQ(field(ix0, "/bin/wall", 4), "5");

  // Capabilities: always in the index; on disk where the unpacker may set them.
  EXPECT_EQ(field(ix0, "/usr/bin/ping", 10), std::string("security.capability=") + kCapHex + ";user.note=6b657074");
  EXPECT_EQ(xattr_of(d0 + "/usr/bin/ping", "user.note").value_or("<none>"), "kept");
  if (as_root) {
    EXPECT_TRUE(xattr_of(d0 + "/usr/bin/ping", "security.capability").has_value());
  }

  // Forged xattrs from the tar are dropped, from the disk and from the index.
  EXPECT_EQ(field(ix0, "/forged", 10), "");
  EXPECT_FALSE(xattr_of(d0 + "/forged", "user.containers.override_stat")) << "a forged override_stat survived";
  EXPECT_FALSE(xattr_of(d0 + "/forged", "user.overlay.redirect"));
  EXPECT_FALSE(xattr_of(d0 + "/fakeopq", "user.overlay.opaque")) << "a tar xattr made a directory opaque";
  EXPECT_FALSE(xattr_of(d0 + "/fakeopq", "trusted.overlay.opaque"));
  EXPECT_EQ(field(ix0, "/fakeopq", 10), "");

  // Foreign owners: true ids in the index; on disk either real owners (root) or override_stat.
  EXPECT_EQ(field(ix0, "/home/user/notes", 2), "0640");
  EXPECT_EQ(field(ix0, "/home/user/notes", 3), "1000");
  EXPECT_EQ(field(ix0, "/home/user/notes", 4), "1000");
  auto notes = lstat_of(d0 + "/home/user/notes");
  ASSERT_TRUE(notes);
  EXPECT_EQ(notes->st_uid, owner_of(1000));
  EXPECT_EQ(notes->st_mode & 07777, 0640u);
  auto hu = lstat_of(d0 + "/home/user");
  ASSERT_TRUE(hu);
  EXPECT_EQ(hu->st_mode & 07777, 0700u);
  if (as_root) {
    EXPECT_FALSE(xattr_of(d0 + "/home/user/notes", "user.containers.override_stat"));
    EXPECT_FALSE(xattr_of(d0 + "/bin/su", "user.containers.override_stat"));
  } else {
    EXPECT_EQ(xattr_of(d0 + "/home/user/notes", "user.containers.override_stat").value_or("<none>"), "1000:1000:0640:file");
    EXPECT_EQ(xattr_of(d0 + "/home/user", "user.containers.override_stat").value_or("<none>"), "1000:1000:0700:dir");
    EXPECT_EQ(xattr_of(d0 + "/bin/wall", "user.containers.override_stat").value_or("<none>"), "0:5:2755:file");
    // Owner 0 maps to the unpacking user itself: nothing to override (containers/storage does the same).
    EXPECT_FALSE(xattr_of(d0 + "/bin/su", "user.containers.override_stat"));
  }

  // Hardlinks inside a layer are links.
  auto f1 = lstat_of(d0 + "/a/f1"), f2 = lstat_of(d0 + "/a/f2"), f3 = lstat_of(d0 + "/b/f3");
  ASSERT_TRUE(f1 && f2 && f3);
  EXPECT_EQ(f1->st_ino, f2->st_ino);
  EXPECT_EQ(f1->st_ino, f3->st_ino);
  EXPECT_EQ(f1->st_nlink, 3u);
  EXPECT_EQ(field(ix0, "/a/f2", 1), "h");
  EXPECT_EQ(field(ix0, "/a/f2", 9), "/a/f1");
  EXPECT_EQ(field(ix0, "/b/f3", 9), "/a/f1");

  // 0000 and 0500 directories: contents written, final modes applied afterwards.
  auto locked = lstat_of(d0 + "/locked"), ro = lstat_of(d0 + "/ro");
  ASSERT_TRUE(locked && ro);
  EXPECT_EQ(locked->st_mode & 07777, 0u);
  EXPECT_EQ(ro->st_mode & 07777, 0500u);
  // A test running unprivileged is locked out of the 0000 directory like anyone: open it for a look.
  bool peek = geteuid() != 0 && chmod((d0 + "/locked").c_str(), 0500) == 0;
  auto inner = lstat_of(d0 + "/locked/inner");
  ASSERT_TRUE(inner);
  EXPECT_EQ(inner->st_mode & 07777, 0500u);
  EXPECT_EQ(read_file(d0 + "/locked/inner/f").value_or("<none>"), "deep");
  if (peek) chmod((d0 + "/locked").c_str(), 0);
  EXPECT_EQ(read_file(d0 + "/ro/f").value_or("<none>"), "r");
  EXPECT_EQ(field(ix0, "/locked", 2), "0000");
  auto tmp = lstat_of(d0 + "/tmp");
  ASSERT_TRUE(tmp);
  EXPECT_EQ(tmp->st_mode & 07777, 01777u);

  // Devices are recorded, not created: an empty placeholder carries the truth.
  auto null = lstat_of(d0 + "/dev/null"), sda = lstat_of(d0 + "/dev/sda");
  ASSERT_TRUE(null && sda);
  EXPECT_TRUE(S_ISREG(null->st_mode)) << "a device node was created";
  EXPECT_EQ(null->st_size, 0);
  EXPECT_TRUE(S_ISREG(sda->st_mode));
  EXPECT_EQ(xattr_of(d0 + "/dev/null", "user.containers.override_stat").value_or("<none>"), "0:0:0666:char-1-3");
  EXPECT_EQ(xattr_of(d0 + "/dev/sda", "user.containers.override_stat").value_or("<none>"), "0:6:0660:block-8-0");
  EXPECT_EQ(field(ix0, "/dev/null", 1), "c");
  EXPECT_EQ(field(ix0, "/dev/null", 6), "1");
  EXPECT_EQ(field(ix0, "/dev/null", 7), "3");
  EXPECT_EQ(field(ix0, "/dev/sda", 1), "b");
  EXPECT_EQ(field(ix0, "/dev/sda", 6), "8");
  auto fifo = lstat_of(d0 + "/run/fifo");
  ASSERT_TRUE(fifo);
  EXPECT_TRUE(S_ISFIFO(fifo->st_mode));
  EXPECT_EQ(field(ix0, "/run/fifo", 1), "p");

  // Symlinks stay symlinks, whatever they point at.
  char buf[256];
  ssize_t n = readlink((d0 + "/abs-link").c_str(), buf, sizeof buf);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "/etc/shadow");
  EXPECT_EQ(field(ix0, "/lib", 9), "usr/lib");

  // Odd names: exact bytes on disk, escaped in the index.
  EXPECT_EQ(read_file(d0 + "/odd/\xff\xfe").value_or("<none>"), "bytes");
  EXPECT_EQ(read_file(d0 + "/odd/tab\there\nnl").value_or("<none>"), "t");
  // The index keeps non-UTF-8 bytes as they are (only control bytes and '\\' are escaped).
  EXPECT_EQ(field(ix0, "/odd/\xff\xfe", 1), "f");
  EXPECT_EQ(field(ix0, "/odd/tab\\there\\nnl", 1), "f");

  // Layer 1: a whiteout is a 0:0 character device, an opaque dir has the xattr.
  auto wh = lstat_of(d1 + "/etc/shadow");
  ASSERT_TRUE(wh);
  EXPECT_TRUE(S_ISCHR(wh->st_mode));
  EXPECT_EQ(wh->st_rdev, makedev(0, 0));
  EXPECT_FALSE(lstat_of(d1 + "/etc/.wh.shadow")) << "the .wh. entry itself must not be written";
  EXPECT_EQ(field(ix1, "/etc/shadow", 1), "w");
  EXPECT_EQ(xattr_of(d1 + "/opq", "user.overlay.opaque").value_or("<none>"), "y");
  EXPECT_FALSE(lstat_of(d1 + "/opq/.wh..wh..opq"));
  EXPECT_EQ(read_file(d1 + "/opq/new").value_or("<none>"), "new");
  EXPECT_EQ(ix1.count("/opq"), 1u);

  // A hardlink to a lower layer's file becomes a copy with the target's attributes.
  auto copy = lstat_of(d1 + "/su-copy");
  ASSERT_TRUE(copy);
  EXPECT_TRUE(S_ISREG(copy->st_mode));
  EXPECT_EQ(copy->st_nlink, 1u);
  EXPECT_NE(copy->st_ino, su->st_ino);
  EXPECT_EQ(copy->st_mode & 07777, 04755u);
  EXPECT_EQ(read_file(d1 + "/su-copy").value_or("<none>"), "ELF-su");
  // In the index the copy is a file of this layer with the lower file's metadata.
  EXPECT_EQ(field(ix1, "/su-copy", 1), "f");
  EXPECT_EQ(field(ix1, "/su-copy", 2), "4755");
  EXPECT_EQ(field(ix1, "/su-copy", 5), "6");
  EXPECT_EQ(field(ix1, "/su-copy", 9), "");
  EXPECT_EQ(field(ix1, "/home/user/notes-copy", 3), "1000");
  auto ncopy = lstat_of(d1 + "/home/user/notes-copy");
  ASSERT_TRUE(ncopy);
  EXPECT_EQ(read_file(d1 + "/home/user/notes-copy").value_or("<none>"), "mine");
  EXPECT_EQ(ncopy->st_uid, owner_of(1000));
  if (!as_root) {
    EXPECT_EQ(xattr_of(d1 + "/home/user/notes-copy", "user.containers.override_stat").value_or("<none>"),
              "1000:1000:0640:file");
  }

  // Layer 2 (uncompressed): a large file arrives whole.
  auto big = lstat_of(d2 + "/big");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->st_size, 300000);
  EXPECT_EQ(field(ix2, "/big", 5), "300000");
}

}  // namespace moat::test
