#include "stream.hpp"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <new>

#include "ringroute/perf/block.hpp"
#include "tls.hpp"
#include "uring_loop.hpp"

namespace ringroute::sinks {
namespace {

constexpr std::size_t kTlsChunk = 256 * 1024;  // plaintext encrypted per round
constexpr std::size_t kTlsRecord = 16 * 1024;  // plaintext per encrypt: one TLS record
constexpr std::size_t kCipherReceive = 16 * 1024;
// How long a new TLS 1.3 connection waits for the server's first word
// after the handshake. Servers that take the client send session tickets at
// once; one that refuses it sends an alert about a round trip after our
// last flight. A server that sends neither costs this once per connection.
constexpr std::chrono::milliseconds kConfirmWait{250};

}  // namespace

Stream::Stream() = default;
Stream::~Stream() { close(); }
Stream::Stream(Stream&& other) noexcept { *this = std::move(other); }
// Only between operations: a send in flight reads this object's own iov_
// and message_ (set up afresh for each send, so not carried over).
Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    other.fd_ = -1;
    out_of_descriptors_ = other.out_of_descriptors_;
    tls_ = std::move(other.tls_);
    pieces_[0] = other.pieces_[0];
    pieces_[1] = other.pieces_[1];
    sent_ = other.sent_;
    cipher_sent_ = other.cipher_sent_;
    tls_chunk_ = other.tls_chunk_;
    marks_ = std::move(other.marks_);
    mark_next_ = other.mark_next_;
    tcp_ = other.tcp_;
    cipher_round_ = other.cipher_round_;
    round_chunk_ = other.round_chunk_;
    round_marks_ = std::move(other.round_marks_);
    cipher_in_ = std::move(other.cipher_in_);
    setup_deadline_ = other.setup_deadline_;
    setup_expired_ = other.setup_expired_;
    confirmed_ = other.confirmed_;
    confirming_ = other.confirming_;
  }
  return *this;
}

void Stream::close() noexcept {
  // TLS ends with close_notify (RFC 5425 4.4; receivers otherwise log a
  // truncated session), where no send is under way: sent without waiting,
  // and a peer gone already just does not get it.
  if (tls_ && fd_ >= 0 && sent_ == total()) {
    // Inside the try: outgoing() may move what OpenSSL holds into the
    // buffer, which can throw, and this is noexcept.
    try {
      if (cipher_sent_ == tls_->outgoing().size()) {
        tls_->outgoing().clear();  // sent: cleared lazily, at the next round
        cipher_sent_ = 0;
        const std::string alert = tls_->close_notify();
        if (!alert.empty()) (void)::send(fd_, alert.data(), alert.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      }
    } catch (const std::bad_alloc&) {
      // Closed without it.
    }
  }
  if (fd_ >= 0) {
    // Bytes left unread at the close (TLS 1.3 session tickets that came
    // after the confirm read, a late alert, anything a receiver says) make
    // the kernel reset the connection rather than end it, throwing away
    // what the send queue still holds of batches counted as written: read
    // off first, as far as they go at once. A best effort: bytes that
    // arrive after the close reset it all the same.
    char unread[4096];
    for (int i = 0; i < 16 && ::recv(fd_, unread, sizeof unread, MSG_DONTWAIT) > 0; ++i) {
    }
    ::close(fd_);
  }
  fd_ = -1;
  tls_.reset();
  sent_ = cipher_sent_ = tls_chunk_ = 0;
  marks_.clear();
  mark_next_ = 0;
  cipher_round_ = 0;
  round_chunk_ = false;
  round_marks_.clear();
}

bool Stream::usable_after_idle(int& error) {
  error = 0;
  if (fd_ < 0) return false;
  char buffer[4096];
  if (!tls_) {
    const ssize_t n = ::recv(fd_, buffer, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0) error = errno;
    close();
    return false;
  }
  bool gone = false;
  // Session tickets are a few KB; a peer that sends more while the
  // connection idles sends data nobody asked for, and one that keeps
  // sending must not keep this loop (and the BIO's memory) going.
  constexpr std::size_t kMostIdleBytes = 256 * 1024;
  for (std::size_t taken = 0;;) {
    if (taken > kMostIdleBytes) {
      gone = true;
      break;
    }
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n > 0) {
      tls_->incoming(buffer, static_cast<std::size_t>(n));
      taken += static_cast<std::size_t>(n);
      continue;
    }
    gone = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    if (n < 0 && gone) error = errno;
    break;
  }
  // Session tickets are consumed here and give no plaintext; plaintext or a
  // close_notify means the connection is done.
  if (!gone && tls_->decrypt(buffer, sizeof buffer) != 0) gone = true;
  if (gone) close();
  return !gone;
}

bool Stream::start_connect(UringLoop& loop, const Address& address, std::uint64_t base,
                           std::chrono::milliseconds limit, std::string& why) {
  close();
  out_of_descriptors_ = false;
  fd_ = ::socket(address.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    const int error = errno;
    out_of_descriptors_ = error == EMFILE || error == ENFILE;
    why = std::string("socket: ") + std::strerror(error);
    return false;
  }
  tcp_ = address.family != AF_UNIX;
  if (tcp_) {
    const int one = 1;  // batches are whole already; Nagle would only delay the tail
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  setup_deadline_ = std::chrono::steady_clock::now() + limit;
  setup_expired_ = false;
  loop.connect(fd_, reinterpret_cast<const sockaddr*>(&address.storage), address.length, base + kConnect, limit);
  return true;
}

Stream::Progress Stream::setup_completed(UringLoop& loop, std::uint64_t op, int result, const TlsContext* tls,
                                         std::uint64_t base, std::chrono::milliseconds limit, const std::string& where,
                                         perf::BackendSinkShard* counters, std::string& why) {
  Progress progress = Progress::failed;
  if (op == kConnect && result < 0) {
    why = "connect to " + where + ": " + io_error_text(result);
    if (!tcp_ && result == -ECONNREFUSED) why += unix_refusal_note(where);  // where is the path
  } else {
    if (op == kConnect && tls == nullptr) {
      progress = Progress::ready;
    } else if (op == kConnect) {
      tls_ = std::make_unique<TlsConnection>(*tls);
      cipher_sent_ = 0;
      confirmed_ = confirming_ = false;
      progress = handshake(loop, base, limit, why);
    } else {
      progress = handshake_completed(loop, op, result, base, limit, why);
    }
    if (progress == Progress::failed) why = "TLS handshake with " + where + " failed: " + why;
  }
  if (counters != nullptr && progress == Progress::ready) counters->connects.add(1);
  if (counters != nullptr && progress == Progress::failed) {
    counters->connect_failures.add(1);
    if (result == -ECANCELED || setup_expired_) counters->timeouts.add(1);
  }
  return progress;
}

bool Stream::dial(UringLoop& loop, Dialing& dialing, Dialing::Dial& dial, std::uint64_t base,
                  std::chrono::milliseconds limit, perf::BackendSinkShard* counters, std::string& why) {
  const Address* address = dialing.first(dial, why);
  if (address == nullptr) {
    if (counters != nullptr) counters->connect_failures.add(1);
    return false;
  }
  return start_connect(loop, *address, base, limit, why);
}

Stream::Progress Stream::setup_completed(UringLoop& loop, std::uint64_t op, int result, const TlsContext* tls,
                                         std::uint64_t base, std::chrono::milliseconds limit, const std::string& where,
                                         perf::BackendSinkShard* counters, Dialing& dialing, Dialing::Dial& dial,
                                         std::string& why) {
  const Progress progress = setup_completed(loop, op, result, tls, base, limit, where, counters, why);
  if (progress == Progress::failed && op == kConnect && result < 0) {
    if (const Address* next = dialing.next(dial); next != nullptr) {
      if (start_connect(loop, *next, base, limit, why)) return Progress::pending;
    } else if (dialing.size() > 1) {
      why += " (each of its " + std::to_string(dialing.size()) + " addresses tried)";
    }
  }
  if (progress == Progress::ready) dialing.answered(dial);
  if (progress == Progress::failed) dialing.failed(dial);
  return progress;
}

Stream::Progress Stream::handshake(UringLoop& loop, std::uint64_t base, std::chrono::milliseconds limit,
                                   std::string& why) {
  // Each step gets what is left of the connect limit, not the whole of it.
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(setup_deadline_ - std::chrono::steady_clock::now());
  if (left <= std::chrono::milliseconds(0)) {
    setup_expired_ = true;
    why = "not done within connect_timeout (" + std::to_string(limit.count()) + " ms)";
    return Progress::failed;
  }
  limit = std::min(limit, left);
  switch (tls_->handshake(why)) {
    case TlsConnection::Step::send: {
      const std::string& cipher = tls_->outgoing();
      loop.send(fd_, cipher.data() + cipher_sent_, cipher.size() - cipher_sent_, base + kHandshakeSend, limit);
      return Progress::pending;
    }
    case TlsConnection::Step::receive:
      cipher_in_.resize(kCipherReceive);
      loop.recv(fd_, cipher_in_.data(), cipher_in_.size(), base + kHandshakeReceive, limit);
      return Progress::pending;
    case TlsConnection::Step::done:
      // Under TLS 1.3 the server judges our certificate (or its absence)
      // after our last flight, so a refusal is an alert that comes after a
      // handshake that looked done. A batch sent into that would count as
      // written and be gone: a new connection first waits a moment for
      // what the server says first.
      if (!confirmed_ && tls_->tls13()) {
        confirmed_ = confirming_ = true;
        cipher_in_.resize(kCipherReceive);
        loop.recv(fd_, cipher_in_.data(), cipher_in_.size(), base + kHandshakeReceive, std::min(limit, kConfirmWait));
        return Progress::pending;
      }
      return Progress::ready;
    case TlsConnection::Step::failed: {
      // The alert OpenSSL wrote (unknown CA, bad certificate) tells the
      // server why: sent without waiting, as close_notify is, where it
      // would otherwise log a connection that just ended.
      const std::string& alert = tls_->outgoing();
      if (cipher_sent_ < alert.size()) {
        (void)::send(fd_, alert.data() + cipher_sent_, alert.size() - cipher_sent_, MSG_DONTWAIT | MSG_NOSIGNAL);
      }
      break;
    }
  }
  return Progress::failed;
}

Stream::Progress Stream::confirm_completed(int result, std::string& why) {
  confirming_ = false;
  if (result == -ECANCELED) return Progress::ready;  // nothing came in time: nothing was refused
  if (result <= 0) {
    why = result == 0 ? "the server closed the connection right after the handshake" : io_error_text(result);
  } else {
    tls_->incoming(cipher_in_.data(), static_cast<std::size_t>(result));
    char plain[1];
    const long n = tls_->decrypt(plain, sizeof plain);
    if (n == 0) return Progress::ready;  // session tickets (or part of one)
    why = n < 0 ? "the server ended the session right after the handshake" : "the server spoke before being asked";
  }
  why += " (under TLS 1.3 that is how a server refuses a client certificate: check cert_file, key_file and its CA)";
  return Progress::failed;
}

Stream::Progress Stream::handshake_completed(UringLoop& loop, std::uint64_t op, int result, std::uint64_t base,
                                             std::chrono::milliseconds limit, std::string& why) {
  if (confirming_) return confirm_completed(result, why);
  if (result <= 0) {
    why = io_error_text(result);
    return Progress::failed;
  }
  if (op == kHandshakeSend) {
    cipher_sent_ += static_cast<std::size_t>(result);
    if (cipher_sent_ == tls_->outgoing().size()) {
      tls_->outgoing().clear();
      cipher_sent_ = 0;
    }
  } else {
    tls_->incoming(cipher_in_.data(), static_cast<std::size_t>(result));
  }
  return handshake(loop, base, limit, why);
}

void Stream::begin_send(std::string_view first, std::string_view second) noexcept {
  pieces_[0] = first;
  pieces_[1] = second;
  sent_ = 0;
  tls_chunk_ = 0;
  marks_.clear();
  mark_next_ = 0;
  cipher_round_ = 0;
  round_chunk_ = false;  // the buffer holds the last round's ciphertext, if any
  round_marks_.clear();
}

bool Stream::send_next(UringLoop& loop, std::uint64_t base, std::chrono::milliseconds limit, std::string& why) {
  if (!tls_) {
    std::size_t count = 0;
    if (sent_ < pieces_[0].size()) {
      iov_[count++] = {const_cast<char*>(pieces_[0].data()) + sent_, pieces_[0].size() - sent_};
      if (!pieces_[1].empty()) iov_[count++] = {const_cast<char*>(pieces_[1].data()), pieces_[1].size()};
    } else {
      const std::size_t offset = sent_ - pieces_[0].size();
      iov_[count++] = {const_cast<char*>(pieces_[1].data()) + offset, pieces_[1].size() - offset};
    }
    message_ = {};
    message_.msg_iov = iov_;
    message_.msg_iovlen = count;
    loop.sendmsg(fd_, &message_, base + kSend, limit);
    return true;
  }
  std::string& cipher = tls_->outgoing();
  if (cipher_sent_ == cipher.size()) {
    // The last round's ciphertext is out: encrypt the next stretch.
    if (round_chunk_) cipher_round_ += cipher.size();
    round_chunk_ = true;
    cipher.clear();
    cipher_sent_ = 0;
    tls_chunk_ = 0;
    marks_.clear();
    mark_next_ = 0;
    // A record at a time, marking where each one's ciphertext ends: a
    // record wholly with the kernel counts as sent at once, and one wholly
    // acknowledged as the receiver's (acknowledged()), so a connection
    // failing mid-round sends again from its first record not acknowledged,
    // not the whole round (whose finished records the receiver may have read).
    while (tls_chunk_ < kTlsChunk && sent_ + tls_chunk_ < total()) {
      const std::size_t at = sent_ + tls_chunk_;
      const std::size_t most = std::min(kTlsRecord, kTlsChunk - tls_chunk_);
      const std::string_view piece = at < pieces_[0].size() ? pieces_[0].substr(at, most)
                                                            : pieces_[1].substr(at - pieces_[0].size(), most);
      const std::size_t taken = tls_->encrypt(piece, why);
      if (taken == 0) return false;
      tls_chunk_ += taken;
      marks_.push_back({cipher.size(), sent_ + tls_chunk_});
    }
  }
  loop.send(fd_, cipher.data() + cipher_sent_, cipher.size() - cipher_sent_, base + kSend, limit);
  return true;
}

bool Stream::sent_some(int result) noexcept {
  if (!tls_) {
    sent_ += static_cast<std::size_t>(result);
    return sent_ >= total();
  }
  cipher_sent_ += static_cast<std::size_t>(result);
  // The plaintext of every record now wholly with the kernel.
  while (mark_next_ < marks_.size() && marks_[mark_next_].cipher_end <= cipher_sent_) {
    const Mark& mark = marks_[mark_next_++];
    sent_ = mark.plain_end;
    try {
      round_marks_.push_back({cipher_round_ + mark.cipher_end, mark.plain_end});
    } catch (const std::bad_alloc&) {
      // Unmarked, the record counts as acknowledged with the next one.
    }
  }
  return sent_ >= total();
}

bool Stream::peer_stopped_reading() const noexcept {
  if (fd_ < 0) return false;
  if (!tcp_) return true;
  tcp_info info{};
  socklen_t size = sizeof info;
  if (::getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &info, &size) != 0) return false;
  // One probe may be on its way at any moment (a round trip's worth); a
  // peer gone leaves them unanswered, more with each backoff.
  return info.tcpi_state == TCP_ESTABLISHED && info.tcpi_unacked == 0 && info.tcpi_probes <= 1;
}

std::size_t Stream::acknowledged() const noexcept {
  if (!tcp_ || fd_ < 0) return sent_;
  // Bytes written to the socket and not acknowledged yet, the last ones
  // written (TCP acknowledges in order); a reset socket still says what it
  // had not had acknowledged when it was reset.
  int queued = 0;
  if (::ioctl(fd_, SIOCOUTQ, &queued) != 0 || queued < 0) return 0;  // unknown: none
  const auto unacknowledged = static_cast<std::size_t>(queued);
  if (!tls_) return sent_ > unacknowledged ? sent_ - unacknowledged : 0;
  const std::size_t cipher = cipher_round_ + cipher_sent_;
  if (cipher <= unacknowledged) return 0;
  const std::size_t acknowledged_cipher = cipher - unacknowledged;
  const auto after = std::upper_bound(round_marks_.begin(), round_marks_.end(), acknowledged_cipher,
                                      [](std::size_t bytes, const Mark& mark) { return bytes < mark.cipher_end; });
  return after == round_marks_.begin() ? 0 : std::prev(after)->plain_end;
}

void Stream::receive(UringLoop& loop, std::vector<char>& in, std::size_t used, std::uint64_t base,
                     std::chrono::milliseconds limit) {
  if (tls_) {
    cipher_in_.resize(kCipherReceive);
    loop.recv(fd_, cipher_in_.data(), cipher_in_.size(), base + kReceive, limit);
  } else {
    if (used == in.size()) in.resize(in.size() * 2);
    loop.recv(fd_, in.data() + used, in.size() - used, base + kReceive, limit);
  }
}

std::size_t Stream::read_pending(std::vector<char>& in, std::size_t used, std::size_t most) {
  std::size_t plain = 0;
  while (fd_ >= 0 && plain < most) {
    if (tls_) cipher_in_.resize(kCipherReceive);
    if (!tls_ && used + plain == in.size()) in.resize(in.size() * 2);
    char* const into = tls_ ? cipher_in_.data() : in.data() + used + plain;
    const std::size_t room = tls_ ? cipher_in_.size() : in.size() - used - plain;
    const ssize_t n = ::recv(fd_, into, room, MSG_DONTWAIT);
    if (n <= 0) break;  // nothing more now, the end, or the reset
    const long got = received(static_cast<int>(n), in, used + plain);
    if (got > 0) plain += static_cast<std::size_t>(got);
    else if (got != -EAGAIN) break;  // TLS: the stream ended (a record not yet whole reads on)
  }
  return plain;
}

long Stream::received(int result, std::vector<char>& in, std::size_t used) {
  if (!tls_ || result <= 0) return result;
  tls_->incoming(cipher_in_.data(), static_cast<std::size_t>(result));
  std::size_t plain = 0;
  for (;;) {
    if (used + plain == in.size()) in.resize(in.size() * 2);
    const long n = tls_->decrypt(in.data() + used + plain, in.size() - used - plain);
    if (n > 0) {
      plain += static_cast<std::size_t>(n);
      continue;
    }
    if (plain > 0) return static_cast<long>(plain);
    return n < 0 ? 0 : -EAGAIN;  // close_notify or a broken stream: as EOF
  }
}

}  // namespace ringroute::sinks
