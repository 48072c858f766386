#pragma once
// A running backend: its options, its sink, its queue of batches and the sink
// thread that drains it. Router workers fill batches and submit them; the
// sink thread writes them in order and publishes, per ring, the position it
// has written through (in the perf block, so it also survives a crash).
//
// The queue is bounded by `queue.max_events` / `queue.max_bytes` of batches
// in flight. Over the bound, `when_full` decides: `block` (this backend takes
// no new events and the ring keeps them for it; the others read on, and it
// rereads the ring from where it stopped once it has room; producers see
// `full` only when the ring is full of what it holds) or `drop` (the worker
// drops new events for this backend alone, counted).

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <concurrentqueue/blockingconcurrentqueue.h>

#include "ringroute/perf/block.hpp"
#include "ringroute/sinks/batch.hpp"
#include "ringroute/sinks/event_encoder.hpp"
#include "ringroute/sinks/sink.hpp"

namespace ringroute::sinks {

// Names the calling thread "{prefix}{name}", cut to the kernel's 15 bytes,
// so `top -H`, `ps -T` and perf tell the router's threads apart.
void name_this_thread(std::string_view prefix, std::string_view name) noexcept;

struct BackendOptions {
  EncodeOptions encoding;  // formatter, and for sockets the syslog wrapping
  std::uint32_t batch_max_events = 1000;
  std::uint64_t batch_max_bytes = 1 << 20;
  std::chrono::milliseconds linger{5};
  std::uint64_t queue_max_events = 100'000;
  std::uint64_t queue_max_bytes = 64ull << 20;
  bool drop_when_full = false;
};

// Reads the options object of a backend of `type` (already checked by the config).
[[nodiscard]] BackendOptions parse_backend_options(std::string_view type, std::string_view options_json);

// The sink for a backend type, from its options. Throws std::runtime_error
// with a clear message for a type that has no sink yet, or a sink that can't
// start (io_uring refused).
[[nodiscard]] std::unique_ptr<Sink> make_sink(std::string_view type, std::string_view options_json);

class BackendRunner {
 public:
  BackendRunner(std::string name, BackendOptions options, std::unique_ptr<Sink> sink, perf::BackendSlot& slot);
  ~BackendRunner();
  BackendRunner(const BackendRunner&) = delete;
  BackendRunner& operator=(const BackendRunner&) = delete;

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const BackendOptions& options() const noexcept { return options_; }
  [[nodiscard]] perf::BackendSlot& slot() noexcept { return slot_; }

  // --- worker side (any number of router workers) ---
  // An empty batch to fill (from the pool; allocates only when the pool is dry).
  Batch* take_batch();
  // Whether batches in flight are at the queue's bound.
  [[nodiscard]] bool over_limit() const noexcept {
    // Relaxed: an approximate bound is enough (a batch more or less).
    return in_flight_events_.load(std::memory_order_relaxed) >= options_.queue_max_events ||
           in_flight_bytes_.load(std::memory_order_relaxed) >= options_.queue_max_bytes;
  }
  // Hands a filled batch to the sink thread (it comes back to the pool after).
  void submit(Batch* batch);
  // Every event of `ring` up to this position is written (or given up on).
  [[nodiscard]] std::uint64_t written_through(std::uint32_t ring) const noexcept {
    // Acquire pairs with the sink thread's release store after the write.
    return slot_.written_through[ring].load(std::memory_order_acquire);
  }
  [[nodiscard]] bool idle() const noexcept { return in_flight_events_.load(std::memory_order_acquire) == 0; }

  // --- control ---
  // Relaxed: a request flag; the sink thread acts on it at its next round.
  void request_reopen() noexcept { reopen_.store(true, std::memory_order_relaxed); }
  // Waits up to `drain` for queued batches to be written, then stops the
  // thread (a batch still retrying stays unwritten: the ring still holds it).
  void stop(std::chrono::milliseconds drain);

 private:
  void run();
  void deliver(Batch* batch);
  void log_problem(const std::string& what);
  Batch* new_batch();
  void record_latencies(const Batch& batch) noexcept;

  std::string name_;
  BackendOptions options_;
  std::unique_ptr<Sink> sink_;
  perf::BackendSlot& slot_;
  // The sink thread waits on this queue's semaphore after every batch. The
  // default spins 10,000 rounds before it sleeps, which moodycamel itself
  // advises against when waiting threads outnumber idle cores: with a sink
  // thread per backend they do, and at 2.5M events/s (thousands of waits a
  // second) the spinning took CPU from the worker and the producers.
  struct QueueTraits : moodycamel::ConcurrentQueueDefaultTraits {
    static const int MAX_SEMA_SPINS = 100;
  };
  moodycamel::BlockingConcurrentQueue<Batch*, QueueTraits> queue_;
  moodycamel::ConcurrentQueue<Batch*> pool_;
  std::mutex owned_mutex_;  // guards owned_ (grown only when the pool is dry)
  std::vector<std::unique_ptr<Batch>> owned_;
  // Added by workers on submit, taken off by the sink thread when done.
  std::atomic<std::uint64_t> in_flight_events_{0};
  std::atomic<std::uint64_t> in_flight_bytes_{0};
  std::atomic<bool> reopen_{false};
  std::atomic<bool> stop_now_{false};
  std::chrono::steady_clock::time_point last_log_{};
  std::thread thread_;
};

}  // namespace ringroute::sinks
