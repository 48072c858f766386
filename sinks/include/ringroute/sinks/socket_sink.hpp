#pragma once
// The socket sink (`type: "socket"`): syslog or NDJSON over TCP, UDP, unix
// stream and unix datagram sockets, all through the sink thread's io_uring.
//
// Streams: the batch's bytes (already framed by the router's encoder: RFC
// 6587 octet counting or newlines) go out on one connection while one keeps
// up; when it spends more than half its time waiting on sends (measured over
// windows of kWindow), it opens another (up to `max_connections`) and splits later batches between them at event
// boundaries. Order holds on each connection; `max_connections: 1` keeps
// total order. A connection that fails is closed; the events of its part
// whose bytes the receiver's TCP had not acknowledged are sent again (the
// receiver may see a cut frame, and events the close still got through
// twice). A write that ends `ok` counts what the kernel took as written:
// stream sockets carry no acknowledgement of their own, so a receiver that
// dies with data in its buffers, or a reset with our send queue full,
// loses it. Over TLS what was acknowledged is counted per record (16 KiB
// of plaintext).
//
// syslog+tls: OpenSSL over memory BIOs, its ciphertext moved by the same
// io_uring; the certificate is always verified (against `ca_file`, `ca_path` or the
// system store, for `server_name` or the URL's host); a client certificate
// is optional. A failed handshake is a connect failure, retried.
//
// Datagrams: one event per datagram, cut to `max_datagram_bytes` (counted as
// truncated), sent without blocking in linked chains so they leave in order.
// A full receiver buffer (EAGAIN) or a refused port is retried from the first
// datagram that did not go.

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ringroute/sinks/connection_demand.hpp"
#include "ringroute/sinks/sink.hpp"
#include "ringroute/sinks/tls_options.hpp"

namespace ringroute::sinks {

struct SocketSinkOptions {
  std::string url;
  std::uint32_t max_connections = 40;
  // rsyslog's default message size limit (its maxMessageSize: 8096 bytes in
  // Debian 12's 8.2302, not 8192), so the cut is ours, counted.
  std::uint32_t max_datagram_bytes = 8096;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{10000};  // a send that makes no progress this long fails the connection
  bool strip_newline = false;                // datagrams of NDJSON lines: the datagram is the frame
  TlsOptions tls;                            // syslog+tls
};

class UringLoop;
class TlsContext;

class SocketSink final : public Sink {
 public:
  // Throws std::runtime_error for a URL it can't use or an io_uring refused.
  explicit SocketSink(SocketSinkOptions options);
  ~SocketSink() override;

  Outcome write(const Batch& batch, std::string& why) override;
  void tick(std::chrono::steady_clock::time_point now) override;
  // SIGHUP: TLS files read again for the connections made from now on.
  void reopen() override;
  // After a write cut short by a stop (or between two tries): the events
  // the receiver has whole (streams: over TCP, acknowledged by its TCP) or
  // sent (datagrams), which a successor leaves out. A stream's event cut
  // midway goes again whole.
  [[nodiscard]] std::uint32_t delivered_events() const noexcept override;
  void delivered_ranges(std::vector<std::pair<std::uint32_t, std::uint32_t>>& out) const override;

  // Connections open now (streams), for tests and stat.
  [[nodiscard]] std::size_t open_connections() const noexcept;

  static constexpr std::chrono::milliseconds kWindow = ConnectionDemand::kWindow;

 private:
  struct Connection;
  enum class Kind : std::uint8_t { tcp, tls, unix_stream, udp, unix_datagram };

  [[nodiscard]] bool datagrams() const noexcept { return kind_ == Kind::udp || kind_ == Kind::unix_datagram; }
  Outcome write_stream(const Batch& batch, std::string& why);
  Outcome write_datagrams(const Batch& batch, std::string& why);
  // Waits until `until` for room to send on the datagram socket: 0 once
  // there is, -EAGAIN when there was none by then, or the socket's error
  // as a negative errno; throws WriteInterrupted on a stop.
  int wait_writable(std::chrono::steady_clock::time_point until);
  bool open_datagram_socket(std::string& why);
  // A new batch starts its pending ranges over; a retried one keeps them.
  void start_batch(const Batch& batch);
  // Calls f(first, last) for each range of the batch's events not yet
  // delivered, in no order; the ranges are disjoint.
  template <class F>
  void for_each_undelivered(F&& f) const;

  SocketSinkOptions options_;
  Kind kind_;
  std::string host_, path_;
  std::uint16_t port_ = 514;
  std::string where_;  // "127.0.0.1:514" or the path, for messages
  std::unique_ptr<UringLoop> loop_;
  std::size_t address_pick_ = 0;  // which of the host's addresses a write dials first (see Dialing)
  // Set while write() runs: still set at the next call, the last one ended
  // in an exception; its connections and ring are dropped (the batch's
  // parts are all sent again: what had gone may arrive twice).
  bool writing_ = false;
  std::unique_ptr<TlsContext> tls_;
  std::vector<Connection> connections_;
  ConnectionDemand demand_;  // how many connections batches are split between
  // The batch in progress: its identity, and the event ranges not yet sent.
  std::uint64_t batch_first_ = ~0ull, batch_end_ = ~0ull;
  std::uint32_t batch_ring_ = ~0u;
  std::uint32_t batch_events_ = 0;
  std::vector<std::pair<std::size_t, std::size_t>> pending_;
  // While a stream write runs: the parts failed so far (to go again), and
  // the first part of pending_ no connection has begun.
  std::vector<std::pair<std::size_t, std::size_t>> next_pending_;
  std::size_t next_part_ = 0;
  int datagram_fd_ = -1;
  std::size_t datagram_next_ = 0;  // first event not yet sent as a datagram
  // NDJSON events over max_datagram_bytes are not sent (a cut line would
  // not parse): events before `datagram_judged_` are in rejected_ranges_
  // once, however many attempts the batch takes.
  std::size_t datagram_judged_ = 0;
  // Whether an event's datagram can go (whole, or cut: NDJSON can't be,
  // nor a syslog message whose header alone is over the limit), and the
  // bytes that go: cut in MSG, or without the STRUCTURED-DATA where it
  // would be cut (built in `scratch`).
  [[nodiscard]] bool sendable(std::string_view datagram) const;
  [[nodiscard]] std::string_view fitted(std::string_view datagram, std::string& scratch) const;
  // Datagrams sent in one linked chain, at most.
  static constexpr std::size_t kDatagramChain = 64;
  std::array<std::string, kDatagramChain> cut_messages_;  // one per datagram of a chain in flight
};

}  // namespace ringroute::sinks
