#pragma once
// One client stream connection of a network sink (TCP or a unix stream,
// optionally TLS on top), driven through the sink's UringLoop: connect,
// handshake, send plaintext in up to two pieces, receive. Its operations are
// tagged `base + op`, so a sink runs many at once and routes completions
// back by tag. Internal to ringroute::sinks.

#include <sys/uio.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net.hpp"

namespace ringroute::perf {
struct BackendSinkShard;
}

namespace ringroute::sinks {

class UringLoop;
class TlsContext;
class TlsConnection;

class Stream {
 public:
  enum Op : std::uint64_t { kConnect = 0, kSend = 1, kReceive = 2, kHandshakeSend = 3, kHandshakeReceive = 4 };
  static constexpr std::uint64_t kOps = 8;  // tags per connection
  enum class Progress : std::uint8_t { pending, ready, failed };

  Stream();
  ~Stream();
  Stream(Stream&&) noexcept;
  Stream& operator=(Stream&&) noexcept;

  [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
  [[nodiscard]] bool out_of_descriptors() const noexcept { return out_of_descriptors_; }
  void close() noexcept;
  // Before reusing an idle connection: false (and closed) when the peer
  // left it meanwhile (EOF, reset, TLS close_notify) or sent something
  // unasked, which neither syslog receivers nor HTTP servers do between
  // responses. TLS 1.3 session tickets are read and let go (sessions are
  // not resumed: each connection makes a full handshake). `error`: the
  // errno a receive found (ECONNRESET), 0 for the other ends.
  bool usable_after_idle(int& error);

  // Creates the socket and submits the connect; false with `why`.
  // out_of_descriptors() then says whether the process (or system) had no
  // file descriptor left for it: a limit of ours, not a failing destination.
  bool start_connect(UringLoop& loop, const Address& address, std::uint64_t base, std::chrono::milliseconds limit,
                     std::string& why);
  // Connects to `dialing`'s first address for this connection (`dial`);
  // false with `why` when the name does not resolve (counted as a connect
  // failure) or no socket can be made.
  bool dial(UringLoop& loop, Dialing& dialing, Dialing::Dial& dial, std::uint64_t base,
            std::chrono::milliseconds limit, perf::BackendSinkShard* counters, std::string& why);
  // A connect or TLS handshake operation completed with `result`: `ready`
  // once connected (and, with `tls`, the handshake done), `pending` while the
  // handshake goes on (or the connect failed and the host's next address is
  // dialled), `failed` with `why` naming `where`; where the setup ended,
  // `dialing` is told whether it got through. Connects, connect failures and
  // timeouts are counted in `counters` (may be null).
  Progress setup_completed(UringLoop& loop, std::uint64_t op, int result, const TlsContext* tls, std::uint64_t base,
                           std::chrono::milliseconds limit, const std::string& where,
                           perf::BackendSinkShard* counters, Dialing& dialing, Dialing::Dial& dial, std::string& why);

  // Plaintext to send next, in up to two pieces (an HTTP head and body).
  void begin_send(std::string_view first, std::string_view second = {}) noexcept;
  // Submits the next send; false with `why` when TLS can't encrypt.
  bool send_next(UringLoop& loop, std::uint64_t base, std::chrono::milliseconds limit, std::string& why);
  // A send completed with `result` > 0; true when everything was sent.
  bool sent_some(int result) noexcept;
  // Plaintext bytes wholly handed to the kernel (for TLS: their records too).
  [[nodiscard]] std::size_t sent() const noexcept { return sent_; }
  // Of those, the bytes the peer has: over TCP, what its TCP acknowledged
  // (our send queue holds the rest, SIOCOUTQ; a reset throws that away,
  // and a close leaves it to a peer that may never read again); for TLS,
  // the plaintext of the records wholly acknowledged. A unix socket's
  // kernel puts what it takes in the peer's own queue: sent().
  [[nodiscard]] std::size_t acknowledged() const noexcept;
  // After a send timed out: whether the peer is there and just not reading.
  // Over TCP, the connection is established with every segment sent
  // acknowledged and its window probes answered (the rest waits in our
  // queue for the peer's window to open); a peer gone leaves segments or
  // probes unanswered. A unix socket's peer that went would have reset it.
  [[nodiscard]] bool peer_stopped_reading() const noexcept;

  // Submits a receive; plaintext lands in `in` after `used` bytes.
  void receive(UringLoop& loop, std::vector<char>& in, std::size_t used, std::uint64_t base,
               std::chrono::milliseconds limit);
  // A receive completed with `result`: plaintext bytes now in `in` after
  // `used` (> 0), 0 when the peer closed, -EAGAIN when more must be
  // received first (receive() again), other -errno as the syscall's.
  long received(int result, std::vector<char>& in, std::size_t used);
  // What the peer sent that no receive has asked for yet, read now without
  // waiting (at most `most` plaintext bytes past `used`): plaintext bytes
  // appended to `in` after `used`, 0 when there are none.
  std::size_t read_pending(std::vector<char>& in, std::size_t used, std::size_t most);

 private:
  // One setup step, without the next address: see the public overload.
  Progress setup_completed(UringLoop& loop, std::uint64_t op, int result, const TlsContext* tls, std::uint64_t base,
                           std::chrono::milliseconds limit, const std::string& where,
                           perf::BackendSinkShard* counters, std::string& why);
  Progress handshake(UringLoop& loop, std::uint64_t base, std::chrono::milliseconds limit, std::string& why);
  Progress handshake_completed(UringLoop& loop, std::uint64_t op, int result, std::uint64_t base,
                               std::chrono::milliseconds limit, std::string& why);
  Progress confirm_completed(int result, std::string& why);
  [[nodiscard]] std::size_t total() const noexcept { return pieces_[0].size() + pieces_[1].size(); }

  int fd_ = -1;
  bool out_of_descriptors_ = false;  // the last start_connect() found none left
  std::unique_ptr<TlsConnection> tls_;
  std::string_view pieces_[2];
  std::size_t sent_ = 0;
  // TLS: ciphertext of the current round sent so far, and the plaintext it carries.
  std::size_t cipher_sent_ = 0, tls_chunk_ = 0;
  // TLS: where each record of the round ends, in ciphertext and in plaintext.
  struct Mark {
    std::size_t cipher_end, plain_end;
  };
  std::vector<Mark> marks_;
  std::size_t mark_next_ = 0;
  bool tcp_ = false;  // not a unix socket: acknowledged() asks the send queue
  // TLS, for acknowledged(): the ciphertext of this round's earlier chunks
  // (all sent), whether the chunk now in the buffer is this round's, and
  // where each record of the round wholly sent ends, its ciphertext
  // counted from the round's start.
  std::size_t cipher_round_ = 0;
  bool round_chunk_ = false;
  std::vector<Mark> round_marks_;
  std::vector<char> cipher_in_;
  // Connect and TLS handshake together take at most the connect limit: a
  // peer that answers each handshake read just in time could otherwise
  // keep the setup (and the sink thread's write) going for hours.
  std::chrono::steady_clock::time_point setup_deadline_{};
  bool setup_expired_ = false;
  // TLS 1.3: after the handshake, one short receive for what the server
  // says first (session tickets, or an alert refusing our certificate).
  bool confirmed_ = false, confirming_ = false;
  iovec iov_[2]{};
  msghdr message_{};
};

}  // namespace ringroute::sinks
