// The HTTP sink reading any bytes a server may answer with: each input is
// the response a server thread on 127.0.0.1 gives every request of one
// write, each followed by a close. Whatever it is (truncated, chunked,
// huge headers, garbage), the sink must settle on ok, retry or a rejection
// without crashing or hanging. The batch holds 1 to 3 events (the input's
// size modulo 3, so the seeds stay responses), so a 400, 413 or 422 halves
// the request (in a header that parses or one that does not) and the
// halves are answered too.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "peers.hpp"
#include "ringroute/sinks/batch.hpp"
#include "ringroute/sinks/http_sink.hpp"


extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ringroute::sinks;
  static const ringroute::testing::BoundSocket server = ringroute::testing::bind_loopback();
  // A sink an input: one learns a smaller request size from a 413 and
  // keeps it, and every later input's requests were single events.
  HttpSink sink(HttpSinkOptions{.url = "http://127.0.0.1:" + std::to_string(server.port) + "/",
                                .timeout = std::chrono::milliseconds(200),
                                .max_connections = 1,
                                .batched = true});
  const std::string response(reinterpret_cast<const char*>(data), size);
  std::atomic<bool> written{false};
  std::thread peer([&] {
    while (!written.load(std::memory_order_acquire)) {
      pollfd ready{server.fd, POLLIN, 0};
      if (::poll(&ready, 1, 1) <= 0) continue;  // each input waits up to this after its write
      const int fd = ::accept(server.fd, nullptr, nullptr);
      if (fd < 0) continue;
      // Read the request (small: headers and a few short lines; its body
      // ends with a newline), then answer.
      char buffer[4096];
      std::string request;
      while (request.find("\r\n\r\n") == std::string::npos || request.back() != '\n') {
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        request.append(buffer, static_cast<std::size_t>(n));
      }
      ::send(fd, response.data(), response.size(), MSG_NOSIGNAL);
      ::shutdown(fd, SHUT_RDWR);
      ::close(fd);
    }
  });
  Batch batch;
  batch.end = 1;
  const std::size_t events = 1 + size % 3;
  for (std::size_t i = 0; i < events; ++i) {
    batch.bytes.append("{\"a\":" + std::to_string(i) + "}\n");
    batch.event_ends.push_back(static_cast<std::uint32_t>(batch.bytes.size()));
  }
  batch.events = static_cast<std::uint32_t>(events);
  std::string why;
  const Outcome outcome = sink.write(batch, why);
  written.store(true, std::memory_order_release);  // pairs with the peer's acquire: it stops accepting
  peer.join();
  if (outcome == Outcome::failed) std::abort();  // the http sink never gives up a whole batch this way
  if (outcome == Outcome::retry && why.empty()) std::abort();
  // Every event is delivered or refused, none twice.
  if (outcome == Outcome::ok && sink.rejected_events() > events) std::abort();
  return 0;
}
