// `ringroute bench ring`: producer processes -> one ring -> one consumer.
//
// The consumer decodes every record (as the router does) and releases space
// after each poll. Producers use batch emit with RR_EMIT_BODY_TRUSTED, so the
// figure is the ring and the encoder, not JSON validation (bench/ingest has
// that). `--size` is the whole record on the ring, header included.
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "ringroute/event/event.hpp"
#include "ringroute/producer.hpp"
#include "ringroute/ring/ring.hpp"
#include "ringroute/tools/commands.hpp"
#include "bench_producers.hpp"

namespace ringroute::tools {

namespace {

struct BenchRingArgs {
  unsigned producers = 1;
  std::size_t size = 64;
  double seconds = 5;
  unsigned runs = 1;
  std::size_t batch = 64;
  std::uint64_t ring_bytes = 8ull << 20;
  bool json = false;
  bool quiet = false;
};

// A body padded so the record comes to `size` bytes on the ring, for an id
// of `id_bytes` and a node of `node_bytes`.
std::string make_body(std::size_t size, std::size_t id_bytes, std::size_t node_bytes, std::size_t app_bytes) {
  // With a 1-digit sequence the record is size - 7 bytes, so ids of 1 to 8
  // digits (the first 100M events of a producer) all align to `size`.
  const std::size_t fixed = ring::kRecordHeaderBytes + event::kFixedBytes + 3 * 2 + id_bytes + node_bytes +
                             app_bytes + 7;
  const std::string_view open = R"({"p":")";
  const std::string_view close = R"("})";
  const std::size_t minimum = open.size() + close.size();
  const std::size_t body = size > fixed + minimum ? size - fixed : minimum;
  return std::string(open) + std::string(body - minimum, 'x') + std::string(close);
}

[[noreturn]] void run_producer(const std::string& ring, unsigned index, const BenchRingArgs& args,
                               BenchControl* control) {
  EventProducer producer;
  rr_producer_options options{};
  const std::string name = "b" + std::to_string(index);
  options.name = name.c_str();
  options.node = "bench";
  options.wait_timeout_ns = 50'000'000;  // wait for room: full is counted, nothing is dropped
  rr_error error{};
  if (producer.open(ring, &options, &error) != RR_OK) {
    std::snprintf(control->error, sizeof control->error, "producer %u: %s", index, error.message);
    control->failed.store(1);
    ::_exit(1);
  }
  // Before the go: the first lap's page faults are start-up, not throughput.
  (void)producer.prefault();
  const std::string body = make_body(args.size, name.size() + 1 + 1, 5, 5);
  std::vector<rr_event> events(args.batch);
  for (auto& e : events) {
    e.app_name = to_rr_str("bench");
    e.body = to_rr_str(body);
  }
  control->ready.fetch_add(1);
  while (control->go.load(std::memory_order_acquire) == 0) ::sched_yield();
  while (control->stop.load(std::memory_order_relaxed) == 0) {
    const rr_status s = producer.emit_batch(events, RR_EMIT_BODY_TRUSTED);
    if (s != RR_OK && s != RR_FULL) {
      std::snprintf(control->error, sizeof control->error, "producer %u: emit: %s", index, rr_status_message(s));
      control->failed.store(1);
      ::_exit(1);
    }
  }
  ::_exit(0);
}

struct RunResult {
  double events_per_sec = 0;
  double bytes_per_sec = 0;
  std::uint64_t events = 0;
  std::uint64_t full = 0;
  std::uint64_t corrupt = 0;
  double record_bytes_mean = 0;
  std::uint64_t consumer_sleeps = 0;
};

RunResult run_once(const BenchRingArgs& args, unsigned run) {
  const std::string ring_name = "rr-bench-" + std::to_string(::getpid()) + "-" + std::to_string(run);
  ring::SegmentOptions seg_options;
  seg_options.capacity_bytes = args.ring_bytes;
  seg_options.mode = 0600;
  ring::Segment segment = ring::Segment::create_or_attach(ring_name, seg_options);
  struct Cleanup {
    std::string name;
    ~Cleanup() { ring::Segment::remove(name); }
  } cleanup{ring_name};

  ProducerProcesses producers(args.producers, [&](unsigned i, BenchControl* control) {
    run_producer(ring_name, i, args, control);
  });
  catch_interrupts();
  BenchControl* control = &producers.control();
  if (!producers.wait_ready()) throw std::runtime_error(control->error);

  ring::Consumer consumer(segment);
  ring::IdleStrategy idle;
  std::uint64_t events = 0;
  std::uint64_t checksum = 0;
  std::uint64_t corrupt = 0;
  auto on_record = [&](std::span<const std::byte> payload, std::uint64_t) {
    event::EventView view;
    if (event::decode(payload, view) != event::DecodeError::none) [[unlikely]] {
      ++corrupt;
      return;
    }
    checksum += view.body.size();
    ++events;
  };

  const std::int64_t start = now_ns();
  control->go.store(1, std::memory_order_release);
  const std::int64_t stop_at = start + static_cast<std::int64_t>(args.seconds * 1e9);
  std::int64_t next_report = start + 1'000'000'000;
  std::uint64_t events_at_report = 0;
  std::uint64_t polls = 0;
  for (;;) {
    const std::size_t n = consumer.poll(on_record, 4096);
    if (n != 0) {
      consumer.release(consumer.read_position());
      idle.reset();
    } else {
      idle.idle(consumer);
    }
    if (n == 0 || ++polls % 64 == 0) {
      const std::int64_t now = now_ns();
      if (now >= stop_at || bench_interrupted) break;
      if (now >= next_report && !args.quiet) {
        const double rate = static_cast<double>(events - events_at_report) / ((now - next_report + 1e9) / 1e9);
        const auto totals = ring::sum_producer_slots(segment.header());
        std::fprintf(stderr, "  %5.1fs  %8.2fM events/s  %7.3f GB/s  full=%llu\n", (now - start) / 1e9,
                     rate / 1e6, rate * static_cast<double>(args.size) / 1e9,
                     static_cast<unsigned long long>(totals.full));
        events_at_report = events;
        next_report += 1'000'000'000;
      }
    }
  }
  control->stop.store(1, std::memory_order_relaxed);
  if (bench_interrupted) return {};  // the caller says so; the ring is removed, the producers killed
  // Drain while the producers finish their last batches.
  for (;;) {
    while (consumer.poll(on_record, 4096) != 0) consumer.release(consumer.read_position());
    if (producers.reap_exited()) break;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  while (consumer.poll(on_record, 4096) != 0) consumer.release(consumer.read_position());
  const std::int64_t end = now_ns();
  if (control->failed.load() != 0) throw std::runtime_error(control->error);

  const auto totals = ring::sum_producer_slots(segment.header());
  RunResult r;
  r.events = events;
  r.full = totals.full;
  r.corrupt = corrupt;
  r.consumer_sleeps = segment.header().consumer_sleeps.read();
  const double elapsed = (end - start) / 1e9;
  r.events_per_sec = events / elapsed;
  r.record_bytes_mean = totals.written ? static_cast<double>(totals.bytes) / totals.written : 0;
  r.bytes_per_sec = r.events_per_sec * r.record_bytes_mean;
  if (totals.written != events) {
    throw std::runtime_error("bench: producers committed " + std::to_string(totals.written) +
                             " events but the consumer read " + std::to_string(events));
  }
  if (checksum == 0 && events != 0) std::fprintf(stderr, "(no body bytes read)\n");
  return r;
}

int run_bench_ring(const BenchRingArgs& args) {
  std::vector<RunResult> results;
  for (unsigned run = 0; run < args.runs; ++run) {
    if (!args.quiet) {
      std::fprintf(stderr, "bench ring: run %u/%u, %u producer%s, %zu-byte records, %.1f s\n", run + 1, args.runs,
                   args.producers, args.producers == 1 ? "" : "s", args.size, args.seconds);
    }
    results.push_back(run_once(args, run));
    if (bench_interrupted) {
      std::fprintf(stderr, "ringroute bench ring: interrupted\n");
      return 130;
    }
  }
  std::vector<double> rates;
  for (const auto& r : results) rates.push_back(r.events_per_sec);
  std::sort(rates.begin(), rates.end());
  const double median = rates.size() % 2 ? rates[rates.size() / 2]
                                         : (rates[rates.size() / 2 - 1] + rates[rates.size() / 2]) / 2;
  std::uint64_t full = 0, events = 0, corrupt = 0, sleeps = 0;
  double record_bytes = 0;
  for (const auto& r : results) {
    full += r.full;
    events += r.events;
    corrupt += r.corrupt;
    sleeps += r.consumer_sleeps;
    record_bytes = r.record_bytes_mean;
  }
  const double bytes_per_sec = median * record_bytes;
  if (args.json) {
    std::printf(
        "{\"events_per_sec\":%.0f,\"events_per_sec_min\":%.0f,\"events_per_sec_max\":%.0f,"
        "\"bytes_per_sec\":%.0f,\"full\":%llu,\"corrupt\":%llu,\"consumer_sleeps\":%llu,\"events\":%llu,\"producers\":%u,\"size\":%zu,"
        "\"record_bytes_mean\":%.1f,\"batch\":%zu,\"ring_bytes\":%llu,\"runs\":%u,\"seconds\":%.1f}\n",
        median, rates.front(), rates.back(), bytes_per_sec, static_cast<unsigned long long>(full),
        static_cast<unsigned long long>(corrupt), static_cast<unsigned long long>(sleeps),
        static_cast<unsigned long long>(events), args.producers,
        args.size, record_bytes, args.batch, static_cast<unsigned long long>(args.ring_bytes), args.runs,
        args.seconds);
  } else {
    std::printf("producers %u, size %zu B (mean %.1f), batch %zu, ring %llu B, %u run%s\n", args.producers,
                args.size, record_bytes, args.batch, static_cast<unsigned long long>(args.ring_bytes), args.runs,
                args.runs == 1 ? "" : "s");
    std::printf("events/s  %.2fM (min %.2fM, max %.2fM)\n", median / 1e6, rates.front() / 1e6,
                rates.back() / 1e6);
    std::printf("GB/s      %.3f\n", bytes_per_sec / 1e9);
    std::printf("full      %llu\n", static_cast<unsigned long long>(full));
  }
  return corrupt == 0 ? 0 : 1;
}

}  // namespace

Run add_bench_ring(CLI::App& bench) {
  auto args = std::make_shared<BenchRingArgs>();
  CLI::App* cmd = bench.add_subcommand("ring", "producer processes -> one ring -> one consumer");
  cmd->add_option("--producers", args->producers, "producer processes")
      ->capture_default_str()
      ->check(whole_number())
      ->check(CLI::Range(1, 64));
  cmd->add_option("--size", args->size, "bytes per record on the ring, header included")
      ->capture_default_str()
      ->check(whole_number())
      ->check(CLI::Range(48, 1 << 20));
  cmd->add_option("--seconds", args->seconds, "how long each run produces")
      ->capture_default_str()
      ->check(finite_number())
      ->check(CLI::Range(0.1, 3600.0));
  cmd->add_option("--runs", args->runs, "runs; the median is reported with min and max")
      ->capture_default_str()
      ->check(whole_number())
      ->check(CLI::Range(1, 100));
  cmd->add_option("--batch", args->batch, "events per emit_batch call")
      ->capture_default_str()
      ->check(whole_number())
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--ring-bytes", args->ring_bytes, "ring capacity (a power of two)")
      ->capture_default_str()
      ->check(whole_number())
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            // Said here, naming the flag: the ring's own check came after
            // the first run's progress line, naming a config key.
            errno = 0;
            const std::uint64_t bytes = std::strtoull(text.c_str(), nullptr, 10);
            if (errno == ERANGE || !ring::is_ring_capacity(bytes)) {
              return "not a power of two from " + std::to_string(ring::kMinCapacity) + " to " +
                     std::to_string(ring::kMaxCapacity) + ": " + text;
            }
            return "";
          },
          "POWER OF TWO"));
  cmd->add_flag("--json", args->json, "print one JSON object on stdout");
  cmd->add_flag("--quiet", args->quiet, "no progress on stderr");
  return [args] { return run_bench_ring(*args); };
}

}  // namespace ringroute::tools
