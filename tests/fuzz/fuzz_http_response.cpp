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

#include "ringroute/sinks/batch.hpp"
#include "ringroute/sinks/http_sink.hpp"

namespace {

struct Server {
  int listener = -1;
  std::uint16_t port = 0;
  Server() {
    listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address);
    ::listen(listener, 16);
    socklen_t length = sizeof address;
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
    port = ntohs(address.sin_port);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ringroute::sinks;
  static Server server;
  static std::unique_ptr<HttpSink> sink = std::make_unique<HttpSink>(HttpSinkOptions{
      .url = "http://127.0.0.1:" + std::to_string(server.port) + "/",
      .timeout = std::chrono::milliseconds(200),
      .max_connections = 1,
      .batched = true});
  static std::uint64_t serial = 0;
  const std::string response(reinterpret_cast<const char*>(data), size);
  std::thread peer([&] {
    const int fd = ::accept(server.listener, nullptr, nullptr);
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
