#pragma once
// The HTTP sink (`type: "http"`): Kazoo's http backend with batching.
// HTTP/1.1 over the sink thread's io_uring on keep-alive connections: one
// while one keeps up, more in parallel (up to `max_connections`) only while
// it does not (ConnectionDemand), responses parsed by Boost.Beast; https
// through OpenSSL over memory BIOs on the same loop, the certificate always
// verified (`ca_file`, `ca_path` or the system store; `server_name` or the URL's host).
//
// A batch from the router is cut into requests at event boundaries: one event
// per request without `batch` (as Kazoo), else as many as `batch.max_events`
// and `batch.max_bytes` allow (an event larger than max_bytes goes alone).
// Outcomes per request: 2xx done; 429, 5xx, connection errors and timeouts
// retried (the batch's other requests are not sent again); a batched
// request answered 400 or 422 halved down to the events refused (see
// kMostSplitsPerBatch); one answered 413 cut, with every request not yet
// sent and every later one, at half its bytes (request_bytes_limit_); 3xx
// (redirects are not followed), other 4xx and what is refused in the end
// rejected: counted, logged with the status and the first bytes of the
// body, never retried as they were.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ringroute/sinks/connection_demand.hpp"
#include "ringroute/sinks/sink.hpp"
#include "ringroute/sinks/tls_options.hpp"

namespace ringroute::sinks {

struct HttpSinkOptions {
  std::string url;
  std::string method = "POST";
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{10000};  // sending a request and receiving its response
  std::uint32_t max_connections = 8;
  bool batched = false;  // false: one event per request
  std::uint32_t max_events = 1000;
  std::uint64_t max_bytes = 1 << 20;
  bool json_array = false;  // body as [e1,e2,...] instead of NDJSON
  bool gzip = false;
  TlsOptions tls;  // https
};

class UringLoop;
class TlsContext;

class HttpSink final : public Sink {
 public:
  // Throws std::runtime_error for a URL it can't use or an io_uring refused.
  explicit HttpSink(HttpSinkOptions options);
  ~HttpSink() override;
  [[nodiscard]] std::uint32_t delivered_events() const noexcept override;
  void delivered_ranges(std::vector<std::pair<std::uint32_t, std::uint32_t>>& out) const override;

  Outcome write(const Batch& batch, std::string& why) override;
  // Closes connections idle for a minute, past the first.
  void tick(std::chrono::steady_clock::time_point now) override;
  // SIGHUP: TLS files read again for the connections made from now on.
  void reopen() override;

 private:
  struct Connection;
  struct Request {
    std::uint32_t first = 0, last = 0;  // events [first, last)
    enum class State : std::uint8_t { pending, sending, done, rejected } state = State::pending;
    bool resent = false;  // sent again at once after a reused connection failed it (once a request a write)
    bool misdirected = false;  // answered 421 once: retried on a new connection, refused at a second
  };

  void settle(std::chrono::milliseconds limit);
  void plan_requests(const Batch& batch);
  // Where a request that starts at event `first` ends, at most at `end`:
  // as many events as batch.max_events and the byte limit (max_bytes, or
  // the cut a 413 taught, the lower) allow.
  [[nodiscard]] std::uint32_t request_end(const Batch& batch, std::uint32_t first, std::uint32_t end) const noexcept;
  void build(Connection& c, const Batch& batch, const Request& request);
  void close_connection(Connection& c) noexcept;
  // Its request answered or given up: the time it waited counted (demand_).
  void end_exchange(Connection& c) noexcept;

  HttpSinkOptions options_;
  ConnectionDemand demand_;  // how many connections requests are spread over
  std::string host_header_, target_, authorization_, where_;
  std::string host_;
  std::uint16_t port_ = 80;
  bool user_content_type_ = false;
  bool user_agent_ = false;  // headers name a User-Agent: no default one
  std::unique_ptr<UringLoop> loop_;
  std::size_t address_pick_ = 0;  // which of the host's addresses a write dials first (see Dialing)
  // Set while write() runs: still set at the next call, the last one ended
  // in an exception, and its connections, ring and request states can't
  // be trusted.
  bool writing_ = false;
  Outcome write_requests(const Batch& batch, std::string& why);
  std::unique_ptr<TlsContext> tls_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::uint64_t batch_first_ = ~0ull, batch_end_ = ~0ull;
  std::uint32_t batch_ring_ = ~0u;
  std::vector<Request> requests_;  // in event order; a request refused for its content or size cut in its place
  std::string reject_why_;  // the first rejection of the batch in progress
  // A batched request refused for its content (400, 422) is sent again in
  // two halves, and so on down to the events the receiver refuses: one bad
  // event (a trusted body that is no JSON) took up to max_events good ones
  // with it. At most this many halvings a batch: a bad event in 1,000
  // takes 10, and a receiver that refuses everything costs twice this many
  // requests more, not one an event. A 413 spends none of them (see
  // request_bytes_limit_).
  static constexpr std::uint32_t kMostSplitsPerBatch = 32;
  std::uint32_t splits_left_ = 0;
  // At most half the event bytes of the last request answered 413 (a
  // receiver's limit below max_bytes, which took all the events of every
  // request over it): requests are cut at this or max_bytes, the lower,
  // the batch's pending ones at once. Only falls, each 413 at least
  // halving it or cutting a request sent before it fell, so a batch meets
  // about log2(max_bytes / the receiver's limit) of them, and later
  // batches none.
  std::uint64_t request_bytes_limit_ = ~0ull;
};

}  // namespace ringroute::sinks
