#include "net.hpp"

#include "ringroute/sinks/sink.hpp"
#include "ringroute/sinks/url.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

namespace ringroute::sinks {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

}  // namespace

bool is_ip_address(std::string_view host) {
  if (host.find('\0') != std::string_view::npos) return false;  // inet_pton would stop there
  const std::string text(host);
  unsigned char address[16];
  return ::inet_pton(AF_INET, text.c_str(), address) == 1 || ::inet_pton(AF_INET6, text.c_str(), address) == 1;
}

std::string url_scheme(std::string_view url) {
  const std::size_t colon = url.find("://");
  if (colon == std::string_view::npos) return {};
  std::string scheme(url.substr(0, colon));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return scheme;
}

bool is_datagram_scheme(std::string_view scheme) { return scheme == "syslog+udp" || scheme == "unixgram"; }

std::optional<Url> parse_url(std::string_view text, std::string& why) {
  Url url;
  const std::size_t colon = text.find("://");
  if (colon == std::string_view::npos || colon == 0) {
    why = "\"" + std::string(text) + "\" is not a URL (scheme://...)";
    return std::nullopt;
  }
  url.scheme = url_scheme(text);
  std::string_view rest = text.substr(colon + 3);
  if (url.scheme == "unix" || url.scheme == "unixgram") {
    if (rest.empty() || rest.front() != '/') {
      why = "a unix socket URL needs an absolute path (unix:///run/receiver.sock)";
      return std::nullopt;
    }
    url.path = std::string(rest);
    return url;
  }
  // What would break the request line or the Host header (a space, a line
  // break: every request refused), or never reach the server (a fragment).
  // The user information is decoded and sent in base64: any byte may be there.
  const std::size_t userinfo_end = rest.substr(0, rest.find_first_of("/?")).rfind('@');
  for (std::size_t i = 0; i < rest.size(); ++i) {
    const auto c = static_cast<unsigned char>(rest[i]);
    if (c <= 0x20 || c == 0x7f) {
      why = "the URL holds a space or control character at byte " + std::to_string(colon + 3 + i) +
            " (percent-encode it: %20)";
      return std::nullopt;
    }
    if (c == '#') {
      why = "the URL holds a fragment (#...), which is never sent to a server: remove it";
      return std::nullopt;
    }
    // Sent raw into the request line, where RFC 3986 wants it encoded
    // (servers differ on what they make of it); a host name is looked up
    // as given, and the resolver takes no IDN.
    if (c >= 0x80 && (userinfo_end == std::string_view::npos || i > userinfo_end)) {
      why = "the URL holds a byte outside ASCII at byte " + std::to_string(colon + 3 + i) +
            " (percent-encode it in the path or query; a host name goes in its xn-- form)";
      return std::nullopt;
    }
  }
  // In the path, a '%' that starts no escape: servers decode the path, and
  // nginx answers 400 to such a request line, every event then rejected.
  // (The query is the application's to read; the host's '%' is a zone,
  // said below; the user information is decoded below.)
  const std::size_t path_begin = std::min(rest.find_first_of("/?"), rest.size());
  const std::size_t path_end = std::min(rest.find('?', path_begin), rest.size());
  for (std::size_t i = path_begin; i < path_end; ++i) {
    if (rest[i] == '%' && (i + 2 >= path_end || !std::isxdigit(static_cast<unsigned char>(rest[i + 1])) ||
                           !std::isxdigit(static_cast<unsigned char>(rest[i + 2])))) {
      why = "the URL's path holds a '%' at byte " + std::to_string(colon + 3 + i) +
            " that two hex digits do not follow (a '%' itself is %25)";
      return std::nullopt;
    }
  }
  const std::size_t slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  url.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (url.path.front() == '?') url.path.insert(url.path.begin(), '/');
  if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    const std::size_t split = userinfo.find(':');
    if (!percent_decode(userinfo.substr(0, split), url.user) ||
        (split != std::string_view::npos && !percent_decode(userinfo.substr(split + 1), url.password))) {
      why = "bad percent-encoding in the URL's user information";
      return std::nullopt;
    }
    url.has_userinfo = true;
  }
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      why = "unclosed '[' in the URL's host";
      return std::nullopt;
    }
    url.host = std::string(authority.substr(1, close - 1));
    // A zone ("%25eth0", RFC 6874) is not resolved here, and would go into
    // the Host header.
    if (url.host.find('%') != std::string::npos) {
      why = "an IPv6 zone (%25...) in the URL's host is not supported: use the address of an interface that needs none";
      return std::nullopt;
    }
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        why = "unexpected text after the URL's IPv6 host";
        return std::nullopt;
      }
      port = after.substr(1);
    }
  } else {
    const std::size_t c = authority.rfind(':');
    url.host = std::string(authority.substr(0, c));
    if (c != std::string_view::npos) port = authority.substr(c + 1);
  }
  if (url.host.empty()) {
    why = "the URL has no host";
    return std::nullopt;
  }
  if (authority.front() != '[' && url.host.find(':') != std::string::npos) {
    why = "an IPv6 address in a URL goes in brackets ([::1]:514)";
    return std::nullopt;
  }
  if (!port.empty()) {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
      why = "bad port \"" + std::string(port) + "\" in the URL";
      return std::nullopt;
    }
    url.port = static_cast<std::uint16_t>(value);
  }
  return url;
}

std::string url_problem(std::string_view text) {
  std::string why;
  const auto url = parse_url(text, why);
  if (url && (url->scheme == "unix" || url->scheme == "unixgram")) (void)unix_address(url->path, why);
  // Basic authentication joins the two with a ':' (RFC 7617 section 2): a
  // user name holding one would be read as a shorter name and a longer
  // password, and refused by the server.
  if (url && url->scheme.starts_with("http") && url->user.find(':') != std::string::npos) {
    why = "the URL's user name holds a ':' (%3A), which HTTP Basic authentication can't carry (RFC 7617): the "
          "server would read what follows it as the password";
  }
  // A syslog destination is a host and a port (logshuttle's drains): user
  // information, a path or a query would be dropped without a word.
  if (url && url->scheme.starts_with("syslog")) {
    if (url->has_userinfo) {
      why = "a syslog URL names a host and port only: its user information would go nowhere";
    } else if (url->path != "/") {
      // Not echoed: drain paths and queries may carry tokens.
      why = "a syslog URL names a host and port only: its path or query would go nowhere";
    }
  }
  return why;
}

namespace {

// One name lookup, run by a thread of its own and shared with it: a lookup
// a stop gives up on finishes on that thread, which then frees its answer.
// (glibc's getaddrinfo_a keeps a pool of helper threads that a fork does
// not copy but still counts as idle: a forked child's lookups then waited
// for ever.)
struct Lookup {
  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false, abandoned = false;
  int rc = 0, error = 0;
  addrinfo* result = nullptr;
};

// getaddrinfo's answer for host:port, waited for in 50 ms steps so the
// sink thread's stop flag ends the wait: a resolver that hangs (a DNS
// server that never answers: 5 s a try, twice, per server by default)
// held a stop, and a reload, for as long. Numeric hosts need no lookup.
int lookup(const std::string& host, const std::string& service, const addrinfo& hints,
           const std::atomic<bool>* stop, addrinfo** found) {
  // An address written out is taken whatever addresses the host has:
  // AI_ADDRCONFIG does not count loopback ones, so on a host with no
  // global IPv6 address "::1" failed (EAI_ADDRFAMILY), and "127.0.0.1" on
  // one with no IPv4 address but loopback's, every write a retry.
  addrinfo numeric = hints;
  numeric.ai_flags = (hints.ai_flags & ~AI_ADDRCONFIG) | AI_NUMERICHOST;
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &numeric, found); rc != EAI_NONAME) return rc;
  auto state = std::make_shared<Lookup>();
  std::thread([state, host, service, hints] {
    addrinfo* result = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &result);
    const int error = errno;
    std::lock_guard lock(state->mutex);
    if (state->abandoned) {
      if (result != nullptr) ::freeaddrinfo(result);
      return;
    }
    state->rc = rc;
    state->error = error;
    state->result = result;
    state->done = true;
    state->done_cv.notify_one();
  }).detach();
  std::unique_lock lock(state->mutex);
  while (!state->done) {
    // Relaxed: as the UringLoop's check of the same flag.
    if (stop != nullptr && stop->load(std::memory_order_relaxed)) {
      state->abandoned = true;
      throw WriteInterrupted("a stop cut short the lookup of " + host);
    }
    state->done_cv.wait_for(lock, std::chrono::milliseconds(50));
  }
  *found = state->result;
  errno = state->error;
  return state->rc;
}

// host:port's addresses in getaddrinfo's order; empty, with `why`, when the
// name does not resolve.
std::vector<Address> resolve_all(const std::string& host, std::uint16_t port, int socktype, std::string& why,
                                 const std::atomic<bool>* stop) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  errno = 0;
  const int rc = lookup(host, service, hints, stop, &found);
  std::vector<Address> addresses;
  if (rc != 0 || found == nullptr) {
    if (found != nullptr) ::freeaddrinfo(found);
    why = "can't resolve " + host + ": " + (rc == EAI_SYSTEM ? std::strerror(errno) : ::gai_strerror(rc));
    return addresses;
  }
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    if (a->ai_addrlen > sizeof(sockaddr_storage)) continue;
    Address& address = addresses.emplace_back();
    std::memcpy(&address.storage, a->ai_addr, a->ai_addrlen);
    address.length = a->ai_addrlen;
    address.family = a->ai_family;
  }
  ::freeaddrinfo(found);
  if (addresses.empty()) why = "can't resolve " + host + ": no usable address";
  return addresses;
}

}  // namespace

std::optional<Address> resolve(const std::string& host, std::uint16_t port, int socktype, std::string& why,
                               const std::atomic<bool>* stop) {
  std::vector<Address> addresses = resolve_all(host, port, socktype, why, stop);
  if (addresses.empty()) return std::nullopt;
  return addresses.front();
}

const Address* Dialing::first(Dial& dial, std::string& why) {
  if (!resolved_) {
    resolved_ = true;
    if (unix_path_) {
      if (std::optional<Address> address = unix_address(host_or_path_, resolve_error_)) {
        addresses_.push_back(*address);
      }
    } else {
      addresses_ = resolve_all(host_or_path_, port_, SOCK_STREAM, resolve_error_, stop_);
    }
  }
  if (addresses_.empty()) {
    why = resolve_error_;
    return nullptr;
  }
  dial = {preferred_ % addresses_.size(), 0};
  return &addresses_[dial.start];
}

const Address* Dialing::next(Dial& dial) noexcept {
  if (dial.attempt + 1 >= addresses_.size()) return nullptr;
  ++dial.attempt;
  return &addresses_[(dial.start + dial.attempt) % addresses_.size()];
}

std::optional<Address> unix_address(const std::string& path, std::string& why) {
  Address address;
  auto* un = reinterpret_cast<sockaddr_un*>(&address.storage);
  if (path.size() >= sizeof un->sun_path) {
    why = "unix socket path longer than " + std::to_string(sizeof un->sun_path - 1) + " bytes: " + path;
    return std::nullopt;
  }
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path.c_str(), path.size() + 1);
  address.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  address.family = AF_UNIX;
  return address;
}

std::string unix_refusal_note(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || S_ISSOCK(st.st_mode)) return "";
  return " (" + path + " is not a socket)";
}

std::string io_error_text(int negative_errno, std::string_view peer) {
  if (negative_errno == -ECANCELED) return "timed out";
  if (negative_errno == 0) return "connection closed by " + std::string(peer);
  return std::strerror(-negative_errno);
}

std::string base64(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const auto v = static_cast<unsigned>(static_cast<unsigned char>(bytes[i]) << 16 |
                                         static_cast<unsigned char>(bytes[i + 1]) << 8 |
                                         static_cast<unsigned char>(bytes[i + 2]));
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63], kAlphabet[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    const auto v = static_cast<unsigned>(static_cast<unsigned char>(bytes[i]) << 16);
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const auto v = static_cast<unsigned>(static_cast<unsigned char>(bytes[i]) << 16 |
                                         static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63], '='};
  }
  return out;
}

}  // namespace ringroute::sinks
