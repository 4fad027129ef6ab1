// Engine tests: secrets across 64 KiB chunk boundaries, inside binaries, in a
// 200 MB file scanned with bounded memory, decoys that must stay silent, and
// redaction that never shows a whole secret.
//
// Secrets here are synthetic and built by concatenation, so no line of this
// file looks like a credential to a scanner (GitHub push protection style).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <algorithm>
#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "rules/secrets/elf_code.h"
#include "rules/secrets/engine.h"
#include "rules/secrets/rules.h"
#include "tests/secrets/shared.h"

namespace moat::secrets {
namespace {

const SecretScanner& scanner() { return test_support::builtin_scanner(); }

// A token-shaped fake: prefix + "MoatFake" + deterministic alphanumerics.
std::string fake_token(const std::string& prefix, size_t n, unsigned seed) {
  static const char* an = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::mt19937 rng(seed);
  std::string s = prefix + "MoatFake";
  while (s.size() < prefix.size() + n) s += an[rng() % 62];
  return s;
}
std::string github_pat(unsigned seed) { return fake_token(std::string("gh") + "p_", 36, seed); }
std::string aws_key_id() { return std::string("AKIA") + "MOATFAKE" + "Q7W2E4R5"; }

struct Collected {
  std::vector<SecretFinding> all;
  SecretSink sink() {
    return [this](const SecretFinding& f) {
      all.push_back(f);
      return SinkAction::kContinue;
    };
  }
  size_t count(const std::string& rule) const {
    size_t n = 0;
    for (const auto& f : all) n += f.rule_id == rule;
    return n;
  }
};

Collected scan_text(const std::string& s) {
  Collected c;
  auto st = scanner().scan_buffer(s.data(), s.size(), c.sink());
  EXPECT_TRUE(st.ok());
  return c;
}

class TempFile {
 public:
  explicit TempFile(const std::string& content = {}) {
    path_ = (std::filesystem::temp_directory_path() / ("moat-secrets-" + std::to_string(::getpid()) + "-" +
                                                        std::to_string(counter_++)))
                .string();
    int fd = ::open(path_.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd < 0) std::abort();
    write_all(fd, content);
    ::close(fd);
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  static void write_all(int fd, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t w = ::write(fd, s.data() + off, s.size() - off);
      if (w <= 0) std::abort();
      off += static_cast<size_t>(w);
    }
  }
  const std::string& path() const { return path_; }
  Collected scan(uint64_t max = UINT64_MAX, ScanStats* stats = nullptr) const {
    Collected c;
    int fd = ::open(path_.c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    auto st = scanner().scan_fd(fd, max, c.sink());
    ::close(fd);
    EXPECT_TRUE(st.ok()) << (st.ok() ? "" : st.error().describe());
    if (st.ok() && stats) *stats = *st;
    return c;
  }

 private:
  std::string path_;
  static inline int counter_ = 0;
};

TEST(Engine, FindsTokenWithLineOffsetRedactionFingerprint) {
  std::string tok = github_pat(1);
  std::string text = "line one\nline two\nexport GITHUB_TOKEN=" + tok + "\n";
  auto c = scan_text(text);
  ASSERT_EQ(c.count("github.pat.classic"), 1u);
  const auto* f = &c.all[0];
  for (const auto& x : c.all)
    if (x.rule_id == "github.pat.classic") f = &x;
  EXPECT_EQ(f->line, 3u);
  EXPECT_EQ(f->offset, text.find(tok));
  EXPECT_EQ(f->length, tok.size());
  EXPECT_EQ(f->fingerprint, fingerprint("github.pat.classic", tok));
  EXPECT_EQ(f->redacted.substr(0, 4), tok.substr(0, 4));
  EXPECT_EQ(f->redacted.find(tok), std::string::npos);
  // Stable across runs: the same secret gives the same fingerprint.
  EXPECT_EQ(scan_text("x " + tok).all.at(0).fingerprint, f->fingerprint);
}

// The same secret at every position around the first 64 KiB chunk boundary,
// through the streaming path, is found exactly once with the right offset.
TEST(Engine, SecretAcrossChunkBoundaryIsFoundOnce) {
  std::string tok = github_pat(2);
  const size_t boundary = 64 * 1024;
  for (size_t start = boundary - tok.size() - 2; start <= boundary + 2; ++start) {
    std::string content(start, 'a');
    for (size_t i = 79; i < content.size(); i += 80) content[i] = '\n';
    if (content[start - 1] != '\n') content[start - 1] = ' ';
    const uint64_t line = 1 + static_cast<uint64_t>(std::count(content.begin(), content.end(), '\n'));
    content += tok + " trailing text\n";
    TempFile tf(content);
    auto c = tf.scan();
    ASSERT_EQ(c.count("github.pat.classic"), 1u) << "secret starting at " << start;
    EXPECT_EQ(c.all[0].offset, start);
    EXPECT_EQ(c.all[0].line, line);
    EXPECT_EQ(c.all[0].fingerprint, fingerprint("github.pat.classic", tok));
  }
}

// A multi-line private key split by the boundary, and a match whose
// Vectorscan end lands in the next chunk.
TEST(Engine, PrivateKeyAcrossChunkBoundary) {
  std::string body = fake_token("MIIE", 60, 3);
  std::string key = "-----BEGIN RSA PRIVATE KEY-----\n" + body + "\nQUJD\n-----END RSA PRIVATE KEY-----\n";
  const size_t boundary = 64 * 1024;
  for (size_t start : {boundary - 40, boundary - 20, boundary - 5, boundary + 1}) {
    std::string content(start, '\n');
    content += key;
    TempFile tf(content);
    auto c = tf.scan();
    EXPECT_EQ(c.count("private-key.rsa"), 1u) << "key at " << start;
  }
}

// A key compiled into an executable: NUL bytes and non-printables around it.
TEST(Engine, SecretInsideBinaryBlob) {
  std::string blob;
  std::mt19937 rng(7);
  for (int i = 0; i < 300000; ++i) blob += static_cast<char>(rng() % 256);
  for (auto& c : blob)
    if (c == 'A' || c == 'g') c = 0;  // no accidental token-like runs
  std::string tok = github_pat(4), akid = aws_key_id();
  std::string inner = std::string("\0\x01\x7f", 3) + tok + std::string("\0\0", 2) + akid + std::string("\xff\0", 2);
  blob.insert(100000, inner);
  blob.insert(65530, std::string("\0", 1) + github_pat(5) + std::string("\0", 1));  // across a chunk boundary
  auto c1 = scan_text(blob);  // scan_buffer, binary path
  EXPECT_EQ(c1.count("github.pat.classic"), 2u);
  EXPECT_EQ(c1.count("aws.access-key-id"), 1u);
  TempFile tf(blob);
  ScanStats st;
  auto c2 = tf.scan(UINT64_MAX, &st);
  EXPECT_TRUE(st.binary);
  EXPECT_EQ(c2.count("github.pat.classic"), 2u);
  EXPECT_EQ(c2.count("aws.access-key-id"), 1u);
  for (const auto& f : c2.all) EXPECT_EQ(f.line, 0u);
}

// Decoys from the issue: documentation keys, placeholders, public keys and
// certificates, code that reads a token from the environment.
TEST(Engine, DecoysStaySilent) {
  std::string decoys =
      "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
      "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
      "GITHUB_TOKEN=gh" "p_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
      "api_key = \"xxxxxxxxxxxxxxxxxxxxxxxx\"\n"
      "password = \"<your-password>\"\n"
      "password: ${DB_PASSWORD}\n"
      "token = os.environ[\"GITHUB_TOKEN\"]\n"
      "const token = process.env.NPM_TOKEN;\n"
      "export GITHUB_TOKEN=$(cat /run/secrets/gh)\n"
      "DATABASE_URL=postgres://app:password@localhost/app\n"
      "-----BEGIN PUBLIC KEY-----\n"
      "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
      "-----END PUBLIC KEY-----\n"
      "-----BEGIN CERTIFICATE-----\n"
      "MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\n"
      "-----END CERTIFICATE-----\n"
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host\n"
      "sha256sum: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n";
  auto c = scan_text(decoys);
  for (const auto& f : c.all) ADD_FAILURE() << "decoy reported by " << f.rule_id << ": " << f.redacted << " line " << f.line;
}

// A vendor-shaped string inside a PEM key body is key material, not a token:
// the key's block silences every other rule until -----END, in one chunk and
// when the block straddles the 64 KiB chunk boundary; after the block a token
// is found again.
TEST(Engine, KeyBlockSilencesOtherRulesUntilItsEnd) {
  std::mt19937 rng(7);
  static const char* b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  auto line = [&] {
    std::string l;
    while (l.size() < 64) l += b64[rng() % 64];
    return l;
  };
  const std::string square = std::string("sq0c") + "sp-" + fake_token("", 43, 3).substr(0, 43);
  for (size_t pad : {size_t{0}, size_t{65536 - 900}}) {
    std::string key = "-----BEGIN RSA " + std::string("PRIVATE KEY-----\n") + "MIIEowIBAAKCAQEA" + line().substr(0, 48) + "\n";
    for (int i = 0; i < 20; ++i) key += (i == 10 ? line().substr(0, 10) + square + "/" + line().substr(0, 10) : line()) + "\n";
    key += "-----END RSA PRIVATE KEY-----\n";
    std::string text = std::string(pad, '#') + "\n" + key + "TOKEN=" + github_pat(11) + "\n";
    Collected c;
    auto st = scanner().scan_buffer(text.data(), text.size(), c.sink());
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(c.count("private-key.rsa"), 1u) << "pad " << pad;
    EXPECT_EQ(c.count("square.oauth-secret"), 0u) << "pad " << pad;
    EXPECT_EQ(c.count("github.pat.classic"), 1u) << "pad " << pad;
    // The same lines without the key's header: the token shape is found.
    std::string bare = text.substr(text.find('\n', text.find("-----BEGIN")) + 1);
    EXPECT_EQ(scan_text(bare).count("square.oauth-secret"), 1u) << "pad " << pad;
  }
}

// One secret at one place is one finding: a vendor rule beats the generic
// line rules on the same value, and of two generic rules one remains.
TEST(Engine, OverlappingRulesGiveOneFinding) {
  const std::string pat = github_pat(12);
  auto c = scan_text("export GITHUB_TOKEN=\"" + pat + "\"\n");
  ASSERT_EQ(c.all.size(), 1u);
  EXPECT_EQ(c.all[0].rule_id, "github.pat.classic");
  auto g = scan_text(std::string("export DB_PASS") + "WORD=\"MoatFake7Qx2LrT9bN\"\n");
  ASSERT_EQ(g.all.size(), 1u);
  EXPECT_EQ(g.all[0].rule_id, "generic.env-assignment");
  // A match decided only at the end of the input (the token ends the text)
  // still meets the generic one on the same value.
  auto e = scan_text("password = " + std::string("SG.") + fake_token("", 22, 5).substr(0, 22) + "." +
                     fake_token("", 43, 6).substr(0, 43));
  ASSERT_EQ(e.all.size(), 1u);
  EXPECT_EQ(e.all[0].rule_id, "sendgrid.api-key");
}

TEST(Engine, RedactionNeverShowsTheWholeSecret) {
  for (size_t n = 1; n < 200; ++n) {
    std::string s = fake_token("", n, static_cast<unsigned>(n)).substr(0, n);
    std::string r = redact(s);
    EXPECT_EQ(r.find(s), std::string::npos) << n;
    EXPECT_NE(r.find("****"), std::string::npos);
    EXPECT_LE(r.size() - 4, s.size() / 4 + 1) << "shows too much of a " << n << "-byte secret";
  }
  // And no scanned finding carries its secret in any field.
  std::string tok = github_pat(6);
  for (const auto& f : scan_text("t=" + tok).all) {
    EXPECT_EQ(f.redacted.find(tok), std::string::npos);
    EXPECT_EQ(f.fingerprint.find(tok), std::string::npos);
  }
}

TEST(Engine, SinkCanStopAndMaxBytesTruncates) {
  std::string text;
  for (unsigned i = 0; i < 10; ++i) text += "t=" + github_pat(100 + i) + "\n";
  Collected c;
  int calls = 0;
  auto st = scanner().scan_buffer(text.data(), text.size(), [&](const SecretFinding&) {
    ++calls;
    return SinkAction::kStop;
  });
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(st->stopped);
  TempFile tf(text);
  ScanStats stats;
  auto c2 = tf.scan(100, &stats);
  EXPECT_TRUE(stats.truncated);
  EXPECT_EQ(stats.bytes, 100u);
  EXPECT_EQ(c2.count("github.pat.classic"), 2u);  // both fit in the first 100 bytes
}

TEST(Engine, ManyThreadsShareOneScanner) {
  std::string tok = github_pat(8);
  std::string text = std::string(200000, 'z') + " " + tok + "\n";
  std::vector<std::thread> ts;
  std::atomic<int> found{0};
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        auto st = scanner().scan_buffer(text.data(), text.size(), [&](const SecretFinding& f) {
          if (f.rule_id == "github.pat.classic") ++found;
          return SinkAction::kContinue;
        });
        if (!st.ok()) ADD_FAILURE() << st.error().describe();
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(found.load(), 20);
}

// The compiled database is cached by rules version: the second create()
// loads it, and a damaged cache file is ignored and replaced.
TEST(Engine, DatabaseCache) {
  auto dir = std::filesystem::temp_directory_path() / ("moat-hscache-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  SecretScanner::Options opts{dir.string()};
  std::string text = "t=" + github_pat(21) + "\n";
  for (int round = 0; round < 3; ++round) {
    auto set = load_builtin_rules();
    ASSERT_TRUE(set.ok());
    // Built-in rules come from the shipped database and are never cached;
    // changed ones (a user's override) are compiled at run time and cached.
    for (auto& r : set->rules)
      if (r.id.starts_with("github.")) r.title += " (changed)";
    auto sc = SecretScanner::create(std::move(set).value(), opts);
    ASSERT_TRUE(sc.ok()) << sc.error().describe();
    size_t n = 0;
    auto st = (*sc)->scan_buffer(text.data(), text.size(), [&](const SecretFinding&) {
      ++n;
      return SinkAction::kContinue;
    });
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(n, 1u) << "round " << round;
    size_t files = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      ++files;
      if (round == 1) std::filesystem::resize_file(e.path(), 100);  // damage it for round 2
    }
    EXPECT_EQ(files, 1u);
  }
  std::filesystem::remove_all(dir);
}

// Both stages see bytes: a repetition counts bytes in RE2 as in Vectorscan,
// and a negated class takes any byte. With RE2 in UTF-8 mode a value of
// five two-byte characters (10 bytes) was a Vectorscan match RE2 rejected
// (5 characters < 8), and invalid UTF-8 never matched [^\s] in RE2.
TEST(Engine, ConfirmationCountsBytesLikeVectorscan) {
  RuleSet set;
  SecretRule r;
  r.id = "test.bytes";
  r.title = "bytes";
  r.category = "secret";
  r.severity = "low";
  r.pattern = "\\bval=([^\\s\"']{8,12})(?:\\s|$)";
  r.examples.push_back({"val=MoatFake12 ", "MoatFake12"});
  r.negative_examples.push_back({"val=short "});
  r.references.push_back("tests/secrets/engine_test.cc");
  set.rules.push_back(r);
  auto sc = SecretScanner::create(std::move(set));
  ASSERT_TRUE(sc.ok()) << sc.error().describe();
  auto scan = [&](const std::string& text) {
    std::vector<SecretFinding> out;
    auto st = (*sc)->scan_buffer(text.data(), text.size(), [&](const SecretFinding& f) {
      out.push_back(f);
      return SinkAction::kContinue;
    });
    EXPECT_TRUE(st.ok());
    return out;
  };
  std::string e_acute = "\xc3\xa9";
  std::string five, seven;
  for (int i = 0; i < 5; ++i) five += e_acute;
  for (int i = 0; i < 7; ++i) seven += e_acute;
  auto f = scan("x val=" + five + "\n");
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].length, 10u);
  EXPECT_EQ(f[0].fingerprint, fingerprint("test.bytes", five));
  f = scan("x val=MoatFa\xff\xfe\x80k\n");
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].length, 10u);
  EXPECT_TRUE(scan("x val=" + seven + "\n").empty());  // 14 bytes: too long for both
  EXPECT_TRUE((*sc)->rules().rules.size() == 1 && check_examples(**sc).empty());
}

long max_rss_kib() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// 200 MB of text with secrets at the start, the middle and the end: all found
// with the right line, and the peak memory does not grow with the file.
TEST(Engine, LargeFileBoundedMemory) {
  const uint64_t target = 200ull << 20;
  TempFile tf;
  int fd = ::open(tf.path().c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  std::string line = "The quick brown fox jumps over the lazy dog; lorem ipsum dolor sit amet 0123.\n";  // 79 bytes
  std::string block;
  while (block.size() < (1u << 20)) block += line;
  uint64_t written = 0, lines = 0;
  std::vector<std::pair<std::string, uint64_t>> planted;  // (token, line)
  auto plant = [&](unsigned seed) {
    std::string tok = github_pat(seed);
    std::string l = "GITHUB_TOKEN=" + tok + "\n";
    TempFile::write_all(fd, l);
    planted.emplace_back(tok, ++lines);
    written += l.size();
  };
  plant(11);
  const uint64_t lines_per_block = block.size() / line.size();
  while (written < target) {
    if (written >= target / 2 && planted.size() == 1) plant(12);
    TempFile::write_all(fd, block);
    written += block.size();
    lines += lines_per_block;
  }
  plant(13);
  ::close(fd);

  long before = max_rss_kib();
  ScanStats st;
  auto c = tf.scan(UINT64_MAX, &st);
  long grew = max_rss_kib() - before;
  EXPECT_EQ(st.bytes, written);
  ASSERT_EQ(c.count("github.pat.classic"), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(c.all[i].fingerprint, fingerprint("github.pat.classic", planted[i].first));
    EXPECT_EQ(c.all[i].line, planted[i].second);
  }
  // One 64 KiB chunk plus the carry; allow slack for the allocator, far
  // below the 200 MB a whole-file read would need.
  EXPECT_LT(grew, 16 * 1024) << "peak RSS grew by " << grew << " KiB";
}


// ---- ELF machine code is not read (rules/secrets/elf_code.h) ----

struct Section {
  uint32_t type;   // SHT_PROGBITS = 1
  uint64_t flags;  // SHF_ALLOC = 2, SHF_EXECINSTR = 4
  std::string bytes;
};

void put_le(std::string& s, size_t off, uint64_t v, size_t width) {
  for (size_t i = 0; i < width; ++i) s[off + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

// A little-endian ELF64 file: the header, each section's bytes (16-aligned),
// then the section header table (a null entry first, as linkers write it).
// `shoff_delta` and `entsize` spoil the table for the hostile cases.
std::string make_elf64(const std::vector<Section>& secs, int64_t shoff_delta = 0, uint16_t entsize = 64) {
  std::string f(64, '\0');
  f[0] = 0x7f, f[1] = 'E', f[2] = 'L', f[3] = 'F', f[4] = 2, f[5] = 1, f[6] = 1;
  put_le(f, 0x10, 3, 2);     // ET_DYN
  put_le(f, 0x12, 0x3e, 2);  // x86-64
  std::vector<uint64_t> offs;
  for (const auto& sec : secs) {
    f.resize((f.size() + 15) / 16 * 16, '\0');
    offs.push_back(f.size());
    f += sec.bytes;
  }
  f.resize((f.size() + 15) / 16 * 16, '\0');
  const uint64_t shoff = f.size();
  std::string table(64 * (secs.size() + 1), '\0');
  for (size_t i = 0; i < secs.size(); ++i) {
    size_t e = 64 * (i + 1);
    put_le(table, e + 4, secs[i].type, 4);
    put_le(table, e + 8, secs[i].flags, 8);
    put_le(table, e + 0x18, offs[i], 8);
    put_le(table, e + 0x20, secs[i].bytes.size(), 8);
  }
  f += table;
  put_le(f, 0x28, static_cast<uint64_t>(static_cast<int64_t>(shoff) + shoff_delta), 8);
  put_le(f, 0x34, 64, 2);  // e_ehsize
  put_le(f, 0x3a, entsize, 2);
  put_le(f, 0x3c, secs.size() + 1, 2);
  return f;
}

// Code (8 KiB of nop-like bytes with a token in it, as if data were marked as
// code) and read-only data holding another token, padded past 64 KiB.
std::string elf_with_tokens(const std::string& in_code, const std::string& in_data) {
  std::string code(8192, '\x90');
  code.replace(4000, in_code.size() + 2, "\n" + in_code + "\n");
  std::string data = "\n" + in_data + "\n" + std::string(70000, '\0');
  return make_elf64({{1, 6, code}, {1, 2, data}});
}

Collected scan_with_size(const std::string& path, ScanStats* stats, bool size_hint = true) {
  Collected c;
  int fd = ::open(path.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0);
  struct stat st {};
  EXPECT_EQ(fstat(fd, &st), 0);
  auto r = scanner().scan_fd(fd, UINT64_MAX, c.sink(), size_hint ? static_cast<uint64_t>(st.st_size) : UINT64_MAX);
  ::close(fd);
  EXPECT_TRUE(r.ok());
  if (r.ok()) *stats = *r;
  return c;
}

TEST(Engine, ElfMachineCodeIsNotRead) {
  const std::string in_code = github_pat(41), in_data = github_pat(42);
  TempFile f(elf_with_tokens(in_code, in_data));
  ScanStats st;
  auto c = scan_with_size(f.path(), &st);
  ASSERT_EQ(c.count("github.pat.classic"), 1u);
  for (const auto& x : c.all)
    if (x.rule_id == "github.pat.classic") {
      EXPECT_EQ(x.fingerprint, fingerprint("github.pat.classic", in_data));
    }
  EXPECT_EQ(st.code_skipped, 8192u);
  // Without the file's size the ranges are not trusted: both are found.
  ScanStats whole;
  auto all = scan_with_size(f.path(), &whole, /*size_hint=*/false);
  EXPECT_EQ(all.count("github.pat.classic"), 2u);
  EXPECT_EQ(whole.code_skipped, 0u);
}

TEST(Engine, ElfWithABadSectionTableIsScannedWhole) {
  const std::string a = github_pat(43), b = github_pat(44);
  std::string good = elf_with_tokens(a, b);
  std::vector<std::string> hostile = {
      make_elf64({{1, 6, std::string(8192, '\x90') + "\n" + a + "\n"}, {1, 2, "\n" + b + "\n" + std::string(70000, '\0')}},
                 /*shoff_delta=*/1 << 20),                                   // table past the end
      make_elf64({{1, 6, std::string(8192, '\x90') + "\n" + a + "\n"}, {1, 2, "\n" + b + "\n" + std::string(70000, '\0')}},
                 0, /*entsize=*/63),                                         // not the ELF64 entry size
  };
  // A code section that claims to run past the end of the file.
  std::string past = good;
  const uint64_t shoff = [&] { uint64_t v = 0; for (int i = 7; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(past[0x28 + i]); return v; }();
  put_le(past, shoff + 64 + 0x20, uint64_t{1} << 40, 8);
  hostile.push_back(past);
  for (size_t i = 0; i < hostile.size(); ++i) {
    TempFile f(hostile[i]);
    ScanStats st;
    auto c = scan_with_size(f.path(), &st);
    EXPECT_EQ(c.count("github.pat.classic"), 2u) << "case " << i;
    EXPECT_EQ(st.code_skipped, 0u) << "case " << i;
  }
}

TEST(ElfCode, RangesAreCheckedSortedAndMerged) {
  auto ranges = [](const std::string& f) {
    auto t = elf_section_table(f, f.size());
    return t ? elf_code_ranges(f, std::string_view(f).substr(t->begin, t->end - t->begin), f.size())
             : std::vector<ByteRange>{};
  };
  std::string big(5000, '\xcc'), small(100, '\xcc');
  // Two code sections with data between, a small one (not worth a seek) and a NOBITS one.
  std::string f = make_elf64({{1, 6, big}, {1, 2, "data"}, {1, 6, big}, {1, 6, small}, {8, 6, big}});
  auto r = ranges(f);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].begin, 64u);
  EXPECT_EQ(r[0].end, 64u + 5000);
  EXPECT_LT(r[0].end, r[1].begin);
  EXPECT_EQ(r[1].end - r[1].begin, 5000u);
  EXPECT_TRUE(ranges(std::string(100, 'x')).empty());       // not ELF
  EXPECT_TRUE(ranges(f.substr(0, 63)).empty());             // shorter than a header
  std::string bad_class = f;
  bad_class[4] = 3;
  EXPECT_TRUE(ranges(bad_class).empty());
  // ELF32, big-endian: one code section of 4096 bytes at offset 0x100.
  std::string e32(0x100 + 4096 + 2 * 40, '\0');
  e32[0] = 0x7f, e32[1] = 'E', e32[2] = 'L', e32[3] = 'F', e32[4] = 1, e32[5] = 2;
  auto be = [&](size_t off, uint64_t v, size_t w) {
    for (size_t i = 0; i < w; ++i) e32[off + i] = static_cast<char>((v >> (8 * (w - 1 - i))) & 0xff);
  };
  const size_t sh = 0x100 + 4096;
  be(0x20, sh, 4);
  be(0x2e, 40, 2);
  be(0x30, 2, 2);
  be(sh + 40 + 4, 1, 4);       // SHT_PROGBITS
  be(sh + 40 + 8, 6, 4);       // SHF_ALLOC | SHF_EXECINSTR
  be(sh + 40 + 0x10, 0x100, 4);
  be(sh + 40 + 0x14, 4096, 4);
  auto r32 = ranges(e32);
  ASSERT_EQ(r32.size(), 1u);
  EXPECT_EQ(r32[0].begin, 0x100u);
  EXPECT_EQ(r32[0].end, 0x100u + 4096);
}

}  // namespace
}  // namespace moat::secrets
