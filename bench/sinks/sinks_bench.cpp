// The json formatter and the syslog encoder per event; the file sink's two
// submission styles (write(2) and io_uring) per batch, to tmpfs and to the
// disk under /tmp; the socket sink to a TCP receiver that discards; the HTTP
// sink to nginx answering 204 (started by the benchmark when installed).
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <string>
#include <vector>

#include "ringroute/event/event.hpp"
#include "ringroute/ingest/event_json.hpp"
#include "peers.hpp"
#include "ringroute/sinks/event_encoder.hpp"
#include "ringroute/sinks/file_sink.hpp"
#include "ringroute/sinks/http_sink.hpp"
#include "ringroute/sinks/socket_sink.hpp"
#include "ringroute/sinks/json_formatter.hpp"

namespace {

using namespace ringroute;

// One of DESIGN.md's generated events with a 200-byte body, as a record.
struct SampleEvent {
  std::vector<std::byte> record;
  event::EventView view;
  SampleEvent() {
    ingest::EventLineParser parser;
    ingest::ParsedEvent parsed;
    const std::string body = "{\"seq\":12,\"pad\":\"" + std::string(200 - 19, 'x') + "\"}";
    const std::string line = R"({"id":"bench0-123456","timestamp":1795452928123456789,"severity":"warning",)"
                             R"("verbosity":"info","account_id":"acct-012345","account_tree":["org-01","grp-0123"],)"
                             R"("app_name":"app042","node":"gw1","body":)" + body + "}";
    if (parser.parse(line, parsed) || ingest::encode_record(parsed, record)) std::abort();
    if (event::decode(record, view) != event::DecodeError::none) std::abort();
  }
};

void BM_JsonFormat(benchmark::State& state) {
  SampleEvent sample;
  sinks::JsonFormatOptions options;
  options.include_metadata = state.range(0) != 0;
  sinks::JsonFormatter formatter(options);
  sinks::ByteBuffer out(1 << 20);
  for (auto _ : state) {
    if (out.size() > (1 << 20) - 4096) out.clear();
    formatter.format(sample.view, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  out.clear();
  formatter.format(sample.view, out);
  state.counters["line_bytes"] = static_cast<double>(out.size());
}
BENCHMARK(BM_JsonFormat)->Arg(1)->Arg(0);

// Batches of 1000 formatted events (~460 KB) appended to one file.
void BM_FileSinkBatch(benchmark::State& state) {
  const bool uring = state.range(0) != 0;
  const bool tmpfs = state.range(1) != 0;
  const std::string dir = std::string(tmpfs ? "/dev/shm" : "/tmp") + "/rr-bench-sink-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  SampleEvent sample;
  sinks::JsonFormatter formatter;
  sinks::Batch batch;
  for (int i = 0; i < 1000; ++i) formatter.format(sample.view, batch.bytes);
  batch.events = 1000;
  sinks::FileSinkOptions options;
  options.path = dir + "/out.ndjson";
  options.io = uring ? sinks::FileIo::uring : sinks::FileIo::write;
  options.rotate_bytes = 256ull << 20;  // bounds what a long run leaves in memory or on disk
  options.keep = 0;
  sinks::FileSink sink(options);
  std::string why;
  for (auto _ : state) {
    if (sink.write(batch, why) != sinks::Outcome::ok) state.SkipWithError(why.c_str());
  }
  state.SetItemsProcessed(state.iterations() * 1000);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(batch.bytes.size()));
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_FileSinkBatch)
    ->ArgNames({"uring", "tmpfs"})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Args({0, 0})
    ->Args({1, 0})
    ->UseRealTime();

void BM_SyslogEncode(benchmark::State& state) {
  SampleEvent sample;
  sinks::EncodeOptions options;
  options.wrap = sinks::Wrap::syslog;
  sinks::EventEncoder encoder(options);
  sinks::ByteBuffer out(1 << 20);
  for (auto _ : state) {
    if (out.size() > (1 << 20) - 4096) out.clear();
    encoder.encode(sample.view, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SyslogEncode);

// A batch of `count` events as the router hands it to a sink.
void fill_batch(sinks::Batch& batch, const sinks::EncodeOptions& options, int count) {
  SampleEvent sample;
  sinks::EventEncoder encoder(options);
  batch.reset();
  for (int i = 0; i < count; ++i) {
    encoder.encode(sample.view, batch.bytes);
    batch.event_ends.push_back(static_cast<std::uint32_t>(batch.bytes.size()));
  }
  batch.events = static_cast<std::uint32_t>(count);
}

// A TCP receiver on 127.0.0.1 that reads and discards: the sink's own cost,
// with the kernel's loopback copy.
class DiscardReceiver {
 public:
  DiscardReceiver() {
    const testing::BoundSocket bound = testing::bind_loopback();
    listener_ = bound.fd;
    port_ = bound.port;
    thread_ = std::thread([this] {
      std::vector<std::thread> readers;
      for (;;) {
        const int fd = ::accept(listener_, nullptr, nullptr);
        if (fd < 0) break;
        readers.emplace_back([fd] {
          std::vector<char> buffer(1 << 20);
          while (::recv(fd, buffer.data(), buffer.size(), 0) > 0) {
          }
          ::close(fd);
        });
      }
      for (auto& r : readers) r.join();
    });
  }
  ~DiscardReceiver() {
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    thread_.join();
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }

 private:
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

// Syslog over TCP, octet counting, batches of 1000 (~500 KB).
void BM_SyslogTcpToDiscard(benchmark::State& state) {
  std::optional<DiscardReceiver> receiver(std::in_place);
  sinks::EncodeOptions options;
  options.wrap = sinks::Wrap::syslog;
  sinks::Batch batch;
  fill_batch(batch, options, 1000);
  {
    sinks::SocketSink sink({.url = "syslog+tcp://127.0.0.1:" + std::to_string(receiver->port()),
                            .max_connections = static_cast<std::uint32_t>(state.range(0))});
    std::string why;
    for (auto _ : state) {
      batch.end += 1000;  // a new batch each time, not a retry of the last
      if (sink.write(batch, why) != sinks::Outcome::ok) state.SkipWithError(why.c_str());
    }
  }
  state.SetItemsProcessed(state.iterations() * 1000);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(batch.bytes.size()));
}
BENCHMARK(BM_SyslogTcpToDiscard)->ArgName("max_connections")->Arg(1)->Arg(4)->UseRealTime();

// Syslog over UDP, one datagram per event, to a receiver that discards (the
// kernel's per-datagram cost is the limit: about 0.3M datagrams/s here).
// items_per_second counts the datagrams that arrived: a UDP receiver whose
// buffer is full drops them on its side while the send succeeds, so what
// was sent (`sent`) says nothing of what got there.
void BM_SyslogUdpToDiscard(benchmark::State& state) {
  const testing::BoundSocket bound = testing::bind_loopback(SOCK_DGRAM, 8 << 20);
  const int fd = bound.fd;
  std::atomic<std::uint64_t> received{0};
  std::thread reader([&] {
    char buffer[65536];
    while (::recv(fd, buffer, sizeof buffer, 0) > 0) received.fetch_add(1, std::memory_order_relaxed);
  });
  sinks::EncodeOptions options;
  options.wrap = sinks::Wrap::syslog;
  options.framing = sinks::Framing::none;
  sinks::Batch batch;
  fill_batch(batch, options, 1000);
  {
    sinks::SocketSink sink({.url = "syslog+udp://127.0.0.1:" + std::to_string(bound.port)});
    std::string why;
    for (auto _ : state) {
      batch.end += 1000;
      // A full send buffer is EAGAIN, a retry: counted, then sent again.
      while (sink.write(batch, why) == sinks::Outcome::retry) {
        state.counters["retries"] += 1;
      }
    }
  }
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
  reader.join();
  // What the reader had read by the shutdown: at most a receive buffer's
  // worth arrived after the timed loop, out of hundreds of thousands.
  state.SetItemsProcessed(static_cast<std::int64_t>(received.load()));
  state.counters["sent"] = static_cast<double>(state.iterations() * 1000);
  state.counters["received"] = static_cast<double>(received.load());
}
BENCHMARK(BM_SyslogUdpToDiscard)->UseRealTime();

// nginx on 127.0.0.1 answering 204 to everything, one worker, keep-alive.
class Nginx {
 public:
  Nginx() : dir_("bench-nginx") {
    const std::string program = testing::find_program("nginx");
    if (program.empty()) return;
    port_ = testing::free_port();
    std::filesystem::create_directories(dir_ / "tmp");
    std::ofstream(dir_ / "nginx.conf")
        << (::geteuid() == 0 ? "user root;\n" : "") << "worker_processes 1;\ndaemon off;\npid " << (dir_ / "nginx.pid")
        << ";\nerror_log " << (dir_ / "error.log") << ";\nevents { worker_connections 1024; }\n"
        << "http {\n  access_log off;\n  client_max_body_size 0;\n  client_body_buffer_size 4m;\n"
        << "  keepalive_requests 100000000;\n  client_body_temp_path " << (dir_ / "tmp") << ";\n"
        << "  proxy_temp_path " << (dir_ / "tmp") << ";\n  fastcgi_temp_path " << (dir_ / "tmp") << ";\n"
        << "  server {\n    listen 127.0.0.1:" << port_ << ";\n    location / { return 204; }\n  }\n}\n";
    child_.start({program, "-p", dir_.path(), "-e", dir_ / "error.log", "-c", dir_ / "nginx.conf"}, dir_ / "out.log");
    for (int i = 0; i < 300 && !testing::tcp_accepts(port_); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!testing::tcp_accepts(port_)) port_ = 0;
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::string error_log() const { return testing::read_text(dir_ / "error.log"); }

 private:
  testing::TempDir dir_;
  testing::Child child_;
  std::uint16_t port_ = 0;
};

// range(0): events per request (1: Kazoo's one event per request).
void BM_HttpToNginx(benchmark::State& state) {
  Nginx nginx;
  if (nginx.port() == 0) {
    state.SkipWithError("nginx is not installed or did not start");
    return;
  }
  const int per_request = static_cast<int>(state.range(0));
  sinks::Batch batch;
  fill_batch(batch, {}, 1000);
  sinks::HttpSink sink({.url = "http://127.0.0.1:" + std::to_string(nginx.port()) + "/edr",
                        .max_connections = static_cast<std::uint32_t>(state.range(1)),
                        .batched = per_request > 1,
                        .max_events = static_cast<std::uint32_t>(per_request),
                        .max_bytes = 64ull << 20});
  std::string why;
  for (auto _ : state) {
    batch.end += 1000;
    if (sink.write(batch, why) != sinks::Outcome::ok) {
      state.SkipWithError((why + " / " + nginx.error_log()).c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(BM_HttpToNginx)
    ->ArgNames({"per_request", "max_connections"})
    ->Args({1000, 1})
    ->Args({1, 1})
    ->Args({1, 8})
    ->UseRealTime();

}  // namespace
