#pragma once
// Destinations of network sinks: URLs, addresses, sockets. Internal to
// ringroute::sinks; nothing here runs per event.

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ringroute::sinks {

struct Url {
  std::string scheme;
  std::string user, password;  // percent-decoded userinfo
  bool has_userinfo = false;
  std::string host;            // without IPv6 brackets
  std::uint16_t port = 0;      // 0: none given
  std::string path;            // unix sockets: the file; http: path and query ("/" when empty)
};

// Splits scheme://[user[:password]@]host[:port][/path][?query]; for unix
// schemes everything after "://" is the path. nullopt and `why` when bad.
[[nodiscard]] std::optional<Url> parse_url(std::string_view text, std::string& why);

struct Address {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = 0;
};

// The first of host:port's addresses as getaddrinfo orders them (datagram
// sockets: nothing answers a connect to tell one address from another).
// `stop` (may be null) set during the lookup throws WriteInterrupted.
[[nodiscard]] std::optional<Address> resolve(const std::string& host, std::uint16_t port, int socktype,
                                             std::string& why, const std::atomic<bool>* stop = nullptr);
[[nodiscard]] std::optional<Address> unix_address(const std::string& path, std::string& why);

// The addresses one write's stream connections dial, resolved at its first
// connect. A connect that fails goes on to the host's next address within
// the same write, as curl and Vector do: a name with an address nobody
// listens on (localhost's ::1 where the receiver is on 127.0.0.1 only) costs
// one refused connect, not a retried batch and its backoff. A connection
// starts at the address the last connection that got through answered at
// (one that failed for good moves that on by one), and the sink carries it
// from write to write.
class Dialing {
 public:
  // Where one connection is in the list: its first address, and how many
  // it tried after that one.
  struct Dial {
    std::size_t start = 0, attempt = 0;
  };

  // host:port, or a unix stream socket's `path` (`port` 0); `preferred`:
  // where the last write left off.
  // `stop`: the sink thread's stop flag, which ends a lookup that hangs
  // (WriteInterrupted out of first()).
  Dialing(const std::string& host_or_path, std::uint16_t port, bool unix_path, std::size_t preferred,
          const std::atomic<bool>* stop)
      : host_or_path_(host_or_path), port_(port), unix_path_(unix_path), preferred_(preferred), stop_(stop) {}

  // A connection's first address; nullptr, with `why`, when the name does
  // not resolve.
  [[nodiscard]] const Address* first(Dial& dial, std::string& why);
  // After its connect failed: the next address, nullptr once it tried all.
  [[nodiscard]] const Address* next(Dial& dial) noexcept;
  // Its connect (and handshake) went through: connections start there.
  void answered(const Dial& dial) noexcept { preferred_ = dial.start + dial.attempt; }
  // It failed for good: connections start past the address it ended on.
  void failed(const Dial& dial) noexcept { preferred_ = dial.start + dial.attempt + 1; }
  [[nodiscard]] std::size_t preferred() const noexcept { return preferred_; }
  // How many the name has (0 before the first first()).
  [[nodiscard]] std::size_t size() const noexcept { return addresses_.size(); }

 private:
  const std::string& host_or_path_;
  std::uint16_t port_;
  bool unix_path_;
  std::size_t preferred_;
  const std::atomic<bool>* stop_;
  bool resolved_ = false;
  std::string resolve_error_;
  std::vector<Address> addresses_;
};

// What an io_uring result (-errno) means, for logs: -ECANCELED is a linked
// timeout that fired, 0 from a read or send a peer that closed.
[[nodiscard]] std::string io_error_text(int negative_errno, std::string_view peer = "the peer");
// What to add to a refused connect to unix socket `path`: the kernel says
// "Connection refused" for a path that is no socket at all (a regular
// file), which this names; nothing for a socket nobody listens on.
[[nodiscard]] std::string unix_refusal_note(const std::string& path);

// RFC 4648 base64 (Basic auth).
[[nodiscard]] std::string base64(std::string_view bytes);

}  // namespace ringroute::sinks
