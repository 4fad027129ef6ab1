// Fuzz target: the metadata of podman's store (containers/storage) as moat
// reads it: images.json and layers.json through parse_images_json() and
// parse_layers_json() (storage/sources/containers_storage/store_db.h), names
// resolved against them with resolve_image() and normalize_name(), big-data
// keys turned into file names (big_data_file()), storage.conf through
// apply_storage_conf() (config.h), and a containers-storage:[SPEC]NAME
// location through parse_location() (source.h).
//
// Input: parts separated by "\n@@@@\n": images.json, layers.json,
// storage.conf, names to resolve (one per line, at most 8), a location.
#include "storage/sources/containers_storage/config.h"
#include "storage/sources/containers_storage/source.h"
#include "storage/sources/containers_storage/store_db.h"
#include "tests/fuzz/fuzz_util.h"

using namespace moat;
using namespace moat::cstorage;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data), size), 5);
  parts.resize(5);

  std::vector<StoreDb> stores(1);
  StoreDb& db = stores[0];
  db.graphroot = "/nonexistent/moat-fuzz/storage";
  db.driver = "overlay";
  auto images = parse_images_json(parts[0], "overlay-images/images.json");
  if (images.ok()) {
    db.images = std::move(images).value();
    for (const auto& img : db.images) {
      MOAT_FUZZ_ASSERT(is_hex64(img.id), "an image id that is not 64 hex digits was accepted");
      MOAT_FUZZ_ASSERT(img.top_layer.empty() || is_hex64(img.top_layer), "a top layer id that is not 64 hex digits");
      for (const auto& k : img.big_data_names) {
        std::string f = big_data_file(k);
        MOAT_FUZZ_ASSERT(!f.empty() && f != "." && f != ".." && f.find('\0') == std::string::npos,
                         "a big-data key gives an unusable file name");
        for (const auto& c : split_path(f)) MOAT_FUZZ_ASSERT(c != "..", "a big-data file name climbs out of the image");
      }
    }
  } else {
    MOAT_FUZZ_ASSERT(!images.error().describe().empty(), "an error without a message");
  }
  auto layers = parse_layers_json(parts[1], "overlay-layers/layers.json");
  if (layers.ok()) {
    db.layers = std::move(layers).value();
    for (const auto& [id, l] : db.layers) {
      MOAT_FUZZ_ASSERT(id == l.id && is_hex64(id), "a layer id that is not 64 hex digits was accepted");
      MOAT_FUZZ_ASSERT(l.parent.empty() || is_hex64(l.parent), "a parent id that is not 64 hex digits");
      (void)db.layer_files(id);
    }
  }

  StoreLocation loc;
  loc.graphroot = "/home/u/.local/share/containers/storage";
  loc.runroot = "/run/user/1000/containers";
  // The TOML parse is most of an execution: the file is read once, as the
  // user's own file or (last byte odd) as the system file read by a rootless user.
  const bool from_system = !parts[2].empty() && (parts[2].back() & 1);
  (void)apply_storage_conf(parts[2], "storage.conf", from_system, loc);

  std::string_view names = parts[3].empty() ? std::string_view("alpine\n") : std::string_view(parts[3]);
  for (int n = 0; n < 8 && !names.empty(); ++n) {
    size_t nl = names.find('\n');
    std::string what(names.substr(0, nl));
    names = nl == std::string_view::npos ? std::string_view() : names.substr(nl + 1);
    (void)normalize_name(what);
    auto m = resolve_image(stores, what);
    if (m.ok()) MOAT_FUZZ_ASSERT(m->image && m->store < stores.size(), "a match without an image");
  }
  (void)parse_location(parts[4]);
  return 0;
}
