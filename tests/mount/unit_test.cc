// Unit tests of the pure parts of the mount path: the userspace merge (OCI
// layer rules on metadata indexes), /etc/subuid parsing, overlay escaping.
// The kernel side is covered by mount_test.sh with real mounts.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "scanner/session/merged_view.h"
#include "scanner/session/namespace.h"
#include "scanner/session/overlay.h"

namespace moat {
namespace {

IndexEntry E(const std::string& path, EntryType t, uint32_t mode = 0644, uint32_t uid = 0, std::string link = "") {
  IndexEntry e;
  e.path = path;
  e.type = t;
  e.mode = mode;
  e.uid = uid;
  e.link = std::move(link);
  return e;
}
IndexEntry D(const std::string& p, uint32_t mode = 0755) { return E(p, EntryType::Dir, mode); }
IndexEntry F(const std::string& p, uint32_t mode = 0644, uint32_t uid = 0) { return E(p, EntryType::File, mode, uid); }

std::vector<std::string> paths(const MergedView& v) {
  std::vector<std::string> out;
  for (const auto& [p, e] : v.entries()) out.push_back(p);
  return out;
}

MergedView merge(std::vector<std::vector<IndexEntry>> layers) {
  std::vector<std::string> dirs(layers.size(), "/nonexistent");
  auto v = MergedView::from_layers(std::move(layers), dirs);
  EXPECT_TRUE(v.ok());
  return std::move(v).value();
}

TEST(MergedView, WhiteoutHidesLowerFileAndSubtree) {
  auto v = merge({{D("/a"), F("/a/x"), D("/a/sub"), F("/a/sub/z"), F("/a/y")},
                  {E("/a/x", EntryType::Whiteout), E("/a/sub", EntryType::Whiteout)}});
  EXPECT_EQ(paths(v), (std::vector<std::string>{"/", "/a", "/a/y"}));
}

TEST(MergedView, WhiteoutHidesOnlyLowerLayers) {
  // The same layer re-adding the name wins over its own whiteout.
  auto v = merge({{F("/x")}, {E("/x", EntryType::Whiteout), F("/x", 0600)}});
  ASSERT_NE(v.find("/x"), nullptr);
  EXPECT_EQ(v.find("/x")->layer, 1u);
  EXPECT_EQ(v.find("/x")->entry.mode, 0600u);
}

TEST(MergedView, OpaqueDirKeepsOwnLayerChildrenOnly) {
  auto v = merge({{D("/o"), F("/o/old"), D("/o/olddir"), F("/o/olddir/f"), F("/other")},
                  {D("/o"), E("/o", EntryType::Opaque), F("/o/new")}});
  EXPECT_EQ(paths(v), (std::vector<std::string>{"/", "/o", "/o/new", "/other"}));
}

TEST(MergedView, DirMeetingDirTakesAttributesKeepsChildren) {
  auto v = merge({{D("/d", 0755), F("/d/f")}, {D("/d", 0700)}});
  EXPECT_EQ(v.find("/d")->entry.mode, 0700u);
  EXPECT_EQ(v.find("/d")->layer, 1u);
  EXPECT_NE(v.find("/d/f"), nullptr);
}

TEST(MergedView, NonDirReplacesDirAndItsSubtree) {
  auto v = merge({{D("/d"), F("/d/f"), D("/d/g"), F("/d/g/h"), F("/d-sibling"), F("/d0")},
                  {E("/d", EntryType::Symlink, 0777, 0, "/elsewhere")}});
  EXPECT_EQ(paths(v), (std::vector<std::string>{"/", "/d", "/d-sibling", "/d0"}));
  EXPECT_EQ(v.find("/d")->entry.type, EntryType::Symlink);
}

TEST(MergedView, TrueOwnersAndSetuidFromTheIndex) {
  auto v = merge({{D("/usr"), F("/usr/su", 04755, 0), F("/usr/mine", 04750, 1000)}});
  EXPECT_EQ(v.find("/usr/su")->entry.mode, 04755u);
  EXPECT_EQ(v.find("/usr/mine")->entry.uid, 1000u);
}

TEST(MergedView, HardlinkShowsTargetMetadata) {
  auto v = merge({{F("/a", 04755, 0)}, {E("/b", EntryType::Hardlink, 0, 0, "/a")}});
  const ViewEntry* b = v.find("/b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->entry.type, EntryType::File);
  EXPECT_EQ(b->entry.mode, 04755u);
  EXPECT_EQ(b->hardlink_to, "/a");
}

TEST(MergedView, ImplicitParentsAndRoot) {
  auto v = merge({{F("/deep/er/file")}});
  EXPECT_EQ(paths(v), (std::vector<std::string>{"/", "/deep", "/deep/er", "/deep/er/file"}));
  EXPECT_EQ(v.find("/deep")->entry.type, EntryType::Dir);
}

TEST(MergedView, OpaqueRootDropsEverythingBelow) {
  auto v = merge({{F("/a"), D("/b"), F("/b/c")}, {E("/", EntryType::Opaque), F("/z")}});
  EXPECT_EQ(paths(v), (std::vector<std::string>{"/", "/z"}));
}

TEST(MergedView, RefusesRelativeIndexPaths) {
  auto v = MergedView::from_layers({{F("relative")}}, {"/nonexistent"});
  EXPECT_FALSE(v.ok());
}

TEST(MergedView, EntryLimit) {
  std::vector<IndexEntry> l;
  for (int i = 0; i < 20; ++i) l.push_back(F("/f" + std::to_string(i)));
  auto v = MergedView::from_layers({l}, {"/nonexistent"}, 10);
  EXPECT_FALSE(v.ok());
}

TEST(SubId, ParsesRangesByNameOrUid) {
  std::string text = "# comment\nalice:100000:65536\nbob:200000:10\n1001:300000:5\nalice:500000:2\nbad:line\n";
  auto r = parse_subid(text, "alice", 1000);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].inside, 1u);
  EXPECT_EQ(r[0].outside, 100000u);
  EXPECT_EQ(r[0].count, 65536u);
  EXPECT_EQ(r[1].inside, 65537u);  // ranges follow each other inside the namespace
  EXPECT_EQ(r[1].outside, 500000u);
  auto byuid = parse_subid(text, "carol", 1001);
  ASSERT_EQ(byuid.size(), 1u);
  EXPECT_EQ(byuid[0].outside, 300000u);
  EXPECT_TRUE(parse_subid(text, "nobody", 4242).empty());
  EXPECT_TRUE(parse_subid("x:1:0\nx:abc:5\nx:4294967295:2\n", "x", 1).empty());
}

TEST(Overlay, EscapesOptionSeparators) {
  EXPECT_EQ(escape_overlay_path("/a,b:c\\d"), "/a\\,b\\:c\\\\d");
}

}  // namespace
}  // namespace moat
