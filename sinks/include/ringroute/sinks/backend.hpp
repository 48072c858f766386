#pragma once
// A running backend: its options, its sink, its queue of batches and the sink
// thread that drains it. Router workers fill batches and submit them; the
// sink thread writes them in order and publishes, per ring, the position it
// has written through (in the perf block, so it also survives a crash).
//
// The queue is bounded by `queue.max_events` of batches in flight and by
// `queue.max_bytes` of the memory they hold (Batch::memory_bytes()). Over
// the bound, `when_full` decides: `block` (this backend takes no new events
// and the ring keeps them for it; the others read on, and it rereads the
// ring from where it stopped once it has room; producers see `full` only
// when the ring is full of what it holds) or `drop` (the worker drops new
// events for this backend alone, counted).
//
// A backend whose options change on reload gets a new runner that follows
// the old one: it writes nothing until the old runner has stopped, then
// first writes what the old one was handed and never wrote (as the old
// options formatted it), then its own batches. So the backend's order holds
// across the change, its written-through positions only rise, and a dead
// old destination loses nothing: its events go to the new one.

#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
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

// What two backends' options (JSON text) compare equal as when they ask for
// the same thing written in another order: object members sorted by key,
// at every level but inside `headers` (whose order goes on the wire).
// Throws std::runtime_error when the text is no JSON object.
[[nodiscard]] std::string options_identity(std::string_view options_json);

// The sink for a backend type, from its options. Throws std::runtime_error
// with a clear message for a type that has no sink yet, or a sink that can't
// start (io_uring refused). `last_write_may_be_torn`: see FileSinkOptions.
[[nodiscard]] std::unique_ptr<Sink> make_sink(std::string_view type, std::string_view options_json,
                                              bool last_write_may_be_torn = true);
// The most descriptors a backend of `type` with these options (as
// make_sink reads them) holds at once: its io_uring, its file and the next
// one while it rotates, or its connections, as many as `max_connections`
// lets it open under load. For the start's check of the process's limit.
[[nodiscard]] std::size_t most_descriptors(std::string_view type, std::string_view options_json);
// Why make_sink() refuses `type` (DESIGN.md: a type whose sink does not
// exist yet validates, and run refuses it while it is enabled), or empty.
[[nodiscard]] std::string missing_sink(std::string_view type);

// What the TLS files of an http or socket backend's options (JSON text, as
// make_sink reads them) would be refused for at start, each naming its
// file: the option at fault ("ca_file", "ca_path"; "cert_file" for the
// client certificate, or its key not matching; "key_file" for a key it
// can't read or that is encrypted with no passphrase given;
// "key_passphrase" for one that does not decrypt it) and why. The CA
// file, the CA directory and the client certificate are each tried on
// their own, so one at fault does not hide another. None when they load,
// or when there are none (the system's store is the host's, not the
// config's).
struct TlsFilesProblem {
  std::string option, why;
};
[[nodiscard]] std::vector<TlsFilesProblem> tls_files_problems(std::string_view options_json);

// The waits between a batch's tries: exponential from 10 ms, capped at
// 5 s, each a random point in the upper half of its step. The randomness
// is seeded by the backend's name as well as the batch: backends that
// fail together at one ring position (one dead host behind two of them)
// drew the same waits, and retried in step for as long as it was down.
class RetryBackoff {
 public:
  RetryBackoff(std::string_view backend, std::uint64_t batch_end) noexcept;
  std::chrono::milliseconds next() noexcept;
  // Back to the first step: a try that delivered part of its batch found the
  // destination up (a server failing one request in twenty), and a wait
  // doubled anyway grew to 5 s a try while most requests went through.
  void restart() noexcept { step_ = kFirstStep; }

 private:
  static constexpr std::chrono::milliseconds kFirstStep{10};
  std::uint64_t state_;
  std::chrono::milliseconds step_ = kFirstStep;
};

class BackendRunner {
 public:
  // `predecessor`: the runner this one replaces (same backend, same perf
  // slot), stopped by its owner soon after; null for a new backend.
  // `after`: runners of other backends, stopped by their owner soon after,
  // that append to the file this one does (a reload renamed the backend,
  // or gave its file to another): nothing is written before they stop, or
  // two would append to one file at once, and this one's first write cuts
  // what looks like a torn tail, which may be their batch half written.
  BackendRunner(std::string name, BackendOptions options, std::unique_ptr<Sink> sink, perf::BackendSlot& slot,
                std::shared_ptr<BackendRunner> predecessor = nullptr,
                std::vector<std::shared_ptr<BackendRunner>> after = {});
  ~BackendRunner();
  BackendRunner(const BackendRunner&) = delete;
  BackendRunner& operator=(const BackendRunner&) = delete;

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const BackendOptions& options() const noexcept { return options_; }
  // The sink's file (Sink::file_path()); empty for sinks without one.
  [[nodiscard]] std::string file_path() const { return sink_->file_path(); }
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
  // Whether the sink thread is retrying a batch (its destination failing).
  // The worker then fills its open batch rather than handing over a small
  // one at each linger: it would only wait in the queue behind the retried
  // one, and a trickle of events made a batch (and its buffers) per event.
  [[nodiscard]] bool retrying() const noexcept {
    // Relaxed: a hint; a stale answer moves a hand-over by a worker round.
    return retrying_.load(std::memory_order_relaxed);
  }
  // Why its sink thread stopped on its own (see run()); null while it runs.
  [[nodiscard]] const char* failure() const noexcept {
    // Acquire pairs with run()'s release: the text is whole.
    return failed_.load(std::memory_order_acquire) ? failure_ : nullptr;
  }
  // Hands a filled batch to the sink thread (it comes back to the pool after).
  void submit(Batch* batch);
  // The bytes its batches have reserved (pool, queue, in flight, taken
  // over), for tests.
  [[nodiscard]] std::size_t held_batch_bytes() const;
  [[nodiscard]] bool idle() const noexcept {
    // Acquire pairs with the sink thread's release stores of both.
    return in_flight_events_.load(std::memory_order_acquire) == 0 && !following_.load(std::memory_order_acquire);
  }

  // --- control ---
  // Relaxed: a request flag; the sink thread acts on it at its next round.
  void request_reopen() noexcept { reopen_.store(true, std::memory_order_relaxed); }
  // Waits up to `drain` for queued batches to be written, then stops the
  // thread (a batch still retrying stays unwritten: the ring still holds it).
  void stop(std::chrono::milliseconds drain);
  // stop() for several runners with one deadline for all, their threads
  // told to stop at once and joined after: stopping N backends whose
  // destinations are down takes one drain, not N. `sooner` (may be empty),
  // asked every millisecond, may bring the deadline forward (a stop asked
  // for meanwhile, with a drain of its own).
  static void stop_all(
      std::span<BackendRunner* const> runners, std::chrono::steady_clock::time_point deadline,
      const std::function<std::optional<std::chrono::steady_clock::time_point>()>& sooner = {});
  // After stop(): events handed to this runner (or to the runners it
  // followed) and not written.
  [[nodiscard]] std::uint64_t unwritten_events() const;
  // Of those, the ones in batches that do not hold the ring (handed over
  // under `drop`, by this runner or one it followed): no restart delivers
  // them. The rest the ring keeps for the next start.
  [[nodiscard]] std::uint64_t unwritten_events_outside_ring() const;
  // After stop(), for a runner a reload removed: what it (or a runner it
  // followed) was handed and did not write is marked written through, so
  // the workers, which held the ring for those batches until now, release
  // it. The caller counts them as dropped (unwritten_events()). Until then
  // a router killed keeps them in the ring for the next start.
  void give_up_unwritten() noexcept;

 private:
  void run();
  void deliver(Batch* batch);
  // Writes `batch` (retrying as its outcome says) and publishes its end as
  // written through; false when a stop came first (it stays unwritten).
  bool write_through(Batch* batch);
  // Waits for the predecessor to stop and writes what it left; false when
  // this runner was stopped first.
  bool take_over();
  // After stop(), for the successor: the batches handed over and not
  // written, oldest first (the predecessor's leftovers before ours).
  std::deque<Batch*> take_leftovers();
  // After stop(): moves out of this runner's owned_ (and those of the
  // runners before it) the batches of `batches`, into `to`, which must have
  // room for all of them (a push that allocates may throw with some moved).
  void give_owned(const std::deque<Batch*>& batches, std::vector<std::unique_ptr<Batch>>& to);
  // After stop(): the end of the last batch of `ring` that holds the ring
  // and that this runner, or one it followed, was handed.
  [[nodiscard]] std::uint64_t handed_end(std::size_t ring) const noexcept;
  // A line for the log, unless one went less than a second ago: false when
  // held back (counted, and said by say_held_back()).
  // `rejected`: the events the line says were rejected.
  bool log_problem(std::string_view what, std::string_view detail = {}, std::uint64_t rejected = 0) noexcept;
  // The lines held back, said once a second is up (or at the thread's
  // end), with the last of them and the events rejected in them.
  void say_held_back(bool at_end = false) noexcept;
  [[nodiscard]] std::array<char, 128> held_back_count() const noexcept;
  // The sink's tick (Sink::tick()); an exception out of it is logged.
  void tick_sink() noexcept;
  // SIGHUP's reopen, when one was asked for; a failure is logged.
  void reopen_if_asked() noexcept;
  Batch* new_batch();
  // What a new batch reserves at most (see new_batch()).
  static constexpr std::size_t kMostReservedBytes = (4u << 20) + 4096;
  static constexpr std::size_t kMostReservedEvents = 16384;
  // What the runners alive in a process fault in at their start, in all
  // (see the constructor).
  static constexpr std::size_t kWarmBudgetBytes = 64u << 20;
  static inline std::atomic<std::size_t> warm_bytes_in_process{0};
  std::size_t warmed_bytes_ = 0;  // this runner's part of warm_bytes_in_process
  // Of the events written: those in `rejected` (ascending ranges) are not.
  void record_latencies(const Batch& batch,
                        const std::vector<std::pair<std::uint32_t, std::uint32_t>>& rejected) noexcept;

  // Per ring, the end of the last batch handed over that holds the ring
  // (batches of a ring come from its one worker, in ring order).
  std::array<std::atomic<std::uint64_t>, perf::kMaxRings> handed_through_{};
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
  mutable std::mutex owned_mutex_;  // guards owned_ (grown only when the pool is dry)
  std::vector<std::unique_ptr<Batch>> owned_;
  // Added by workers on submit, taken off by the sink thread when done.
  std::atomic<std::uint64_t> in_flight_events_{0};
  std::atomic<std::uint64_t> in_flight_bytes_{0};
  std::atomic<std::uint64_t> in_flight_outside_ring_{0};  // events of in_flight_events_ in batches not holding the ring
  std::atomic<bool> reopen_{false};
  std::atomic<bool> stop_now_{false};
  std::atomic<bool> retrying_{false};  // see retrying()
  std::atomic<bool> failed_{false};    // see failure()
  char failure_[512] = {};
  // Release after the thread is joined, acquire by the successor: all of
  // this runner's state (queue, unfinished_, inherited_) is then settled.
  std::atomic<bool> finished_{false};
  // Kept until its leftovers are taken, and their batches made our own.
  std::shared_ptr<BackendRunner> predecessor_;
  std::vector<std::shared_ptr<BackendRunner>> after_;  // released once they have stopped
  bool took_over_ = false;
  std::atomic<bool> following_{false};  // until the predecessor's leftovers are written
  std::deque<Batch*> inherited_;  // the predecessor's unwritten batches, written before our own
  Batch* unfinished_ = nullptr;   // ours, its write cut short by a stop
  std::chrono::steady_clock::time_point last_log_{};
  std::uint64_t lines_held_back_ = 0;  // since the last line said
  std::uint64_t rejected_held_ = 0;    // events rejected in those lines
  char last_held_back_[320] = {};
  // A failed try or a sink's notice (a stalled receiver), and since when:
  // once a batch goes through, the log says so. Tries of the batch being
  // written that failed (retried).
  bool in_trouble_ = false;
  std::chrono::steady_clock::time_point trouble_since_{};
  std::chrono::steady_clock::time_point try_started_{};  // of the write under way
  std::uint64_t tries_failed_ = 0;
  std::thread thread_;
};

}  // namespace ringroute::sinks
