#pragma once
// A small HTTP/1.1 server for sink tests, on 127.0.0.1: it records every
// request (parsed by Boost.Beast) and answers as the test says (a status,
// headers, a body, or no answer at all). A thread per connection, keep-alive.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

namespace ringroute::testing {

struct HttpRequest {
  std::string method, target, body;
  std::map<std::string, std::string> headers;  // names lower-cased; one sent twice as "a, b"
  std::size_t connection = 0;                  // which connection carried it (0, 1, ...)
};

struct HttpResponse {
  unsigned status = 204;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool hang = false;   // never answer (the connection stays open)
  bool close = false;  // answer with Connection: close, then close
  bool close_unanswered = false;  // close without a byte of answer (a server that took the request and went)
  bool chunked = false;  // the body in two chunks (Transfer-Encoding: chunked)
  // Interim responses sent first ("HTTP/1.1 100 Continue\r\n\r\n"...):
  // with the final one in one send, or apart, 20 ms before it.
  std::string interim;
  bool interim_apart = false;
  // The final response in 8 pieces this far apart (a server trickling it).
  std::chrono::milliseconds trickle{0};
  // Sent as the Content-Length instead of the body's size: a server that lies.
  std::string content_length;
  // Closes the connection this long after the answer, without having said
  // so (no Connection: close) and reading nothing more: a keep-alive
  // connection the server ends just as the client reuses it.
  std::chrono::milliseconds close_after{0};
  // Sent as they are instead of a response made of the fields above: `raw`
  // once, then `endless` again and again until the client goes (a server
  // whose answer never ends).
  std::string raw;
  std::string endless;
};

class HttpReceiver {
 public:
  using Responder = std::function<HttpResponse(const HttpRequest&, std::size_t index)>;

  // `port` 0: any free one. With `cert`/`key`: HTTPS (TLS on every
  // connection). `ipv4`: another loopback address to listen on.
  explicit HttpReceiver(Responder responder = {}, std::uint16_t port = 0, const std::string& cert = "",
                        const std::string& key = "", const std::string& ipv4 = "127.0.0.1")
      : responder_(std::move(responder)) {
    // OpenSSL writes to the socket with write(2): a client that hung up
    // (the wrong-CA test does) must not kill the test with SIGPIPE.
    ::signal(SIGPIPE, SIG_IGN);
    if (!cert.empty()) {
      tls_ = SSL_CTX_new(TLS_server_method());
      SSL_CTX_use_certificate_chain_file(tls_, cert.c_str());
      SSL_CTX_use_PrivateKey_file(tls_, key.c_str(), SSL_FILETYPE_PEM);
      SSL_CTX_set_alpn_select_cb(tls_, &HttpReceiver::select_alpn, this);
    }
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    ::inet_pton(AF_INET, ipv4.c_str(), &address.sin_addr);
    address.sin_port = htons(port);
    // Said at once: a port taken meanwhile would otherwise become a random
    // one at listen(), and the test time out on a misleading message.
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      const std::string why = std::strerror(errno);
      ::close(listener_);
      if (tls_ != nullptr) SSL_CTX_free(tls_);
      throw std::runtime_error("HttpReceiver: bind " + ipv4 + ":" + std::to_string(port) + ": " + why);
    }
    ::listen(listener_, 128);
    socklen_t length = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~HttpReceiver() {
    stopping_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    acceptor_.join();
    {
      std::lock_guard lock(mutex_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : threads_) t.join();
    for (int fd : fds_) ::close(fd);
    if (tls_ != nullptr) SSL_CTX_free(tls_);
  }

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::string url(const std::string& path = "/") const {
    return std::string(tls_ != nullptr ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + path;
  }
  [[nodiscard]] std::vector<HttpRequest> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  [[nodiscard]] std::size_t connections() const { return connections_; }
  // TLS connections the client ended with close_notify (not just a close).
  [[nodiscard]] std::size_t clean_closes() const { return clean_closes_; }
  // The application protocols each TLS client offered (ALPN), comma
  // separated ("" for none), in the order of their handshakes.
  [[nodiscard]] std::vector<std::string> offered_alpn() const {
    std::lock_guard lock(mutex_);
    return offered_alpn_;
  }
  // Why each TLS handshake that failed here failed, as OpenSSL said it.
  [[nodiscard]] std::vector<std::string> handshake_errors() const {
    std::lock_guard lock(mutex_);
    return handshake_errors_;
  }
  // The one protocol this server speaks, refusing a client that offers
  // others but not it (an HTTP/2-only server: "h2"). Set before any client
  // connects. Unset, it picks http/1.1 when offered.
  void speak_only(std::string protocol) {
    std::lock_guard lock(mutex_);
    only_alpn_ = std::move(protocol);
  }

 private:
  void accept_loop() {
    while (!stopping_) {
      const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      std::lock_guard lock(mutex_);
      fds_.push_back(fd);
      const std::size_t id = connections_++;
      threads_.emplace_back([this, fd, id] { serve(fd, id); });
    }
  }

  static int select_alpn(SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
                         unsigned in_length, void* self) {
    auto& receiver = *static_cast<HttpReceiver*>(self);
    std::lock_guard lock(receiver.mutex_);
    std::string offered;
    const std::string wanted = receiver.only_alpn_.empty() ? "http/1.1" : receiver.only_alpn_;
    int verdict = receiver.only_alpn_.empty() ? SSL_TLSEXT_ERR_NOACK : SSL_TLSEXT_ERR_ALERT_FATAL;
    for (unsigned at = 0; at < in_length; at += 1u + in[at]) {
      const std::string name(reinterpret_cast<const char*>(in + at + 1), std::min<unsigned>(in[at], in_length - at - 1));
      offered += (offered.empty() ? "" : ",") + name;
      if (name == wanted && verdict != SSL_TLSEXT_ERR_OK) {
        *out = in + at + 1;
        *out_length = in[at];
        verdict = SSL_TLSEXT_ERR_OK;
      }
    }
    receiver.offered_alpn_.push_back(offered);
    return verdict;
  }

  void serve(int fd, std::size_t id) {
    SSL* ssl = nullptr;
    if (tls_ != nullptr) {
      ssl = SSL_new(tls_);
      SSL_set_fd(ssl, fd);
      if (SSL_accept(ssl) != 1) {
        char reason[256];
        ERR_error_string_n(ERR_get_error(), reason, sizeof reason);
        ERR_clear_error();
        {
          std::lock_guard lock(mutex_);
          handshake_errors_.emplace_back(reason);
        }
        SSL_free(ssl);
        return close_fd(fd);
      }
    }
    serve_stream(fd, id, ssl);
    if (ssl != nullptr) SSL_free(ssl);
  }

  void serve_stream(int fd, std::size_t id, SSL* ssl) {
    namespace http = boost::beast::http;
    auto receive = [&](char* data, std::size_t size) -> long {
      if (ssl == nullptr) return ::recv(fd, data, size, 0);
      const int n = SSL_read(ssl, data, static_cast<int>(size));
      if (n <= 0 && SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN) ++clean_closes_;
      return n;
    };
    auto send_all = [&](const std::string& text) -> bool {
      if (ssl == nullptr) return ::send(fd, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size());
      return SSL_write(ssl, text.data(), static_cast<int>(text.size())) == static_cast<int>(text.size());
    };
    std::string buffer;
    char chunk[65536];
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(256 << 20);
      parser.eager(true);
      boost::system::error_code ec;
      while (!parser.is_done()) {
        if (!buffer.empty()) {
          const std::size_t used = parser.put(boost::asio::const_buffer(buffer.data(), buffer.size()), ec);
          if (ec == http::error::need_more) ec = {};
          if (ec) return close_fd(fd);
          buffer.erase(0, used);
          if (parser.is_done()) break;
          if (used > 0 && !buffer.empty()) continue;
        }
        const long n = receive(chunk, sizeof chunk);
        if (n <= 0) return close_fd(fd);
        buffer.append(chunk, static_cast<std::size_t>(n));
      }
      HttpRequest request;
      const auto& message = parser.get();
      request.method = std::string(message.method_string());
      request.target = std::string(message.target());
      request.body = message.body();
      request.connection = id;
      for (const auto& field : message) {
        std::string name(field.name_string());
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        // A header sent twice reads as HTTP combines it: "a, b".
        const std::string value(field.value());
        const auto [at, fresh] = request.headers.try_emplace(name, value);
        if (!fresh) at->second.append(", ").append(value);
      }
      std::size_t index;
      {
        std::lock_guard lock(mutex_);
        index = requests_.size();
        requests_.push_back(request);
      }
      const HttpResponse response = responder_ ? responder_(request, index) : HttpResponse{};
      if (response.close_unanswered) return close_fd(fd);
      if (!response.raw.empty() || !response.endless.empty()) {
        if (!response.raw.empty() && !send_all(response.raw)) return close_fd(fd);
        while (!response.endless.empty() && !stopping_.load() && send_all(response.endless)) {
        }
        return close_fd(fd);
      }
      if (response.hang) {
        while (receive(chunk, sizeof chunk) > 0) {
        }
        return close_fd(fd);
      }
      std::string text = response.interim;
      if (response.interim_apart && !text.empty()) {
        if (!send_all(text)) return close_fd(fd);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        text.clear();
      }
      text += "HTTP/1.1 " + std::to_string(response.status) + " X\r\n";
      for (const auto& [name, value] : response.headers) text += name + ": " + value + "\r\n";
      if (response.close) text += "Connection: close\r\n";
      if (response.chunked) {
        const std::string first = response.body.substr(0, response.body.size() / 2);
        const std::string second = response.body.substr(first.size());
        auto as_chunk = [](const std::string& part) {
          char size[32];
          std::snprintf(size, sizeof size, "%zx\r\n", part.size());
          return size + part + "\r\n";
        };
        text += "Transfer-Encoding: chunked\r\n\r\n" + as_chunk(first) + as_chunk(second) + "0\r\n\r\n";
      } else {
        if (response.status != 204 && response.status != 304) {
          text += "Content-Length: " +
                  (response.content_length.empty() ? std::to_string(response.body.size()) : response.content_length) +
                  "\r\n";
        }
        text += "\r\n" + response.body;
      }
      if (response.trickle.count() > 0) {
        const std::size_t piece = (text.size() + 7) / 8;
        for (std::size_t at = 0; at < text.size(); at += piece) {
          if (!send_all(text.substr(at, piece))) return close_fd(fd);
          std::this_thread::sleep_for(response.trickle);
        }
        if (response.close) return close_fd(fd);
        continue;
      }
      if (!send_all(text) || response.close) return close_fd(fd);
      if (response.close_after.count() > 0) {
        std::this_thread::sleep_for(response.close_after);
        return close_fd(fd);
      }
    }
  }
  void close_fd(int fd) {
    ::shutdown(fd, SHUT_RDWR);
  }

  Responder responder_;
  SSL_CTX* tls_ = nullptr;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  mutable std::mutex mutex_;
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
  std::vector<HttpRequest> requests_;
  std::atomic<std::size_t> connections_{0};
  std::atomic<std::size_t> clean_closes_{0};
  std::vector<std::string> offered_alpn_;  // under mutex_
  std::vector<std::string> handshake_errors_;  // under mutex_
  std::string only_alpn_;                  // under mutex_
};

}  // namespace ringroute::testing
