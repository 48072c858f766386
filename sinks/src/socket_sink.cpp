#include "ringroute/sinks/socket_sink.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string_view>

#include "net.hpp"
#include "stream.hpp"
#include "tls.hpp"
#include "ringroute/perf/block.hpp"
#include "uring_loop.hpp"

namespace ringroute::sinks {
namespace {

using Clock = std::chrono::steady_clock;


// Where the encoder's syslog message (RFC 5424) has its STRUCTURED-DATA and
// its MSG: past six header fields, each ending in a space (no field holds
// one: the encoder writes bytes outside 33-126 as '_'), then "-" or SD
// elements, whose PARAM-VALUEs escape '"', '\\' and ']', then a space.
// Nothing for any other message: an RFC 3164 one ("<PRI>Mmm ...", no
// version) has no such fields, and counting its spaces would land in MSG.
struct SyslogParts {
  std::size_t sd_begin, msg_begin;
};

// Where a syslog message's "<PRI>" closes (its '>'), or npos where it does
// not start with one.
std::size_t pri_close(std::string_view message) {
  const std::size_t close = message.find('>');
  return message.empty() || message[0] != '<' || close > 4 ? std::string_view::npos : close;
}

std::optional<SyslogParts> syslog_parts(std::string_view message) {
  const std::size_t close = pri_close(message);
  if (close == std::string_view::npos || message.substr(close + 1, 2) != "1 ") return std::nullopt;
  std::size_t at = 0;
  for (int field = 0; field < 6; ++field) {
    at = message.find(' ', at);
    if (at == std::string_view::npos) return std::nullopt;
    ++at;
  }
  const std::size_t sd_begin = at;
  if (at < message.size() && message[at] == '-') {
    ++at;
  } else {
    while (at < message.size() && message[at] == '[') {
      bool in_value = false;
      for (++at; at < message.size(); ++at) {
        const char c = message[at];
        if (in_value && c == '\\') {
          ++at;
        } else if (c == '"') {
          in_value = !in_value;
        } else if (!in_value && c == ']') {
          break;
        }
      }
      if (at >= message.size()) return std::nullopt;
      ++at;
    }
  }
  if (at == sd_begin || at >= message.size() || message[at] != ' ') return std::nullopt;
  return SyslogParts{sd_begin, at + 1};
}

// Where an RFC 3164 message ("<PRI>Mmm dd hh:mm:ss [HOSTNAME ]TAG: MSG")
// has its MSG: past the first ": " after the 15-byte timestamp (neither
// the encoder's HOSTNAME nor its TAG holds a ':'). Nothing for another.
std::optional<std::size_t> rfc3164_msg_begin(std::string_view message) {
  const std::size_t close = pri_close(message);
  if (close == std::string_view::npos) return std::nullopt;
  const std::size_t colon = message.find(": ", close + 1 + 15);
  if (colon == std::string_view::npos) return std::nullopt;
  return colon + 2;
}

// At most `limit` bytes of `bytes`, cut where a character starts.
std::size_t cut_at_character(std::string_view bytes, std::size_t limit) {
  if (bytes.size() <= limit) return bytes.size();
  std::size_t size = limit;
  while (size > 0 && (static_cast<unsigned char>(bytes[size]) & 0xC0) == 0x80) --size;
  return size;
}

// Send timeouts in a row that a receiver that stopped reading is waited
// for on its connection (a minute at the default 10 s timeout).
constexpr std::uint32_t kMostStalledTimeouts = 6;

}  // namespace

// A stream connection and the part of the batch it sends now: events
// [first, last).
struct SocketSink::Connection {
  Stream stream;
  std::size_t first = 0, last = 0;
  // Past the last event of this batch it was handed: an open connection
  // takes only ranges after it, so what it carries stays in order.
  std::size_t handed_end = 0;
  bool busy = false;
  // Send timeouts in a row on a receiver that stopped reading, waited out
  // on this connection (kMostStalledTimeouts).
  std::uint32_t stalled_timeouts = 0;
  Dialing::Dial dial;  // where it is in the host's addresses
  std::chrono::steady_clock::time_point last_used{};

  // Past the events of its part the receiver has whole: over TCP, those
  // its TCP acknowledged (Stream::acknowledged()). The rest may be lost
  // with the connection (a reset throws our send queue away), so they go
  // again, even where the close still gets them through: twice rather
  // than never.
  [[nodiscard]] std::size_t acknowledged_end(const Batch& batch) const noexcept {
    const std::uint32_t base = first == 0 ? 0 : batch.event_ends[first - 1];
    const std::size_t acknowledged = stream.acknowledged();
    std::size_t end = first;
    while (end < last && batch.event_ends[end] - base <= acknowledged) ++end;
    return end;
  }
};

SocketSink::SocketSink(SocketSinkOptions options)
    : options_(std::move(options)), demand_(options_.max_connections) {
  std::string why;
  const auto url = parse_url(options_.url, why);
  if (!url) throw std::runtime_error("socket sink: " + why);
  const std::string& scheme = url->scheme;
  if (scheme == "syslog" || scheme == "syslog+tcp") {
    kind_ = Kind::tcp;
  } else if (scheme == "syslog+udp") {
    kind_ = Kind::udp;
  } else if (scheme == "unix") {
    kind_ = Kind::unix_stream;
  } else if (scheme == "unixgram") {
    kind_ = Kind::unix_datagram;
  } else if (scheme == "syslog+tls") {
    kind_ = Kind::tls;
    port_ = 6514;
  } else {
    throw std::runtime_error("socket sink: unknown URL scheme \"" + scheme + "\"");
  }
  if (kind_ == Kind::unix_stream || kind_ == Kind::unix_datagram) {
    path_ = url->path;
    where_ = path_;
    if (!unix_address(path_, why)) throw std::runtime_error("socket sink: " + why);
  } else {
    host_ = url->host;
    if (url->port != 0) port_ = url->port;
    where_ = (host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_) + ":" + std::to_string(port_);
  }
  if (options_.max_connections == 0) options_.max_connections = 1;
  if (kind_ == Kind::tls) {
    try {
      tls_ = std::make_unique<TlsContext>(options_.tls, host_);
    } catch (const std::exception& e) {
      throw std::runtime_error("socket sink " + where_ + ": " + e.what());
    }
  }
  loop_ = std::make_unique<UringLoop>("socket sink " + where_, 256);
}

SocketSink::~SocketSink() {
  if (writing_ && loop_) settle_in_flight(*loop_, connections_, std::chrono::seconds(1), "socket sink " + where_);
  if (datagram_fd_ >= 0) ::close(datagram_fd_);
}

std::size_t SocketSink::open_connections() const noexcept {
  return static_cast<std::size_t>(
      std::count_if(connections_.begin(), connections_.end(), [](const Connection& c) { return c.stream.is_open(); }));
}

void SocketSink::start_batch(const Batch& batch) {
  if (batch.ring == batch_ring_ && batch.first_start == batch_first_ && batch.end == batch_end_) return;
  // The batch's identity last: a first pending_ that could not be had (out
  // of memory, a retry) leaves it unset, so the next write starts the batch
  // again rather than find nothing pending and call it written.
  pending_.clear();
  if (batch.events > 0) pending_.emplace_back(0, batch.events);
  batch_ring_ = batch.ring;
  batch_first_ = batch.first_start;
  batch_end_ = batch.end;
  batch_events_ = batch.events;
  for (Connection& c : connections_) c.handed_end = 0;
  datagram_next_ = 0;
  datagram_judged_ = 0;
  rejected_ranges_.clear();
}

Outcome SocketSink::write(const Batch& batch, std::string& why) {
  if (writing_) {
    // The last write() threw midway (see HttpSink::write): end what is in
    // flight before its buffers are reused, then start clean.
    settle_in_flight(*loop_, connections_, std::chrono::seconds(1), "socket sink " + where_);
    for (Connection& c : connections_) {
      c.stream.close();
      c.busy = false;
    }
    loop_ = std::make_unique<UringLoop>("socket sink " + where_, 256);
  }
  writing_ = true;
  start_batch(batch);
  Outcome outcome = Outcome::retry;
  try {
    outcome = datagrams() ? write_datagrams(batch, why) : write_stream(batch, why);
  } catch (const WriteInterrupted&) {
    // The sends in flight end here, their completions read (what the
    // kernel took of them is in the send queue, which acknowledged()
    // weighs). Each connection under way then keeps as its own only the
    // events its receiver does not have whole; delivered_ranges() reads
    // the rest as delivered.
    if (!datagrams()) {
      loop_->cancel_all(std::chrono::seconds(1), [&](std::uint64_t tag, int result) noexcept {
        if (tag % Stream::kOps != Stream::kSend || result <= 0) return;
        Connection& c = connections_[tag / Stream::kOps];
        if (c.busy) (void)c.stream.sent_some(result);
      });
    }
    // So does one that finished its part of this batch (handed_end set,
    // still open): its tail may sit unacknowledged in the queue too.
    for (Connection& c : connections_) {
      if (!c.busy && (c.handed_end == 0 || !c.stream.is_open())) continue;
      c.first = c.acknowledged_end(batch);
      c.busy = c.first < c.last;  // for_each_undelivered(): its rest is not delivered
    }
    throw;
  }
  writing_ = false;
  return outcome;
}

template <class F>
void SocketSink::for_each_undelivered(F&& f) const {
  if (datagrams()) {
    // Datagrams go in order: those before datagram_next_ are sent, except
    // the rejected ones (counted by whoever writes the batch whole).
    for (const auto& [first, last] : rejected_ranges_) {
      if (first < datagram_next_) f(first, std::min<std::size_t>(last, datagram_next_));
    }
    if (datagram_next_ < batch_events_) f(datagram_next_, batch_events_);
    return;
  }
  if (!writing_) {  // between two tries: what is pending
    for (const auto& [first, last] : pending_) f(first, last);
    return;
  }
  // Cut short midway: the parts that failed, those not begun, and what
  // each connection's receiver had not acknowledged of its part.
  for (const auto& [first, last] : next_pending_) f(first, last);
  for (std::size_t p = next_part_; p < pending_.size(); ++p) f(pending_[p].first, pending_[p].second);
  for (const Connection& c : connections_) {
    if (c.busy && c.first < c.last) f(c.first, c.last);
  }
}

std::uint32_t SocketSink::delivered_events() const noexcept {
  std::size_t undelivered = 0;
  for_each_undelivered([&](std::size_t first, std::size_t last) { undelivered += last - first; });
  return batch_events_ - static_cast<std::uint32_t>(std::min<std::size_t>(undelivered, batch_events_));
}

void SocketSink::delivered_ranges(std::vector<std::pair<std::uint32_t, std::uint32_t>>& out) const {
  out.clear();
  std::vector<std::pair<std::size_t, std::size_t>> undelivered;
  for_each_undelivered([&](std::size_t first, std::size_t last) { undelivered.emplace_back(first, last); });
  std::sort(undelivered.begin(), undelivered.end());
  std::size_t at = 0;
  for (const auto& [first, last] : undelivered) {
    if (at < first) out.emplace_back(static_cast<std::uint32_t>(at), static_cast<std::uint32_t>(first));
    at = std::max(at, last);
  }
  if (at < batch_events_) out.emplace_back(static_cast<std::uint32_t>(at), batch_events_);
}

void SocketSink::tick(std::chrono::steady_clock::time_point now) {
  // Connections opened for a burst and idle for a minute are closed.
  for (std::size_t i = 1; i < connections_.size(); ++i) {
    Connection& c = connections_[i];
    if (c.stream.is_open() && now - c.last_used > std::chrono::seconds(60)) c.stream.close();
  }
}

Outcome SocketSink::write_stream(const Batch& batch, std::string& why) {
  if (pending_.empty()) return Outcome::ok;
  const auto started = Clock::now();
  if (connections_.size() < options_.max_connections) connections_.resize(options_.max_connections);
  // Parts: split the largest pending range until there is one per active
  // connection (or every part is one event).
  while (pending_.size() < demand_.wanted()) {
    auto largest = std::max_element(pending_.begin(), pending_.end(), [](const auto& a, const auto& b) {
      return a.second - a.first < b.second - b.first;
    });
    if (largest->second - largest->first < 2) break;
    const std::size_t middle = largest->first + (largest->second - largest->first) / 2;
    const std::pair<std::size_t, std::size_t> upper{middle, largest->second};
    largest->second = middle;
    pending_.insert(largest + 1, upper);
  }
  // Ordered parts go to connections in order: connection 0 gets the first.
  Dialing dialing(kind_ == Kind::unix_stream ? path_ : host_, port_, kind_ == Kind::unix_stream, address_pick_, stop_);
  std::string first_error;
  next_pending_.clear();
  next_part_ = 0;
  std::size_t failed_connections = 0;
  bool dialed = false;  // a connection was set up in this write

  auto fail = [&](std::size_t index, const std::string& what) {
    Connection& c = connections_[index];
    // Events the receiver has whole are done; the rest go again (read
    // before the close: a reset socket still says what it had not had
    // acknowledged).
    const std::size_t done = c.acknowledged_end(batch);
    if (done < c.last) next_pending_.emplace_back(done, c.last);
    if (first_error.empty()) first_error = what;
    c.stream.close();
    c.busy = false;
    ++failed_connections;
  };
  auto send_next = [&](std::size_t index) {
    std::string reason;
    if (!connections_[index].stream.send_next(*loop_, index * Stream::kOps, options_.timeout, reason)) {
      fail(index, reason);
    }
  };
  // A connection that found no descriptor left for its socket (the
  // process's limit, which other backends share) gives its part back, to go
  // next on a connection that finishes its own, rather than the whole write
  // backing off as if the receiver had failed; the sink wants no more
  // connections than those for a while. False when none is busy.
  bool out_of_descriptors = false;
  auto leave_to_others = [&](std::size_t index) -> bool {
    Connection& c = connections_[index];
    const auto busy = std::count_if(connections_.begin(), connections_.end(),
                                    [&](const Connection& other) { return &other != &c && other.busy; });
    if (!c.stream.out_of_descriptors() || busy == 0) return false;
    demand_.hold_at(static_cast<std::uint32_t>(busy), Clock::now());
    out_of_descriptors = true;
    pending_.insert(pending_.begin() + static_cast<std::ptrdiff_t>(next_part_), {c.first, c.last});
    c.stream.close();
    c.busy = false;
    return true;
  };

  auto begin_part = [&](std::size_t index) {
    Connection& c = connections_[index];
    const auto [first, last] = pending_[next_part_++];
    c.first = first;
    c.last = last;
    c.handed_end = last;
    c.busy = true;
    c.stalled_timeouts = 0;
    c.last_used = started;
    c.stream.begin_send(batch.events_bytes(first, last));
    // A receiver that closed the connection while it sat idle (a restarted
    // rsyslog) must not be handed events: the kernel would take them.
    int idle_error = 0;
    if (c.stream.usable_after_idle(idle_error)) return send_next(index);
    // A reset throws away what the receiver's kernel held unread, which
    // ours had acknowledged as sent: said, as the loss it may be.
    if (idle_error != 0) {
      notice("the connection to " + where_ + " was found " +
             (idle_error == ECONNRESET ? std::string("reset by the receiver") : io_error_text(-idle_error)) +
             " between batches: connecting again (events the receiver had taken and not read are lost with it)");
    }
    dialed = true;
    std::string reason;
    if (!c.stream.dial(*loop_, dialing, c.dial, index * Stream::kOps, options_.connect_timeout, counters_, reason) &&
        !leave_to_others(index)) {
      fail(index, reason);
    }
  };

  // Order holds per connection: a failed connection's rest (a retry) lies
  // before what the others carried, so it goes only where nothing of this
  // batch went after it, a connection opened afresh most often. Without
  // that, a connection still open took events older than those it had
  // just sent.
  auto may_take = [&](const Connection& c) {
    return !c.stream.is_open() || c.handed_end <= pending_[next_part_].first;
  };
  std::size_t parts_begun = 0;
  for (std::size_t i = 0; i < connections_.size() && parts_begun < demand_.wanted() && next_part_ < pending_.size(); ++i) {
    if (!may_take(connections_[i]) || (out_of_descriptors && !connections_[i].stream.is_open())) continue;
    begin_part(i);
    ++parts_begun;
  }
  if (parts_begun == 0 && next_part_ < pending_.size()) {
    // Every connection is open and carried later events (none failed: a
    // failure closes its connection); a fresh one keeps the order.
    connections_[0].stream.close();
    begin_part(0);
  }
  loop_->run(stop_, [&](std::uint64_t tag, int result) {
    const std::size_t index = tag / Stream::kOps;
    const std::uint64_t op = tag % Stream::kOps;
    Connection& c = connections_[index];
    std::string reason;
    if (op != Stream::kSend && op != Stream::kReceive) {  // connect and TLS handshake
      switch (c.stream.setup_completed(*loop_, op, result, tls_.get(), index * Stream::kOps, options_.connect_timeout,
                                       where_, counters_, dialing, c.dial, reason)) {
        case Stream::Progress::pending: return;
        case Stream::Progress::failed:
          if (leave_to_others(index)) return;  // the host's next address found no descriptor
          return fail(index, reason);
        case Stream::Progress::ready: return send_next(index);
      }
    }
    if (result <= 0) {
      if (result == -ECANCELED && counters_) counters_->timeouts.add(1);
      // A receiver that stopped reading (a stalled rsyslog) is waited for
      // on this connection. Closed, the connection kept its unread bytes
      // for the receiver, which read them beside a fresh connection's:
      // out of order even with max_connections 1, and some twice.
      // Not for ever: one hung for good (a deadlocked receiver, a balancer
      // in front of a stalled server, whose own kernel answers) is left
      // after kMostStalledTimeouts, as any failed connection, so the
      // events go on a fresh one (to a healthy server, behind a balancer)
      // and the failure shows in `failures`.
      if (result == -ECANCELED && op == Stream::kSend && c.stream.peer_stopped_reading()) {
        if (++c.stalled_timeouts < kMostStalledTimeouts) {
          // Said at the first: the wait can be a minute, and producers may
          // be refused meanwhile (a `block` backend holding the ring).
          if (c.stalled_timeouts == 1) {
            notice("send to " + where_ + ": the receiver has read nothing for " +
                   std::to_string(options_.timeout.count()) + " ms; waiting on this connection (it is made anew after " +
                   std::to_string(kMostStalledTimeouts) + " such timeouts in a row)");
          }
          return send_next(index);
        }
        return fail(index, "send to " + where_ + ": the receiver read nothing through " +
                               std::to_string(kMostStalledTimeouts) + " timeouts in a row");
      }
      return fail(index, "send to " + where_ + ": " + io_error_text(result));
    }
    c.stalled_timeouts = 0;
    if (!c.stream.sent_some(result)) return send_next(index);  // a short send: the rest goes next
    c.busy = false;
    // Parts left over (more ranges than connections, after a failure): the
    // connection that just finished takes the next one.
    if (next_part_ < pending_.size() && failed_connections == 0 && may_take(c)) begin_part(index);
  });
  address_pick_ = dialing.preferred();  // where the next write's connections start
  for (std::size_t p = next_part_; p < pending_.size(); ++p) next_pending_.push_back(pending_[p]);
  std::sort(next_pending_.begin(), next_pending_.end());
  pending_.swap(next_pending_);

  const auto elapsed = Clock::now() - started;
  if (!pending_.empty()) {
    why = first_error.empty() ? "send to " + where_ + " did not finish" : first_error;
    return Outcome::retry;
  }
  // Connections keep up while the sink spends little of its time in writes
  // (ConnectionDemand). A write that set up a connection is not counted: its
  // sends can't be told from the setup's round trips (a lookup, a connect, a
  // TLS handshake and its confirm wait), and counted they opened a
  // connection at each batch (each new one set up in turn) up to
  // max_connections, splitting batches that one connection carried in
  // order. The first window starts after such a write.
  const auto now = Clock::now();
  if (!dialed) demand_.add_busy(started, started + elapsed);
  demand_.weigh(now);
  return Outcome::ok;
}

bool SocketSink::open_datagram_socket(std::string& why) {
  std::optional<Address> address =
      kind_ == Kind::unix_datagram ? unix_address(path_, why) : resolve(host_, port_, SOCK_DGRAM, why, stop_);
  if (!address) {
    // A name that does not resolve is a failed connect, as for streams
    // (Stream::dial): a figure of connects tried and failed that left it
    // out would show an unresolvable destination as never tried.
    if (counters_) counters_->connect_failures.add(1);
    return false;
  }
  const int fd = ::socket(address->family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    why = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  if (kind_ == Kind::unix_datagram) {
    // A larger send buffer lets bursts queue in the kernel. It does not
    // lift the receiver's own bound, a count of datagrams queued
    // (net.unix.max_dgram_qlen, 10 by default): past that sends get
    // EAGAIN, which write_datagrams() waits out.
    const int bytes = 4 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address->storage), address->length) != 0) {
    const int error = errno;
    why = "connect to " + where_ + ": " + std::strerror(error);
    if (kind_ == Kind::unix_datagram && error == ECONNREFUSED) why += unix_refusal_note(path_);
    ::close(fd);
    if (counters_) counters_->connect_failures.add(1);
    return false;
  }
  if (counters_) counters_->connects.add(1);
  datagram_fd_ = fd;
  return true;
}

int SocketSink::wait_writable(std::chrono::steady_clock::time_point until) {
  for (;;) {
    // Slices of kWindow, so a stop is heard as in a send.
    if (stop_ != nullptr && stop_->load(std::memory_order_relaxed)) {
      throw WriteInterrupted("a stop cut short the wait for room at " + where_);
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return -EAGAIN;
    pollfd p{datagram_fd_, POLLOUT, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min(left, kWindow).count()));
    if (ready < 0 && errno != EINTR) return -errno;
    if (ready <= 0) continue;
    // An error the socket holds (a refusal by ICMP): said as what it is,
    // not as a full receiver.
    if ((p.revents & (POLLERR | POLLHUP)) != 0) {
      int error = 0;
      socklen_t length = sizeof error;
      if (::getsockopt(datagram_fd_, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error == 0) error = EPIPE;
      return -error;
    }
    if ((p.revents & POLLOUT) != 0) return 0;
  }
}

Outcome SocketSink::write_datagrams(const Batch& batch, std::string& why) {
  if (datagram_fd_ < 0 && !open_datagram_socket(why)) return Outcome::retry;
  // An event's datagram: the whole document (NDJSON: the line without its
  // newline, the datagram being the frame).
  const auto datagram_of = [&](std::size_t i) {
    std::string_view bytes = batch.events_bytes(i, i + 1);
    if (options_.strip_newline && !bytes.empty() && bytes.back() == '\n') bytes.remove_suffix(1);
    return bytes;
  };
  std::optional<std::chrono::steady_clock::time_point> room_deadline;  // see the wait for room below
  while (datagram_next_ < batch.events) {
    const std::size_t chain_end = std::min<std::size_t>(batch.events, datagram_next_ + kDatagramChain);
    std::array<std::uint32_t, kDatagramChain> to_send;
    std::size_t count = 0;
    for (std::size_t i = datagram_next_; i < chain_end; ++i) {
      // Too long for a datagram: a syslog message is cut (receivers cut
      // them too, RFC 5424 section 6.1), but a cut NDJSON line would not
      // parse, nor a message cut inside its header: those are rejected,
      // counted and said, not retried.
      if (!sendable(datagram_of(i))) {
        if (i >= datagram_judged_) {
          const auto event = static_cast<std::uint32_t>(i);
          if (!rejected_ranges_.empty() && rejected_ranges_.back().second == event) {
            ++rejected_ranges_.back().second;
          } else {
            rejected_ranges_.emplace_back(event, event + 1);
          }
        }
        continue;
      }
      to_send[count++] = static_cast<std::uint32_t>(i);
    }
    datagram_judged_ = std::max(datagram_judged_, chain_end);
    if (count == 0) {
      datagram_next_ = chain_end;
      continue;
    }
    for (std::size_t k = 0; k < count; ++k) {
      const std::string_view bytes = fitted(datagram_of(to_send[k]), cut_messages_[k]);
      // Non-blocking and linked: a full send buffer, or a unix receiver's
      // full queue, fails the send (EAGAIN) instead of stalling the thread,
      // and cancels the rest of the chain so nothing after it overtakes it.
      // A UDP receiver whose buffer is full drops the datagram on its side
      // and the send succeeds: best effort.
      loop_->send(datagram_fd_, bytes.data(), bytes.size(), to_send[k], std::chrono::milliseconds(0), MSG_DONTWAIT,
                  k + 1 < count);
    }
    std::size_t first_failed = chain_end;
    int error = 0;
    const auto on_sent = [&](std::uint64_t tag, int result) noexcept {
      const auto i = static_cast<std::size_t>(tag);
      if (result < 0) {
        if (i < first_failed) {
          first_failed = i;
          error = result;
        }
        return;
      }
      if (datagram_of(i).size() > options_.max_datagram_bytes && counters_) counters_->truncated.add(1);
    };
    try {
      loop_->run(stop_, on_sent);
    } catch (const WriteInterrupted&) {
      // Sent without waiting, most of the chain has gone by now: its
      // completions are read here, so only what did not go counts as not
      // delivered. Without them the whole chain did, and a successor sent
      // datagrams the receiver had again. Where some are not back within
      // the limit, what went is not known: the chain stays undelivered.
      if (loop_->cancel_all(std::chrono::seconds(1), on_sent) == 0) datagram_next_ = first_failed;
      throw;
    }
    datagram_next_ = first_failed;
    if (first_failed < chain_end) {
      // No room at the receiver now (a unix datagram socket queues 10 by
      // default): wait for some, as a blocking send would, and go on, for
      // up to a second a try. Failed at once, the try went through the
      // runner's backoff, and a receiver reading as fast as it could got 11
      // datagrams every few seconds.
      if (error == -EAGAIN) {
        if (!room_deadline) room_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        error = wait_writable(*room_deadline);
        if (error == 0) continue;
      }
      why = "send to " + where_ + ": " +
            (error == -EAGAIN ? std::string("receiver not keeping up (socket buffer full)") : io_error_text(error));
      if (error != -EAGAIN) {
        ::close(datagram_fd_);  // a receiver that went away: connect again next time
        datagram_fd_ = -1;
      }
      return Outcome::retry;
    }
  }
  if (!rejected_ranges_.empty()) {
    why = "send to " + where_ + ": " +
          (options_.strip_newline ? "NDJSON events over max_datagram_bytes (" +
                                        std::to_string(options_.max_datagram_bytes) + "), which cut would not parse"
                                  : "syslog messages whose header alone is over max_datagram_bytes (" +
                                        std::to_string(options_.max_datagram_bytes) + ")");
  }
  return Outcome::ok;
}

bool SocketSink::sendable(std::string_view datagram) const {
  if (datagram.size() <= options_.max_datagram_bytes) return true;
  if (options_.strip_newline) return false;
  // The header and "- " for the STRUCTURED-DATA, at least.
  if (const auto parts = syslog_parts(datagram)) return parts->sd_begin + 2 <= options_.max_datagram_bytes;
  // RFC 3164: the header whole (it was cut in its HOSTNAME, no TAG left).
  if (const auto msg = rfc3164_msg_begin(datagram)) return *msg <= options_.max_datagram_bytes;
  return true;
}

std::string_view SocketSink::fitted(std::string_view datagram, std::string& scratch) const {
  const std::size_t limit = options_.max_datagram_bytes;
  if (datagram.size() <= limit) return datagram;
  const auto parts = syslog_parts(datagram);
  // Cut in MSG, where a character starts: the header and the
  // STRUCTURED-DATA stay whole, MSG valid UTF-8.
  if (!parts || parts->msg_begin <= limit) return datagram.substr(0, cut_at_character(datagram, limit));
  // The STRUCTURED-DATA would be cut (a long tag): the message goes
  // without it ("-"), MSG cut to what is left.
  scratch.assign(datagram.substr(0, parts->sd_begin));
  scratch.append("- ");
  const std::string_view msg = datagram.substr(parts->msg_begin);
  scratch.append(msg.substr(0, cut_at_character(msg, limit - scratch.size())));
  return scratch;
}

void SocketSink::reopen() {
  if (tls_) reload_tls(tls_, options_.tls, host_, "socket sink " + where_);
}

}  // namespace ringroute::sinks
