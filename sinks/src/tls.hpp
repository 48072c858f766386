#pragma once
// TLS for network sinks with OpenSSL over memory BIOs: OpenSSL never touches
// the socket. Ciphertext it wants sent waits in outgoing(); ciphertext the
// sink received goes in with incoming(); the sink moves both through its
// io_uring like any other bytes. Internal to ringroute::sinks.

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "ringroute/sinks/backend.hpp"
#include "ringroute/sinks/tls_options.hpp"

using SSL_CTX = struct ssl_ctx_st;
using SSL = struct ssl_st;
using BIO = struct bio_st;

namespace ringroute::sinks {

// A file TlsContext can't use, with the option that names it (ca_file,
// ca_path, cert_file, key_file or key_passphrase), so validate can give
// its JSON path.
class TlsFileError : public std::runtime_error {
 public:
  TlsFileError(const char* option, const std::string& what) : std::runtime_error(what), option_(option) {}
  [[nodiscard]] const char* option() const noexcept { return option_; }

 private:
  const char* option_;
};

// One per sink: the verification policy and the client certificate.
class TlsContext {
 public:
  // Throws TlsFileError for a file it can't use, std::runtime_error for
  // the rest, naming the file or setting that is wrong. `alpn`: the one
  // application protocol offered in the handshake (RFC 7301), or none.
  TlsContext(const TlsOptions& options, const std::string& host, std::string_view alpn = {});
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  [[nodiscard]] SSL_CTX* get() const noexcept { return ctx_; }
  [[nodiscard]] const std::string& peer_name() const noexcept { return peer_name_; }
  [[nodiscard]] const std::string& alpn() const noexcept { return alpn_; }

 private:
  SSL_CTX* ctx_ = nullptr;
  std::string peer_name_;
  std::string alpn_;
};

// tls_files_problems (backend.hpp) for options already read.
[[nodiscard]] std::vector<TlsFilesProblem> tls_files_problems(const TlsOptions& options);

// SIGHUP: `tls` made anew from its files (a certificate renewed in place),
// for the connections made from now on; those open keep theirs (OpenSSL
// counts the context's users). Files that no longer load leave `tls` as it
// is, said on stderr with `sink` naming whose they are.
void reload_tls(std::unique_ptr<TlsContext>& tls, const TlsOptions& options, const std::string& host,
                const std::string& sink) noexcept;

// One per connection.
class TlsConnection {
 public:
  enum class Step { send, receive, done, failed };

  explicit TlsConnection(const TlsContext& context);
  ~TlsConnection();
  TlsConnection(const TlsConnection&) = delete;
  TlsConnection& operator=(const TlsConnection&) = delete;

  // Drives the handshake: `send` (ciphertext waits in outgoing()),
  // `receive` (more from the peer is needed), `done`, or `failed` with why.
  Step handshake(std::string& why);
  // Ciphertext to send; the caller erases what it sent.
  std::string& outgoing();
  // Ciphertext from the peer.
  void incoming(const char* data, std::size_t size);
  // Encrypts up to `plain.size()` bytes into outgoing(); returns how many
  // were taken (0 with why on a failure).
  std::size_t encrypt(std::string_view plain, std::string& why);
  // Plaintext the peer sent, into `out`: bytes (>0), 0 when more ciphertext
  // is needed, -1 when the peer closed (close_notify) or the stream broke.
  long decrypt(char* out, std::size_t size);
  // Whether the session is TLS 1.3, where the server judges the client's
  // certificate after the client has finished its handshake.
  [[nodiscard]] bool tls13() const noexcept;
  // The close_notify alert, as ciphertext to send before closing, once all
  // of outgoing() is sent (the caller's to know); empty where the handshake
  // never finished.
  std::string close_notify();

 private:
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;   // owned by ssl_
  BIO* out_ = nullptr;  // owned by ssl_
  std::string outgoing_;
};

}  // namespace ringroute::sinks
