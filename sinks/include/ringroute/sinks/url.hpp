#pragma once
// The checks the sinks make when they start, for `ringroute validate` and
// config loading: a config that validates must not be refused at start for
// its URL or its HTTP headers.

#include <string>
#include <string_view>

namespace ringroute::sinks {

// The scheme of `url` as the sinks read it, lower-cased (schemes are
// case-insensitive, RFC 3986 3.1): "https" of "HTTPS://h/"; empty when it
// has no "://".
[[nodiscard]] std::string url_scheme(std::string_view url);

// Whether a socket backend with this scheme (as url_scheme() gives it)
// sends datagrams, each a message whole: syslog+udp and unixgram.
[[nodiscard]] bool is_datagram_scheme(std::string_view scheme);

// Why `url` can't name a destination ("bad port ...", "the URL has no
// host", a unix socket path too long), or empty when it can. The scheme
// itself is the caller's to check.
[[nodiscard]] std::string url_problem(std::string_view url);

// Whether `host` is an IPv4 or IPv6 address as inet_pton reads it (a NUL
// anywhere makes it not one): TLS checks such a name as an address, not a
// DNS name.
[[nodiscard]] bool is_ip_address(std::string_view host);

// Why an HTTP sink can't send the header `name: value` (a name that is not
// an RFC 9110 token, a control character in the value, a header the sink
// sets itself), or empty when it can.
[[nodiscard]] std::string http_header_problem(std::string_view name, std::string_view value);

}  // namespace ringroute::sinks
