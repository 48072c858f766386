// A destination URL on any bytes, as a config gives it: a reason or none,
// never a crash. What the check accepts, the sinks accept at start (same
// parser), so a URL that validates can't stop the router from starting.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "ringroute/sinks/http_sink.hpp"
#include "ringroute/sinks/socket_sink.hpp"
#include "ringroute/sinks/url.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string problem = ringroute::sinks::url_problem(text);
  if (!problem.empty()) return 0;
  // Accepted: a sink of the URL's kind takes it (they resolve and connect
  // only when they write, so nothing goes out from here).
  // Every scheme a config may give, in any case (the sinks lower-case it).
  const std::string url(text);
  const std::string scheme = ringroute::sinks::url_scheme(url);
  try {
    if (scheme == "http" || scheme == "https") {
      ringroute::sinks::HttpSink sink({.url = url});
    } else if (scheme == "syslog" || scheme == "syslog+udp" || scheme == "syslog+tcp" || scheme == "syslog+tls" ||
               scheme == "unix" || scheme == "unixgram") {
      ringroute::sinks::SocketSink sink({.url = url});
    }
  } catch (const std::exception& e) {
    // The sink's own io_uring may be refused for the moment (old rings
    // still being torn down): not a parser mismatch.
    if (std::string_view(e.what()).find("io_uring") != std::string_view::npos) return 0;
    std::abort();  // the check passed a URL the sink refuses
  }
  return 0;
}
