// Unit tests of storage's small pure pieces: digest validation, image
// references, the metadata index's escaping and line format, path
// normalization, and printable() for messages. These are the places where an
// untrusted string first meets moat, so each test feeds the hostile forms.
#include <gtest/gtest.h>

#include <string>

#include "storage/digest.h"
#include "storage/fsutil.h"
#include "storage/json_check.h"
#include "storage/layer_index.h"
#include "storage/reference.h"
#include "storage/tree.h"

namespace moat {
namespace {

const std::string kHex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(Digest, AcceptsOnlyLowercaseSha256With64Hex) {
  EXPECT_TRUE(is_valid_digest("sha256:" + kHex64));
  EXPECT_FALSE(is_valid_digest("sha256:" + kHex64.substr(1)));          // 63 digits
  EXPECT_FALSE(is_valid_digest("sha256:" + kHex64 + "0"));              // 65 digits
  std::string upper = kHex64;
  upper[10] = 'A';
  EXPECT_FALSE(is_valid_digest("sha256:" + upper));                     // uppercase
  EXPECT_FALSE(is_valid_digest("sha512:" + kHex64));                    // other algorithm
  EXPECT_FALSE(is_valid_digest("SHA256:" + kHex64));
  EXPECT_FALSE(is_valid_digest(kHex64));                                // no algorithm
  EXPECT_FALSE(is_valid_digest(""));
  // The CVE-2024-3727 shape: a digest that is a path.
  EXPECT_FALSE(is_valid_digest("sha256:../../../../../../etc/passwd"));
  std::string traversal = "sha256:" + kHex64.substr(0, 58) + "/../..";
  ASSERT_EQ(traversal.size(), 71u);
  EXPECT_FALSE(is_valid_digest(traversal));
  std::string nul = "sha256:" + kHex64;
  nul[20] = '\0';
  EXPECT_FALSE(is_valid_digest(nul));
}

TEST(Digest, CheckedHexNamesWhatAndHidesControlBytes) {
  auto ok = checked_digest_hex("sha256:" + kHex64, "layer 0");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, kHex64);
  auto bad = checked_digest_hex("sha256:../../etc/passwd\n\x1b[31m", "layer 3");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("layer 3"), std::string::npos);
  EXPECT_NE(bad.error().message.find("sha256:../../etc/passwd"), std::string::npos);
  // A terminal escape from an image must never reach the user's terminal.
  EXPECT_EQ(bad.error().message.find('\x1b'), std::string::npos);
  EXPECT_EQ(bad.error().message.find('\n'), std::string::npos);
}

TEST(Digest, Sha256KnownAnswers) {
  EXPECT_EQ(sha256_digest(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_digest("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;  // streaming in pieces gives the same digest
  h.update("a", 1);
  h.update("bc", 2);
  EXPECT_EQ(h.finish(), sha256_digest("abc"));
}

TEST(Reference, ParsesEachTransport) {
  auto r = parse_reference("oci:/img/layout:v1");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->transport, Transport::OciLayout);
  EXPECT_EQ(r->path, "/img/layout");
  EXPECT_EQ(r->tag, "v1");
  EXPECT_EQ(r->text, "oci:/img/layout:v1");

  r = parse_reference("oci-archive:/a/img.tar");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->transport, Transport::OciArchive);
  EXPECT_EQ(r->tag, "");

  // docker-archive: everything after the first ':' following the path is NAME:TAG.
  r = parse_reference("docker-archive:/a/img.tar:example.com/app:1.2");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->transport, Transport::DockerArchive);
  EXPECT_EQ(r->path, "/a/img.tar");
  EXPECT_EQ(r->tag, "example.com/app:1.2");
  r = parse_reference("docker-archive:/a/img.tar:@1");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tag, "@1");

  // dir: takes the whole rest as the path, colons included.
  r = parse_reference("dir:/a/b:c");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->transport, Transport::Dir);
  EXPECT_EQ(r->path, "/a/b:c");
  EXPECT_EQ(r->tag, "");
}

TEST(Reference, MakesRelativePathsAbsolute) {
  auto r = parse_reference("oci:./layout");
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r->path.empty());
  EXPECT_EQ(r->path[0], '/');
  EXPECT_EQ(r->path.substr(r->path.size() - 7), "/layout");
  EXPECT_EQ(r->path.find("/./"), std::string::npos);
}

TEST(Reference, RefusesMalformedWithHint) {
  for (const char* bad : {"", "/abs/layout", ":x", "oci:", "oci:/p:", "ftp:/x", "dir:", "containers-storage:"}) {
    auto r = parse_reference(bad);
    EXPECT_FALSE(r.ok()) << bad;
  }
  auto r = parse_reference("docker:alpine");  // skopeo's form is docker://
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().hint.find("docker://"), std::string::npos);  // says how to write it
  r = parse_reference("bogus:/x");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().hint.find("oci-archive:"), std::string::npos);
}

TEST(LayerIndex, EscapeRoundTripsEveryByte) {
  std::string all;
  for (int c = 1; c < 256; ++c) all += static_cast<char>(c);
  std::string esc = escape_field(all);
  // No raw separator or line break may survive: the file is split on them.
  EXPECT_EQ(esc.find('\t'), std::string::npos);
  EXPECT_EQ(esc.find('\n'), std::string::npos);
  EXPECT_EQ(esc.find('\r'), std::string::npos);
  auto back = unescape_field(esc);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, all);
  // Names of xattrs also escape the pair separators.
  std::string name_esc = escape_field("user.a;b=c", true);
  EXPECT_EQ(name_esc.find(';'), std::string::npos);
  EXPECT_EQ(name_esc.find('='), std::string::npos);
  EXPECT_EQ(*unescape_field(name_esc), "user.a;b=c");
}

TEST(LayerIndex, UnescapeRefusesBrokenEscapes) {
  for (const char* bad : {"a\\", "\\q", "\\x4", "\\xZZ", "\\x"}) EXPECT_FALSE(unescape_field(bad).ok()) << bad;
}

TEST(LayerIndex, LineRoundTripsHostileNamesAndXattrs) {
  IndexEntry e;
  e.path = "/odd/\xff\xfe tab\there\nnew\\line;=";  // (a length of 30 read past this literal: ASan)
  e.type = EntryType::Hardlink;
  e.mode = 04755;
  e.uid = 1000;
  e.gid = 4294967294u;
  e.size = 1ull << 40;
  e.dev_major = 0;
  e.dev_minor = 0;
  e.mtime = -5;
  e.link = "/usr/bin/\x01su\t";
  std::string cap("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
  e.xattrs = {{"security.capability", cap}, {"user.we;ird=name\t", std::string("v\0;=\n", 5)}};
  std::string line = format_index_line(e);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  size_t tabs = 0;
  for (char c : line) tabs += c == '\t';
  EXPECT_EQ(tabs, 10u);  // 11 fields, whatever the data
  auto back = parse_index_line(line);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->path, e.path);
  EXPECT_EQ(back->type, e.type);
  EXPECT_EQ(back->mode, e.mode);
  EXPECT_EQ(back->uid, e.uid);
  EXPECT_EQ(back->gid, e.gid);
  EXPECT_EQ(back->size, e.size);
  EXPECT_EQ(back->mtime, e.mtime);
  EXPECT_EQ(back->link, e.link);
  EXPECT_EQ(back->xattrs, e.xattrs);
  // And a whole index through serialize/parse keeps order.
  IndexEntry dev;
  dev.path = "/dev/sda";
  dev.type = EntryType::Block;
  dev.mode = 0660;
  dev.dev_major = 8;
  dev.dev_minor = 1;
  std::string text = serialize_index({e, dev});
  EXPECT_EQ(text.rfind("#moat-index v1\n", 0), 0u);
}

TEST(LayerIndex, ParseRefusesDamagedLines) {
  IndexEntry e;
  e.path = "/a";
  std::string good = format_index_line(e);
  ASSERT_TRUE(parse_index_line(good).ok());
  EXPECT_FALSE(parse_index_line(good + "\textra").ok());                 // 12 fields
  EXPECT_FALSE(parse_index_line(good.substr(0, good.rfind('\t'))).ok()); // 10 fields
  std::string bad_type = good;
  bad_type[good.find('\t') + 1] = 'z';
  EXPECT_FALSE(parse_index_line(bad_type).ok());
  std::string bad_mode = good;
  bad_mode.replace(bad_mode.find("0000"), 4, "0909");  // 9 is not octal
  EXPECT_FALSE(parse_index_line(bad_mode).ok());
  EXPECT_FALSE(parse_index_line(good + "user.x=abc").ok());  // odd hex length
  EXPECT_FALSE(parse_index_line(good + "user.x=zz").ok());   // not hex
  EXPECT_FALSE(parse_index_line(good + "novalue").ok());     // no '='
}

TEST(LayerIndex, OverrideStatUsesContainersStorageFormat) {
  IndexEntry e;
  e.uid = 1000;
  e.gid = 1001;
  e.mode = 04755;
  e.type = EntryType::File;
  EXPECT_EQ(override_stat_value(e), "1000:1001:4755:file");
  e.type = EntryType::Dir;
  e.mode = 01777;
  EXPECT_EQ(override_stat_value(e), "1000:1001:1777:dir");
  e.type = EntryType::Char;
  e.mode = 0666;
  e.dev_major = 1;
  e.dev_minor = 3;
  EXPECT_EQ(override_stat_value(e), "1000:1001:0666:char-1-3");
  e.type = EntryType::Block;
  e.dev_major = 8;
  e.dev_minor = 0;
  EXPECT_EQ(override_stat_value(e), "1000:1001:0666:block-8-0");
  e.type = EntryType::Fifo;
  EXPECT_EQ(override_stat_value(e), "1000:1001:0666:pipe");
  e.type = EntryType::Symlink;
  e.mode = 0777;
  EXPECT_EQ(override_stat_value(e), "1000:1001:0777:symlink");
}

TEST(NormalizeRelative, CleansAndRefuses) {
  std::string out;
  ASSERT_TRUE(normalize_relative("a/./b//c/", out));
  EXPECT_EQ(out, "a/b/c");
  ASSERT_TRUE(normalize_relative("./", out));
  EXPECT_EQ(out, "");
  ASSERT_TRUE(normalize_relative("", out));
  EXPECT_EQ(out, "");
  ASSERT_TRUE(normalize_relative("..a/b..", out));  // names that merely contain dots are fine
  EXPECT_EQ(out, "..a/b..");
  ASSERT_TRUE(normalize_relative(std::string("\xff/x", 3), out));
  EXPECT_EQ(out, std::string("\xff/x", 3));
  for (const char* bad : {"..", "../x", "a/../b", "a/..", "/etc/passwd", "/", "./../x", "a/b/../../.."})
    EXPECT_FALSE(normalize_relative(bad, out)) << bad;
}

TEST(Printable, EscapesControlAndInvalidUtf8) {
  EXPECT_EQ(printable("plain/path"), "plain/path");
  EXPECT_EQ(printable("a\tb\nc\x1b[0m"), "a\\x09b\\x0ac\\x1b[0m");
  EXPECT_EQ(printable("back\\slash"), "back\\\\slash");
  EXPECT_EQ(printable("caf\xc3\xa9"), "caf\xc3\xa9");                // valid UTF-8 kept
  EXPECT_EQ(printable("\xff\xfe"), "\\xff\\xfe");                    // invalid bytes shown as hex
  EXPECT_EQ(printable("\xc3"), "\\xc3");                             // truncated sequence
  EXPECT_EQ(printable("\xe2\x82"), "\\xe2\\x82");
  EXPECT_EQ(printable(std::string("a\0b", 3)), "a\\x00b");
  std::string longs(1000, 'x');
  std::string cut = printable(longs, 50);
  EXPECT_LE(cut.size(), 60u);
  EXPECT_EQ(cut.substr(cut.size() - 3), "...");
}

// storage/json_check.h: nlohmann's dump(), copies and == recurse once per
// level; a few hundred KB of `[` overflowed the stack before this check.
TEST(JsonCheck, NestingLimit) {
  constexpr auto npos = std::string_view::npos;
  EXPECT_EQ(json_too_deep_at(std::string(128, '[') + std::string(128, ']')), npos);
  EXPECT_EQ(json_too_deep_at(std::string(129, '[')), 128u);
  EXPECT_EQ(json_too_deep_at("[]" + std::string(130, '{')), 130u);
  // Closing brackets bring the depth down; brackets in strings (escaped quotes
  // included) do not count.
  std::string wide = "[[[]]";
  for (int i = 0; i < 1000; ++i) wide += ",[[]]";
  wide += "]";
  EXPECT_EQ(json_too_deep_at(wide), npos);
  std::string in_string = "{\"a\":\"" + std::string(500, '[') + "\\\"" + std::string(500, '{') + "\"}";
  EXPECT_EQ(json_too_deep_at(in_string), npos);
  const std::string deep = "{\"x\":" + std::string(200000, '[') + std::string(200000, ']') + "}";
  auto st = check_json_depth(deep, "config sha256:abc");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().describe(),
            "config sha256:abc nests arrays or objects more than 128 deep (at byte 132): not a document moat reads");
  EXPECT_TRUE(parse_json_or_discarded(deep).is_discarded());
  EXPECT_FALSE(parse_json_or_discarded(wide).is_discarded());
}

}  // namespace
}  // namespace moat
