#pragma once
// What a TLS sink (https://, syslog+tls://) verifies its peer against and
// which client certificate it shows. Verification is always on; these say
// against what.

#include <string>

namespace ringroute::sinks {

struct TlsOptions {
  std::string ca_file;         // PEM CA certificates
  std::string ca_path;         // a directory of them in OpenSSL's hashed form (`openssl rehash`)
  // Neither: the system's trust store.
  std::string cert_file;       // client certificate chain (optional), PEM
  std::string key_file;        // its key, PEM
  std::string key_passphrase;  // for an encrypted key_file; never logged
  std::string server_name;     // SNI and the name checked in the certificate; empty: the URL's host
};

}  // namespace ringroute::sinks
