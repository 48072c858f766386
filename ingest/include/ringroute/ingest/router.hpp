// The router: one worker per ring reads runs of committed records, matches
// each against the current matcher generation, formats it once per distinct
// formatter, and appends the bytes to each matched backend's batch; full or
// aged batches go to the backends' sink threads. Ring space is released only
// once every batch holding those events is written, so a crash of the router
// loses nothing committed: a restart replays from the released position and
// each backend skips what it had already written (its written-through
// position lives in the perf block).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ringroute/matcher/config.hpp"
#include "ringroute/matcher/generations.hpp"
#include "ringroute/perf/block.hpp"

namespace ringroute::sinks {
class BackendRunner;
}

namespace ringroute::ingest {

struct RouterRing {
  std::string name = "ringroute";
  std::uint64_t size_bytes = 64ull << 20;
  std::uint32_t mode = 0660;
  std::chrono::milliseconds dead_claim_timeout{2000};
};

struct RouterBackend {
  std::string name;
  std::string type;
  bool enabled = true;
  std::string options_json = "{}";
};

// Whether a reload from `running` to `next` leaves the backend running
// untouched: both enabled, the same name and type, options that ask for the
// same (compared as parsed, so a key moved or the file reformatted is the
// same). Any other enabled `running` backend is replaced or removed.
[[nodiscard]] bool keeps_running(const RouterBackend& running, const RouterBackend& next);

struct RouterConfig {
  std::string instance = "ringroute";
  std::vector<RouterRing> rings;
  std::vector<RouterBackend> backends;
  std::vector<matcher::BackendSpec> matching;  // same order as backends
  // How long a backend that a reload removes may go on writing what it was
  // handed (`router.removed_backend_drain_ms`); the reload's config decides.
  std::chrono::milliseconds removed_backend_drain{5000};
};

struct Plan;  // a published generation: matcher + backends by matcher index
class Worker;

class Router {
 public:
  // Creates or attaches the rings and the perf block, starts a sink thread
  // per enabled backend and a worker per ring. Throws std::runtime_error with
  // a message naming what failed (a ring another router consumes, a backend
  // type without a sink, io_uring refused).
  explicit Router(RouterConfig config);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Applies a new config: bindings become a new matcher generation; new
  // backends start; removed ones get `config.removed_backend_drain` (5 s by
  // default) to write what they hold, then stop (what they did not write is
  // dropped, logged); changed ones (type
  // or options) are replaced by a runner that first writes what the old one
  // did not within 1 s, in order (see BackendRunner); unchanged ones keep
  // running untouched. Rings and the instance can't change while running.
  // nullopt on success, else why not (the old config stays).
  // `stop_deadline` (may be empty) says when a stop asked for meanwhile must
  // be done: those waits end by then at the latest, so the stop's drain
  // bounds it (what the old runners did not write by then is dropped or
  // passed on as above).
  std::optional<std::string> reload(
      RouterConfig config,
      const std::function<std::optional<std::chrono::steady_clock::time_point>()>& stop_deadline = {});
  // Why reload() would refuse `config` before starting anything of it (the
  // instance or the rings changed); nullopt when it would go on.
  [[nodiscard]] std::optional<std::string> refusal(const RouterConfig& config) const;

  // Every sink reopens what it writes to (SIGHUP, after logrotate's rename).
  void reopen();

  // Stops reading the rings, hands every batch held to its sink and waits up
  // to `drain` for them to be written. What is not written by then stays in
  // the ring (not released) for the next start, except for `drop` backends,
  // whose batches never hold the ring: theirs are counted as dropped
  // (dropped_shutdown) and returned by dropped_at_stop().
  void stop(std::chrono::milliseconds drain);
  [[nodiscard]] std::uint64_t dropped_at_stop() const noexcept { return dropped_at_stop_; }
  // After stop(): each backend that was handed events it did not write,
  // in name order: those dropped (handed under `drop`) and those the ring
  // keeps for the next start. Events a backend behind had not read back
  // are in the ring too, and in no backend's figure.
  struct LeftAtStop {
    std::string backend;
    std::uint64_t dropped = 0, in_ring = 0;
  };
  [[nodiscard]] const std::vector<LeftAtStop>& left_at_stop() const noexcept { return left_at_stop_; }

  [[nodiscard]] perf::Block& block() noexcept { return block_.block(); }
  // Why a worker or a sink thread stopped on its own (an exception out of
  // its loop, such as std::bad_alloc, or a ring cut short); the router then
  // wants stopping. nullopt while all run. Called from the thread that
  // reloads, and after stop() (a worker's failure during the drain is kept).
  [[nodiscard]] std::optional<std::string> failure() const;
  // True when every worker has released all it read (everything written);
  // after stop(), whether they had when they stopped.
  [[nodiscard]] bool drained() const noexcept;
  // After stop(): whether the workers had released all they read (nothing
  // kept in the rings for the next start), drops at the stop aside.
  [[nodiscard]] bool rings_released_at_stop() const noexcept { return rings_released_at_stop_; }
  // After stop(): the rings whose files were cut short under the router.
  // What they held and was not written is gone with them, not kept for the
  // next start.
  [[nodiscard]] const std::vector<std::string>& lost_rings() const noexcept { return lost_rings_; }

 private:
  // `backend` of `config` (the config being started or reloaded, whose
  // enabled backends keep their perf slots should one be taken back).
  std::shared_ptr<sinks::BackendRunner> start_backend(
      const RouterConfig& config, const RouterBackend& backend, std::shared_ptr<sinks::BackendRunner> predecessor = nullptr,
      const std::vector<std::shared_ptr<sinks::BackendRunner>>& leaving = {});
  using Runners = std::map<std::string, std::shared_ptr<sinks::BackendRunner>, std::less<>>;
  std::unique_ptr<const Plan> make_plan(const RouterConfig& config, const Runners& runners);

  RouterConfig config_;
  perf::BlockMapping block_;
  // Marks the block's router_stopped (for `stat`) once stop() has run and
  // everything declared after this is gone: the runners, whose sinks make
  // their last syncs as they go, and the plans that share them. A router
  // that hangs or exits there did not finish its stop.
  struct StoppedMark {
    perf::BlockMapping& block;
    bool armed = false;  // by the end of stop()
    ~StoppedMark() {
      // Relaxed: a label for `stat`, as router_pid is.
      if (armed) block.block().header.router_stopped.store(1, std::memory_order_relaxed);
    }
  } stopped_mark_{block_};
  Runners runners_;  // by backend name
  std::vector<int> reclaimed_slots_;  // since the last plan published (Plan::reclaimed_slots)
  // Backend slots whose backlog base this run has set (perf::set_pending_base).
  std::array<bool, perf::kMaxBackends> pending_based_{};
  // Sets it once a run, before this run's first runner or worker writes
  // the slot.
  void take_pending_base(std::size_t slot);
  matcher::Generations<Plan> plans_;
  std::vector<std::unique_ptr<Worker>> workers_;
  bool stopped_ = false;
  bool rings_released_at_stop_ = false;
  std::uint64_t dropped_at_stop_ = 0;
  std::vector<LeftAtStop> left_at_stop_;
  std::optional<std::string> failure_at_stop_;  // a worker's, when one had failed by the end of stop()
  std::vector<std::string> lost_rings_;
};

}  // namespace ringroute::ingest
