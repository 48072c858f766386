#pragma once
// A destination. The sink thread (BackendRunner) calls it with one batch at
// a time, in order; a sink never sees two calls at once.

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ringroute/sinks/batch.hpp"

namespace ringroute::perf {
struct BackendSinkShard;
}

namespace ringroute::sinks {

enum class Outcome : std::uint8_t {
  ok,      // written / acknowledged
  retry,   // transient (disk full, connection refused, 5xx): try the same batch again later
  failed,  // permanent for this batch (rejected): counted and dropped, never retried
};

// Thrown out of write() when the sink thread is stopping and a network
// write was still waiting on its destination: the batch is not written
// (a successor runner, or the next start from the ring, writes it).
class WriteInterrupted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Sink {
 public:
  virtual ~Sink() = default;
  // Writes the whole batch. `why` gets a sentence when the outcome is not ok.
  virtual Outcome write(const Batch& batch, std::string& why) = 0;
  // Called at least every 100 ms from the sink thread, with or without
  // batches: time-based rotation, interval fsync, noticing a vanished file.
  virtual void tick(std::chrono::steady_clock::time_point) {}
  // SIGHUP: reopen what it writes to (logrotate's rename, then HUP).
  virtual void reopen() {}
  // The file it appends to, for sinks that have one (empty for the rest):
  // two runners must never append to one file at once.
  [[nodiscard]] virtual std::string file_path() const { return {}; }
  // Sinks count what only they know (rotations, reopens, connects) here.
  void attach_counters(perf::BackendSinkShard* counters) noexcept { counters_ = counters; }
  // The sink thread's stop flag: a write waiting on a slow destination
  // checks it and ends with WriteInterrupted once it is set. Files don't
  // wait on anyone and ignore it.
  void attach_stop(const std::atomic<bool>* stop) noexcept { stop_ = stop; }
  // Where notice() and remark() lines go: the runner's log, which names the
  // backend, holds lines back to one a second (counting those it held) and
  // shows the last in `stat`. `trouble`: notice()'s, whose end the runner
  // says once a batch is written again.
  using NoticeFunction = void (*)(void* context, std::string_view line, bool trouble) noexcept;
  void attach_notices(NoticeFunction function, void* context) noexcept {
    notice_function_ = function;
    notice_context_ = context;
  }

  // After an `ok` write: the batch's events the destination rejected (an
  // HTTP 4xx for some of its requests, NDJSON datagrams too long), as
  // ranges [first, last), ascending. They are counted as dropped, with
  // `why`, and not retried; their bytes and latencies are not counted as
  // written.
  [[nodiscard]] const std::vector<std::pair<std::uint32_t, std::uint32_t>>& rejected_ranges() const noexcept {
    return rejected_ranges_;
  }
  // How many events those ranges hold.
  [[nodiscard]] std::uint32_t rejected_events() const noexcept {
    std::uint32_t events = 0;
    for (const auto& [first, last] : rejected_ranges_) events += last - first;
    return events;
  }
  // After a write cut short by a stop (WriteInterrupted), or a stop
  // between two tries: how many of the batch's events the destination has
  // all the same (HTTP requests accepted, events a socket's receiver has
  // acknowledged), at least. Sinks that can't tell say 0.
  [[nodiscard]] virtual std::uint32_t delivered_events() const noexcept { return 0; }
  // Which they are, as ranges [first, last) ascending, into `out` (left
  // empty by sinks that can't tell). Called at a stop only: it may allocate.
  virtual void delivered_ranges(std::vector<std::pair<std::uint32_t, std::uint32_t>>& out) const { out.clear(); }
  // After a `retry`: the wait the destination asked for (HTTP Retry-After),
  // or zero for the runner's own backoff.
  [[nodiscard]] std::chrono::milliseconds retry_after() const noexcept { return retry_after_; }

 protected:
  // A line for the log about the destination that no outcome carries (a
  // receiver stalled in the middle of a write, a connection it reset
  // between batches). Allocates nothing; straight to stderr before a
  // runner is attached.
  void notice(std::string_view line) const noexcept { say_line(line, true); }
  // A line about what the sink did that no outcome carries and that is no
  // trouble of delivery (a file's cut-off tail removed after a crash, a
  // rotation that failed while lines go on into the file): said as
  // notice()'s are, but no "delivering again" follows it.
  void remark(std::string_view line) const noexcept { say_line(line, false); }

  perf::BackendSinkShard* counters_ = nullptr;
  const std::atomic<bool>* stop_ = nullptr;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> rejected_ranges_;  // see rejected_ranges()
  std::chrono::milliseconds retry_after_{0};

 private:
  void say_line(std::string_view line, bool trouble) const noexcept;
  NoticeFunction notice_function_ = nullptr;
  void* notice_context_ = nullptr;
};

}  // namespace ringroute::sinks
