// `ringroute bench --config FILE`: producer processes -> rings -> the router
// (in-process, on private ring and instance names, or --attach to a running
// one) -> sinks. Reports only after the producers stop and everything read
// has been written. --size is the body's size.
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <limits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ringroute/ingest/router.hpp"
#include "ringroute/perf/block.hpp"
#include "ringroute/producer.hpp"
#include "ringroute/ring/segment.hpp"
#include "ringroute/tools/commands.hpp"
#include "ringroute/tools/config.hpp"
#include "bench_producers.hpp"

namespace ringroute::tools {

ingest::RouterConfig router_config(const Config& config);  // run.cpp

namespace {

namespace fs = std::filesystem;

struct BenchArgs {
  std::string config;
  std::string attach;
  unsigned producers = 1;
  std::size_t size = 200;
  double seconds = 5;
  double rate = 0;  // events/s over all producers; 0: as fast as they go
  double warmup = 0;  // seconds the producers run before the measured window opens
  std::string dir;
  bool json = false;
  bool quiet = false;
};

// DESIGN.md's generated events: app000..app099, acct-000000..acct-099999
// under org-NN / grp-NNNN, levels spread evenly, a body padded to `size`.
// Every account once per lap of 100,000 events (7919 is prime to 100,000),
// so the matcher never sees a hot few thousand replayed. Each batch is made
// just before its emit in 64 slots reused from batch to batch, as a real
// producer builds an event in cache: read back from 48 MiB made up front,
// the producer's misses on its own events doubled its CPU (0.06 -> 0.12 s
// per million) on the vCPUs the router shares.
class EventGenerator {
 public:
  static constexpr std::size_t kBatch = 64;  // events a producer emits at once
  static constexpr std::uint64_t kLap = 100'000;

  EventGenerator(unsigned producer, std::size_t size) : producer_(producer) {
    for (std::size_t k = 0; k < kBatch; ++k) {
      Slot& slot = slots_[k];
      // The body says which slot it came from; only its size matters.
      const std::string open = "{\"seq\":" + std::to_string(k) + ",\"pad\":\"";
      const std::size_t pad = size > open.size() + 2 ? size - open.size() - 2 : 0;
      slot.body = open + std::string(pad, 'x') + "\"}";
      std::memcpy(slot.account, "acct-", 5);
      std::memcpy(slot.app, "app", 3);
      std::memcpy(slot.org, "org-", 4);
      std::memcpy(slot.group, "grp-", 4);
      slot.tree = {rr_str{slot.org, 6}, rr_str{slot.group, 8}};
      rr_event& e = events_[k];
      e = rr_event{};
      e.account_id = rr_str{slot.account, 11};
      e.app_name = rr_str{slot.app, 6};
      e.account_tree = slot.tree.data();
      e.account_tree_len = 2;
      e.body = to_rr_str(slot.body);
    }
  }
  EventGenerator(const EventGenerator&) = delete;
  EventGenerator& operator=(const EventGenerator&) = delete;

  // The next `count` (at most kBatch) events of the lap, valid until the next call.
  std::span<const rr_event> next(std::size_t count = kBatch) noexcept {
    count = std::min(count, kBatch);
    for (std::size_t k = 0; k < count; ++k) {
      const std::uint64_t i = at_;
      at_ = at_ + 1 == kLap ? 0 : at_ + 1;
      const std::uint64_t n = (i * 7919 + producer_ * 104729ull) % 100'000;
      Slot& slot = slots_[k];
      put_digits(slot.account + 5, n, 6);
      put_digits(slot.app + 3, (i * 31 + producer_) % 100, 3);
      put_digits(slot.org + 4, n / 10'000, 2);
      put_digits(slot.group + 4, n / 100, 4);
      events_[k].severity = static_cast<rr_severity>(1 + i % 3);
      events_[k].verbosity = static_cast<rr_verbosity>(1 + (i / 3) % 6);
    }
    return std::span<const rr_event>(events_).first(count);
  }

 private:
  struct Slot {
    char account[16], app[8], org[8], group[8];
    std::array<rr_str, 2> tree;
    std::string body;
  };
  static void put_digits(char* out, std::uint64_t value, int width) noexcept {
    for (int d = width - 1; d >= 0; --d) {
      out[d] = static_cast<char>('0' + value % 10);
      value /= 10;
    }
  }
  std::uint64_t producer_;
  std::uint64_t at_ = 0;
  std::array<Slot, kBatch> slots_;
  std::array<rr_event, kBatch> events_;
};

[[noreturn]] void run_producer(const std::string& ring, unsigned index, const BenchArgs& args, BenchControl* control) {
  // Attach as soon as the router has made the ring.
  EventProducer producer;
  rr_producer_options options{};
  const std::string name = "bench" + std::to_string(index);
  options.name = name.c_str();
  options.wait_timeout_ns = 50'000'000;
  rr_error error{};
  const std::int64_t give_up = now_ns() + 10'000'000'000;
  rr_status status;
  while ((status = producer.open(ring, &options, &error)) == RR_NOT_READY && now_ns() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (status != RR_OK) {
    std::snprintf(control->error, sizeof control->error, "producer %u: %s", index, error.message);
    control->failed.store(1);
    ::_exit(1);
  }
  // Before the go: the first lap's page faults are start-up, not throughput.
  (void)producer.prefault();
  EventGenerator generator(index, args.size);
  control->ready.fetch_add(1);
  while (control->go.load(std::memory_order_acquire) == 0) ::sched_yield();
  const double per_producer = args.rate / args.producers;
  const std::int64_t start = now_ns();
  std::uint64_t sent = 0;
  while (control->stop.load(std::memory_order_relaxed) == 0) {
    std::size_t count = EventGenerator::kBatch;
    if (per_producer > 0) {
      // A rate so low that the next event is centuries away is a wait to
      // the end, not a time past int64 (undefined, and here no wait at all).
      const double after_ns = static_cast<double>(sent) / per_producer * 1e9;
      const std::int64_t due = after_ns < 1e18 ? start + static_cast<std::int64_t>(after_ns)
                                               : std::numeric_limits<std::int64_t>::max();
      const std::int64_t now = now_ns();
      if (due > now) {
        std::this_thread::sleep_for(std::chrono::nanoseconds(std::min<std::int64_t>(due - now, 1'000'000)));
        continue;
      }
      // How late this burst is (descheduled, a sleep overshot, the last emit
      // waiting for room): latency counts from the emit, so this time is in
      // no percentile; said beside them.
      // Relaxed: a figure read after the producers stop.
      if (control->measuring.load(std::memory_order_relaxed) != 0) {
        const std::int64_t lag = now - due;
        std::int64_t most = control->lag_max_ns.load(std::memory_order_relaxed);
        while (lag > most && !control->lag_max_ns.compare_exchange_weak(most, lag, std::memory_order_relaxed)) {
        }
      }
      // As many as are due by now, up to a batch: a whole batch at each
      // due time ran a low rate up to 63 events a producer ahead of it.
      const auto due_by_now =
          static_cast<std::uint64_t>(std::min(static_cast<double>(now - start) * per_producer / 1e9 + 1, 1e18));
      count = std::clamp<std::uint64_t>(due_by_now > sent ? due_by_now - sent : 1, 1, EventGenerator::kBatch);
    }
    // A full ring is waited out (DESIGN.md): what a wait that ran out left
    // of the batch is emitted again, until the bench stops, so no event
    // generated is skipped however slow the router is.
    for (std::span<const rr_event> batch = generator.next(count); !batch.empty();) {
      std::size_t accepted = 0;
      rr_error emit_error{};
      const rr_status s = producer.emit_batch(batch, RR_EMIT_BODY_TRUSTED, &accepted, &emit_error);
      sent += accepted;
      batch = batch.subspan(accepted);
      if (s == RR_OK) break;
      if (s != RR_FULL) {
        // The library's message says what and where ("body: 208 bytes, and a
        // record is at most 128 on the ring"), the status only "too big".
        std::snprintf(control->error, sizeof control->error, "producer %u: emit: %s", index,
                      emit_error.message[0] != '\0' ? emit_error.message : rr_status_message(s));
        control->failed.store(1);
        ::_exit(1);
      }
      // Counted as it happens (rare, and the bench snapshots it when its
      // measured window opens).
      control->full.fetch_add(1, std::memory_order_relaxed);
      if (control->stop.load(std::memory_order_relaxed) != 0) break;
    }
  }
  ::_exit(0);
}

struct Totals {
  std::uint64_t written = 0, read = 0, sent = 0, matched = 0, dropped_queue_full = 0, dropped_rejected = 0;
  std::uint64_t full = 0;  // claims that found the ring full (each waited for room)
  std::array<std::uint64_t, perf::kHistogramBuckets> latency{};
};

Totals totals(const perf::Block& block, const std::vector<ring::Segment>& segments) {
  Totals t;
  for (const ring::Segment& segment : segments) {
    const ring::ProducerTotals producers = ring::sum_producer_slots(segment.header());
    t.written += producers.written;
    t.full += producers.full;
    t.read += segment.header().read.read();
  }
  for (const perf::BackendSlot& slot : block.backends) {
    if (slot.name[0] == 0) continue;
    t.sent += slot.sink.sent.read();
    t.dropped_rejected += slot.sink.dropped_failed.read();
    for (const auto& shard : slot.worker) {
      t.matched += shard.matched.read();
      t.dropped_queue_full += shard.dropped_queue_full.read();
    }
    for (std::size_t i = 0; i < perf::kHistogramBuckets; ++i) t.latency[i] += slot.latency.buckets[i].read();
  }
  return t;
}

// CPU seconds (user + system) from a /proc stat file, of a process or a thread.
double stat_cpu_seconds(const std::string& path) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// CPU seconds and peak RSS (MiB) of the router process, in-process or not.
double process_cpu_seconds(pid_t pid) { return stat_cpu_seconds("/proc/" + std::to_string(pid) + "/stat"); }
double process_peak_rss_mib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

// The router's CPU by thread role, from the names its threads give
// themselves (rr-ring:{ring} workers; rr-sink:{backend} sink threads and
// rr-file-closer, which frees the files rotations drop, as sink work).
struct ThreadCpu {
  double workers = 0, sinks = 0;
};
ThreadCpu thread_cpu_seconds(pid_t pid) {
  ThreadCpu cpu;
  std::error_code ec;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (!std::getline(comm, name)) continue;  // the thread ended meanwhile
    if (name.starts_with("rr-ring:")) cpu.workers += stat_cpu_seconds(task.path() / "stat");
    if (name.starts_with("rr-sink:") || name == "rr-file-closer") cpu.sinks += stat_cpu_seconds(task.path() / "stat");
  }
  return cpu;
}

double cpu_seconds(const rusage& u) {
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

int run_bench(const BenchArgs& args) {
  if (args.config.empty() == args.attach.empty()) {
    std::fprintf(stderr, "ringroute bench: give --config FILE (in-process router) or --attach INSTANCE\n");
    return 2;
  }
  std::string instance = args.attach;
  std::vector<std::string> rings;
  std::unique_ptr<ingest::Router> router;
  std::optional<ingest::RouterConfig> config;
  std::string out_dir;
  if (!args.config.empty()) {
    ConfigResult loaded = load_config_file(args.config);
    if (report_config_errors(loaded)) return 2;
    config = router_config(*loaded.config);
    // Private names: a bench never touches a running router's rings.
    instance = "rr-bench-" + std::to_string(::getpid());
    config->instance = instance;
    for (std::size_t i = 0; i < config->rings.size(); ++i) {
      config->rings[i].name = instance + "-" + std::to_string(i);
    }
    if (config->rings.empty()) config->rings.push_back({instance + "-0"});
    for (const auto& r : config->rings) rings.push_back(r.name);
    // Relative file paths land in --dir (tmpfs by default: the disk is measured apart).
    out_dir = args.dir.empty() ? "/dev/shm/" + instance : args.dir;
    fs::create_directories(out_dir);
  } else {
    std::string error;
    auto mapping = perf::BlockMapping::open_read_only(instance, &error);
    if (!mapping) {
      std::fprintf(stderr, "ringroute bench: %s\n", error.c_str());
      return 2;
    }
    rings = mapping->ring_names();
    if (rings.empty()) {
      std::fprintf(stderr, "ringroute bench: instance %s has no rings (has its router run?)\n", instance.c_str());
      return 2;
    }
  }

  // Whatever way the bench ends (an error, Ctrl-C, done), an in-process
  // router is stopped and its rings, perf block and files are removed.
  const fs::path previous_dir = fs::current_path();
  struct Cleanup {
    std::unique_ptr<ingest::Router>& router;
    const std::optional<ingest::RouterConfig>& config;
    const std::vector<std::string>& rings;
    const std::string& instance;
    const std::string& out_dir;
    bool remove_dir;
    const fs::path& previous_dir;
    ~Cleanup() {
      if (router) router->stop(std::chrono::seconds(5));
      router.reset();
      std::error_code ec;
      fs::current_path(previous_dir, ec);
      if (!config) return;
      for (const auto& r : rings) ring::Segment::remove(r);
      perf::BlockMapping::remove(instance);
      if (remove_dir) fs::remove_all(out_dir, ec);
    }
  } cleanup{router, config, rings, instance, out_dir, args.dir.empty(), previous_dir};

  // Producers are forked before the router starts threads; they wait for its ring.
  ProducerProcesses producers(args.producers, [&](unsigned i, BenchControl* control) {
    run_producer(rings[i % rings.size()], i, args, control);
  });
  catch_interrupts();
  BenchControl* control = &producers.control();
  if (config) {
    ::signal(SIGXFSZ, SIG_IGN);  // as `run` does: a file past the size limit is a retried write (after the fork)
    fs::current_path(out_dir);
    try {
      router = std::make_unique<ingest::Router>(*config);
    } catch (const std::exception& e) {
      producers.kill_all();
      std::fprintf(stderr, "ringroute bench: %s\n", e.what());
      return 2;
    }
  }
  if (!producers.wait_ready()) {
    std::fprintf(stderr, "ringroute bench: %s\n", control->error);
    return bench_interrupted ? 130 : 2;
  }
  std::string error;
  auto mapping = perf::BlockMapping::open_read_only(instance, &error);
  if (!mapping) {
    std::fprintf(stderr, "ringroute bench: %s\n", error.c_str());
    return 2;
  }
  // Mapped once: the drain loop below reads them every 200 us.
  std::vector<ring::Segment> segments;
  for (const std::string& name : rings) {
    ring::Segment segment;
    if (ring::Segment::attach(name, segment, nullptr) == ring::Status::ok) segments.push_back(std::move(segment));
  }
  const pid_t router_pid = router ? ::getpid() : mapping->block().header.router_pid.load(std::memory_order_relaxed);
  // An attached router restarted during the run is another process: its
  // CPU and memory are not the ones measured from.
  const std::int64_t router_started_ns = mapping->block().header.router_started_ns.load(std::memory_order_relaxed);
  // The window's opening snapshot. Without a warm-up it is taken before
  // the go, so no event is written but not yet delivered when it opens.
  Totals before;
  std::uint64_t full_before = 0;
  double router_cpu_before = 0, producers_cpu_before = 0;
  ThreadCpu threads_before;
  std::int64_t start = 0;
  auto open_window = [&] {
    before = totals(mapping->block(), segments);
    // Beside the counters it goes with: the CPU snapshots below read /proc
    // for every thread and producer, and what was written meanwhile was
    // counted in the window while its time was not.
    start = now_ns();
    full_before = control->full.load();
    router_cpu_before = process_cpu_seconds(router_pid);
    threads_before = thread_cpu_seconds(router_pid);
    producers_cpu_before = 0;
    for (const pid_t pid : producers.pids()) producers_cpu_before += process_cpu_seconds(pid);
    // Relaxed: producers start counting their lag soon after; a figure.
    control->measuring.store(1, std::memory_order_relaxed);
  };
  // Before the go, for the end of the run: every event matched since is
  // sent or dropped by then (the window's snapshot, after a warm-up, would
  // leave out events matched before it and sent inside it).
  const Totals at_go = totals(mapping->block(), segments);
  if (args.warmup <= 0) open_window();
  control->go.store(1, std::memory_order_release);
  if (args.warmup > 0) {
    // Everything before the window opens is left out: first-lap costs
    // (page faults, fresh batch memory, cold caches) are not steady state.
    if (!args.quiet) std::fprintf(stderr, "  warming up for %.1f s\n", args.warmup);
    // In slices: sleep_for resumes after a signal, and Ctrl-C must not wait.
    const std::int64_t warm_until = now_ns() + static_cast<std::int64_t>(args.warmup * 1e9);
    while (now_ns() < warm_until && !bench_interrupted) {
      std::this_thread::sleep_for(std::chrono::nanoseconds(std::min<std::int64_t>(50'000'000, warm_until - now_ns())));
    }
    open_window();
  }
  const std::int64_t stop_at = start + static_cast<std::int64_t>(args.seconds * 1e9);
  std::uint64_t last_sent = before.sent;
  std::int64_t last_report = start;
  std::int64_t next_progress = start + 1'000'000'000;
  while (now_ns() < stop_at && !bench_interrupted && control->failed.load() == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min<std::int64_t>(50, (stop_at - now_ns()) / 1'000'000 + 1)));
    if (!args.quiet && (now_ns() >= next_progress || now_ns() >= stop_at)) {
      next_progress += 1'000'000'000;
      const Totals t = totals(mapping->block(), segments);
      const std::int64_t now = now_ns();
      std::fprintf(stderr, "  %5.1fs  written %7.2fM  delivered %7.2fM/s  full=%llu\n", (now - start) / 1e9,
                   static_cast<double>(t.written - before.written) / 1e6,
                   static_cast<double>(t.sent - last_sent) / ((now - last_report) / 1e9) / 1e6,
                   static_cast<unsigned long long>(t.full - before.full));
      last_sent = t.sent;
      last_report = now;
    }
  }
  producers.stop();
  producers.reap();
  if (bench_interrupted) {
    std::fprintf(stderr, "ringroute bench: interrupted\n");
    return 130;
  }
  // A worker that stopped on its own (out of memory, its ring cut short):
  // the counters of its ring no longer add up, so there are no figures.
  if (router) {
    if (const std::optional<std::string> failure = router->failure()) {
      std::fprintf(stderr, "ringroute bench: the router failed, no figures: %s\n", failure->c_str());
      return 1;
    }
  }
  if (control->failed.load() != 0) {
    // Acquire through the seq_cst load above: the child wrote `error` first.
    std::fprintf(stderr, "ringroute bench: %s\n", control->error);
    return 2;
  }
  // Until everything the producers wrote has been read, routed and written.
  // Settled by each backend's backlog (perf::pending_of): it counts what a
  // restart of an attached router routes again once, where the differences
  // below count it twice and never balanced after a restart. The
  // differences where a router of an earlier build keeps no backlog.
  auto backlog = [&]() -> std::optional<std::uint64_t> {
    std::uint64_t held = 0;
    for (const perf::BackendSlot& slot : mapping->block().backends) {
      if (slot.name[0] == 0 || slot.in_config.load(std::memory_order_relaxed) == 0) continue;
      const std::optional<std::uint64_t> pending = perf::pending_of(slot);
      if (!pending) return std::nullopt;
      held += *pending;
    }
    return held;
  };
  Totals after;
  std::int64_t end = now_ns();
  std::uint64_t stable_rounds = 0, last = ~0ull;
  bool drained = false;
  // Differences since the go, and the rings' positions: an attached
  // instance's totals carry its history (after a restart `read` and
  // `matched` count the records read again, which are not sent again), so
  // they never balance again as totals.
  auto all_released = [&] {
    return std::all_of(segments.begin(), segments.end(),
                       [](const ring::Segment& segment) { return ring::all_released(segment.header()); });
  };
  for (const std::int64_t give_up = now_ns() + 60'000'000'000; now_ns() < give_up && !bench_interrupted;) {
    after = totals(mapping->block(), segments);
    const std::uint64_t done = (after.sent - at_go.sent) + (after.dropped_queue_full - at_go.dropped_queue_full) +
                               (after.dropped_rejected - at_go.dropped_rejected);
    const std::uint64_t routed = after.matched - at_go.matched;
    const std::optional<std::uint64_t> held = backlog();
    if (all_released() && (held ? *held == 0 : done >= routed) && (!router || router->drained())) {
      if (done != last) {
        end = now_ns();
        last = done;
        stable_rounds = 0;
      } else if (++stable_rounds > 20) {
        drained = true;
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  rusage children_usage{};
  ::getrusage(RUSAGE_CHILDREN, &children_usage);
  const double router_cpu = process_cpu_seconds(router_pid) - router_cpu_before;
  const ThreadCpu threads_after = thread_cpu_seconds(router_pid);
  const double workers_cpu = threads_after.workers - threads_before.workers;
  const double sinks_cpu = threads_after.sinks - threads_before.sinks;
  const double producers_cpu = cpu_seconds(children_usage) - producers_cpu_before;
  const double peak_rss = process_peak_rss_mib(router_pid);
  const bool router_restarted =
      !router && mapping->block().header.router_started_ns.load(std::memory_order_relaxed) != router_started_ns;
  if (router_restarted) {
    std::fprintf(stderr, "ringroute bench: the router of %s restarted during the run: no figures of its CPU and "
                         "memory (those of the process it started with)\n",
                 args.attach.c_str());
  }
  if (bench_interrupted) {
    std::fprintf(stderr, "ringroute bench: interrupted\n");
    return 130;
  }

  const std::uint64_t events = after.written - before.written;
  const std::uint64_t delivered = after.sent - before.sent;
  const std::uint64_t dropped = (after.dropped_queue_full - before.dropped_queue_full) +
                                (after.dropped_rejected - before.dropped_rejected);
  std::array<std::uint64_t, perf::kHistogramBuckets> latency{};
  for (std::size_t i = 0; i < latency.size(); ++i) latency[i] = after.latency[i] - before.latency[i];
  const double elapsed = static_cast<double>(end - start) / 1e9;
  const double million = static_cast<double>(events) / 1e6;
  auto per_million = [million](double cpu_seconds) { return million > 0 ? cpu_seconds / million : 0.0; };
  const double p50 = perf::histogram_quantile(latency, 0.5) / 1000.0;
  const double p99 = perf::histogram_quantile(latency, 0.99) / 1000.0;
  const double p999 = perf::histogram_quantile(latency, 0.999) / 1000.0;
  // Paced runs only: full speed has no schedule to be late for (null, and
  // nothing said).
  const double lag_max_us = static_cast<double>(control->lag_max_ns.load()) / 1000.0;
  char lag_json[32] = "null", lag_note[64] = "";
  if (args.rate > 0) {
    std::snprintf(lag_json, sizeof lag_json, "%.1f", lag_max_us);
    std::snprintf(lag_note, sizeof lag_note, "; producers at most %.0f us behind their rate", lag_max_us);
  }
  // Rates only over a window that ends where the deliveries did: undrained,
  // its end is where the producers stopped, and what was delivered in the
  // 60 s after counted against the shorter time.
  char events_rate[32] = "null", delivered_rate[32] = "null";
  char events_millions[32] = "-", delivered_millions[32] = "-";
  if (drained) {
    std::snprintf(events_rate, sizeof events_rate, "%.0f", static_cast<double>(events) / elapsed);
    std::snprintf(delivered_rate, sizeof delivered_rate, "%.0f", static_cast<double>(delivered) / elapsed);
    std::snprintf(events_millions, sizeof events_millions, "%.2f", static_cast<double>(events) / elapsed / 1e6);
    std::snprintf(delivered_millions, sizeof delivered_millions, "%.2f",
                  static_cast<double>(delivered) / elapsed / 1e6);
  } else {
    std::fprintf(stderr, "ringroute bench: not everything written was delivered within 60 s of the end; no rates, "
                         "and the counts below are what was\n");
  }
  // `full`: claims that found the ring full, each of which waited for room
  // (DESIGN.md); `full_timeouts`: emits whose wait ran out (50 ms), the rest
  // of their batch emitted again.
  // The router's own figures, JSON's null and the text's "-" where it
  // restarted during the run.
  auto router_figure = [&](double value, const char* format, bool json) {
    if (router_restarted) return std::string(json ? "null" : "-");
    char text[32];
    std::snprintf(text, sizeof text, format, value);
    return std::string(text);
  };
  const auto full = static_cast<unsigned long long>(after.full - before.full);
  const auto timeouts = static_cast<unsigned long long>(control->full.load() - full_before);
  if (args.json) {
    std::printf(
        "{\"events_per_sec\":%s,\"delivered_per_sec\":%s,\"events\":%llu,\"delivered\":%llu,\"dropped\":%llu,"
        "\"dropped_queue_full\":%llu,\"dropped_rejected\":%llu,\"full\":%llu,\"full_timeouts\":%llu,"
        "\"p50_us\":%.1f,\"p99_us\":%.1f,"
        "\"p999_us\":%.1f,\"seconds\":%.3f,\"router_cpu_s_per_million\":%s,"
        "\"workers_cpu_s_per_million\":%s,\"sinks_cpu_s_per_million\":%s,"
        "\"producers_cpu_s_per_million\":%.3f,\"peak_rss_mib\":%s,\"producers\":%u,\"size\":%zu,"
        "\"producer_lag_max_us\":%s,\"drained\":%s}\n",
        events_rate, delivered_rate, static_cast<unsigned long long>(events),
        static_cast<unsigned long long>(delivered), static_cast<unsigned long long>(dropped),
        static_cast<unsigned long long>(after.dropped_queue_full - before.dropped_queue_full),
        static_cast<unsigned long long>(after.dropped_rejected - before.dropped_rejected), full, timeouts, p50, p99,
        p999, elapsed, router_figure(per_million(router_cpu), "%.3f", true).c_str(),
        router_figure(per_million(workers_cpu), "%.3f", true).c_str(),
        router_figure(per_million(sinks_cpu), "%.3f", true).c_str(), per_million(producers_cpu),
        router_figure(peak_rss, "%.1f", true).c_str(), args.producers, args.size, lag_json,
        drained ? "true" : "false");
  } else {
    std::printf("%llu events in %.2f s: %sM events/s, %sM deliveries/s, dropped %llu, full %llu (waits timed out %llu)\n"
                "latency emit->written: p50 %.0f us, p99 %.0f us, p999 %.0f us%s\n"
                "CPU per million events: router %s s (workers %s, sinks %s), producers %.3f s; "
                "peak RSS %s MiB\n",
                static_cast<unsigned long long>(events), elapsed, events_millions, delivered_millions,
                static_cast<unsigned long long>(dropped), full, timeouts, p50, p99, p999, lag_note,
                router_figure(per_million(router_cpu), "%.3f", false).c_str(),
                router_figure(per_million(workers_cpu), "%.3f", false).c_str(),
                router_figure(per_million(sinks_cpu), "%.3f", false).c_str(), per_million(producers_cpu),
                router_figure(peak_rss, "%.1f", false).c_str());
  }
  return drained ? 0 : 1;
}

}  // namespace

Run add_bench_router(CLI::App& bench) {
  auto args = std::make_shared<BenchArgs>();
  const CLI::Validator finite = finite_number();
  bench.add_option("--config", args->config, "config for an in-process router (private ring and instance names)");
  bench.add_option("--attach", args->attach, "measure the running router of this instance instead")
      ->check(instance_name())
      ->excludes("--config");
  bench.add_option("--producers", args->producers, "producer processes")
      ->capture_default_str()
      ->check(whole_number())
      ->check(CLI::Range(1, 64));
  // The body's own members ({"seq":63,"pad":""}) take 19 bytes: a smaller
  // size was reported as asked while the bodies were larger.
  bench.add_option("--size", args->size, "body bytes")
      ->capture_default_str()
      ->check(whole_number())
      ->check(CLI::Range(std::size_t{19}, std::size_t{1} << 20));
  bench.add_option("--seconds", args->seconds, "how long producers write")
      ->capture_default_str()
      ->check(finite)
      ->check(CLI::Range(0.1, 3600.0));
  bench.add_option("--rate", args->rate, "events/s over all producers (0: as fast as they go)")
      ->capture_default_str()
      ->check(finite)
      ->check(CLI::Range(0.0, 1e10));
  bench.add_option("--warmup", args->warmup, "seconds producers run before the measured window opens")
      ->capture_default_str()
      ->check(finite)
      ->check(CLI::Range(0.0, 3600.0));
  bench.add_option("--dir", args->dir, "where relative file paths go (default: a fresh folder in /dev/shm)");
  bench.add_flag("--json", args->json, "one JSON object on stdout");
  bench.add_flag("--quiet", args->quiet, "no progress lines");
  return [args] { return run_bench(*args); };
}

}  // namespace ringroute::tools
