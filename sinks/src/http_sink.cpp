#include "ringroute/sinks/http_sink.hpp"
#include "ringroute/sinks/url.hpp"

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
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>
#include <stdexcept>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "net.hpp"
#include "stream.hpp"
#include "tls.hpp"
#include "ringroute/perf/block.hpp"
#include "uring_loop.hpp"

namespace ringroute::sinks {
namespace http = boost::beast::http;

namespace {

constexpr std::uint64_t kResponseBodyLimit = 1 << 20;
// Bytes of a response Beast has not taken yet, at most: a header (64 KiB,
// which Beast bounds) and a read's worth past it.
constexpr std::size_t kMostUnparsedBytes = 128 * 1024;

constexpr std::size_t kReceiveChunk = 16 * 1024;
constexpr std::size_t kLoggedBodyBytes = 200;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// The status code of a response whose header Beast refused (a status line
// without its space and reason, a header name with a space, both
// Content-Length and Transfer-Encoding): "HTTP/1.x NNN" at its start, or
// nullopt. curl and Go read such answers.
std::optional<unsigned> raw_status(std::string_view response) {
  if (response.size() < 12 || !response.starts_with("HTTP/1.") || response[8] != ' ') return std::nullopt;
  unsigned status = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    if (response[i] < '0' || response[i] > '9') return std::nullopt;
    status = status * 10 + static_cast<unsigned>(response[i] - '0');
  }
  if (response.size() > 12 && response[12] != ' ' && response[12] != '\r' && response[12] != '\n') return std::nullopt;
  return status >= 100 ? std::optional<unsigned>(status) : std::nullopt;
}

// What a final status makes of its request: 2xx delivered; 408 (the
// server gave up reading it) and 425 (too early) say only "not now", as 429
// and 5xx do, and 421 (misdirected: a proxy's pooled connection pinned to
// another host) says "not on this connection" (RFC 9110 15.5.20): retried;
// the rest (3xx, whose redirects are not followed, and 4xx) refused. A
// request misdirected twice is refused: a server whose every connection
// answers 421 (Host never matches) would be retried for good.
enum class Verdict { delivered, retry, refused };
constexpr unsigned kMisdirected = 421;
Verdict verdict_of(unsigned status, bool& misdirected_before) {
  if (status >= 200 && status < 300) return Verdict::delivered;
  if (status == kMisdirected) return std::exchange(misdirected_before, true) ? Verdict::refused : Verdict::retry;
  if (status == 429 || status == 408 || status == 425 || status >= 500) return Verdict::retry;
  return Verdict::refused;
}

// An HTTP-date (RFC 9110 5.6.7) in any of the three forms a recipient must
// read: IMF-fixdate, RFC 850's, asctime's.
std::optional<std::time_t> parse_http_date(std::string_view value) {
  const std::string text(value);
  for (const char* form : {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"}) {
    std::tm tm{};
    const char* rest = ::strptime(text.c_str(), form, &tm);
    if (rest != nullptr && *rest == '\0') return ::timegm(&tm);
  }
  return std::nullopt;
}

// Retry-After: delay-seconds or an HTTP-date (RFC 9110 10.2.3). A date is
// the server's clock: counted from the response's own Date where it has
// one, so a skew between the two clocks is not taken for a wait (a router
// two hours behind waited the hour's cap for a server's "in 5 s").
std::chrono::milliseconds parse_retry_after(std::string_view value, std::string_view date) {
  unsigned seconds = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (end == value.data() + value.size() && end != value.data()) {
    // More seconds than an unsigned holds is a long pause too: the cap.
    if (ec == std::errc::result_out_of_range) return std::chrono::seconds(3600);
    if (ec == std::errc()) return std::chrono::seconds(std::min(seconds, 3600u));
  }
  const std::optional<std::time_t> at = parse_http_date(value);
  if (!at) return std::chrono::milliseconds(0);
  const std::time_t now = parse_http_date(date).value_or(std::time(nullptr));
  return *at > now ? std::chrono::seconds(std::min<std::time_t>(*at - now, 3600)) : std::chrono::milliseconds(0);
}

}  // namespace

std::string http_header_problem(std::string_view name, std::string_view value) {
  // RFC 9110 5.6.2: a name is a token. 5.5: a value is visible characters
  // (and bytes past ASCII) with spaces and tabs between them; anything else
  // (a NUL, an escape) reaches the server as garbage or splits the request.
  constexpr std::string_view kTokenPunctuation = "!#$%&'*+-.^_`|~";
  const bool token = !name.empty() && std::all_of(name.begin(), name.end(), [&](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || kTokenPunctuation.find(c) != std::string_view::npos;
  });
  if (!token) return "header name \"" + std::string(name) + "\" is not a token (letters, digits, " +
                     std::string(kTokenPunctuation) + ")";
  for (std::size_t i = 0; i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      char code[8];
      std::snprintf(code, sizeof code, "0x%02x", c);
      return "header " + std::string(name) + " has a control character (" + code + ") at byte " +
             std::to_string(i) + " of its value";
    }
  }
  if (iequals(name, "Content-Length") || iequals(name, "Host") || iequals(name, "Transfer-Encoding")) {
    return "header " + std::string(name) + " is set by the sink itself";
  }
  // The body's encoding is the sink's (`gzip`): a Content-Encoding of its
  // own said gzip of a body sent plain, or twice over one sent gzipped.
  if (iequals(name, "Content-Encoding")) {
    return "header " + std::string(name) + " is set by the sink itself (use \"gzip\": true)";
  }
  // The connection is the sink's too: Connection: close made each request
  // a connection of its own, and Upgrade got a 101 that the sink retried
  // for ever.
  if (iequals(name, "Connection") || iequals(name, "Upgrade") || iequals(name, "Keep-Alive") || iequals(name, "TE")) {
    return "header " + std::string(name) + " is about the connection, which the sink keeps itself";
  }
  return {};
}

namespace {

// What we log of a body: its first bytes, control bytes shown as '.'.
std::string body_excerpt(std::string_view body) {
  std::string out(body.substr(0, kLoggedBodyBytes));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 32 || c == 0x7f) c = '.';
  }
  if (body.size() > kLoggedBodyBytes) out += "...";
  return out;
}

// One deflate state for every body a connection sends, reset between them:
// made anew for each, it set up some 256 KiB of zlib state and cleared its
// hash table per request (per event, one event a request), and the output
// was zero-filled to its bound first.
class Gzip {
 public:
  Gzip() = default;
  Gzip(const Gzip&) = delete;
  Gzip& operator=(const Gzip&) = delete;
  ~Gzip() {
    if (ready_) deflateEnd(&z_);
  }
  // `in` gzipped into `out`; false where zlib could not (the body then goes
  // as it is).
  bool compress(std::string_view in, ByteBuffer& out) {
    if (!ready_) {
      // 15 + 16: a gzip wrapper, not zlib's. Level 1: the body is cheap to
      // compress well (JSON), and the sink thread's time is the bottleneck.
      if (deflateInit2(&z_, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
      ready_ = true;
    } else if (deflateReset(&z_) != Z_OK) {
      return false;
    }
    out.clear();
    const std::size_t bound = deflateBound(&z_, in.size()) + 32;
    char* const start = out.reserve_more(bound);
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    z_.next_out = reinterpret_cast<Bytef*>(start);
    z_.avail_out = static_cast<uInt>(bound);
    if (deflate(&z_, Z_FINISH) != Z_STREAM_END) return false;
    out.commit_to(start + z_.total_out);
    return true;
  }

 private:
  z_stream z_{};
  bool ready_ = false;
};

}  // namespace

struct HttpSink::Connection {
  Stream stream;
  bool busy = false;
  std::size_t request = 0;
  Dialing::Dial dial;  // where it is in the host's addresses
  // `timeout` bounds the whole request, from its first byte sent to its
  // response's last: each send and receive gets what is left of it, so a
  // server that trickles its answer still times out.
  std::chrono::steady_clock::time_point deadline{};
  std::chrono::steady_clock::time_point last_used{};  // its last request's start (tick())
  std::string head;
  std::string body_buffer;  // array or gzip bodies; NDJSON goes from the batch itself
  Gzip gzip;
  ByteBuffer gzip_buffer;
  std::string_view body;
  std::vector<char> in = std::vector<char>(kReceiveChunk);
  std::size_t in_used = 0;  // unparsed bytes at the front of `in`
  std::optional<http::response_parser<http::string_body>> parser;
  bool reused = false;  // its request went on a connection kept alive from an earlier one
  bool exchanging = false;  // a request sent or being sent, its answer not yet read (ConnectionDemand)
};

HttpSink::HttpSink(HttpSinkOptions options)
    : options_(std::move(options)), demand_(options_.max_connections) {
  std::string why;
  const auto url = parse_url(options_.url, why);
  if (!url) throw std::runtime_error("http sink: " + why);
  if (url->scheme == "https") port_ = 443;
  if (url->scheme != "http" && url->scheme != "https") {
    throw std::runtime_error("http sink: unknown URL scheme \"" + url->scheme + "\"");
  }
  host_ = url->host;
  if (url->port != 0) port_ = url->port;
  const std::string bracketed = host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_;
  const std::uint16_t default_port = url->scheme == "https" ? 443 : 80;
  where_ = url->scheme + "://" + bracketed + ":" + std::to_string(port_);
  if (url->scheme == "https") {
    try {
      tls_ = std::make_unique<TlsContext>(options_.tls, host_, "http/1.1");
    } catch (const std::exception& e) {
      throw std::runtime_error("http sink " + where_ + ": " + e.what());
    }
  }
  // With `server_name` (an address in the URL, the name its certificate
  // carries) the request names that host too, as SNI has it (the TLS peer
  // name: without a root's dot): a server that matches Host against SNI
  // answers a mismatch with 421, retried in vain.
  std::string named = bracketed;
  if (tls_ && !options_.tls.server_name.empty()) {
    const std::string& peer = tls_->peer_name();
    named = peer.find(':') != std::string::npos ? "[" + peer + "]" : peer;
  }
  host_header_ = url->port != 0 && url->port != default_port ? named + ":" + std::to_string(port_) : named;
  target_ = url->path;
  for (char& c : options_.method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  bool user_authorization = false;
  for (const auto& [name, value] : options_.headers) {
    if (const std::string problem = http_header_problem(name, value); !problem.empty()) {
      throw std::runtime_error("http sink: " + problem);
    }
    if (iequals(name, "Content-Type")) user_content_type_ = true;
    if (iequals(name, "User-Agent")) user_agent_ = true;
    if (iequals(name, "Authorization")) user_authorization = true;
  }
  if (url->has_userinfo && !user_authorization) {
    authorization_ = "Basic " + base64(url->user + ":" + url->password);
  }
  if (options_.max_connections == 0) options_.max_connections = 1;
  if (options_.max_events == 0) options_.max_events = 1;
  loop_ = std::make_unique<UringLoop>("http sink " + where_, 256);
}

HttpSink::~HttpSink() {
  if (writing_ && loop_) settle_in_flight(*loop_, connections_, std::chrono::seconds(1), "http sink " + where_);
}

void HttpSink::tick(std::chrono::steady_clock::time_point now) {
  // Connections opened for a burst (up to max_connections of them, each a
  // descriptor the process's other backends share) and idle for a minute
  // are closed; the first stays for the next batch.
  for (std::size_t i = 1; i < connections_.size(); ++i) {
    Connection& c = *connections_[i];
    if (c.stream.is_open() && !c.busy && now - c.last_used > std::chrono::seconds(60)) close_connection(c);
  }
}

void HttpSink::end_exchange(Connection& c) noexcept {
  if (!c.exchanging) return;
  c.exchanging = false;
  demand_.exchange_ends(std::chrono::steady_clock::now());
}

void HttpSink::close_connection(Connection& c) noexcept {
  end_exchange(c);
  c.stream.close();
  c.busy = false;
  c.in_used = 0;
  c.parser.reset();
}

// Never splits an event; an event over the byte limit goes alone. Sizes
// are the events' NDJSON bytes (each document and its newline); an array
// of them is one byte more (n - 1 commas and two brackets).
std::uint32_t HttpSink::request_end(const Batch& batch, std::uint32_t first, std::uint32_t end) const noexcept {
  const std::uint32_t base = first == 0 ? 0 : batch.event_ends[first - 1];
  const std::uint64_t limit = std::min(options_.max_bytes, request_bytes_limit_);
  const std::uint64_t framing = options_.json_array ? 1 : 0;
  std::uint32_t last = first + 1;
  while (last < end && last - first < options_.max_events && batch.event_ends[last] - base + framing <= limit) ++last;
  return last;
}

void HttpSink::plan_requests(const Batch& batch) {
  if (batch.ring == batch_ring_ && batch.first_start == batch_first_ && batch.end == batch_end_) return;
  // The batch's identity only once its requests are all planned: a plan cut
  // short (out of memory, a retry) left it set, and the next write took the
  // requests planned so far for the whole batch, the rest counted as sent.
  batch_ring_ = ~0u;
  requests_.clear();
  reject_why_.clear();
  splits_left_ = kMostSplitsPerBatch;
  for (std::uint32_t first = 0; first < batch.events;) {
    const std::uint32_t last = options_.batched ? request_end(batch, first, batch.events) : first + 1;
    requests_.push_back({first, last});
    first = last;
  }
  batch_ring_ = batch.ring;
  batch_first_ = batch.first_start;
  batch_end_ = batch.end;
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
  if (options_.gzip && c.gzip.compress(body, c.gzip_buffer)) body = c.gzip_buffer.view();
  c.body = body;
  std::string& h = c.head;
  h.clear();
  h.append(options_.method).append(" ").append(target_).append(" HTTP/1.1\r\nHost: ").append(host_header_);
  h.append("\r\n");
  if (!user_agent_) h.append("User-Agent: ringroute\r\n");  // the config's own, if it has one, goes below
  if (!user_content_type_) {
    h.append(single || options_.json_array ? "Content-Type: application/json\r\n"
                                           : "Content-Type: application/x-ndjson\r\n");
  }
  if (options_.gzip && body.data() == c.gzip_buffer.data()) h.append("Content-Encoding: gzip\r\n");
  if (!authorization_.empty()) h.append("Authorization: ").append(authorization_).append("\r\n");
  for (const auto& [name, value] : options_.headers) h.append(name).append(": ").append(value).append("\r\n");
  h.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n\r\n");
  c.stream.begin_send(c.head, c.body);
}

// After a write that threw: its operations may still be in flight and its
// requests marked as being sent, which nothing would ever send again.
// Ends them, and starts clean; requests that had an answer keep it.
void HttpSink::settle(std::chrono::milliseconds limit) {
  settle_in_flight(*loop_, connections_, limit, "http sink " + where_);
  for (auto& c : connections_) close_connection(*c);
  loop_ = std::make_unique<UringLoop>("http sink " + where_, 256);
  for (Request& r : requests_) {
    if (r.state == Request::State::sending) r.state = Request::State::pending;
  }
}

Outcome HttpSink::write(const Batch& batch, std::string& why) {
  // Out of memory, a refused submission: settled at the next write.
  if (writing_) settle(options_.timeout);
  writing_ = true;
  Outcome outcome;
  try {
    outcome = write_requests(batch, why);
  } catch (const WriteInterrupted&) {
    // A stop: nothing of this write may go on reading the batch once it has
    // thrown. A successor takes the batch over and moves its undelivered
    // events down over the bytes a send still in flight was reading, which
    // then went out torn, inside a correct Content-Length. The stop is what
    // is thrown, whatever settling meets (a new loop refused: settled again
    // at the next write).
    try {
      settle(std::chrono::seconds(1));
      writing_ = false;
    } catch (const std::exception&) {
    }
    throw;
  }
  writing_ = false;
  return outcome;
}

Outcome HttpSink::write_requests(const Batch& batch, std::string& why) {
  retry_after_ = std::chrono::milliseconds(0);
  plan_requests(batch);
  // Once a write: a request resent at once in an earlier try may meet a
  // server's close of a kept-alive connection again in this one.
  for (Request& r : requests_) r.resent = false;
  std::size_t next = 0;  // first request to look at for dispatch
  std::string retry_why;
  std::string& reject_why = reject_why_;
  bool stop_dispatch = false;
  Dialing dialing(host_, port_, false, address_pick_, stop_);
  // Between writes the sink waits on nothing: exchanges a stop or an
  // exception left counted end with the write, not at the next one's
  // settle(), after a backoff that would read as time spent waiting.
  struct ExchangesEnd {
    HttpSink& sink;
    ~ExchangesEnd() {
      for (auto& c : sink.connections_) c->exchanging = false;
      sink.demand_.end_exchanges(std::chrono::steady_clock::now());
    }
  } exchanges_end{*this};

  // One connection while one keeps up (ConnectionDemand): each one more
  // splits the destination's stream of requests into interleaved ones.
  while (connections_.size() < demand_.wanted()) connections_.push_back(std::make_unique<Connection>());

  auto fail = [&](std::size_t index, const std::string& what) {
    Connection& c = *connections_[index];
    if (c.busy) requests_[c.request].state = Request::State::pending;
    if (retry_why.empty()) retry_why = what;
    close_connection(c);
    stop_dispatch = true;
  };
  auto time_left = [](const Connection& c) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(c.deadline - std::chrono::steady_clock::now());
    return std::max(left, std::chrono::milliseconds(1));
  };
  // The request's first send starts its clock (connecting has its own).
  auto start_request = [&](std::size_t index) {
    Connection& c = *connections_[index];
    const auto now = std::chrono::steady_clock::now();
    c.deadline = now + options_.timeout;
    c.exchanging = true;
    demand_.exchange_begins(now);
    std::string reason;
    if (!c.stream.send_next(*loop_, index * Stream::kOps, time_left(c), reason)) fail(index, reason);
  };
  auto send_next = [&](std::size_t index) {
    Connection& c = *connections_[index];
    std::string reason;
    if (!c.stream.send_next(*loop_, index * Stream::kOps, time_left(c), reason)) fail(index, reason);
  };
  auto receive_next = [&](std::size_t index) {
    Connection& c = *connections_[index];
    c.stream.receive(*loop_, c.in, c.in_used, index * Stream::kOps, time_left(c));
  };
  // A parser for the next response on `c`. Bodies are kept (an error's
  // excerpt goes into the log) up to kResponseBodyLimit; headers up to 64 KiB.
  // Not eager: put() returns once the header is whole, before the body
  // starts, so the Content-Length is checked against the limit before Beast
  // 1.74's string body reserves all of it (a server announcing exabytes
  // made that reserve throw out of the sink). The loop below calls put()
  // again for the body.
  auto new_parser = [](Connection& c) {
    c.parser.emplace();
    c.parser->body_limit(kResponseBodyLimit);
    c.parser->header_limit(64 * 1024);
    c.parser->eager(false);
  };
  // A connection that found no descriptor left for its socket (the
  // process's limit, which other backends share) gives its request back to
  // the connections already busy, rather than the whole write backing off
  // as if the destination had failed. False when there are none.
  auto leave_to_others = [&](std::size_t index) -> bool {
    Connection& c = *connections_[index];
    const auto others_busy = std::count_if(connections_.begin(), connections_.end(),
                                           [&](const auto& other) { return other.get() != &c && other->busy; });
    if (!c.stream.out_of_descriptors() || others_busy == 0) return false;
    // Wanting more than it can open, each window would try one more.
    demand_.hold_at(static_cast<std::uint32_t>(others_busy), std::chrono::steady_clock::now());
    requests_[c.request].state = Request::State::pending;
    next = std::min(next, c.request);  // dispatch() looks for pending requests from `next` on
    close_connection(c);
    return true;
  };
  // Gives an idle connection the next pending request; false when none is left.
  auto dispatch = [&](std::size_t index) -> bool {
    if (stop_dispatch) return false;
    while (next < requests_.size() && requests_[next].state != Request::State::pending) ++next;
    if (next >= requests_.size()) return false;
    Connection& c = *connections_[index];
    // A keep-alive connection the server closed while it sat idle is not
    // used again (the request would be lost in a socket nobody reads). A
    // reset loses nothing here: each request is answered, or sent again.
    int idle_error = 0;
    if (c.stream.is_open() && !c.stream.usable_after_idle(idle_error)) close_connection(c);
    c.reused = c.stream.is_open();
    c.request = next;
    requests_[next].state = Request::State::sending;
    c.busy = true;
    c.last_used = std::chrono::steady_clock::now();
    new_parser(c);
    c.in_used = 0;
    build(c, batch, requests_[next]);
    if (c.stream.is_open()) {
      start_request(index);
      return true;
    }
    std::string reason;
    if (!c.stream.dial(*loop_, dialing, c.dial, index * Stream::kOps, options_.connect_timeout, counters_, reason)) {
      if (!leave_to_others(index)) fail(index, reason);
      return false;
    }
    return true;
  };
  // A kept-alive connection the server closed just as its request went
  // out (the close came after usable_after_idle() looked): the request is
  // sent again at once on a new connection, once, as curl and Go do,
  // rather than the whole write backing off, counted as a failure. Not
  // after any byte of an answer, nor on a timeout (the server may be at
  // work on it). Counted as a retry: the server may have taken it before
  // it closed, and an operator who finds it twice needs to see how often.
  auto resend_at_once = [&](std::size_t index) -> bool {
    Connection& c = *connections_[index];
    if (!c.busy || !c.reused || c.in_used != 0 || (c.parser && c.parser->got_some())) return false;
    Request& request = requests_[c.request];
    if (request.resent) return false;
    request.resent = true;
    if (counters_) counters_->retries.add(1);
    request.state = Request::State::pending;
    next = std::min(next, c.request);
    close_connection(c);
    dispatch(index);
    return true;
  };
  // An answered connection takes the next request; where the window that
  // ends shows one connection too few, one more starts too (one at a time:
  // the window after it weighs whether that one was enough).
  auto take_next = [&](std::size_t index) {
    dispatch(index);
    if (!demand_.weigh(std::chrono::steady_clock::now())) return;
    const std::size_t added = demand_.wanted() - 1;
    while (connections_.size() <= added) connections_.push_back(std::make_unique<Connection>());
    if (!connections_[added]->busy) dispatch(added);
  };
  // Cuts every pending request of the batch holding more than
  // request_bytes_limit_ into requests under it, each in the place of the
  // one it cuts (requests stay in event order), as plan_requests() cuts.
  // Busy connections' requests keep their index into the new plan.
  auto cut_pending_to_limit = [&] {
    std::vector<Request> cut;
    cut.reserve(requests_.size() + 8);
    std::vector<std::size_t> moved_to(requests_.size());
    for (std::size_t i = 0; i < requests_.size(); ++i) {
      const Request& r = requests_[i];
      moved_to[i] = cut.size();
      if (r.state != Request::State::pending) {
        cut.push_back(r);
        continue;
      }
      for (std::uint32_t first = r.first; first < r.last;) {
        const std::uint32_t last = request_end(batch, first, r.last);
        cut.push_back(first == r.first && last == r.last ? r : Request{first, last});
        first = last;
      }
    }
    for (auto& c : connections_) {
      if (c->busy) c->request = moved_to[c->request];
    }
    requests_ = std::move(cut);
    next = 0;  // dispatch() goes on to the first pending one
  };
  // A batched request refused for what it holds (400, 422: perhaps for one
  // event of it) goes again in halves, the half the receiver takes
  // delivered, the other halved again; what is refused in the end says
  // why. Counted as a retry. The second half goes in right after the
  // first, so requests stay in event order (one connection keeps total
  // order); inserted before the first is cut, so running out of memory
  // here leaves the plan whole. Refused for its size (413), it and every
  // request of the batch not yet sent are cut at half its bytes, and so
  // are later batches: each 413 at least halves the cut, or cuts a request
  // sent before the cut fell, so they are few (about log2 of max_bytes
  // over the receiver's limit), and none spends the batch's halvings.
  // False when the status is none of those, the request one event, or
  // (400, 422) the batch's halvings spent.
  auto halve = [&](Connection& c, unsigned status) -> bool {
    const Request& request = requests_[c.request];
    if ((status != 400 && status != 413 && status != 422) || request.last - request.first < 2) return false;
    const std::size_t at = c.request;
    const std::uint32_t first = request.first, last = request.last;
    if (status == 413) {
      // Half the bytes of events this one held, below a limit the receiver
      // has (nginx's client_max_body_size is 1 MiB unless raised). Kept
      // for the sink's life.
      // Its events' bytes as planned (NDJSON, before gzip).
      const std::uint64_t bytes = batch.event_ends[last - 1] - (first == 0 ? 0 : batch.event_ends[first - 1]);
      const std::uint64_t halved = std::max<std::uint64_t>(bytes / 2, 1);
      if (halved < request_bytes_limit_) {
        request_bytes_limit_ = halved;
        char line[320];
        const int length = std::snprintf(
            line, sizeof line,
            "HTTP 413 from %s to a request body of %zu bytes (%u events, %llu bytes before framing and gzip): "
            "requests are cut at %llu bytes of events from now on, this batch's too (batch.max_bytes is %llu)",
            where_.c_str(), c.body.size(), last - first, static_cast<unsigned long long>(bytes),
            static_cast<unsigned long long>(request_bytes_limit_), static_cast<unsigned long long>(options_.max_bytes));
        remark(std::string_view(line, std::min<std::size_t>(static_cast<std::size_t>(std::max(length, 0)),
                                                            sizeof line - 1)));
      }
      // The limit is at most half its bytes now: it is cut in two or more.
      requests_[at].state = Request::State::pending;
      requests_[at].resent = requests_[at].misdirected = false;
      cut_pending_to_limit();
      if (counters_) counters_->retries.add(1);
      return true;
    }
    if (splits_left_ == 0) return false;
    const std::uint32_t middle = first + (last - first) / 2;
    requests_.insert(requests_.begin() + static_cast<std::ptrdiff_t>(at) + 1, Request{middle, last});
    for (auto& other : connections_) {
      if (other->busy && other.get() != &c && other->request > at) ++other->request;
    }
    requests_[at].last = middle;
    requests_[at].state = Request::State::pending;
    requests_[at].resent = requests_[at].misdirected = false;
    next = std::min(next, at);
    --splits_left_;
    if (counters_) counters_->retries.add(1);
    return true;
  };
  // `keep`: false when the connection can't be used again whatever the
  // response says (a 2xx whose body was past the limit and not read).
  auto finish_response = [&](std::size_t index, bool keep_connection = true) {
    Connection& c = *connections_[index];
    const auto& response = c.parser->get();
    const unsigned status = response.result_int();
    Request& request = requests_[c.request];
    const Verdict verdict = verdict_of(status, request.misdirected);
    if (verdict == Verdict::delivered) {
      request.state = Request::State::done;
      if (counters_) counters_->body_bytes_sent.add(c.body.size());
    } else if (verdict == Verdict::retry) {
      request.state = Request::State::pending;
      if (retry_why.empty()) {
        retry_why = "HTTP " + std::to_string(status) + " from " + where_;
        if (!response.body().empty()) retry_why += ": " + body_excerpt(response.body());
      }
      const auto after = response.find(http::field::retry_after);
      if (after != response.end()) {
        const std::string_view value(after->value().data(), after->value().size());
        const auto date = response.find(http::field::date);
        const std::chrono::milliseconds asked = parse_retry_after(
            value, date != response.end() ? std::string_view(date->value().data(), date->value().size())
                                          : std::string_view());
        // A long wait is said where it starts, or the backend just falls
        // silent for it: the longest one asked for, in whole seconds up.
        if (asked > retry_after_) {
          retry_after_ = asked;
          const std::size_t said = retry_why.find(" (Retry-After: ");
          if (said != std::string::npos) retry_why.erase(said);
          retry_why += " (Retry-After: " + std::to_string((asked.count() + 999) / 1000) + " s)";
        }
      }
      stop_dispatch = true;
    } else if (halve(c, status)) {
    } else {
      request.state = Request::State::rejected;
      if (reject_why.empty()) {
        reject_why = "HTTP " + std::to_string(status) + " from " + where_;
        if (status >= 300 && status < 400) {
          const auto location = response.find(http::field::location);
          reject_why += " (redirects are not followed";
          if (location != response.end()) {
            reject_why += "; Location: " + std::string(location->value().data(), location->value().size());
          }
          reject_why += ")";
        } else {
          reject_why += ": " + body_excerpt(response.body());
        }
      }
    }
    const bool keep = keep_connection && response.keep_alive() && status != kMisdirected;
    c.busy = false;
    end_exchange(c);
    c.parser.reset();
    if (!keep) close_connection(c);
    take_next(index);
  };

  // A final status read from a header Beast refused: decided as
  // finish_response() decides it, without the header's fields (no
  // Retry-After, no Location), and the connection closed (its framing
  // can't be trusted).
  auto settle_on_unreadable = [&](std::size_t index, unsigned status, const std::string& problem) {
    Connection& c = *connections_[index];
    Request& request = requests_[c.request];
    const std::string what = "HTTP " + std::to_string(status) + " from " + where_ + ", in a response header that " +
                             "does not parse (" + problem + ")";
    const Verdict verdict = verdict_of(status, request.misdirected);
    if (verdict == Verdict::delivered) {
      request.state = Request::State::done;
      if (counters_) counters_->body_bytes_sent.add(c.body.size());
    } else if (verdict == Verdict::retry) {
      request.state = Request::State::pending;
      if (retry_why.empty()) retry_why = what;
      stop_dispatch = true;
    } else if (halve(c, status)) {
    } else {
      request.state = Request::State::rejected;
      if (reject_why.empty()) reject_why = what;
    }
    close_connection(c);  // not busy, no parser, nothing unread kept
    take_next(index);
  };

  // A server may answer before it has read the whole request (401, or 413
  // to a body it won't take) and close, and our send then fails with the
  // answer unread in the socket. Read, the answer decides the request, as
  // any other; sent again, the request would be refused again, for ever.
  auto early_answer = [&](std::size_t index) -> bool {
    Connection& c = *connections_[index];
    if (!c.busy || !c.parser) return false;
    c.in_used += c.stream.read_pending(c.in, c.in_used, 256 * 1024);
    boost::system::error_code ec;
    std::size_t offset = 0;
    while (offset < c.in_used && !ec) {
      const std::size_t used = c.parser->put(boost::asio::const_buffer(c.in.data() + offset, c.in_used - offset), ec);
      if (ec == http::error::need_more) ec = {};
      if (used == 0) break;
      offset += used;
      // An interim response (100 Continue) is not the answer.
      if (c.parser->is_done() && c.parser->get().result_int() / 100 == 1) new_parser(c);
    }
    c.in_used = 0;
    if (!c.parser->is_header_done() || c.parser->get().result_int() < 200) return false;
    finish_response(index, false);
    return true;
  };

  for (std::size_t i = 0; i < std::min<std::size_t>(connections_.size(), demand_.wanted()); ++i) {
    if (!dispatch(i)) break;
  }
  loop_->run(stop_, [&](std::uint64_t tag, int result) {
    const std::size_t index = tag / Stream::kOps;
    const std::uint64_t op = tag % Stream::kOps;
    Connection& c = *connections_[index];
    std::string reason;
    if (op != Stream::kSend && op != Stream::kReceive) {  // connect and TLS handshake
      switch (c.stream.setup_completed(*loop_, op, result, tls_.get(), index * Stream::kOps, options_.connect_timeout,
                                       where_, counters_, dialing, c.dial, reason)) {
        case Stream::Progress::pending: return;
        case Stream::Progress::failed:
          if (leave_to_others(index)) return;  // the host's next address found no descriptor
          return fail(index, reason);
        case Stream::Progress::ready: return start_request(index);
      }
    }
    if (op == Stream::kSend) {
      if (result <= 0) {
        if (result == -ECANCELED && counters_) counters_->timeouts.add(1);
        // A server that answered before reading the whole request may close
        // (our send fails) or only stop reading (it times out): its answer
        // decides the request either way. Not on a stop, which cancels too
        // and dispatches nothing more.
        const bool stopping = stop_ != nullptr && stop_->load(std::memory_order_relaxed);
        if ((result != -ECANCELED || !stopping) && early_answer(index)) return;
        if ((result == -EPIPE || result == -ECONNRESET) && resend_at_once(index)) return;
        return fail(index, "send to " + where_ + ": " + io_error_text(result, "the server"));
      }
      if (c.stream.sent_some(result)) {
        receive_next(index);
      } else {
        send_next(index);
      }
      return;
    }
    const long plain = c.stream.received(result, c.in, c.in_used);
    if (plain == -EAGAIN) return receive_next(index);  // a TLS record not yet whole, or a session ticket
    boost::system::error_code ec;
    // A final status already read has decided the request: a body that then
    // stalls, breaks off or is malformed loses the connection, not the
    // answer. Sent again, an accepted request would be accepted twice.
    const auto answered = [&] { return c.parser->is_header_done() && c.parser->get().result_int() >= 200; };
    // The status decides; the unread rest goes with the connection.
    const auto settle_on_status = [&] {
      c.in_used = 0;
      finish_response(index, false);
    };
    if (plain <= 0) {
      if (plain == 0 && c.parser->need_eof()) {
        c.parser->put_eof(ec);
        if (!ec && c.parser->is_done()) return finish_response(index);
      }
      if (plain == -ECANCELED && counters_) counters_->timeouts.add(1);
      if (answered()) return settle_on_status();
      if ((plain == 0 || plain == -ECONNRESET) && resend_at_once(index)) return;
      return fail(index, "waiting for the response from " + where_ + ": " +
                             (plain == -ECANCELED
                                  ? "no response within " + std::to_string(options_.timeout.count()) + " ms"
                                  : io_error_text(static_cast<int>(plain), "the server")));
    }
    // Bytes Beast could not use yet (a header cut between reads) wait at
    // the front of `in` and are offered again with what follows.
    const std::size_t size = c.in_used + static_cast<std::size_t>(plain);
    std::size_t offset = 0;
    for (;;) {
      while (offset < size && !c.parser->is_done()) {
        const std::size_t used = c.parser->put(boost::asio::const_buffer(c.in.data() + offset, size - offset), ec);
        if (ec == http::error::need_more) ec = {};
        // A body past the limit is not read (Beast checks a chunked or
        // to-the-end body as it comes, not a Content-Length): the status
        // decides, and the connection goes with the unread rest. Retrying
        // an accepted request for its answer's size would send it again.
        if (c.parser->is_header_done() && !c.parser->is_done() &&
            (ec == http::error::body_limit || c.parser->content_length().value_or(0) > kResponseBodyLimit)) {
          return settle_on_status();
        }
        if (ec && answered()) return settle_on_status();
        // A header Beast refused: its status still decides, where it can be
        // read. Retried for its header, an accepted request was sent again,
        // and again, for ever.
        if (const auto status = ec && !c.parser->is_header_done()
                                    ? raw_status(std::string_view(c.in.data() + offset, size - offset))
                                    : std::nullopt;
            status && *status >= 200) {
          return settle_on_unreadable(index, *status, ec.message());
        }
        if (ec) {
          // An answer that is not HTTP at all (another protocol on the
          // port: SSH, TLS, a database) named as such, with its first bytes.
          const std::string_view got(c.in.data() + offset, size - offset);
          if (!c.parser->is_header_done() && offset == 0 && !got.starts_with("HTTP/")) {
            return fail(index, "the answer from " + where_ + " is not HTTP (it begins \"" +
                                   body_excerpt(got.substr(0, 32)) + "\")");
          }
          return fail(index, "bad response from " + where_ + ": " + ec.message());
        }
        if (used == 0) break;
        offset += used;
      }
      // Beast reads any three digits as a status; under 100 there is none
      // (RFC 9110 section 15: 1xx to 5xx, and a client takes an unknown
      // class as its x00). A broken answer, as an unparsable one is: it was
      // taken for a 4xx, and its events dropped as rejected.
      if (c.parser->is_header_done() && c.parser->get().result_int() < 100) {
        char digits[8];
        std::snprintf(digits, sizeof digits, "%03u", c.parser->get().result_int());
        return fail(index, "bad response from " + where_ + ": status " + digits + " is no HTTP status");
      }
      // An interim response (100 Continue, 103 Early Hints) comes before the
      // real one (RFC 9110 section 15.2): skipped, or every later response
      // would be taken for the next request's.
      if (!c.parser->is_done() || c.parser->get().result_int() / 100 != 1) break;
      if (c.parser->get().result_int() == 101) return fail(index, where_ + " switched protocols (HTTP 101)");
      new_parser(c);
    }
    c.in_used = 0;
    // Bytes past a whole response: the server framed it otherwise than we
    // read it (a body on a 204, more than its Content-Length). Left on the
    // connection, the rest of them would be read as the next request's
    // answer: the connection is not kept.
    if (c.parser->is_done()) return finish_response(index, offset == size);
    if (offset < size) {
      std::memmove(c.in.data(), c.in.data() + offset, size - offset);
      c.in_used = size - offset;
    }
    // Bytes Beast holds back without end: a chunk's size line or a trailer
    // that never ends (it bounds neither). Kept, they doubled `in` until
    // memory ran out, for as long as the timeout let the server go on.
    if (c.in_used > kMostUnparsedBytes) {
      if (answered()) return settle_on_status();
      return fail(index, "response from " + where_ + ": " + std::to_string(c.in_used) +
                             " bytes that do not parse as the rest of a response");
    }
    // The request's timeout holds however the bytes come: each receive's
    // own never fires where bytes are always waiting (interim responses
    // without end, a body in pieces under a millisecond apart).
    if (std::chrono::steady_clock::now() >= c.deadline) {
      if (counters_) counters_->timeouts.add(1);
      if (answered()) return settle_on_status();
      return fail(index, "waiting for the response from " + where_ + ": no response within " +
                             std::to_string(options_.timeout.count()) + " ms");
    }
    receive_next(index);
  });
  address_pick_ = dialing.preferred();  // where the next write's connections start
  bool all_resolved = true;
  rejected_ranges_.clear();
  for (const Request& r : requests_) {
    if (r.state == Request::State::pending || r.state == Request::State::sending) all_resolved = false;
    if (r.state == Request::State::rejected) rejected_ranges_.emplace_back(r.first, r.last);
  }
  if (!all_resolved) {
    why = retry_why.empty() ? "requests to " + where_ + " did not finish" : retry_why;
    if (!reject_why.empty()) why += "; also " + reject_why;
    return Outcome::retry;
  }
  if (!rejected_ranges_.empty()) why = reject_why;
  return Outcome::ok;
}

std::uint32_t HttpSink::delivered_events() const noexcept {
  std::uint32_t delivered = 0;
  for (const Request& r : requests_) {
    if (r.state == Request::State::done) delivered += r.last - r.first;
  }
  return delivered;
}

void HttpSink::delivered_ranges(std::vector<std::pair<std::uint32_t, std::uint32_t>>& out) const {
  out.clear();
  // Requests are in event order (a refused one's halves in its place).
  for (const Request& r : requests_) {
    if (r.state != Request::State::done) continue;
    if (!out.empty() && out.back().second == r.first) {
      out.back().second = r.last;
    } else {
      out.emplace_back(r.first, r.last);
    }
  }
}

void HttpSink::reopen() {
  if (tls_) reload_tls(tls_, options_.tls, host_, "http sink " + where_);
}

}  // namespace ringroute::sinks
