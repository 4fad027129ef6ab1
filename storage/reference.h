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
};

const char* transport_name(Transport t);

// Parses "oci:PATH[:TAG]", "oci-archive:PATH[:TAG]", "docker-archive:PATH[:NAME:TAG|:@N]",
// "dir:PATH", "docker://[HOST[:PORT]/]REPO[:TAG|@DIGEST]" (path HOST/REPO, tag
// the tag or "sha256:..."; text "docker://docker.io/library/x:latest"). As in skopeo, the first ':' after the path separates the tag.
Result<Reference> parse_reference(const std::string& text);

}  // namespace moat
