#include "scanner/trust/sources.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include <functional>

#include "scanner/trust/simple_signing.h"
#include "scanner/trust/util.h"
#include "storage/digest.h"
#include "storage/sources/registry/client.h"
#include "storage/sources/registry/docker_ref.h"

namespace moat::trust {
namespace {

using json = nlohmann::json;

// containers/image gives up after this many lookaside signatures.
constexpr int kMaxLookasideSignatures = 128;

std::string realpath_or(const std::string& p) {
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf)) return buf;
  return p;
}

std::vector<std::string> parents(std::string path, bool include_self) {
  std::vector<std::string> res;
  if (include_self && path != "/") res.push_back(path);
  for (;;) {
    size_t slash = path.rfind('/');
    if (slash == std::string::npos || slash == 0) break;
    path = path.substr(0, slash);
    res.push_back(path);
  }
  return res;
}

struct CurlBody {
  std::string data;
  bool too_big = false;
};
size_t curl_write(char* p, size_t size, size_t n, void* ud) {
  auto* b = static_cast<CurlBody*>(ud);
  if (b->data.size() + size * n > kMaxSignatureBytes) {
    b->too_big = true;
    return 0;
  }
  b->data.append(p, size * n);
  return size * n;
}

// The top-level manifest of a dir: image and whether it is the instance itself.
Status add_dir_signatures(const Reference& ref, const ImageDesc& desc, SignatureSet& set) {
  auto read_sigs = [&](const std::string& prefix, size_t manifest) -> Status {
    for (size_t i = 1;; ++i) {
      if (i > kMaxSignatures) return Error{ref.path + " holds more than " + std::to_string(kMaxSignatures) + " signatures"};
      std::string p = ref.path + "/" + prefix + "signature-" + std::to_string(i);
      auto b = read_file_limited(p, kMaxSignatureBytes, true);  // the image's file: never a symlink out
      if (!b && b.error().sys_errno == ENOENT) break;
      if (!b && b.error().sys_errno == EFBIG) {
        // Not read, never accepted; the other signatures still count (as in containers/image).
        SignatureBlob big;
        big.source = p;
        big.format = SigFormat::Unsupported;
        big.note = "larger than " + std::to_string(kMaxSignatureBytes) + " bytes, not read";
        big.manifest = manifest;
        set.sigs.push_back(std::move(big));
        continue;
      }
      if (!b) return Error{"cannot read signature " + p + ": " + b.error().describe()};
      set.sigs.push_back(classify_blob(std::move(b).value(), p));
      set.sigs.back().manifest = manifest;
    }
    set.searched.push_back(ref.path + "/" + prefix + "signature-N");
    return ok_status();
  };
  set.manifests.push_back(AttachedManifest{desc.manifest_digest, desc.manifest, "image"});
  MOAT_ASSIGN_OR_RETURN(std::string top, read_file_limited(ref.path + "/manifest.json", 16u << 20, true));
  if (sha256_digest(top) == desc.manifest_digest) return read_sigs("", 0);
  // manifest.json is a list: the instance picked is what is evaluated, with
  // its own signatures (<hex>.signature-N), as `skopeo copy` of one instance
  // does; the list's signatures speak for the list, not for the instance.
  return read_sigs(digest_hex(desc.manifest_digest) + ".", 0);
}

// A tag that does not exist: the client's "no such tag" error. Anything else
// (auth, TLS, 5xx) is an error: the evaluation fails closed.
bool tag_missing(const Error& e) {
  const std::string& m = e.message;
  static const std::string kTail = ": no such tag";
  return m.size() >= kTail.size() && m.compare(m.size() - kTail.size(), kTail.size(), kTail) == 0;
}

Status add_sigstore_attachments(registry::Client& client, const std::string& repo, const std::string& digest,
                                const std::string& where, SignatureSet& set) {
  std::string tag = "sha256-" + digest_hex(digest) + ".sig";
  set.searched.push_back("sigstore attachments " + where + ":" + tag);
  auto m = client.get_manifest(repo, tag, 4u << 20);
  if (!m) {
    if (tag_missing(m.error())) return ok_status();
    return Error{"reading the sigstore attachment " + where + ":" + tag + ": " + m.error().message, 0, m.error().hint};
  }
  return parse_attachment(m->bytes, where, tag, [&](const std::string& d) { return client.get_blob(repo, d, kMaxSignatureBytes); },
                          set);
}

// OCI layouts (beyond containers/image, which reads no signatures there): the
// attachment when the layout holds it under cosign's tag, as
// `skopeo copy docker://R:sha256-HEX.sig oci:L:sha256-HEX.sig` leaves it.
Status add_oci_attachments(const Reference& ref, const std::string& digest, SignatureSet& set) {
  std::string tag = "sha256-" + digest_hex(digest) + ".sig";
  set.searched.push_back("sigstore attachments oci:" + ref.path + ":" + tag);
  auto read_blob = [&](const std::string& d) -> Result<std::string> {
    if (!is_valid_digest(d)) return Error{"invalid digest in oci:" + ref.path + ":" + tag};
    MOAT_ASSIGN_OR_RETURN(std::string b, read_file_limited(ref.path + "/blobs/sha256/" + digest_hex(d), kMaxSignatureBytes, true));
    if (sha256_digest(b) != d) return Error{"blob " + d + " of oci:" + ref.path + " does not match its digest"};
    return b;
  };
  MOAT_ASSIGN_OR_RETURN(std::string idx, read_file_limited(ref.path + "/index.json", 16u << 20, true));
  MOAT_ASSIGN_OR_RETURN(auto j, parse_strict_json(idx, "oci:" + ref.path + "/index.json"));
  if (!j.is_object() || !j.contains("manifests") || !j["manifests"].is_array()) return ok_status();
  for (const auto& m : j["manifests"]) {
    if (!m.is_object() || !m.contains("annotations") || !m["annotations"].is_object()) continue;
    const auto& a = m["annotations"];
    if (!a.contains("org.opencontainers.image.ref.name") || a["org.opencontainers.image.ref.name"] != tag) continue;
    if (!m.contains("digest") || !m["digest"].is_string()) return Error{"oci:" + ref.path + ":" + tag + ": no digest"};
    MOAT_ASSIGN_OR_RETURN(std::string bytes, read_blob(m["digest"].get<std::string>()));
    return parse_attachment(bytes, "oci:" + ref.path, tag, read_blob, set);
  }
  return ok_status();
}

// Signatures moat cannot read, found through the OCI 1.1 referrers tag schema
// (the index tagged sha256-HEX): cosign v3 bundles, Notation. They are
// reported as "unsupported signature format", never as "no signature".
Status add_referrers(registry::Client& client, const std::string& repo, const std::string& digest,
                     const std::string& where, SignatureSet& set) {
  std::string tag = "sha256-" + digest_hex(digest);
  auto m = client.get_manifest(repo, tag, 4u << 20);
  if (!m) return tag_missing(m.error()) ? ok_status() : Status(m.error());
  set.searched.push_back("referrers " + where + ":" + tag);
  auto j = parse_strict_json(m->bytes, "referrers index " + where + ":" + tag);
  if (!j || !j->is_object() || !j->contains("manifests") || !(*j)["manifests"].is_array()) return ok_status();
  for (const auto& d : (*j)["manifests"]) {
    if (!d.is_object()) continue;
    std::string at = d.contains("artifactType") && d["artifactType"].is_string() ? d["artifactType"].get<std::string>() : "";
    std::string kind;
    if (at.rfind("application/vnd.dev.sigstore.bundle", 0) == 0) kind = "sigstore bundle (cosign v3) via referrers";
    else if (at == "application/vnd.cncf.notary.signature") kind = "Notation signature";
    else continue;
    SignatureBlob s;
    s.source = where + ":" + tag + " " + (d.contains("digest") && d["digest"].is_string() ? printable_text(d["digest"].get<std::string>(), 80) : "");
    s.format = SigFormat::Unsupported;
    s.note = kind;
    set.sigs.push_back(std::move(s));
  }
  return ok_status();
}

}  // namespace

// cosign's attachment manifest (tagged sha256-HEX.sig): one layer per
// signature, its payload the layer blob and its signature an annotation.
// `blob` fetches a layer by digest, verified.
Status parse_attachment(const std::string& bytes, const std::string& where, const std::string& tag,
                        const std::function<Result<std::string>(const std::string&)>& blob, SignatureSet& set) {
  auto j = parse_strict_json(bytes, "sigstore attachment manifest " + where + ":" + tag);
  if (!j) return j.error();
  if (!j->is_object() || !j->contains("layers") || !(*j)["layers"].is_array())
    return Error{"sigstore attachment manifest " + where + ":" + tag + " has no layers"};
  const auto& layers = (*j)["layers"];
  if (layers.size() > kMaxSignatures)
    return Error{"sigstore attachment manifest " + where + ":" + tag + " has more than " + std::to_string(kMaxSignatures) + " layers"};
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& l = layers[i];
    std::string src = where + ":" + tag + " layer " + std::to_string(i);
    if (!l.is_object() || !l.contains("digest") || !l["digest"].is_string() || !is_valid_digest(l["digest"].get<std::string>()))
      return Error{src + ": invalid layer descriptor"};
    if (l.contains("size") && (!l["size"].is_number_integer() || l["size"].get<int64_t>() > int64_t(kMaxSignatureBytes)))
      return Error{src + ": layer larger than " + std::to_string(kMaxSignatureBytes) + " bytes"};
    std::string mt = l.contains("mediaType") && l["mediaType"].is_string() ? l["mediaType"].get<std::string>() : "";
    SignatureBlob s;
    s.source = src;
    if (mt != "application/vnd.dev.cosign.simplesigning.v1+json") {
      s.format = SigFormat::Unsupported;
      s.note = "sigstore attachment of type \"" + printable_text(mt, 80) + "\" (not a cosign signature)";
      set.sigs.push_back(std::move(s));
      continue;
    }
    MOAT_ASSIGN_OR_RETURN(s.bytes, blob(l["digest"].get<std::string>()));
    s.format = SigFormat::Sigstore;
    if (l.contains("annotations") && l["annotations"].is_object()) {
      const auto& a = l["annotations"];
      auto get = [&](const char* k) { return a.contains(k) && a[k].is_string() ? a[k].get<std::string>() : ""; };
      s.sigstore_signature = get("dev.cosignproject.cosign/signature");
      s.sigstore_cert = get("dev.sigstore.cosign/certificate");
      s.sigstore_chain = get("dev.sigstore.cosign/chain");
      s.sigstore_bundle = get("dev.sigstore.cosign/bundle");
    }
    set.sigs.push_back(std::move(s));
  }
  return ok_status();
}

SignatureBlob classify_blob(std::string blob, std::string source) {
  SignatureBlob s;
  s.source = std::move(source);
  if (blob.empty()) {
    s.format = SigFormat::Unsupported;
    s.note = "empty signature";
    return s;
  }
  unsigned char b0 = static_cast<unsigned char>(blob[0]);
  static const unsigned char openpgp[] = {0xA0, 0xA1, 0xA2, 0xA3, 0xC8, 0x90, 0x91, 0x92, 0x93,
                                          0xC4, 0x88, 0x89, 0x8A, 0x8B, 0xC2};
  for (unsigned char c : openpgp)
    if (b0 == c) {
      s.format = SigFormat::SimpleSigning;
      s.bytes = std::move(blob);
      return s;
    }
  if (b0 == 0) {
    size_t nl = blob.find('\n');
    std::string fmt = nl == std::string::npos ? "" : blob.substr(1, nl - 1);
    if (fmt == "simple-signing") {
      s.format = SigFormat::SimpleSigning;
      s.bytes = blob.substr(nl + 1);
      return s;
    }
    if (fmt == "sigstore-json") {
      auto j = parse_strict_json(std::string_view(blob).substr(nl + 1), "sigstore signature");
      if (j && j->is_object() && j->contains("payload") && (*j)["payload"].is_string() &&
          j->contains("mimeType") && (*j)["mimeType"].is_string()) {
        auto payload = base64_decode((*j)["payload"].get<std::string>());
        if (payload) {
          s.format = SigFormat::Sigstore;
          s.bytes = *payload;
          if ((*j)["mimeType"] != "application/vnd.dev.cosign.simplesigning.v1+json") {
            s.format = SigFormat::Unsupported;
            s.note = "sigstore attachment of type " + printable_text((*j)["mimeType"].get<std::string>(), 80);
          }
          if (j->contains("annotations") && (*j)["annotations"].is_object()) {
            const json& a = (*j)["annotations"];
            auto get = [&](const char* k) { return a.contains(k) && a[k].is_string() ? a[k].get<std::string>() : ""; };
            s.sigstore_signature = get("dev.cosignproject.cosign/signature");
            s.sigstore_cert = get("dev.sigstore.cosign/certificate");
            s.sigstore_chain = get("dev.sigstore.cosign/chain");
            s.sigstore_bundle = get("dev.sigstore.cosign/bundle");
          }
          return s;
        }
      }
      s.format = SigFormat::Unsupported;
      s.note = "malformed sigstore-json signature";
      return s;
    }
    s.format = SigFormat::Unsupported;
    s.note = "unrecognized signature format \"" + printable_text(fmt, 40) + "\"";
    return s;
  }
  s.format = SigFormat::Unsupported;
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02x", b0);
  s.note = std::string("unrecognized signature format, starting with byte ") + hex;
  return s;
}

Result<std::optional<std::string>> fetch_lookaside(const std::string& url) {
  if (url.rfind("file://", 0) == 0) {
    std::string path = url.substr(7);
    auto b = read_file_limited(path, kMaxSignatureBytes);
    if (!b) {
      if (b.error().sys_errno == ENOENT) return std::optional<std::string>{};
      return Error{"reading signature from " + url + ": " + b.error().describe()};
    }
    return std::optional<std::string>(std::move(b).value());
  }
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
    return Error{"unsupported lookaside URL scheme in " + url}.with_hint(
        "registries.d lookaside URLs must be file://, http:// or https://");
  static const bool inited = curl_global_init(CURL_GLOBAL_DEFAULT) == 0;
  if (!inited) return Error{"libcurl initialisation failed"};
  CURL* c = curl_easy_init();
  if (!c) return Error{"libcurl initialisation failed"};
  CurlBody body;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "moat/" MOAT_VERSION);
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  if (body.too_big) return Error{"signature at " + url + " is larger than " + std::to_string(kMaxSignatureBytes) + " bytes"};
  if (rc != CURLE_OK) return Error{"reading signature from " + url + ": " + curl_easy_strerror(rc)};
  if (status == 404) return std::optional<std::string>{};
  if (status != 200)
    return Error{"reading signature from " + url + ": HTTP status " + std::to_string(status)}.with_hint(
        "the lookaside server must answer 200 or 404; moat fails closed on anything else");
  return std::optional<std::string>(std::move(body.data));
}

Result<PolicyImage> policy_image(const Reference& ref) {
  PolicyImage p;
  switch (ref.transport) {
    case Transport::Dir:
      p.transport = "dir";
      p.identity = realpath_or(ref.path);
      p.namespaces = parents(p.identity, false);
      break;
    case Transport::OciLayout:
      p.transport = "oci";
      p.identity = realpath_or(ref.path);
      p.namespaces = parents(p.identity, true);
      break;
    case Transport::OciArchive:
      p.transport = "oci-archive";
      p.identity = realpath_or(ref.path);
      p.namespaces = parents(p.identity, true);
      break;
    case Transport::DockerArchive:
      p.transport = "docker-archive";  // containers/image gives it no identity and no namespaces
      break;
    case Transport::ContainersStorage:
      return Error{"trust policies for containers-storage: images are not supported"};
    case Transport::Docker: {
      p.transport = "docker";
      // docker://NAME[:TAG|@DIGEST]: the text after the transport.
      std::string text = ref.text.rfind("docker://", 0) == 0 ? ref.text.substr(9) : ref.path;
      MOAT_ASSIGN_OR_RETURN(DockerRef d, parse_docker_ref(text));
      if (d.name_only()) d.tag = "latest";
      p.identity = d.text();
      p.namespaces = docker_namespaces(d);
      p.docker = d;
      break;
    }
  }
  return p;
}

Result<SignatureSet> collect_signatures(const Reference& ref, const ImageDesc& desc, const PolicyImage& pimg,
                                        const RegistriesD& regd) {
  SignatureSet set;
  if (desc.manifest.empty() || desc.manifest_digest.empty()) {
    set.searched.push_back("nowhere: this image has no manifest to sign");
    return set;
  }
  if (!manifest_matches_digest(desc.manifest, desc.manifest_digest))
    return Error{"internal: the manifest bytes do not match " + desc.manifest_digest};
  switch (ref.transport) {
    case Transport::Dir:
      MOAT_TRY(add_dir_signatures(ref, desc, set));
      break;
    case Transport::Docker: {
      set.manifests.push_back(AttachedManifest{desc.manifest_digest, desc.manifest, "image"});
      std::string origin;
      std::string base = regd.lookaside_base(*pimg.docker, pimg.identity, &origin);
      for (int i = 1;; ++i) {
        if (i > kMaxLookasideSignatures)
          return Error{"the lookaside " + base + " provided more than " + std::to_string(kMaxLookasideSignatures) +
                       " signatures; assuming a server error"};
        std::string url = base + "@sha256=" + digest_hex(desc.manifest_digest) + "/signature-" + std::to_string(i);
        MOAT_ASSIGN_OR_RETURN(auto b, fetch_lookaside(url));
        if (!b) break;
        set.sigs.push_back(classify_blob(std::move(*b), url));
      }
      set.searched.push_back("lookaside " + base + "@sha256=" + digest_hex(desc.manifest_digest) + "/signature-N (" +
                             origin + ")");
      MOAT_ASSIGN_OR_RETURN(moat::DockerRef where, moat::parse_docker_ref(ref.text.substr(9)));
      MOAT_ASSIGN_OR_RETURN(auto client, registry::Client::create(where.registry, registry::default_options()));
      if (regd.use_sigstore_attachments(*pimg.docker, pimg.identity)) {
        MOAT_TRY(add_sigstore_attachments(*client, where.repository, desc.manifest_digest, where.name(), set));
      } else {
        set.searched.push_back("not sigstore attachments (use-sigstore-attachments is off in registries.d)");
      }
      MOAT_TRY(add_referrers(*client, where.repository, desc.manifest_digest, where.name(), set));
      break;
    }
    case Transport::OciLayout:
      set.manifests.push_back(AttachedManifest{desc.manifest_digest, desc.manifest, "image"});
      MOAT_TRY(add_oci_attachments(ref, desc.manifest_digest, set));
      break;
    default:
      set.manifests.push_back(AttachedManifest{desc.manifest_digest, desc.manifest, "image"});
      set.searched.push_back(std::string("nowhere: the ") + transport_name(ref.transport) +
                             " transport stores no signatures");
      break;
  }
  return set;
}

}  // namespace moat::trust
