// Hostile images: every case must end in exit 2 with a message that names the
// image, the layer and (for tar entries) the entry; must write nothing outside
// the store (canary directories next to the store and in /tmp stay exactly as
// they were, no planted name appears anywhere); must read nothing of the host
// through an image path (host files that *would* make the pull succeed, if
// followed, are planted behind symlinks); and must leave no new layer in
// store/layers and nothing in store/tmp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>

#include "tests/storage/harness.h"

namespace moat::test {
namespace {

using json = nlohmann::json;

json file(const std::string& path, const std::string& content = "x") { return {{"path", path}, {"content", content}}; }
json layer(json entries, const std::string& comp = "gzip") { return {{"compression", comp}, {"entries", std::move(entries)}}; }

class Hostile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937_64 rng{std::random_device{}()};
    evil_ = "moat-pwned-" + std::to_string(rng() % 1000000000);
    canary_ = work_ / "canary";
    ASSERT_EQ(mkdir(canary_.c_str(), 0755), 0);
    write_file(canary_ + "/secret", "CANARY-SECRET-0xdeadbeef\n", 0600);
    store_ = work_ / "store";
    write_file(tmp_canary_ / "secret", "TMP-CANARY-SECRET\n", 0600);
  }

  std::string image(const std::string& name) { return work_ / ("img-" + name + "-" + std::to_string(++n_)); }

  // Runs `moat image pull` (or `scan`) and checks everything a refusal must guarantee.
  void expect_refused(const std::string& ref, const std::vector<std::string>& must_contain,
                      const std::vector<std::string>& extra = {}, const char* command = "pull") {
    SCOPED_TRACE(ref);
    auto before = outside_store();
    auto tmp_before = snapshot(tmp_canary_.path());
    auto layers_before = list_dir(store_ + "/layers");
    std::vector<std::string> args = std::string(command) == "scan"
                                        ? std::vector<std::string>{"scan", "--fail-on", "none", "--store", store_}
                                        : std::vector<std::string>{"image", "pull", "--store", store_};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(ref);
    auto r = moat(args);
    last_err_ = r.err;
    if (getenv("MOAT_TEST_VERBOSE")) std::fprintf(stderr, "%s", r.err.c_str());  // to read the messages
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(r.err.rfind("moat: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(ref), std::string::npos) << "the message must name the image: " << r.err;
    for (const auto& m : must_contain) EXPECT_NE(r.err.find(m), std::string::npos) << "want \"" << m << "\" in: " << r.err;
    EXPECT_EQ(r.err.find("CANARY-SECRET"), std::string::npos) << "host file content leaked into the message";
    EXPECT_TRUE(r.out.empty()) << r.out;
    // Nothing new in the store, nothing half-done left behind.
    EXPECT_EQ(list_dir(store_ + "/layers"), layers_before);
    EXPECT_EQ(list_dir(store_ + "/tmp"), std::vector<std::string>{});
    // Nothing written or changed outside the store.
    EXPECT_EQ(outside_store(), before);
    EXPECT_EQ(snapshot(tmp_canary_.path()), tmp_before);
    for (const std::string& where : {std::string("/tmp/"), tmp_canary_.path() + "/", work_.path() + "/", canary_ + "/",
                                     std::string("/")})
      EXPECT_FALSE(lstat_of(where + evil_)) << "planted file appeared at " << where + evil_;
    // Nothing of the host's files reached the store.
    for (const auto& [p, d] : snapshot(store_)) {
      auto c = read_file(store_ + "/" + p);
      if (c) {
        EXPECT_EQ(c->find("CANARY-SECRET"), std::string::npos) << "host content copied into " << p;
      }
    }
  }

  std::map<std::string, std::string> outside_store() {
    auto s = snapshot(work_.path());
    for (auto it = s.begin(); it != s.end();)
      it = (it->first == "." || it->first.rfind("store", 0) == 0) ? s.erase(it) : std::next(it);
    return s;
  }

  // A valid single-layer OCI image whose one blob we also plant on the host,
  // so that following a symlink to it would make the pull *succeed*.
  std::string plant_valid_blob(const std::string& host_name, const std::string& format, fixture::Built* built) {
    json spec = {{"format", format}, {"layers", {layer({file("hello", "CANARY-SECRET from the host")})}}};
    std::string probe = image("probe");
    *built = build_fixture(spec, probe);
    std::string hex = hex_of(built->platforms[0].blob_digests[0]);
    auto bytes = read_file(probe + (format == "dir" ? "/" : "/blobs/sha256/") + hex);
    EXPECT_TRUE(bytes.has_value());
    write_file(canary_ + "/" + host_name, *bytes, 0644);
    return canary_ + "/" + host_name;
  }

  TempDir work_{"moat-hostile"};
  TempDir tmp_canary_{"moat-canary"};
  std::string canary_, store_, evil_, last_err_;
  int n_ = 0;
};

// ---- tar entries ----

TEST_F(Hostile, AbsoluteEntryNames) {
  for (std::string name : {tmp_canary_.path() + "/" + evil_, "/" + evil_, "/tmp/" + evil_}) {
    std::string img = image("abs");
    build_fixture({{"layers", {layer({file("ok"), file(name)})}}}, img);
    expect_refused("oci:" + img, {"layer 0 (sha256:", "entry \"" + name + "\"", "absolute path refused"});
  }
}

TEST_F(Hostile, DotDotEntryNames) {
  std::string up = "../../../../../../../../../../../..";
  for (std::string name : {"../" + evil_, up + "/tmp/" + evil_, "a/../../" + evil_, "./a/b/../../../" + evil_,
                           up + canary_ + "/" + evil_}) {
    std::string img = image("dotdot");
    // The hostile entry is in the upper layer: the good lower layer must not be kept either.
    build_fixture({{"layers", {layer({file("base")}), layer({file("ok"), file(name)}, "zstd")}}}, img);
    expect_refused("oci:" + img, {"layer 1 (sha256:", "entry \"" + name + "\"", "\"..\" refused"});
  }
}

TEST_F(Hostile, SymlinkedParentThenFileThroughIt) {
  for (std::string target : {tmp_canary_.path(), std::string("../../../../../../../../../..") + tmp_canary_.path(), canary_,
                             std::string("/"), std::string(".")}) {
    std::string img = image("symparent");
    build_fixture({{"layers", {layer({{{"path", "s"}, {"type", "symlink"}, {"link", target}},
                                      file("s/" + evil_, "pwned")})}}},
                  img);
    expect_refused("oci:" + img, {"layer 0", "entry \"s/" + evil_ + "\"", "symlink"});
  }
  // A directory replaced by a symlink later in the same layer: the cached parent must not be reused.
  std::string img = image("symreplace");
  build_fixture({{"layers", {layer({{{"path", "d"}, {"type", "dir"}},
                                    file("d/a"),
                                    {{"path", "d"}, {"type", "symlink"}, {"link", tmp_canary_.path()}},
                                    file("d/" + evil_, "pwned")})}}},
                img);
  expect_refused("oci:" + img, {"layer 0", "entry \"d/" + evil_ + "\"", "symlink"});
}

// Whiteouts and opaque markers act on their parent directory: through a
// symlinked parent they would delete a host file or mark a host directory.
TEST_F(Hostile, WhiteoutsThroughSymlinkedParents) {
  std::string img = image("whsym");
  build_fixture({{"layers", {layer({{{"path", "s"}, {"type", "symlink"}, {"link", canary_}}, file("s/.wh.secret", "")})}}}, img);
  expect_refused("oci:" + img, {"layer 0", "entry \"s/.wh.secret\"", "symlink"});
  EXPECT_EQ(read_file(canary_ + "/secret").value_or("<gone>"), "CANARY-SECRET-0xdeadbeef\n");

  img = image("opqsym");
  build_fixture({{"layers", {layer({{{"path", "s"}, {"type", "symlink"}, {"link", canary_}}, file("s/.wh..wh..opq", "")})}}},
                img);
  expect_refused("oci:" + img, {"layer 0", "entry \"s/.wh..wh..opq\"", "symlink"});
  EXPECT_TRUE(xattr_names(canary_).empty()) << "a host directory was marked";

  // A hardlink to a lower file (copied at the end) whose directory is then
  // replaced by a symlink to a host directory: the copy must not land there.
  img = image("pendingsym");
  build_fixture({{"layers", {layer({file("bin/su", "su")}),
                             layer({{{"path", "d"}, {"type", "dir"}},
                                    {{"path", "d/" + evil_}, {"type", "hardlink"}, {"link", "bin/su"}},
                                    {{"path", "d"}, {"type", "symlink"}, {"link", canary_}}})}}},
                img);
  auto before = outside_store();
  auto r = moat({"image", "pull", "--store", store_, "oci:" + img});
  EXPECT_FALSE(lstat_of(canary_ + "/" + evil_)) << "the copy followed a symlink out of the store";
  EXPECT_EQ(outside_store(), before);
  EXPECT_EQ(list_dir(store_ + "/tmp"), std::vector<std::string>{});
  // Refused (the copy's directory is no longer a directory), naming the link.
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("layer 1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("entry \"/d/" + evil_ + "\""), std::string::npos) << r.err;
  EXPECT_TRUE(list_dir(store_ + "/layers").empty());
}

TEST_F(Hostile, HardlinksLeavingTheLayer) {
  struct Case {
    std::string target, why;
  };
  std::vector<Case> cases = {
      {"../../../../../../../../.." + canary_ + "/secret", "leaves the layer"},
      {canary_ + "/secret", "absolute"},
      {"a/../../secret", "leaves the layer"},
  };
  for (const auto& c : cases) {
    std::string img = image("hl");
    build_fixture({{"layers", {layer({file("a/f"), {{"path", evil_}, {"type", "hardlink"}, {"link", c.target}}})}}}, img);
    expect_refused("oci:" + img, {"layer 0", "entry \"" + evil_ + "\"", c.why});
  }
  // Through a symlinked directory to a host file.
  std::string img = image("hlsym");
  build_fixture({{"layers", {layer({{{"path", "s"}, {"type", "symlink"}, {"link", canary_}},
                                    {{"path", evil_}, {"type", "hardlink"}, {"link", "s/secret"}}})}}},
                img);
  expect_refused("oci:" + img, {"layer 0", "entry \"" + evil_ + "\"", "symlink"});
  // The host file was never linked: its link count is still 1 (checked by the snapshot too).
  EXPECT_EQ(lstat_of(canary_ + "/secret")->st_nlink, 1u);
}

TEST_F(Hostile, HardlinksToDirectoriesOrNothing) {
  std::string img = image("hldir");
  build_fixture({{"layers", {layer({{{"path", "d"}, {"type", "dir"}}, {{"path", "h"}, {"type", "hardlink"}, {"link", "d"}}})}}},
                img);
  expect_refused("oci:" + img, {"layer 0", "entry \"h\"", "hardlink to a directory refused"});

  // To a directory of a lower layer: not a file any layer has.
  img = image("hllowerdir");
  build_fixture({{"layers", {layer({{{"path", "d"}, {"type", "dir"}}}), layer({{{"path", "h"}, {"type", "hardlink"}, {"link", "d"}}})}}},
                img);
  expect_refused("oci:" + img, {"layer 1", "entry \"/h\"", "neither this layer nor a lower one has"});

  // To a name no layer has.
  img = image("hlnone");
  build_fixture({{"layers", {layer({file("a")}), layer({{{"path", "h"}, {"type", "hardlink"}, {"link", "nowhere"}}})}}}, img);
  expect_refused("oci:" + img, {"layer 1", "entry \"/h\"", "neither this layer nor a lower one has"});

  // To a file a middle layer whited out: the lower copy is hidden.
  img = image("hlwhiteout");
  build_fixture({{"layers", {layer({file("gone")}), layer({file(".wh.gone", "")}),
                             layer({{{"path", "h"}, {"type", "hardlink"}, {"link", "gone"}}})}}},
                img);
  expect_refused("oci:" + img, {"layer 2", "entry \"/h\"", "neither this layer nor a lower one has"});
}

TEST_F(Hostile, BadWhiteoutNames) {
  std::string img = image("wh");
  build_fixture({{"layers", {layer({file("a/f"), file("a/.wh..", "")})}}}, img);
  expect_refused("oci:" + img, {"layer 0", "entry \"a/.wh..\"", "bad whiteout name"});
}

// ---- the layout around the blobs ----

TEST_F(Hostile, BlobThatIsASymlinkToAHostFile) {
  for (std::string format : {"oci", "dir"}) {
    fixture::Built b;
    std::string host = plant_valid_blob("shadow-" + format, format, &b);
    std::string img = image("blobsym");
    json spec = {{"format", format},
                 {"layers", {{{"compression", "gzip"},
                              {"entries", {file("hello", "CANARY-SECRET from the host")}},
                              {"corrupt", {{"blob_symlink", host}}}}}}};
    build_fixture(spec, img);
    expect_refused(std::string(format) + ":" + img, {"layer 0", "symlink"});
  }
  // In an archive, a symlink entry to a host path (absolute or climbing out).
  fixture::Built b;
  std::string host = plant_valid_blob("shadow-archive", "oci", &b);
  for (std::string target : {host, std::string("../../../../../../../../../..") + host}) {
    std::string img = image("blobsym-archive");
    json spec = {{"format", "oci-archive"},
                 {"layers", {{{"compression", "gzip"},
                              {"entries", {file("hello", "CANARY-SECRET from the host")}},
                              {"corrupt", {{"blob_symlink", target}}}}}}};
    build_fixture(spec, img);
    expect_refused("oci-archive:" + img, {"layer 0", "outside the archive"});
  }
}

TEST_F(Hostile, LayoutFilesThatAreSymlinks) {
  // The host file is a *valid* index.json for this very layout: following it would work.
  std::string probe = image("probe");
  build_fixture({{"layers", {layer({file("a")})}}}, probe);
  std::string host = canary_ + "/index.json";
  write_file(host, *read_file(probe + "/index.json"));
  std::string img = image("idxsym");
  build_fixture({{"layers", {layer({file("a")})}}, {"hostile", {{"index_symlink", host}}}}, img);
  expect_refused("oci:" + img, {"index.json", "symlink"});
  // Also oci-layout as a symlink to a host file.
  std::string img2 = image("layoutsym");
  write_file(canary_ + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  build_fixture({{"layers", {layer({file("a")})}},
                 {"hostile", {{"no_oci_layout", true}, {"extra_symlinks", {{"oci-layout", canary_ + "/oci-layout"}}}}}},
                img2);
  expect_refused("oci:" + img2, {"oci-layout"});

  // The whole blobs/ directory a symlink to a host copy of it (valid blobs, right digests).
  std::string img3 = image("blobsdir");
  build_fixture({{"layers", {layer({file("a", "CANARY-SECRET via blobs/")})}}}, img3);
  ASSERT_EQ(rename((img3 + "/blobs").c_str(), (canary_ + "/blobs").c_str()), 0);
  ASSERT_EQ(symlink((canary_ + "/blobs").c_str(), (img3 + "/blobs").c_str()), 0);
  expect_refused("oci:" + img3, {"symlink"});

  // skopeo dir: manifest.json a symlink to a valid host copy.
  std::string img4 = image("dirmanifest");
  build_fixture({{"format", "dir"}, {"layers", {layer({file("a")})}}}, img4);
  ASSERT_EQ(rename((img4 + "/manifest.json").c_str(), (canary_ + "/manifest.json").c_str()), 0);
  ASSERT_EQ(symlink((canary_ + "/manifest.json").c_str(), (img4 + "/manifest.json").c_str()), 0);
  expect_refused("dir:" + img4, {"manifest.json", "symlink"});

  // docker-archive: manifest.json a symlink entry pointing out of the archive.
  std::string img5 = image("damanifest");
  build_fixture({{"format", "docker-archive"}, {"layers", {layer({file("a")})}},
                 {"hostile", {{"extra_symlinks", {{"manifest.json", canary_ + "/manifest.json"}}}}}},
                img5);
  expect_refused("docker-archive:" + img5, {"manifest.json", "outside the archive"});
}

TEST_F(Hostile, BadIndexJson) {
  for (std::string text : {std::string("{not json"), std::string(R"({"manifests": 5})"), std::string(R"({"manifests": []})"),
                           std::string("[]"), std::string(R"({"manifests": [{"digest": 7}]})")}) {
    std::string img = image("badidx");
    build_fixture({{"layers", {layer({file("a")})}}, {"hostile", {{"index_json", text}}}}, img);
    expect_refused("oci:" + img, {"index.json"});
  }
  // docker-archive's manifest.json likewise.
  std::string img = image("badmanifest");
  build_fixture({{"format", "docker-archive"}, {"layers", {layer({file("a")})}}, {"hostile", {{"manifest_json", "{{"}}}}, img);
  expect_refused("docker-archive:" + img, {"manifest.json"});
}

TEST_F(Hostile, InvalidDigestsAreRefusedBeforeUse) {
  struct Case {
    json spec;
    std::string scheme, why;
  };
  std::string traversal = "sha256:../../../../../../../../.." + canary_ + "/secret";
  std::vector<Case> cases = {
      {{{"layers", {{{"entries", {file("a")}}, {"corrupt", {{"digest", traversal}}}}}}}, "oci", "layer 0: invalid digest"},
      {{{"layers", {layer({file("a")})}}, {"hostile", {{"manifest_digest", "sha256:../../canary/secret"}}}},
       "oci",
       "index.json manifest 0: invalid digest"},
      {{{"layers", {layer({file("a")})}},
        {"hostile", {{"config_digest", "sha256:ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789"}}}},
       "oci",
       "invalid digest"},
      {{{"layers", {{{"entries", {file("a")}}, {"corrupt", {{"diff_id", "sha256:../x"}}}}}}}, "oci",
       "config diff_id of layer 0: invalid digest"},
      {{{"format", "dir"}, {"layers", {{{"entries", {file("a")}}, {"corrupt", {{"digest", traversal}}}}}}}, "dir",
       "invalid digest"},
      {{{"format", "docker-archive"},
        {"layers", {{{"entries", {file("a")}}, {"corrupt", {{"layer_path", "../../../../../.." + canary_ + "/secret"}}}}}}},
       "docker-archive",
       "layer 0"},
  };
  for (auto& c : cases) {
    std::string img = image("digest");
    build_fixture(c.spec, img);
    expect_refused(c.scheme + ":" + img, {c.why});
  }
}

TEST_F(Hostile, DamagedLayerBlobs) {
  struct Case {
    std::string comp;
    json corrupt;
    std::string why;
  };
  // Entries big enough that a truncation falls inside file data, not just the end marker.
  // Incompressible enough that a cut at 300 bytes falls inside the data of every compression.
  std::string noise;
  for (std::string h = "seed"; noise.size() < 40000;) noise += h = fixture::sha256_hex(h);
  json entries = json::array({file("a", noise), {{"path", "big"}, {"content", {{"repeat", "moat-"}, {"size", 200000}}}}});
  int n = 0;
  // Each case gets its own diffID: a layer already in the store is reused without reading its blob.
  auto with_case = [&](json e) {
    e.push_back(file("case", std::to_string(++n)));
    return e;
  };
  std::vector<Case> cases = {
      {"gzip", {{"truncate", 300}}, "truncated"},
      {"zstd", {{"truncate", 300}}, "truncated"},
      {"gzip", {{"garbage", true}}, "media type says gzip but the blob is none"},
      {"zstd", {{"garbage", true}}, "media type says zstd but the blob is none"},
      {"none", {{"garbage", true}}, "tar"},
      {"gzip", {{"media_type", "application/vnd.oci.image.layer.v1.tar+zstd"}}, "media type says zstd but the blob is gzip"},
      {"zstd", {{"media_type", "application/vnd.oci.image.layer.v1.tar"}}, "media type says none but the blob is zstd"},
      {"gzip", {{"media_type", "application/vnd.oci.image.layer.v1.tar+encrypted"}}, "unsupported media type"},
      {"gzip", {{"wrong_digest", true}}, "does not match its digest"},
      {"zstd", {{"wrong_diff_id", true}}, "does not match diff_id"},
      {"none", {{"wrong_size", true}}, "the manifest says"},
      {"gzip", {{"missing", true}}, "missing from the image"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.corrupt.dump());
    std::string img = image("damaged");
    build_fixture({{"layers", {layer({file("base")}), {{"compression", c.comp}, {"entries", with_case(entries)}, {"corrupt", c.corrupt}}}}},
                  img);
    expect_refused("oci:" + img, {"layer 1", c.why});
  }
  // The same through the archive transports, where the blobs live inside a tar.
  for (std::string format : {"oci-archive", "docker-archive", "docker-archive-25"}) {
    std::string scheme = format == "oci-archive" ? "oci-archive" : "docker-archive";
    for (const auto& [corrupt, why] : std::vector<std::pair<json, std::string>>{{{{"truncate", 300}}, "truncated"},
                                                                               {{{"wrong_diff_id", true}}, "does not match diff_id"},
                                                                               {{{"missing", true}}, "missing"}}) {
      std::string img = image("damaged-" + format);
      build_fixture({{"format", format}, {"layers", {{{"compression", "gzip"}, {"entries", with_case(entries)}, {"corrupt", corrupt}}}}}, img);
      expect_refused(scheme + ":" + img, {"layer 0", why});
    }
  }
  // Docker 25 archives name the blob by digest: a blob under the wrong name is caught.
  std::string img = image("d25-digest");
  build_fixture({{"format", "docker-archive-25"}, {"layers", {{{"entries", with_case(entries)}, {"corrupt", {{"wrong_digest", true}}}}}}}, img);
  expect_refused("docker-archive:" + img, {"layer 0", "does not match its digest"});
}

// ---- limits: each reached exactly, with the flag that raises it named ----

TEST_F(Hostile, Limits) {
  json many = json::array();
  for (int i = 0; i < 10; ++i) many.push_back(file("f" + std::to_string(i)));
  std::string img = image("entries");
  build_fixture({{"layers", {layer(many)}}}, img);
  expect_refused("oci:" + img, {"layer 0", "entry \"f5\"", "more than 5 entries", "--max-layer-entries"},
                 {"--max-layer-entries", "5"});
  // At the limit is fine.
  auto ok = moat({"image", "pull", "--store", work_ / "store-ok", "--max-layer-entries", "10", "oci:" + img});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;

  std::string long_name = std::string(40, 'd') + "/" + std::string(20, 'n');  // 61 bytes
  img = image("pathlen");
  build_fixture({{"layers", {layer({file("short"), file(long_name)})}}}, img);
  expect_refused("oci:" + img, {"layer 0", "entry \"" + long_name + "\"", "longer than 60 bytes"}, {"--max-path-length", "60"});

  img = image("depth");
  build_fixture({{"layers", {layer({file("a/b/c/d"), file("a/b/c/d2/e")})}}}, img);
  expect_refused("oci:" + img, {"layer 0", "entry \"a/b/c/d2/e\"", "deeper than 4 components"}, {"--max-path-depth", "4"});

  img = image("bytes");
  build_fixture({{"layers", {layer({{{"path", "a"}, {"content", {{"repeat", "x"}, {"size", 150000}}}}}, "gzip"),
                             layer({{{"path", "b"}, {"content", {{"repeat", "y"}, {"size", 150000}}}}}, "zstd")}}},
                img);
  expect_refused("oci:" + img, {"layer ", "limit of 200.0 kB", "--max-image-bytes"}, {"--max-image-bytes", "200000"});

  img = image("layers");
  build_fixture({{"layers", {layer({file("1")}), layer({file("2")}), layer({file("3")})}}}, img);
  expect_refused("oci:" + img, {"3 layers, more than the limit of 2"}, {"--max-layers", "2"});
  // Limits apply to the scan command too.
  expect_refused("oci:" + img, {"3 layers, more than the limit of 2"}, {"--max-layers", "2"}, "scan");
}

// A refused pull leaves an earlier image's layers alone, and the store usable.
TEST_F(Hostile, FailedPullKeepsTheStoreUsable) {
  std::string good = image("good");
  auto built = build_fixture({{"layers", {layer({file("keep", "me")})}}}, good);
  ASSERT_EQ(moat({"image", "pull", "--store", store_, "oci:" + good}).exit_code, 0);
  std::string bad = image("bad");
  // Shares the good layer (same diffID) and adds a hostile one.
  build_fixture({{"layers", {layer({file("keep", "me")}), layer({file("../" + evil_)})}}}, bad);
  expect_refused("oci:" + bad, {"layer 1", "\"..\" refused"});
  auto layers = list_dir(store_ + "/layers");
  ASSERT_EQ(layers, std::vector<std::string>{hex_of(built.platforms[0].diff_ids[0])});
  EXPECT_EQ(read_file(store_ + "/layers/" + layers[0] + "/diff/keep").value_or(""), "me");
  auto again = moat({"scan", "--fail-on", "none", "--store", store_, "oci:" + good});
  EXPECT_EQ(again.exit_code, 0) << again.err;
}

}  // namespace
}  // namespace moat::test
