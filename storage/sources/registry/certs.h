// certs.d, as containers/image reads it: the first folder that exists of
// --cert-dir (alone when given), else ~/.config/containers/certs.d/HOST[:PORT],
// /etc/containers/certs.d/HOST[:PORT], /etc/docker/certs.d/HOST[:PORT]. In it,
// *.crt are CAs added to the system trust store, *.cert + *.key (same base
// name) a client certificate; a *.key without its *.cert is an error.
#pragma once

#include <string>
#include <vector>

#include "storage/result.h"
#include "storage/sources/registry/http.h"

namespace moat::registry {

// `tried` receives every folder considered (for TLS error messages).
Result<TlsConfig> tls_config_for(const std::string& host_port, const std::string& cert_dir, bool verify,
                                 std::vector<std::string>* tried);

}  // namespace moat::registry
