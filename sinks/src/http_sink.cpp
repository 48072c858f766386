#include "ringroute/sinks/http_sink.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <optional>
#include <stdexcept>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "net.hpp"
#include "tls.hpp"
#include "ringroute/perf/block.hpp"
#include "uring_loop.hpp"

namespace ringroute::sinks {
namespace http = boost::beast::http;

namespace {

constexpr std::uint64_t kConnectOp = 0, kSendOp = 1, kReceiveOp = 2, kHandshakeSendOp = 3, kHandshakeReceiveOp = 4;
constexpr std::uint64_t kOps = 8;  // tag = connection * kOps + op
constexpr std::size_t kTlsChunk = 256 * 1024;  // plaintext encrypted per round
constexpr std::size_t kReceiveChunk = 16 * 1024;
constexpr std::size_t kLoggedBodyBytes = 200;

std::string error_text(int negative_errno) {
  if (negative_errno == -ECANCELED) return "timed out";
  if (negative_errno == 0) return "connection closed by the server";
  return std::strerror(-negative_errno);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// Retry-After: delay-seconds or an HTTP-date (RFC 9110 10.2.3).
std::chrono::milliseconds parse_retry_after(std::string_view value) {
  unsigned seconds = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec == std::errc() && end == value.data() + value.size()) return std::chrono::seconds(std::min(seconds, 3600u));
  std::tm tm{};
  const std::string text(value);
  if (::strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm) != nullptr) {
    const std::time_t at = ::timegm(&tm);
    const std::time_t now = std::time(nullptr);
    if (at > now) return std::chrono::seconds(std::min<std::time_t>(at - now, 3600));
  }
  return std::chrono::milliseconds(0);
}

// What we log of a body: its first bytes, control bytes shown as '.'.
std::string body_excerpt(std::string_view body) {
  std::string out(body.substr(0, kLoggedBodyBytes));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 32) c = '.';
  }
  if (body.size() > kLoggedBodyBytes) out += "...";
  return out;
}

bool gzip(std::string_view in, std::string& out) {
  z_stream z{};
  // 15 + 16: a gzip wrapper, not zlib's. Level 1: the body is cheap to
  // compress well (JSON), and the sink thread's time is the bottleneck.
  if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
  out.resize(deflateBound(&z, in.size()) + 32);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return rc == Z_STREAM_END;
}

}  // namespace

struct HttpSink::Connection {
  int fd = -1;
  bool busy = false;
  std::size_t request = 0;
  std::string head;
  std::string body_buffer;  // array or gzip bodies; NDJSON goes from the batch itself
  std::string gzip_buffer;
  std::string_view body;
  std::size_t sent = 0;
  iovec iov[2]{};
  msghdr message{};
  std::vector<char> in = std::vector<char>(kReceiveChunk);
  std::size_t in_used = 0;  // unparsed bytes at the front of `in`
  std::optional<http::response_parser<http::string_body>> parser;
  // https: the session, its ciphertext sent so far, the plaintext that
  // ciphertext carries, and ciphertext received.
  std::unique_ptr<TlsConnection> tls;
  std::size_t cipher_sent = 0, tls_chunk = 0;
  std::vector<char> cipher_in = std::vector<char>(kReceiveChunk);
};

HttpSink::HttpSink(HttpSinkOptions options) : options_(std::move(options)) {
  std::string why;
  const auto url = parse_url(options_.url, why);
  if (!url) throw std::runtime_error("http sink: " + why);
  if (url->scheme == "https") port_ = 443;
  if (url->scheme != "http" && url->scheme != "https") throw std::runtime_error("http sink: unknown URL scheme \"" + url->scheme + "\"");
  host_ = url->host;
  if (url->port != 0) port_ = url->port;
  const std::string bracketed = host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_;
  const std::uint16_t default_port = url->scheme == "https" ? 443 : 80;
  host_header_ = url->port != 0 && url->port != default_port ? bracketed + ":" + std::to_string(port_) : bracketed;
  where_ = url->scheme + "://" + bracketed + ":" + std::to_string(port_);
  if (url->scheme == "https") {
    try {
      tls_ = std::make_unique<TlsContext>(
          TlsOptions{options_.ca_file, options_.cert_file, options_.key_file, options_.server_name}, host_);
    } catch (const std::exception& e) {
      throw std::runtime_error("http sink " + where_ + ": " + e.what());
    }
  }
  target_ = url->path;
  for (char& c : options_.method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  bool user_authorization = false;
  for (const auto& [name, value] : options_.headers) {
    if (name.empty() || name.find_first_of(":\r\n \t") != std::string::npos) {
      throw std::runtime_error("http sink: header name \"" + name + "\" is not a token");
    }
    if (value.find_first_of("\r\n") != std::string::npos) {
      throw std::runtime_error("http sink: header " + name + " has a line break in its value");
    }
    if (iequals(name, "Content-Type")) user_content_type_ = true;
    if (iequals(name, "Authorization")) user_authorization = true;
    if (iequals(name, "Content-Length") || iequals(name, "Host") || iequals(name, "Transfer-Encoding")) {
      throw std::runtime_error("http sink: header " + name + " is set by the sink itself");
    }
  }
  if (url->has_userinfo && !user_authorization) {
    authorization_ = "Basic " + base64(url->user + ":" + url->password);
  }
  if (options_.max_connections == 0) options_.max_connections = 1;
  if (options_.max_events == 0) options_.max_events = 1;
  loop_ = std::make_unique<UringLoop>("http sink " + where_, 256);
}

HttpSink::~HttpSink() {
  for (auto& c : connections_) close_connection(*c);
}

void HttpSink::close_connection(Connection& c) noexcept {
  if (c.fd >= 0) ::close(c.fd);
  c.fd = -1;
  c.busy = false;
  c.in_used = 0;
  c.parser.reset();
  c.tls.reset();
  c.cipher_sent = c.tls_chunk = 0;
}

void HttpSink::plan_requests(const Batch& batch) {
  if (batch.ring == batch_ring_ && batch.first_start == batch_first_ && batch.end == batch_end_) return;
  batch_ring_ = batch.ring;
  batch_first_ = batch.first_start;
  batch_end_ = batch.end;
  requests_.clear();
  reject_why_.clear();
  const std::uint32_t events = batch.events;
  std::uint32_t first = 0;
  while (first < events) {
    std::uint32_t last = first + 1;
    if (options_.batched) {
      // Never splits an event; an event over max_bytes goes alone.
      const std::uint32_t base = first == 0 ? 0 : batch.event_ends[first - 1];
      while (last < events && last - first < options_.max_events &&
             batch.event_ends[last] - base <= options_.max_bytes) {
        ++last;
      }
    }
    requests_.push_back({first, last});
    first = last;
  }
}

void HttpSink::build(Connection& c, const Batch& batch, const Request& request) {
  std::string_view body = batch.events_bytes(request.first, request.last);
  const bool single = !options_.batched;
  if (single || options_.json_array) {
    // One event: its document without the newline. An array: the documents
    // joined by commas.
    c.body_buffer.clear();
    if (!single) c.body_buffer.push_back('[');
    for (std::uint32_t e = request.first; e < request.last; ++e) {
      std::string_view document = batch.events_bytes(e, e + 1);
      if (!document.empty() && document.back() == '\n') document.remove_suffix(1);
      if (e != request.first) c.body_buffer.push_back(',');
      c.body_buffer.append(document);
    }
    if (!single) c.body_buffer.push_back(']');
    body = c.body_buffer;
  }
  if (options_.gzip && gzip(body, c.gzip_buffer)) body = c.gzip_buffer;
  c.body = body;
  std::string& h = c.head;
  h.clear();
  h.append(options_.method).append(" ").append(target_).append(" HTTP/1.1\r\nHost: ").append(host_header_);
  h.append("\r\nUser-Agent: ringroute\r\n");
  if (!user_content_type_) {
    h.append(single || options_.json_array ? "Content-Type: application/json\r\n"
                                           : "Content-Type: application/x-ndjson\r\n");
  }
  if (options_.gzip && body.data() == c.gzip_buffer.data()) h.append("Content-Encoding: gzip\r\n");
  if (!authorization_.empty()) h.append("Authorization: ").append(authorization_).append("\r\n");
  for (const auto& [name, value] : options_.headers) h.append(name).append(": ").append(value).append("\r\n");
  h.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n\r\n");
  c.sent = 0;
}

Outcome HttpSink::write(const Batch& batch, std::string& why) {
  rejected_events_ = 0;
  retry_after_ = std::chrono::milliseconds(0);
  plan_requests(batch);
  std::size_t next = 0;  // first request to look at for dispatch
  std::string retry_why;
  std::string& reject_why = reject_why_;
  bool stop_dispatch = false;
  std::optional<Address> address;

  while (connections_.size() < options_.max_connections) connections_.push_back(std::make_unique<Connection>());

  auto fail = [&](std::size_t index, const std::string& what) {
    Connection& c = *connections_[index];
    if (c.busy) requests_[c.request].state = Request::State::pending;
    if (retry_why.empty()) retry_why = what;
    close_connection(c);
    stop_dispatch = true;
  };
  auto send_next = [&](std::size_t index) {
    Connection& c = *connections_[index];
    if (c.tls) {
      std::string& cipher = c.tls->outgoing();
      if (c.cipher_sent == cipher.size()) {
        // All ciphertext out: encrypt the next stretch of head and body.
        cipher.clear();
        c.cipher_sent = 0;
        c.tls_chunk = 0;
        const std::size_t total = c.head.size() + c.body.size();
        while (c.tls_chunk < kTlsChunk && c.sent + c.tls_chunk < total) {
          const std::size_t at = c.sent + c.tls_chunk;
          const std::string_view piece = at < c.head.size()
                                             ? std::string_view(c.head).substr(at)
                                             : c.body.substr(at - c.head.size(), kTlsChunk - c.tls_chunk);
          std::string reason;
          const std::size_t taken = c.tls->encrypt(piece, reason);
          if (taken == 0) {
            fail(index, reason);
            return;
          }
          c.tls_chunk += taken;
        }
      }
      loop_->send(c.fd, cipher.data() + c.cipher_sent, cipher.size() - c.cipher_sent, index * kOps + kSendOp,
                  options_.timeout);
      return;
    }
    std::size_t iovs = 0;
    if (c.sent < c.head.size()) {
      c.iov[iovs++] = {c.head.data() + c.sent, c.head.size() - c.sent};
      if (!c.body.empty()) c.iov[iovs++] = {const_cast<char*>(c.body.data()), c.body.size()};
    } else {
      const std::size_t offset = c.sent - c.head.size();
      c.iov[iovs++] = {const_cast<char*>(c.body.data()) + offset, c.body.size() - offset};
    }
    c.message = {};
    c.message.msg_iov = c.iov;
    c.message.msg_iovlen = iovs;
    loop_->sendmsg(c.fd, &c.message, index * kOps + kSendOp, options_.timeout);
  };
  auto receive_next = [&](std::size_t index) {
    Connection& c = *connections_[index];
    if (c.tls) {
      loop_->recv(c.fd, c.cipher_in.data(), c.cipher_in.size(), index * kOps + kReceiveOp, options_.timeout);
    } else {
      loop_->recv(c.fd, c.in.data() + c.in_used, c.in.size() - c.in_used, index * kOps + kReceiveOp,
                  options_.timeout);
    }
  };
  auto handshake = [&](std::size_t index) {
    Connection& c = *connections_[index];
    std::string reason;
    switch (c.tls->handshake(reason)) {
      case TlsConnection::Step::send: {
        const std::string& cipher = c.tls->outgoing();
        loop_->send(c.fd, cipher.data() + c.cipher_sent, cipher.size() - c.cipher_sent,
                    index * kOps + kHandshakeSendOp, options_.connect_timeout);
        return;
      }
      case TlsConnection::Step::receive:
        loop_->recv(c.fd, c.cipher_in.data(), c.cipher_in.size(), index * kOps + kHandshakeReceiveOp,
                    options_.connect_timeout);
        return;
      case TlsConnection::Step::done:
        if (counters_) counters_->connects.add(1);
        send_next(index);
        return;
      case TlsConnection::Step::failed:
        if (counters_) counters_->connect_failures.add(1);
        fail(index, "TLS handshake with " + where_ + " failed: " + reason);
        return;
    }
  };
  // Gives an idle connection the next pending request; false when none is left.
  auto dispatch = [&](std::size_t index) -> bool {
    if (stop_dispatch) return false;
    while (next < requests_.size() && requests_[next].state != Request::State::pending) ++next;
    if (next >= requests_.size()) return false;
    Connection& c = *connections_[index];
    c.request = next;
    requests_[next].state = Request::State::sending;
    c.busy = true;
    build(c, batch, requests_[next]);
    if (c.fd >= 0 && !c.tls) {
      // A keep-alive connection the server closed while idle is readable
      // (EOF): a server never sends between responses.
      char byte;
      const ssize_t n = ::recv(c.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) close_connection(c);
    } else if (c.fd >= 0) {
      // Over TLS an idle server may still send session tickets; what else
      // waits (close_notify, EOF, stray bytes) ends the connection.
      char buffer[4096];
      bool gone = false;
      for (;;) {
        const ssize_t n = ::recv(c.fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (n > 0) {
          c.tls->incoming(buffer, static_cast<std::size_t>(n));
          continue;
        }
        gone = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
        break;
      }
      if (!gone && c.tls->decrypt(buffer, sizeof buffer) != 0) gone = true;
      if (gone) close_connection(c);
    }
    c.busy = true;
    c.parser.emplace();
    c.in_used = 0;
    c.parser->body_limit(1 << 20);
    c.parser->eager(true);

    if (c.fd >= 0) {
      send_next(index);
      return true;
    }
    std::string reason;
    if (!address) address = resolve(host_, port_, SOCK_STREAM, reason);
    if (!address) {
      if (counters_) counters_->connect_failures.add(1);
      fail(index, reason);
      return false;
    }
    c.fd = ::socket(address->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      fail(index, std::string("socket: ") + std::strerror(errno));
      return false;
    }
    const int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    loop_->connect(c.fd, reinterpret_cast<const sockaddr*>(&address->storage), address->length,
                   index * kOps + kConnectOp, options_.connect_timeout);
    return true;
  };
  auto finish_response = [&](std::size_t index) {
    Connection& c = *connections_[index];
    const auto& response = c.parser->get();
    const unsigned status = response.result_int();
    Request& request = requests_[c.request];
    if (status >= 200 && status < 300) {
      request.state = Request::State::done;
    } else if (status == 429 || status >= 500) {
      request.state = Request::State::pending;
      if (retry_why.empty()) {
        retry_why = "HTTP " + std::to_string(status) + " from " + where_ + ": " + body_excerpt(response.body());
      }
      const auto after = response.find(http::field::retry_after);
      if (after != response.end()) retry_after_ = std::max(retry_after_, parse_retry_after(std::string_view(after->value().data(), after->value().size())));
      stop_dispatch = true;
    } else {
      request.state = Request::State::rejected;
      if (reject_why.empty()) {
        reject_why = "HTTP " + std::to_string(status) + " from " + where_;
        if (status >= 300 && status < 400) {
          const auto location = response.find(http::field::location);
          reject_why += " (redirects are not followed";
          if (location != response.end()) reject_why += "; Location: " + std::string(location->value().data(), location->value().size());
          reject_why += ")";
        } else {
          reject_why += ": " + body_excerpt(response.body());
        }
      }
    }
    const bool keep = response.keep_alive();
    c.busy = false;
    c.parser.reset();
    if (!keep) close_connection(c);
    dispatch(index);
  };

  for (std::size_t i = 0; i < connections_.size(); ++i) {
    if (!dispatch(i)) break;
  }
  loop_->run([&](std::uint64_t tag, int result) {
    const std::size_t index = tag / kOps;
    Connection& c = *connections_[index];
    switch (tag % kOps) {
      case kConnectOp:
        if (result < 0) {
          if (counters_) {
            counters_->connect_failures.add(1);
            if (result == -ECANCELED) counters_->timeouts.add(1);
          }
          fail(index, "connect to " + where_ + ": " + error_text(result));
          return;
        }
        if (tls_) {
          c.tls = std::make_unique<TlsConnection>(*tls_);
          handshake(index);
          return;
        }
        if (counters_) counters_->connects.add(1);
        send_next(index);
        return;
      case kHandshakeSendOp:
      case kHandshakeReceiveOp:
        if (result <= 0) {
          if (counters_) {
            counters_->connect_failures.add(1);
            if (result == -ECANCELED) counters_->timeouts.add(1);
          }
          fail(index, "TLS handshake with " + where_ + " failed: " + error_text(result));
          return;
        }
        if (tag % kOps == kHandshakeSendOp) {
          c.cipher_sent += static_cast<std::size_t>(result);
          if (c.cipher_sent == c.tls->outgoing().size()) {
            c.tls->outgoing().clear();
            c.cipher_sent = 0;
          }
        } else {
          c.tls->incoming(c.cipher_in.data(), static_cast<std::size_t>(result));
        }
        handshake(index);
        return;
      case kSendOp:
        if (result <= 0) {
          if (result == -ECANCELED && counters_) counters_->timeouts.add(1);
          fail(index, "send to " + where_ + ": " + error_text(result));
          return;
        }
        if (c.tls) {
          c.cipher_sent += static_cast<std::size_t>(result);
          if (c.cipher_sent < c.tls->outgoing().size()) {
            send_next(index);
            return;
          }
          c.sent += c.tls_chunk;  // that plaintext is wholly with the kernel now
          c.tls_chunk = 0;
        } else {
          c.sent += static_cast<std::size_t>(result);
        }
        if (c.sent < c.head.size() + c.body.size()) {
          send_next(index);
        } else {
          receive_next(index);
        }
        return;
      default: {
        boost::system::error_code ec;
        if (c.tls && result > 0) {
          // Ciphertext in, plaintext out to where the parser reads.
          c.tls->incoming(c.cipher_in.data(), static_cast<std::size_t>(result));
          std::size_t plain = 0;
          for (;;) {
            if (c.in_used + plain == c.in.size()) c.in.resize(c.in.size() * 2);
            const long n = c.tls->decrypt(c.in.data() + c.in_used + plain, c.in.size() - c.in_used - plain);
            if (n > 0) {
              plain += static_cast<std::size_t>(n);
              continue;
            }
            if (n < 0 && plain == 0) result = 0;  // close_notify or a broken stream: as EOF
            break;
          }
          if (result != 0) {
            if (plain == 0) {
              receive_next(index);  // a record not yet whole, or only a session ticket
              return;
            }
            result = static_cast<int>(plain);
          }
        }
        if (result <= 0) {
          if (result == 0 && c.parser->need_eof()) {
            c.parser->put_eof(ec);
            if (!ec && c.parser->is_done()) {
              finish_response(index);
              return;
            }
          }
          if (result == -ECANCELED && counters_) counters_->timeouts.add(1);
          fail(index, "waiting for the response from " + where_ + ": " +
                          (result == -ECANCELED ? "no response within " + std::to_string(options_.timeout.count()) + " ms"
                                                : error_text(result)));
          return;
        }
        // Bytes Beast could not use yet (a header cut between reads) wait at
        // the front of `in` and are offered again with what follows.
        const std::size_t size = c.in_used + static_cast<std::size_t>(result);
        std::size_t offset = 0;
        while (offset < size && !c.parser->is_done()) {
          const std::size_t used =
              c.parser->put(boost::asio::const_buffer(c.in.data() + offset, size - offset), ec);
          if (ec == http::error::need_more) ec = {};
          if (ec) {
            fail(index, "bad response from " + where_ + ": " + ec.message());
            return;
          }
          if (used == 0) break;
          offset += used;
        }
        c.in_used = 0;
        if (c.parser->is_done()) {
          finish_response(index);
          return;
        }
        if (offset < size) {
          std::memmove(c.in.data(), c.in.data() + offset, size - offset);
          c.in_used = size - offset;
          if (c.in_used == c.in.size()) c.in.resize(c.in.size() * 2);
        }
        receive_next(index);
        return;
      }
    }
  });
  bool all_resolved = true;
  std::uint32_t rejected = 0;
  for (const Request& r : requests_) {
    if (r.state == Request::State::pending || r.state == Request::State::sending) all_resolved = false;
    if (r.state == Request::State::rejected) rejected += r.last - r.first;
  }
  rejected_events_ = rejected;
  if (!all_resolved) {
    why = retry_why.empty() ? "requests to " + where_ + " did not finish" : retry_why;
    if (!reject_why.empty()) why += "; also " + reject_why;
    return Outcome::retry;
  }
  if (rejected > 0) why = reject_why;
  return Outcome::ok;
}

}  // namespace ringroute::sinks
