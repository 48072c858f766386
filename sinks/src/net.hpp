#pragma once
// Destinations of network sinks: URLs, addresses, sockets. Internal to
// ringroute::sinks; nothing here runs per event.

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

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

// Address number `pick` (modulo how many there are) of host:port, as
// getaddrinfo orders them: a sink whose connect failed picks the next one
// at its next try, so a name with an address nobody listens on (localhost's
// ::1 where the receiver is on 127.0.0.1 only) still reaches the one that
// answers. Or a unix path.
[[nodiscard]] std::optional<Address> resolve(const std::string& host, std::uint16_t port, int socktype,
                                             std::string& why, std::size_t pick = 0);
[[nodiscard]] std::optional<Address> unix_address(const std::string& path, std::string& why);

// What an io_uring result (-errno) means, for logs: -ECANCELED is a linked
// timeout that fired, 0 from a read or send a peer that closed.
[[nodiscard]] std::string io_error_text(int negative_errno, std::string_view peer = "the peer");

// RFC 4648 base64 (Basic auth).
[[nodiscard]] std::string base64(std::string_view bytes);

}  // namespace ringroute::sinks
