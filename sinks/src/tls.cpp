#include "tls.hpp"

#include "ringroute/sinks/url.hpp"

#include <sys/stat.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "ringroute/sinks/backend.hpp"

namespace ringroute::sinks {
namespace {

std::string openssl_errors() {
  std::string text;
  while (const unsigned long e = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof buffer);
    if (!text.empty()) text += "; ";
    text += buffer;
  }
  return text.empty() ? "unknown error" : text;
}

}  // namespace

TlsContext::TlsContext(const TlsOptions& options, const std::string& host, std::string_view alpn)
    : peer_name_(options.server_name.empty() ? host : options.server_name), alpn_(alpn) {
  // A fully qualified name's last dot ("logs.example.") is in no
  // certificate, nor in SNI (RFC 6066 section 3).
  if (peer_name_.size() > 1 && peer_name_.back() == '.') peer_name_.pop_back();
  ERR_clear_error();  // messages below name this context's errors only
  // Regular files only: OpenSSL reads a device or a FIFO (/dev/zero, a
  // pipe nobody writes) until it ends, and a router, or validate, would
  // wait for good.
  for (const auto& [option, file] : {std::pair{"ca_file", &options.ca_file}, std::pair{"cert_file", &options.cert_file},
                                     std::pair{"key_file", &options.key_file}}) {
    if (file->empty()) continue;
    struct stat st {};
    if (::stat(file->c_str(), &st) != 0) {
      const int e = errno;
      throw TlsFileError(option, std::string("TLS: ") + option + " " + *file + ": " + std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
      throw TlsFileError(option, std::string("TLS: ") + option + " " + *file + ": not a regular file");
    }
  }
  // OpenSSL reads a CA directory only when a handshake looks for an issuer
  // there, and takes one it can't read as holding none: a wrong path would
  // show only as every certificate failing to verify.
  if (!options.ca_path.empty()) {
    struct stat st {};
    std::string problem;
    if (::stat(options.ca_path.c_str(), &st) != 0) {
      problem = std::strerror(errno);
    } else if (!S_ISDIR(st.st_mode)) {
      problem = "not a directory";
    } else if (::access(options.ca_path.c_str(), R_OK | X_OK) != 0) {
      problem = std::strerror(errno);
    }
    if (!problem.empty()) throw TlsFileError("ca_path", "TLS: ca_path " + options.ca_path + ": " + problem);
  }
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (ctx_ == nullptr) throw std::runtime_error("TLS: " + openssl_errors());
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  // A TLS 1.2 server's renegotiation request is refused at once: nothing
  // would send the handshake it starts, and the request waited out its
  // timeout.
  SSL_CTX_set_options(ctx_, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);  // verification is on; there is no switch to turn it off
  if (!alpn_.empty()) {
    // Said, a server that speaks HTTP/2 alone refuses the handshake with
    // "no application protocol" rather than answering a request it can't
    // read; and servers that pick the protocol by ALPN pick ours.
    std::string wire(1, static_cast<char>(alpn_.size()));
    wire += alpn_;
    if (SSL_CTX_set_alpn_protos(ctx_, reinterpret_cast<const unsigned char*>(wire.data()),
                                static_cast<unsigned>(wire.size())) != 0) {  // 0 is success here
      const std::string why = openssl_errors();
      SSL_CTX_free(ctx_);
      throw std::runtime_error("TLS: can't offer ALPN " + alpn_ + ": " + why);
    }
  }
  const bool system_store = options.ca_file.empty() && options.ca_path.empty();
  const bool loaded = system_store ? SSL_CTX_set_default_verify_paths(ctx_) == 1
                                   : SSL_CTX_load_verify_locations(
                                         ctx_, options.ca_file.empty() ? nullptr : options.ca_file.c_str(),
                                         options.ca_path.empty() ? nullptr : options.ca_path.c_str()) == 1;
  if (!loaded) {
    const std::string why = openssl_errors();
    SSL_CTX_free(ctx_);
    const std::string from = system_store               ? std::string(" (system store)")
                             : !options.ca_file.empty() ? " from " + options.ca_file
                                                        : " from " + options.ca_path;
    throw TlsFileError(options.ca_file.empty() && !system_store ? "ca_path" : "ca_file",
                       "TLS: can't load CA certificates" + from + ": " + why);
  }
  if (!options.cert_file.empty() || !options.key_file.empty()) {
    if (options.cert_file.empty() || options.key_file.empty()) {
      SSL_CTX_free(ctx_);
      throw std::runtime_error("TLS: a client certificate needs both cert_file and key_file");
    }
    // An encrypted key takes key_passphrase, never the terminal: OpenSSL's
    // default asks there, and a router started from a shell waited for
    // an answer. Asked, the callback notes it.
    struct Passphrase {
      const std::string& text;
      bool asked = false;
      bool too_long = false;
    } passphrase{options.key_passphrase};
    SSL_CTX_set_default_passwd_cb(ctx_, [](char* buffer, int size, int, void* user) {
      auto& given = *static_cast<Passphrase*>(user);
      given.asked = true;
      // Longer than OpenSSL's buffer can't be the key's: refused, not cut.
      given.too_long = given.text.size() > static_cast<std::size_t>(size);
      if (given.text.empty() || given.too_long) return 0;
      std::memcpy(buffer, given.text.data(), given.text.size());
      return static_cast<int>(given.text.size());
    });
    SSL_CTX_set_default_passwd_cb_userdata(ctx_, &passphrase);
    const bool loaded_cert = SSL_CTX_use_certificate_chain_file(ctx_, options.cert_file.c_str()) == 1;
    const bool loaded_key =
        loaded_cert && SSL_CTX_use_PrivateKey_file(ctx_, options.key_file.c_str(), SSL_FILETYPE_PEM) == 1;
    const bool matched = loaded_key && SSL_CTX_check_private_key(ctx_) == 1;
    // The context outlives this frame: no callback may reach `passphrase` later.
    SSL_CTX_set_default_passwd_cb_userdata(ctx_, nullptr);
    SSL_CTX_set_default_passwd_cb(ctx_, [](char*, int, int, void*) { return 0; });
    if (!matched) {
      const std::string why = openssl_errors();
      SSL_CTX_free(ctx_);
      if (loaded_cert && !loaded_key && passphrase.asked) {
        if (options.key_passphrase.empty()) {
          throw TlsFileError("key_file", "TLS: key_file " + options.key_file +
                                             " is encrypted: give its passphrase with key_passphrase (from the "
                                             "environment: \"${NAME}\")");
        }
        throw TlsFileError("key_passphrase", passphrase.too_long
                                                 ? "TLS: key_passphrase is longer than OpenSSL takes (1024 bytes)"
                                                 : "TLS: key_passphrase does not decrypt key_file " + options.key_file);
      }
      throw TlsFileError(loaded_cert && !loaded_key ? "key_file" : "cert_file",
                         "TLS: client certificate " + options.cert_file + " / " + options.key_file + ": " + why);
    }
  }
}

std::vector<TlsFilesProblem> tls_files_problems(const TlsOptions& options) {
  std::vector<TlsFilesProblem> problems;
  // The context loads the CA files, then the certificate: built from each
  // part alone (the others left to the system's store, or out), a fault in
  // one does not hide one in the next.
  auto problem_with = [&](const TlsOptions& part) {
    try {
      TlsContext context(part, "localhost");
    } catch (const TlsFileError& e) {
      problems.push_back({e.option(), e.what()});
    } catch (const std::exception& e) {
      problems.push_back({"cert_file", e.what()});  // no file at fault (out of memory): said at the certificate
    }
  };
  if (!options.ca_file.empty()) problem_with({.ca_file = options.ca_file});
  if (!options.ca_path.empty()) problem_with({.ca_path = options.ca_path});
  // Half a certificate is the config's error ("required with"), not a file's.
  if (!options.cert_file.empty() && !options.key_file.empty()) {
    problem_with(
        {.cert_file = options.cert_file, .key_file = options.key_file, .key_passphrase = options.key_passphrase});
  }
  return problems;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

void reload_tls(std::unique_ptr<TlsContext>& tls, const TlsOptions& options, const std::string& host,
                const std::string& sink) noexcept {
  try {
    tls = std::make_unique<TlsContext>(options, host, tls != nullptr ? tls->alpn() : std::string_view{});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringroute: %s: keeping the TLS files loaded before: %s\n", sink.c_str(), e.what());
  }
}

TlsConnection::TlsConnection(const TlsContext& context) {
  ssl_ = SSL_new(context.get());
  if (ssl_ == nullptr) throw std::runtime_error("TLS: " + openssl_errors());
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl_, in_, out_);
  SSL_set_connect_state(ssl_);
  const std::string& name = context.peer_name();
  // Which name the certificate must carry: a failure to set it would leave
  // any certificate the CA signed good for this peer, so it ends the
  // connection. Wildcards stand for one whole label only.
  bool named = false;
  if (is_ip_address(name)) {
    named = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), name.c_str()) == 1;
  } else {
    SSL_set_tlsext_host_name(ssl_, name.c_str());  // SNI is for names only
    SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    named = SSL_set1_host(ssl_, name.c_str()) == 1;
  }
  if (!named) {
    const std::string errors = openssl_errors();
    SSL_free(ssl_);
    throw std::runtime_error("TLS: can't verify the peer as " + name + ": " + errors);
  }
}

TlsConnection::~TlsConnection() { SSL_free(ssl_); }

std::string& TlsConnection::outgoing() {
  char buffer[16384];
  for (int n; (n = BIO_read(out_, buffer, sizeof buffer)) > 0;) outgoing_.append(buffer, static_cast<std::size_t>(n));
  return outgoing_;
}

void TlsConnection::incoming(const char* data, std::size_t size) {
  BIO_write(in_, data, static_cast<int>(size));
}

TlsConnection::Step TlsConnection::handshake(std::string& why) {
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) return outgoing().empty() ? Step::done : Step::send;
  const int error = SSL_get_error(ssl_, rc);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
    return outgoing().empty() ? Step::receive : Step::send;
  }
  const long verify = SSL_get_verify_result(ssl_);
  why = verify != X509_V_OK ? std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify)
                            : openssl_errors();
  ERR_clear_error();  // read or not, none of them is a later step's
  return Step::failed;
}

std::size_t TlsConnection::encrypt(std::string_view plain, std::string& why) {
  ERR_clear_error();
  std::size_t taken = 0;
  const int rc = SSL_write_ex(ssl_, plain.data(), plain.size(), &taken);
  if (rc != 1) {
    why = "TLS write: " + openssl_errors();
    return 0;
  }
  outgoing();
  return taken;
}

long TlsConnection::decrypt(char* out, std::size_t size) {
  ERR_clear_error();
  std::size_t read = 0;
  if (SSL_read_ex(ssl_, out, size, &read) == 1) return static_cast<long>(read);
  const int error = SSL_get_error(ssl_, 0);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return 0;
  return -1;
}

std::string TlsConnection::close_notify() {
  if (SSL_is_init_finished(ssl_) != 1) return {};
  (void)SSL_shutdown(ssl_);  // 0: sent ours, the peer's not read (nor waited for)
  std::string alert;
  alert.swap(outgoing());
  return alert;
}

bool TlsConnection::tls13() const noexcept { return SSL_version(ssl_) == TLS1_3_VERSION; }

}  // namespace ringroute::sinks
