// Image references: TRANSPORT:LOCATION, as skopeo and podman write them.
#pragma once

#include <string>

#include "storage/result.h"

namespace moat {

enum class Transport { OciLayout, OciArchive, DockerArchive, Dir, ContainersStorage, Docker };

struct Reference {
  Transport transport;
  std::string path;  // the layout, archive or directory (made absolute); docker: HOST/REPO
  std::string tag;   // oci: ref.name; docker-archive: NAME:TAG or @INDEX; may be empty
  std::string text;  // canonical text, "oci:/abs/path:tag"
  // containers-storage: path is the location ("[SPEC]NAME" or "NAME"). A bare
  // name (no transport, as `podman run NAME`) is a containers-storage reference
  // with bare set: the user's store first, then a registry.
  bool bare = false;
};

// True for text a podman user could mean as an image: NAME[:TAG][@DIGEST],
// a registry host with port, an image id or id prefix.
bool is_image_name(const std::string& text);

const char* transport_name(Transport t);

// Parses "oci:PATH[:TAG]", "oci-archive:PATH[:TAG]", "docker-archive:PATH[:NAME:TAG|:@N]",
// "dir:PATH", "docker://[HOST[:PORT]/]REPO[:TAG|@DIGEST]" (path HOST/REPO, tag
// the tag or "sha256:..."; text "docker://docker.io/library/x:latest"),
// "containers-storage:[SPEC]NAME", or a bare image NAME.
// As in skopeo, the first ':' after the path separates the tag.
Result<Reference> parse_reference(const std::string& text);

}  // namespace moat
