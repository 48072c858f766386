// The HTTP sink reading any bytes a server may answer with: each input is
// one response, written by a server thread on 127.0.0.1 and followed by a
// close. Whatever it is (truncated, chunked, huge headers, garbage), the sink
// must settle on ok, retry or a rejection without crashing or hanging.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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
  static std::unique_ptr<HttpSink> sink = std::make_unique<HttpSink>(HttpSinkOptions{
      .url = "http://127.0.0.1:" + std::to_string(server.port) + "/",
      .timeout = std::chrono::milliseconds(200),
      .max_connections = 1,
      .batched = true});
  static std::uint64_t serial = 0;
  const std::string response(reinterpret_cast<const char*>(data), size);
  std::thread peer([&] {
    const int fd = ::accept(server.fd, nullptr, nullptr);
    if (fd < 0) return;
    // Read the request (it is small: headers and one short line), then answer.
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
  });
  Batch batch;
  batch.end = ++serial;  // a new batch each time
  batch.bytes.append("{\"a\":1}\n");
  batch.event_ends.push_back(static_cast<std::uint32_t>(batch.bytes.size()));
  batch.events = 1;
  std::string why;
  const Outcome outcome = sink->write(batch, why);
  if (outcome == Outcome::failed) std::abort();  // the http sink never gives up a whole batch this way
  if (outcome == Outcome::retry && why.empty()) std::abort();
  peer.join();
  return 0;
}
