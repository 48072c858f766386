#include "ringroute/ingest/router.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>

#include <boost/circular_buffer.hpp>

#include "ringroute/event/event.hpp"
#include "ringroute/matcher/matcher.hpp"
#include "ringroute/ring/ring.hpp"
#include "ringroute/ring/segment.hpp"
#include "ringroute/ring/truncation_guard.hpp"
#include "ringroute/sinks/backend.hpp"
#include "ringroute/sinks/event_encoder.hpp"
#include "ringroute/sinks/file_sink.hpp"

namespace ringroute::ingest {

using Clock = std::chrono::steady_clock;

struct Plan {
  // Shared: a worker keeps an older one while a backend that was behind at
  // the change still rereads events read under it.
  std::shared_ptr<const matcher::Matcher> matcher;
  std::vector<std::shared_ptr<sinks::BackendRunner>> backends;  // by matcher index; null: disabled
  std::vector<int> slot_of;                                     // perf slot by matcher index
  std::vector<std::uint32_t> encoder_of;                        // distinct encoder by matcher index
  std::vector<sinks::EncodeOptions> encoders;
  // Perf slots taken back from gone backends since the plan before
  // (BlockMapping::reclaim_backend_slot): the positions a worker read from
  // them are another backend's, and start over at nothing written.
  std::vector<int> reclaimed_slots;
  std::uint64_t serial = 0;
};

namespace {

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

}  // namespace

class Worker {
 public:
  Worker(const RouterRing& config, perf::Block& block, int ring_slot, matcher::Generations<Plan>& plans,
         std::size_t reader)
      : consumer_(attach(config), ring::ConsumerOptions{config.dead_claim_timeout}),
        block_(block), ring_(static_cast<std::uint32_t>(ring_slot)), plans_(plans), reader_(reader) {
    // Only now that the ring is ours (a router refused it changes nothing).
    if (const std::string note = consumer_.segment().apply_mode(static_cast<mode_t>(config.mode)); !note.empty()) {
      std::fprintf(stderr, "ringroute: %s\n", note.c_str());
    }
    released_ = consumer_.released_position();
    last_end_ = released_;
    // Positions in the perf block refer to one segment; a new segment (after a
    // reboot, or a ring removed and made again) starts them over.
    // Relaxed in this block: it runs before our thread starts and before any
    // sink of this router writes these slots (thread start orders them); a
    // sink left by a crashed router is gone.
    perf::RingSlot& rs = block_.rings[ring_];
    const std::int64_t created = consumer_.segment().header().created_unix_ns;
    if (rs.segment_created_ns.load(std::memory_order_relaxed) != created) {
      for (auto& backend : block_.backends) {
        backend.written_through[ring_].store(0, std::memory_order_relaxed);
        backend.writing_through[ring_].store(0, std::memory_order_relaxed);
        backend.written_from[ring_].store(0, std::memory_order_relaxed);
      }
      rs.segment_created_ns.store(created, std::memory_order_relaxed);
    }
    // Nothing can be written past what producers have claimed: a position
    // beyond the ring's tail did not come from a sink (a process that can
    // write the block set it), and believed it would skip every event of
    // that backend for good. It is started over from the released position.
    const std::uint64_t tail = consumer_.segment().header().tail.load(std::memory_order_acquire);
    for (std::size_t s = 0; s < perf::kMaxBackends; ++s) {
      // Acquire, though nothing pairs with it: the sinks that stored these
      // were an earlier router's, gone before this ring was ours (the
      // consumer lock), and their stores are in the shared pages.
      skip_through_[s] = block_.backends[s].written_through[ring_].load(std::memory_order_acquire);
      maybe_written_through_[s] = block_.backends[s].writing_through[ring_].load(std::memory_order_acquire);
      const std::uint64_t started_from = block_.backends[s].written_from[ring_].load(std::memory_order_relaxed);
      if (started_from > released_ && started_from <= tail && skip_through_[s] > released_) {
        // Added by a reload while older records stayed in the ring (held
        // for a backend that reload removed, the router then killed, or for
        // one behind): its position covers only what came after its start,
        // and skipping by it would lose the older ones a removed backend
        // held, which no backend here would write.
        // Everything in the ring goes to it again: what it wrote since its
        // start twice (counted as replayed), nothing lost.
        std::fprintf(stderr,
                     "ringroute: ring %s: backend %.*s started after records still in the ring (a reload added "
                     "it); it gets every record in the ring again, those it wrote since its start twice\n",
                     config.name.c_str(), static_cast<int>(perf::slot_name(block_.backends[s].name).size()),
                     perf::slot_name(block_.backends[s].name).data());
        skip_through_[s] = released_;
        block_.backends[s].written_through[ring_].store(released_, std::memory_order_relaxed);
      }
      if (skip_through_[s] > tail || maybe_written_through_[s] > tail) {
        std::fprintf(stderr,
                     "ringroute: ring %s: the perf block says backend slot %zu wrote through %llu, past the ring's "
                     "tail %llu; ignored (not written by a router)\n",
                     config.name.c_str(), s, static_cast<unsigned long long>(skip_through_[s]),
                     static_cast<unsigned long long>(tail));
        skip_through_[s] = maybe_written_through_[s] = released_;
        block_.backends[s].written_through[ring_].store(released_, std::memory_order_relaxed);
        block_.backends[s].writing_through[ring_].store(released_, std::memory_order_relaxed);
      }
    }
  }

  // Apart from the constructor, so a router refused a ring (another one
  // consumes it) has started nothing and written nothing but that slot.
  void start(const std::string& name) {
    thread_ = std::thread([this, name] {
      sinks::name_this_thread("rr-ring:", name);
      try {
        run();
      } catch (const std::exception& e) {
        fail(name, e.what());
        count_open_drop_batches_lost();
      } catch (...) {
        fail(name, "an unknown exception");
        count_open_drop_batches_lost();
      }
      // Thrown out of a round, the loop never left the generation it
      // entered: held, that plan (and the runners in it) could not be freed
      // by any later reload.
      plans_.leave(reader_);
      // Release pairs with exited()'s acquire: nothing this thread did with
      // runners or batches comes after it.
      exited_.store(true, std::memory_order_release);
    });
  }
  // Whether its thread is past its loop: it touches no runner or batch again.
  [[nodiscard]] bool exited() const noexcept { return exited_.load(std::memory_order_acquire); }

  // Why the worker stopped on its own (out of memory, most likely); null
  // while it runs or when it was asked to stop.
  [[nodiscard]] const char* failure() const noexcept {
    // Acquire pairs with fail()'s release: the text is whole.
    return failed_.load(std::memory_order_acquire) ? failure_ : nullptr;
  }

  ~Worker() {
    // Release: as in request_stop() (drain_until_ stays as it was).
    stop_.store(true, std::memory_order_release);
    if (thread_.joinable()) thread_.join();
  }

  void request_stop(Clock::time_point drain_until) {
    drain_until_ = drain_until;
    // Release pairs with the acquire load in run(): the worker that sees the
    // stop also sees drain_until_.
    stop_.store(true, std::memory_order_release);
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  [[nodiscard]] bool drained() const noexcept { return all_released_.load(std::memory_order_acquire); }
  // Slots taken back from backends that are gone: their positions (read
  // from the block when this worker was made) are not the new owners'.
  // Before start() for the router's first plan: a reload published before
  // the worker's first round is the only plan it adopts, and its list of
  // slots taken back is empty.
  void forget_reclaimed(const std::vector<int>& reclaimed) {
    for (const int slot : reclaimed) {
      skip_through_[static_cast<std::size_t>(slot)] = 0;
      maybe_written_through_[static_cast<std::size_t>(slot)] = 0;
      // A removed backend's batches still held here (its give-up not yet
      // seen) would wait on positions the new owner writes for its own.
      slots_[static_cast<std::size_t>(slot)].in_flight.clear();
    }
  }
  // Whether its ring was cut short under it; read once the worker is joined.
  [[nodiscard]] bool ring_lost() const noexcept { return ring_lost_; }
  [[nodiscard]] const std::string& ring_name() const noexcept { return consumer_.segment().name(); }

 private:
  // An exception out of the loop (std::bad_alloc from a batch or a reload's
  // tables) leaves a round half routed: going on could release records no
  // batch holds. The worker stops reading instead; what it did not hand
  // over stays in the ring (never released) for the next start, and the
  // router, told by failure(), stops as on SIGTERM. Without the catch it was
  // std::terminate: no drain of the other backends, no word of which ring.
  void fail(const std::string& ring, const char* what) noexcept {
    // Once: the router reads failure_ as soon as failed_ is set (a lost
    // ring fails the worker, which may then fail again on its way out).
    // Relaxed: only this thread sets it.
    if (failed_.load(std::memory_order_relaxed)) {
      std::fprintf(stderr, "ringroute: the worker of ring %s, stopping, also met: %s\n", ring.c_str(), what);
      return;
    }
    std::snprintf(failure_, sizeof failure_, "the worker of ring %s stopped: %s", ring.c_str(), what);
    std::fprintf(stderr, "ringroute: %s\n", failure_);
    // Whatever its last round left said: records read in the round it
    // failed in may be in no batch.
    all_released_.store(false, std::memory_order_release);
    // Release pairs with failure()'s acquire.
    failed_.store(true, std::memory_order_release);
  }
  // A `drop` backend's open batch holds no ring space: with the worker
  // gone, its events are lost where the ring was released past them (a
  // next start reads the rest again). Counted as dropped at the stop this
  // failure leads to, for a batch wholly released; one released in part is
  // not (which of its events is not known). fetch_add: workers of other
  // rings, and the router after the sink thread is joined, add to it too.
  void count_open_drop_batches_lost() noexcept {
    for (std::size_t slot = 0; slot < slots_.size(); ++slot) {
      const sinks::Batch* batch = slots_[slot].current;
      if (batch == nullptr || batch->holds_ring || batch->end > released_) continue;
      block_.backends[slot].sink.dropped_shutdown.value.fetch_add(batch->events, std::memory_order_relaxed);
      lost_at_failure_.fetch_add(batch->events, std::memory_order_relaxed);
    }
  }
  std::atomic<std::uint64_t> lost_at_failure_{0};

 public:
  // Counted by count_open_drop_batches_lost(); read by the router once this
  // thread is joined (relaxed: the join orders it).
  [[nodiscard]] std::uint64_t lost_at_failure() const noexcept {
    return lost_at_failure_.load(std::memory_order_relaxed);
  }

 private:
  char failure_[512] = {};
  std::atomic<bool> failed_{false};
  std::atomic<bool> exited_{false};

 public:
  [[nodiscard]] std::uint64_t plan_serial() const noexcept { return plan_serial_.load(std::memory_order_acquire); }

 private:
  static ring::Segment attach(const RouterRing& config) {
    ring::SegmentOptions options;
    options.capacity_bytes = config.size_bytes;
    options.mode = static_cast<mode_t>(config.mode);
    options.dead_claim_timeout_ms = config.dead_claim_timeout.count();
    std::string warning;
    ring::Segment segment = ring::Segment::create_or_attach(config.name, options, &warning);
    if (!warning.empty()) std::fprintf(stderr, "ringroute: %s\n", warning.c_str());
    return segment;
  }

  struct InFlight {
    std::uint64_t first_start;
    std::uint64_t end;
  };
  struct EarlierGeneration {
    std::uint64_t through = 0;  // events ending at or before this were read under it
    std::shared_ptr<const matcher::Matcher> matcher;
    std::uint32_t index = 0;  // the backend's index in it
    matcher::BackendSet matched;
  };
  struct SlotState {
    sinks::Batch* current = nullptr;
    sinks::BackendRunner* runner = nullptr;  // of the current batch
    // Submitted batches that hold the ring, oldest first. A ring buffer
    // that only grows: a deque used as a queue allocates a block every 32
    // batches and frees one every 32, as long as the router runs.
    boost::circular_buffer<InFlight> in_flight = boost::circular_buffer<InFlight>(0);  // grown at its first batch
    bool active = false;                     // listed in active_
    std::uint64_t dropped_unsaid = 0;        // see say_unsaid()
    // A `block` backend whose queue was full: it gets no new events, the
    // others read on, and it catches up by rereading the ring from here (the
    // ring is not released past it). Bounded by the ring's size: once the
    // ring is full of what it holds, producers see `full`.
    bool behind = false;
    // Its queue is full: the next event matched to it makes it behind,
    // from that event (route()). Not before: a ring that holds none of
    // its events would keep them all for it, and a dead destination bound
    // to one ring's traffic filled every ring, its producers seeing `full`.
    bool fall_behind = false;
    std::uint64_t behind_from = 0;
    std::deque<EarlierGeneration> earlier;  // oldest first; only while behind across a change
  };

  void run() {
    const Plan* plan = nullptr;
    std::uint64_t plan_serial = 0;  // serials, not addresses: a new plan may reuse a freed one's
    unsigned idle_rounds = 0;
    // Enters the current generation; the caller leaves it.
    auto follow_plan = [&] {
      const Plan* current = plans_.enter(reader_);
      if (plan == nullptr || current->serial != plan_serial) {
        // Batches are cut at a generation change so each is written by the
        // runner that was current when its events matched.
        submit_all();
        if (plan != nullptr) {
          forget_slots_missing_from(*current);
          stop_holding_for_drop_slots(*current);
          keep_generation_for_behind_slots();
        }
        plan = current;
        plan_serial = current->serial;
        adopt(*plan);
      }
    };
    while (!stop_.load(std::memory_order_acquire)) {
      follow_plan();
      if (!ring_lost_) fall_behind_when_full(*plan);
      std::size_t read = catch_up(*plan, kRecordsPerRound);
      // A round's records are decoded and matched together (match_batch
      // overlaps their lookups' cache misses), then routed one by one in
      // ring order. They stay in place until released, which happens only
      // after routing (in maintain()).
      staged_count_ = 0;
      const std::size_t polled = ring_lost_ ? 0 : consumer_.poll(
          [&](std::span<const std::byte> record, std::uint64_t end) {
            // Member by member: an aggregate assignment here went through
            // the stack as a 16-byte load over two 8-byte stores, which the
            // CPU cannot forward (a stall on every record).
            Staged& staged = staged_[staged_count_++];
            staged.record = record;
            staged.end = end;
          },
          kRecordsPerRound);
      read += polled;
      // A cut met since the last round (routing it, the reread, the poll):
      // what the poll staged may be the zeros that replaced the ring, not
      // records.
      if (!ring_lost_ && consumer_.segment().cut_short()) [[unlikely]] {
        staged_count_ = 0;
        lose_ring();
      } else if (polled != 0) {
        route_staged(*plan);
      }
      // A skipped claim (a dead producer's) and a lap's padding move the read
      // position without a record; everything before it is routed now. Left
      // at the last record's end, the ring would keep those bytes (and the
      // worker report undrained) until the next record came.
      last_end_ = consumer_.read_position();
      maintain(Clock::now());
      behind_may_have_room_ = any_behind_may_have_room(*plan);  // before the plan is left
      only_retrying_active_ = only_retrying_slots_active(*plan);
      plans_.leave(reader_);
      if (read != 0) {
        idle_rounds = 0;
        continue;
      }
      // The ring is empty: waiting out the linger would only add latency, so
      // batches a little while old go now (at full speed the ring is never
      // empty and batches fill up instead).
      submit_aged(kIdleFlushAge);
      // A short spin, then the futex (a commit wakes us). No sched_yield
      // rounds between them: with more busy threads than cores, a yield
      // hands the core away all the same, and at 2.5M events/s they cost
      // 7% more router CPU for no gain in latency.
      if (++idle_rounds <= 64) {
        ring::detail::cpu_relax();
      } else if (ring_lost_) [[unlikely]] {
        std::this_thread::sleep_for(sleep_budget());  // no commit wakes a ring no producer can reach
      } else {
        consumer_.sleep(sleep_budget());
      }
    }
    // Shutdown: no new records. Hand over everything, keep releasing as
    // sinks finish, and while the drain lasts let `block` backends that fell
    // behind reread what they missed as their queues empty: their
    // destinations may be up again, and what they read now need not wait
    // in the ring for the next start.
    submit_all();
    for (;;) {
      follow_plan();
      if (!ring_lost_ && consumer_.segment().cut_short()) [[unlikely]] lose_ring();
      const std::size_t reread = catch_up(*plan, kRecordsPerRound);
      if (reread != 0) submit_all();
      maintain(Clock::now());
      plans_.leave(reader_);
      if ((behind_count_ == 0 && nothing_in_flight()) || Clock::now() >= drain_until_) break;
      if (reread == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (corrupt_unsaid_ != 0 || drops_unsaid_) say_unsaid(Clock::now());  // the last second's too
    // A ring cut while nothing read or released it faulted no one: what
    // this worker did not write can't wait in it for the next start.
    if (!ring_lost_ && consumer_.segment().file_cut_short()) lose_ring();
  }

  // Whether the slot's open batch may be handed over for its age: not
  // while its sink retries, when it fills up instead (see
  // BackendRunner::retrying()); nor while a `drop` backend's queue is
  // full, where it would be dropped: it fills up too (route()), so a slow
  // destination is sent full batches, not the few events of a linger
  // while the rest is dropped.
  static bool ages_out(const SlotState& state) {
    return state.current != nullptr && !state.runner->retrying() &&
           !(state.runner->options().drop_when_full && state.runner->over_limit());
  }

  // Whether a backend behind may get room in its queue soon: one whose sink
  // retries (its destination down) frees none until the destination is
  // back.
  bool any_behind_may_have_room(const Plan& plan) const {
    if (behind_count_ == 0) return false;
    for (std::size_t slot : active_) {
      if (!slots_[slot].behind) continue;
      const int index = index_of_slot_[slot];
      if (index < 0 || !plan.backends[static_cast<std::size_t>(index)]->retrying()) return true;
    }
    return false;
  }

  std::chrono::nanoseconds sleep_budget() const {
    if (consumer_.stalled()) return std::chrono::milliseconds(1);
    // A backend behind: no commit tells us when its queue has room again, and
    // a sink frees room within a batch's write. Not one whose sink retries
    // (its destination down): it frees no room until the destination is
    // back, and waking every 100 us for it all through an outage cost a
    // share of a core; the waits below then notice the destination's return.
    if (behind_may_have_room_) return std::chrono::microseconds(100);
    // Wake in time to flush an open batch when it is old enough, or to
    // notice written batches and release the ring. Not for a batch whose
    // sink retries: it waits to fill, and waking every 200 us for it while
    // a destination was down cost 3% of a core.
    for (std::size_t slot : active_) {
      if (ages_out(slots_[slot])) return std::chrono::nanoseconds(kIdleFlushAge);
    }
    // Batches held only by sinks that retry (their destinations down) are
    // written no sooner for our waking: every 20 ms is enough to release
    // what they write once back, where 1 ms woke the worker 1,000 times a
    // second through an outage. Not while the ring is half full of what
    // we read and have not released: producers wait for that room (no
    // commit wakes us then), and a destination that fails now and then
    // while taking most (a retrying sink that makes progress) would have a
    // small ring released only every 20 ms.
    const std::uint64_t unreleased = consumer_.read_position() - consumer_.released_position();
    if (only_retrying_active_ && unreleased < consumer_.segment().capacity() / 2) {
      return std::chrono::milliseconds(20);
    }
    return active_.empty() ? std::chrono::milliseconds(50) : std::chrono::milliseconds(1);
  }

  // Whether every slot with a batch open or in flight belongs to a backend
  // whose sink retries, or to a `drop` backend whose queue is full (its
  // open batch goes once there is room: waking every 1 ms for it while a
  // slow destination drains a backlog was a thousand wakes a second).
  bool only_retrying_slots_active(const Plan& plan) const {
    if (active_.empty()) return false;
    for (std::size_t slot : active_) {
      const int index = index_of_slot_[slot];
      if (index < 0) return false;
      const sinks::BackendRunner& runner = *plan.backends[static_cast<std::size_t>(index)];
      if (!runner.retrying() && !(runner.options().drop_when_full && runner.over_limit())) return false;
    }
    return true;
  }

  void adopt(const Plan& plan) {
    matcher_ = plan.matcher;
    encoders_.clear();
    for (const auto& options : plan.encoders) encoders_.emplace_back(options);
    formatted_serial_.assign(plan.encoders.size(), 0);
    formatted_.assign(plan.encoders.size(), {});
    matched_.resize(plan.matcher->backend_count());
    for (auto& set : matched_batch_) set.resize(plan.matcher->backend_count());
    const std::array<int, perf::kMaxBackends> index_before = index_of_slot_;
    index_of_slot_.fill(-1);
    for (std::size_t i = 0; i < plan.slot_of.size(); ++i) {
      if (plan.backends[i]) index_of_slot_[static_cast<std::size_t>(plan.slot_of[i])] = static_cast<int>(i);
    }
    // A backend new to this worker (at the start, added by a reload, or
    // given a slot taken back) starts here: before anything is routed to it.
    for (std::size_t s = 0; s < perf::kMaxBackends; ++s) {
      const bool taken_back = std::find(plan.reclaimed_slots.begin(), plan.reclaimed_slots.end(),
                                        static_cast<int>(s)) != plan.reclaimed_slots.end();
      if (index_of_slot_[s] >= 0 && (index_before[s] < 0 || taken_back)) {
        // Relaxed: read only by a later router's worker at its start,
        // after this process is gone.
        block_.backends[s].written_from[ring_].store(last_end_, std::memory_order_relaxed);
      }
    }
    // Plans are adopted one by one (a reload waits for every worker), so
    // none of these is missed; the first plan's are forgotten before the
    // worker starts too (forget_reclaimed).
    forget_reclaimed(plan.reclaimed_slots);
    // Release pairs with reload()'s acquire: once it sees the new serial, this
    // worker has handed the old runners their last batches.
    plan_serial_.store(plan.serial, std::memory_order_release);
  }

  static constexpr std::size_t kRecordsPerRound = 256;
  static constexpr std::size_t kBatchPrefetchAhead = 2048;

  // A `block` backend at its queue's bound stops taking events at the next
  // record matched to it, so the others never wait for it (checked once a
  // round: the bound is soft by a round's events).
  void fall_behind_when_full(const Plan& plan) {
    for (std::size_t i = 0; i < plan.backends.size(); ++i) {
      const sinks::BackendRunner* runner = plan.backends[i].get();
      if (runner == nullptr) continue;
      SlotState& state = slots_[static_cast<std::size_t>(plan.slot_of[i])];
      state.fall_behind = !state.behind && !runner->options().drop_when_full && runner->over_limit();
    }
  }

  // From the event at `start` on, `slot` gets no events until it catches up.
  void start_behind(std::size_t slot, std::uint64_t start) {
    SlotState& state = slots_[slot];
    state.fall_behind = false;
    state.behind = true;
    state.behind_from = start;
    ++behind_count_;
    activate(slot);
  }

  // Events are matched by the generation current when they were read
  // (DESIGN.md: events in flight finish on the generation they started
  // on). A backend behind at a change rereads events read before it, so it
  // keeps that generation's matcher, and its index there, up to the change.
  void keep_generation_for_behind_slots() {
    for (std::size_t slot : active_) {
      SlotState& state = slots_[slot];
      const int index = index_of_slot_[slot];
      if (!state.behind || index < 0 || state.behind_from >= last_end_) continue;
      EarlierGeneration earlier;
      earlier.through = last_end_;
      earlier.matcher = matcher_;
      earlier.index = static_cast<std::uint32_t>(index);
      earlier.matched.resize(matcher_->backend_count());
      state.earlier.push_back(std::move(earlier));
    }
  }

  // Whether the event (ring bytes ending at `end`) matched backend `index`
  // of the adopted generation, or of the earlier one it was read under.
  bool matched_for_catch_up(SlotState& state, std::uint32_t index, std::uint64_t end) {
    while (!state.earlier.empty() && state.earlier.front().through < end) state.earlier.pop_front();
    if (state.earlier.empty()) {
      matched_.clear();
      matcher_->match(view_, scratch_, matched_);
      return matched_.test(index);
    }
    EarlierGeneration& earlier = state.earlier.front();
    earlier.matched.clear();
    // Its own scratch: one scratch switching generations would rebuild its
    // per-generation state (the filters' regexes) at every switch.
    earlier.matcher->match(view_, earlier_scratch_, earlier.matched);
    return earlier.matched.test(earlier.index);
  }

  // Rereads the ring for backends behind whose queues have room again, from
  // where each stopped to what the others have read, routing to it alone.
  std::size_t catch_up(const Plan& plan, std::size_t budget) {
    if (behind_count_ == 0) return 0;
    std::size_t reread = 0;
    // Every backend behind is looked at, whatever the budget left: the
    // check below lets go of one a reload switched to `drop`, which must
    // not hold the ring while another backend before it reads back.
    for (std::size_t k = 0; k < active_.size(); ++k) {
      const std::size_t slot = active_[k];
      SlotState& state = slots_[slot];
      if (!state.behind) continue;
      const int index = index_of_slot_[slot];
      if (index < 0) {
        stop_behind(state);  // removed or disabled by a reload
        continue;
      }
      sinks::BackendRunner* runner = plan.backends[static_cast<std::size_t>(index)].get();
      if (runner->over_limit()) {
        // A `drop` backend never holds the ring. One that fell behind under
        // `block` and was switched to `drop` by a reload would otherwise
        // wait here for room, holding the ring for every other backend:
        // what it has not read back is dropped, counted.
        if (runner->options().drop_when_full) {
          drop_behind(slot, &perf::BackendWorkerShard::dropped_queue_full,
                      "its queue is full and a reload switched it to drop");
        }
        continue;
      }
      if (reread >= budget) continue;
      std::uint64_t start = state.behind_from;
      state.behind_from = consumer_.reread(
          state.behind_from, last_end_,
          [&](std::span<const std::byte> record, std::uint64_t end) {
            ++reread;
            const std::uint64_t record_start = start;
            start = end;
            // Counted when first read (route()): a corrupt record, and one
            // this backend had written before a restart.
            if (event::decode(record, view_) != event::DecodeError::none || end <= skip_through_[slot]) return;
            if (!matched_for_catch_up(state, static_cast<std::uint32_t>(index), end)) return;
            if (append(plan, view_, static_cast<std::uint32_t>(index), slot, runner, record_start, end, false)) {
              submit(slot);
            }
          },
          budget - reread);
      // Cut during the reread: it walked zeros, not records; lose_ring()
      // says what was missed.
      if (consumer_.segment().cut_short()) [[unlikely]] return reread;
      if (state.behind_from == last_end_) stop_behind(state);
    }
    return reread;
  }

  // Gives up on what a backend behind has not read back: counted (in the
  // worker's shard, as `reason`) and said, with `why`.
  void drop_behind(std::size_t slot, perf::Counter perf::BackendWorkerShard::*reason, const char* why) {
    if (const std::uint64_t missed = count_missed(slot); missed != 0) {
      (block_.backends[slot].worker[ring_ % perf::kMaxWorkers].*reason).add(missed);
      // The names are bounded by their fields: the block is shared memory.
      const std::string_view backend = perf::slot_name(block_.backends[slot].name);
      const std::string_view ring = perf::slot_name(block_.rings[ring_].name);
      std::fprintf(stderr,
                   "ringroute: backend %.*s: %llu events its bindings matched, not yet read back from ring %.*s, are "
                   "dropped: %s\n",
                   static_cast<int>(backend.size()), backend.data(), static_cast<unsigned long long>(missed),
                   static_cast<int>(ring.size()), ring.data(), why);
    }
    stop_behind(slots_[slot]);
  }

  // The ring's file was cut short under us (see ring/truncation_guard.hpp):
  // its mapping now reads zeros. Reading stops here, and the worker says it
  // failed, so the router drains what it holds (this ring's batches too)
  // and exits 1: under a supervisor the next start makes a ring cut to
  // nothing anew, where a router left running would serve it no more.
  // Backends behind can't read back what they missed: it went with the ring.
  void lose_ring() {
    ring_lost_ = true;
    std::size_t behind = 0;
    for (std::size_t slot : active_) {
      if (slots_[slot].behind) {
        stop_behind(slots_[slot]);
        ++behind;
      }
    }
    const std::string& name = consumer_.segment().name();
    char why[400];
    std::snprintf(why, sizeof why,
                  "/dev/shm/%s was cut short under the router (ftruncate by a process that may write it); its records "
                  "not yet read%s are lost. The next start makes it anew if it is empty, and refuses it otherwise "
                  "(remove it)",
                  name.c_str(), behind != 0 ? ", and what backends behind had to read back," : "");
    fail(name, why);
  }

  void stop_behind(SlotState& state) {
    state.behind = false;
    state.fall_behind = false;
    state.earlier.clear();
    --behind_count_;
  }

  void route_staged(const Plan& plan) {
    std::size_t decoded = 0;
    for (std::size_t k = 0; k < staged_count_; ++k) {
      if (const event::DecodeError error = event::decode(staged_[k].record, views_[decoded]);
          error != event::DecodeError::none) [[unlikely]] {
        staged_[k].view = kCorrupt;
        // Said by maintain(), at most a line a second.
        ++corrupt_unsaid_;
        last_corrupt_ = {staged_[k].end, staged_[k].record.size(), error};
        continue;
      }
      staged_[k].view = static_cast<std::uint32_t>(decoded);
      matched_batch_[decoded].clear();
      ++decoded;
    }
    plan.matcher->match_batch(std::span<const event::EventView>(views_.data(), decoded), scratch_,
                              matched_batch_.data());
    for (std::size_t k = 0; k < staged_count_; ++k) {
      const Staged& staged = staged_[k];
      if (staged.view == kCorrupt) [[unlikely]] {
        last_end_ = staged.end;
        consumer_.count_corrupt();
        block_.rings[ring_].corrupt.add(1);
        continue;
      }
      route(plan, views_[staged.view], matched_batch_[staged.view], staged.end);
    }
  }

  // Routes `event` (ring bytes [last_end_, end)) to the backends it matched.
  void route(const Plan& plan, const event::EventView& event, const matcher::BackendSet& matched,
             std::uint64_t end) {
    const std::uint64_t start = last_end_;
    last_end_ = end;
    if (matched.empty()) return;
    ++event_serial_;
    bool replayed = false;
    to_submit_count_ = 0;
    matched.for_each([&](std::uint32_t index) {
      sinks::BackendRunner* runner = plan.backends[index].get();
      if (runner == nullptr) return;
      const auto slot = static_cast<std::size_t>(plan.slot_of[index]);
      perf::BackendWorkerShard& shard = block_.backends[slot].worker[ring_ % perf::kMaxWorkers];
      shard.matched.add(1);
      // Counted here whether the backend takes the event now or rereads it
      // when it catches up (catch_up() skips the same events, counting
      // nothing): `matched` was counted here too.
      if (end <= skip_through_[slot]) {
        shard.skipped_written.add(1);
        return;
      }
      // Replayed only where it goes out again: now, or when the backend
      // behind reads it back (a `block` backend, which drops nothing).
      const bool maybe_written = end <= maybe_written_through_[slot];
      if (slots_[slot].behind || slots_[slot].fall_behind) [[unlikely]] {
        if (!slots_[slot].behind) start_behind(slot, start);
        replayed |= maybe_written;
        return;  // it rereads this event when it catches up
      }
      if (runner->options().drop_when_full) {
        const sinks::Batch* open = slots_[slot].current;
        const bool open_full = open != nullptr && is_full(*open, runner->options());
        if (runner->over_limit()) {
          // A full queue drops only what the open batch (the one a backend
          // always has; opened if need be) can't take: it fills up, and is
          // handed over once the queue has room (ages_out()), or at a stop.
          if (open_full) {
            shard.dropped_queue_full.add(1);
            // Said by maintain(), at most a line a second.
            ++slots_[slot].dropped_unsaid;
            drops_unsaid_ = true;
            return;
          }
          replayed |= maybe_written;
          append(plan, event, index, slot, runner, start, end, true);  // kept when full, not handed over
          return;
        }
        // One kept full while the queue was: handed over before it takes
        // more (no other backend's bytes of this event are in it to copy).
        if (open_full) submit(slot);
      }
      replayed |= maybe_written;
      if (append(plan, event, index, slot, runner, start, end, true)) to_submit_[to_submit_count_++] = slot;
    });
    if (replayed) block_.rings[ring_].replayed.add(1);
    // After the loop: a submitted batch may be reset by its sink thread at
    // once, and other backends may still have been copying from it.
    for (std::size_t i = 0; i < to_submit_count_; ++i) submit(to_submit_[i]);
  }

  // Adds `event` (ring bytes [start, end)) to `slot`'s batch;
  // true when that batch is now full. `share_encoding`: within one route()
  // call, reuse the bytes another backend's batch already holds.
  bool append(const Plan& plan, const event::EventView& event, std::uint32_t index, std::size_t slot,
              sinks::BackendRunner* runner, std::uint64_t start, std::uint64_t end, bool share_encoding) {
    SlotState& state = slots_[slot];
    const auto& options = runner->options();
    if (state.current == nullptr) {
      state.current = runner->take_batch();
      state.runner = runner;
      state.current->ring = ring_;
      state.current->first_start = start;
      state.current->opened_ns = steady_now_ns_;
      state.current->holds_ring = !options.drop_when_full;
      activate(slot);
    }
    sinks::Batch& batch = *state.current;
    const std::size_t appended_from = batch.bytes.size();
    const std::uint32_t f = plan.encoder_of[index];
    if (share_encoding && formatted_serial_[f] == event_serial_) {
      // Encoded once per event per encoder: copy the bytes another
      // backend's batch already holds.
      const Formatted& done = formatted_[f];
      batch.bytes.append(std::string_view(done.batch->bytes.data() + done.offset, done.length));
    } else {
      const std::size_t offset = batch.bytes.size();
      encoders_[f].encode(event, batch.bytes);
      if (share_encoding) {
        formatted_serial_[f] = event_serial_;
        formatted_[f] = {&batch, offset, batch.bytes.size() - offset};
      }
    }
    // The batch's memory was last read by a sink thread's write(), on the
    // other core: ask for the lines a few events ahead now, as the ring's
    // lines are asked for in poll(). Event after event this covers every line
    // once; past the buffer's end it asks for nothing that matters.
    ring::detail::prefetch_for_write(batch.bytes.data() + appended_from + kBatchPrefetchAhead,
                                     batch.bytes.size() - appended_from);
    batch.event_ends.push_back(static_cast<std::uint32_t>(batch.bytes.size()));
    batch.event_ns.push_back(event.timestamp_ns);
    ++batch.events;
    batch.end = end;
    return is_full(batch, options);
  }

  static bool is_full(const sinks::Batch& batch, const sinks::BackendOptions& options) {
    return batch.events >= options.batch_max_events || batch.bytes.size() >= options.batch_max_bytes;
  }

  void activate(std::size_t slot) {
    if (!slots_[slot].active) {
      slots_[slot].active = true;
      active_.push_back(slot);
    }
  }

  void submit(std::size_t slot) {
    SlotState& state = slots_[slot];
    sinks::Batch* batch = state.current;
    if (batch == nullptr) return;
    if (batch->holds_ring) {
      // Full, it would overwrite its oldest: it grows instead (its capacity
      // then stays, the most this backend had in flight).
      if (state.in_flight.full()) state.in_flight.set_capacity(std::max<std::size_t>(16, 2 * state.in_flight.capacity()));
      state.in_flight.push_back({batch->first_start, batch->end});
    }
    // Let go of only once handed over: a hand-over that throws (no memory
    // for the queue) leaves the batch this slot's open one, which the
    // worker's failure counts (count_open_drop_batches_lost); cleared
    // first, a `drop` batch whose ring space was released went uncounted.
    state.runner->submit(batch);
    state.current = nullptr;
  }

  void submit_all() {
    for (std::size_t slot : active_) submit(slot);
  }

  void submit_aged(std::int64_t min_age_ns) {
    for (std::size_t slot : active_) {
      if (ages_out(slots_[slot]) && steady_now_ns_ - slots_[slot].current->opened_ns >= min_age_ns) submit(slot);
    }
  }

  static constexpr std::int64_t kIdleFlushAge = 200'000;  // ns

  // Called before the new plan is adopted: matcher_ and index_of_slot_ are
  // still the generation being left (whose Plan may be freed already).
  void forget_slots_missing_from(const Plan& plan) {
    // A removed backend's runner has a while to write what it was handed:
    // the ring is held for those batches (in_flight stays) until it has,
    // or until the reload gives them up, counted (give_up_unwritten). A
    // router killed meanwhile finds them in the ring at its next start.
    std::array<bool, perf::kMaxBackends> present{};
    for (std::size_t i = 0; i < plan.slot_of.size(); ++i) {
      if (plan.backends[i]) present[static_cast<std::size_t>(plan.slot_of[i])] = true;
    }
    for (std::size_t slot : active_) {
      if (present[slot]) continue;
      // Its runner's log counts what it was handed; what it had not read
      // back from the ring yet is counted and said here.
      if (slots_[slot].behind) {
        drop_behind(slot, &perf::BackendWorkerShard::dropped_removed, "the backend was removed while behind");
      }
    }
  }

  // A backend a reload switched to `drop` never holds the ring, not even
  // for the batches it was handed under `block` (which its new runner
  // inherits, and may retry for as long as the destination is down): the
  // ring is no longer held for them. What of them is not written by a stop
  // is counted as dropped (BackendRunner::unwritten_events_outside_ring).
  void stop_holding_for_drop_slots(const Plan& plan) {
    for (std::size_t i = 0; i < plan.slot_of.size(); ++i) {
      if (!plan.backends[i] || !plan.backends[i]->options().drop_when_full) continue;
      slots_[static_cast<std::size_t>(plan.slot_of[i])].in_flight.clear();
    }
  }

  // The events a backend behind has not read back: those its bindings
  // matched from where it stopped to what the others have read. Rare (a
  // reload removing a backend behind), so the ring is read again for it.
  std::uint64_t count_missed(std::size_t slot) {
    SlotState& state = slots_[slot];
    const int index = index_of_slot_[slot];
    if (index < 0) return 0;
    std::uint64_t missed = 0;
    consumer_.reread(
        state.behind_from, last_end_,
        [&](std::span<const std::byte> record, std::uint64_t end) {
          if (event::decode(record, view_) != event::DecodeError::none || end <= skip_through_[slot]) return;
          if (matched_for_catch_up(state, static_cast<std::uint32_t>(index), end)) ++missed;
        },
        std::numeric_limits<std::size_t>::max());
    return missed;
  }

  // What was counted and not yet said (records that do not decode, events
  // a full queue dropped): a line each at most once a second, so a drop or
  // a broken producer is in the log, not only in the counters.
  void say_unsaid(Clock::time_point now) noexcept {
    const double seconds = said_at_ == Clock::time_point{} ? 0.0 : std::chrono::duration<double>(now - said_at_).count();
    bool said = false;
    if (corrupt_unsaid_ != 0) {
      std::fprintf(stderr,
                   "ringroute: ring %s: %llu records that do not decode counted corrupt and skipped; the last (%zu "
                   "bytes, ending at position %llu): %s\n",
                   ring_name().c_str(), static_cast<unsigned long long>(corrupt_unsaid_), last_corrupt_.bytes,
                   static_cast<unsigned long long>(last_corrupt_.end), event::to_string(last_corrupt_.error));
      corrupt_unsaid_ = 0;
      said = true;
    }
    if (drops_unsaid_) {
      for (std::size_t slot = 0; slot < slots_.size(); ++slot) {
        if (slots_[slot].dropped_unsaid == 0) continue;
        const std::string_view name = perf::slot_name(block_.backends[slot].name);
        char over[48] = "";
        if (seconds > 0) std::snprintf(over, sizeof over, " in the last %.1f s", seconds);
        std::fprintf(stderr,
                     "ringroute: backend %.*s: its queue is full (when_full: drop): %llu events of ring %s dropped%s "
                     "(dropped.queue_full)\n",
                     static_cast<int>(name.size()), name.data(),
                     static_cast<unsigned long long>(slots_[slot].dropped_unsaid), ring_name().c_str(), over);
        slots_[slot].dropped_unsaid = 0;
      }
      drops_unsaid_ = false;
      said = true;
    }
    if (said) said_at_ = now;
  }

  // Linger, written batches, ring release.
  void maintain(Clock::time_point now) {
    if ((corrupt_unsaid_ != 0 || drops_unsaid_) && now - said_at_ >= std::chrono::seconds(1)) [[unlikely]] {
      say_unsaid(now);
    }
    steady_now_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
    std::uint64_t release_to = last_end_;
    for (std::size_t i = 0; i < active_.size();) {
      const std::size_t slot = active_[i];
      SlotState& state = slots_[slot];
      if (ages_out(state) &&
          steady_now_ns_ - state.current->opened_ns >=
              std::chrono::duration_cast<std::chrono::nanoseconds>(state.runner->options().linger).count()) {
        submit(slot);
      }
      const std::uint64_t written = block_.backends[slot].written_through[ring_].load(std::memory_order_acquire);
      while (!state.in_flight.empty() && state.in_flight.front().end <= written) state.in_flight.pop_front();
      if (!state.in_flight.empty()) release_to = std::min(release_to, state.in_flight.front().first_start);
      if (state.current != nullptr && state.current->holds_ring) {
        release_to = std::min(release_to, state.current->first_start);
      }
      if (state.behind) release_to = std::min(release_to, state.behind_from);
      if (state.current == nullptr && state.in_flight.empty() && !state.behind) {
        state.active = false;
        active_[i] = active_.back();
        active_.pop_back();
        continue;
      }
      ++i;
    }
    if (release_to > released_) {
      // A lost ring's release would zero its private stand-in, up to a
      // ring's worth of memory made resident for nothing.
      if (!ring_lost_) consumer_.release(release_to);
      released_ = release_to;
    }
    // Release: pairs with drained()'s acquire on the control thread (stop(),
    // bench), which then sees the releases made before it.
    all_released_.store(released_ == consumer_.read_position(), std::memory_order_release);
  }

  bool nothing_in_flight() const {
    for (std::size_t slot : active_) {
      if (slots_[slot].current != nullptr || !slots_[slot].in_flight.empty()) return false;
    }
    return true;
  }

  struct Formatted {
    sinks::Batch* batch = nullptr;
    std::size_t offset = 0;
    std::size_t length = 0;
  };

  ring::Consumer consumer_;
  perf::Block& block_;
  std::uint32_t ring_;
  matcher::Generations<Plan>& plans_;
  std::size_t reader_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  Clock::time_point drain_until_{};
  std::atomic<bool> all_released_{true};
  std::atomic<std::uint64_t> plan_serial_{0};

  std::uint64_t released_ = 0;
  std::uint64_t last_end_ = 0;
  std::int64_t steady_now_ns_ = steady_ns();
  event::EventView view_;                      // catch_up()'s record
  matcher::MatchScratch scratch_;
  matcher::BackendSet matched_;                // catch_up()'s
  std::shared_ptr<const matcher::Matcher> matcher_;  // the current plan's
  matcher::MatchScratch earlier_scratch_;      // for earlier generations' matchers
  struct Staged {
    std::span<const std::byte> record;
    std::uint64_t end;
    std::uint32_t view;  // index into views_, or kCorrupt
  };
  static constexpr std::uint32_t kCorrupt = 0xffffffffu;
  // See say_unsaid().
  struct CorruptRecord {
    std::uint64_t end = 0;
    std::size_t bytes = 0;
    event::DecodeError error = event::DecodeError::none;
  };
  std::uint64_t corrupt_unsaid_ = 0;
  CorruptRecord last_corrupt_;
  bool drops_unsaid_ = false;
  Clock::time_point said_at_{};
  std::array<Staged, kRecordsPerRound> staged_{};
  std::size_t staged_count_ = 0;
  bool ring_lost_ = false;  // its file was cut short: see lose_ring()
  std::array<event::EventView, kRecordsPerRound> views_{};
  std::array<matcher::BackendSet, kRecordsPerRound> matched_batch_{};
  std::vector<sinks::EventEncoder> encoders_;
  std::vector<std::uint64_t> formatted_serial_;
  std::vector<Formatted> formatted_;
  std::uint64_t event_serial_ = 0;
  std::array<SlotState, perf::kMaxBackends> slots_{};
  std::vector<std::size_t> active_;
  std::array<std::size_t, perf::kMaxBackends> to_submit_{};
  static std::array<int, perf::kMaxBackends> no_slots() {
    std::array<int, perf::kMaxBackends> none;
    none.fill(-1);
    return none;
  }
  std::array<int, perf::kMaxBackends> index_of_slot_ = no_slots();  // plan index by perf slot, -1: none
  std::size_t behind_count_ = 0;
  // any_behind_may_have_room() as the last round left its plan (sleep_budget()).
  bool behind_may_have_room_ = false;
  bool only_retrying_active_ = false;  // see only_retrying_slots_active()
  std::size_t to_submit_count_ = 0;
  std::array<std::uint64_t, perf::kMaxBackends> skip_through_{};
  std::array<std::uint64_t, perf::kMaxBackends> maybe_written_through_{};
};

namespace {
// A config whose enabled backends all have a sink, checked before the perf
// block or any ring is made: a refused start leaves nothing in /dev/shm.
RouterConfig with_sinks(RouterConfig config) {
  for (const RouterBackend& backend : config.backends) {
    if (std::string why = sinks::missing_sink(backend.type); backend.enabled && !why.empty()) {
      throw std::runtime_error("backend " + backend.name + ": " + why);
    }
  }
  return config;
}
}  // namespace

Router::Router(RouterConfig config)
    : config_(with_sinks(std::move(config))),
      // 0640: only the router writes it (sinks' positions, which decide
      // what a restart skips); `stat` users in the group read it.
      block_(perf::BlockMapping::create_or_open(config_.instance, 0640)),
      plans_(std::max<std::size_t>(config_.rings.size(), 1)) {
  // A router refused here (a ring another one consumes, a sink that can't
  // start) leaves no block behind that it made and never ran with.
  struct RemoveBlockUnlessStarted {
    const perf::BlockMapping& block;
    const std::string& instance;
    bool started = false;
    ~RemoveBlockUnlessStarted() {
      if (!started && block.made_now()) perf::BlockMapping::remove(instance);
    }
  } remove_block_unless_started{block_, config_.instance};
  // Before any ring is mapped: a producer that truncates one must not take
  // the router, and every other ring's events in flight, down with it.
  ring::install_truncation_guard();
  if (config_.rings.empty()) config_.rings.emplace_back();
  if (config_.rings.size() > perf::kMaxRings) throw std::runtime_error("at most 16 rings");
  // The rings first: a router another one already runs for is refused here,
  // before it starts a sink or writes to the perf block's header.
  for (std::size_t i = 0; i < config_.rings.size(); ++i) {
    int slot = block_.ring_slot(config_.rings[i].name);
    if (slot < 0) {
      // Ring names that came and went would fill the block's 16 slots for
      // good: one of a ring this config does not name is taken back (this
      // router holds the block: no other router of the instance runs). Not
      // one whose ring still holds records it has not released: a config
      // naming it again finds them there, and its backends' positions
      // spare them being written twice.
      const auto in_use = [&](std::string_view ring) {
        if (std::any_of(config_.rings.begin(), config_.rings.end(),
                        [&](const RouterRing& r) { return r.name == ring; })) {
          return true;
        }
        ring::Segment segment;
        if (ring::Segment::attach(std::string(ring), segment, nullptr, ring::Segment::Access::read_only) !=
            ring::Status::ok) {
          return false;
        }
        return !ring::all_released(segment.header());
      };
      if (block_.reclaim_ring_slot(in_use) >= 0) slot = block_.ring_slot(config_.rings[i].name);
    }
    if (slot < 0) throw std::runtime_error("the perf block has no free ring slot: 16 rings of this instance run");
    workers_.push_back(std::make_unique<Worker>(config_.rings[i], block_.block(), slot, plans_, i));
  }
  // Rings an earlier config named keep their slots (and figures) until
  // reclaimed: labelled, so `stat` shows what this router consumes.
  for (perf::RingSlot& slot : block_.block().rings) {
    if (slot.name[0] == 0) continue;
    const std::string_view name = perf::slot_name(slot.name);
    const bool named = std::any_of(config_.rings.begin(), config_.rings.end(),
                                   [&](const RouterRing& r) { return r.name == name; });
    slot.not_in_config.store(named ? 0 : 1, std::memory_order_relaxed);
    // Events producers were told went in, and no router will read them
    // now: said once here, or they wait there unseen (`stat`'s live view
    // leaves such a ring out).
    if (ring::Segment left; !named && ring::Segment::attach(std::string(name), left, nullptr,
                                                            ring::Segment::Access::read_only) == ring::Status::ok) {
      // Relaxed: two positions compared, nothing read through them.
      const std::uint64_t unread = left.header().tail.load(std::memory_order_relaxed) -
                                   left.header().head.load(std::memory_order_relaxed);
      if (unread != 0) {
        std::fprintf(stderr,
                     "ringroute: ring %.*s, which this config no longer names, holds %llu bytes of records no router "
                     "has delivered: they wait there until a config of this instance names it again (remove "
                     "/dev/shm/%.*s to give them up)\n",
                     static_cast<int>(name.size()), name.data(), static_cast<unsigned long long>(unread),
                     static_cast<int>(name.size()), name.data());
      }
    }
  }
  for (const RouterBackend& backend : config_.backends) {
    if (backend.enabled) runners_[backend.name] = start_backend(config_, backend);
  }
  // Backends an earlier run had and this config does not run (removed,
  // disabled or renamed across the restart): what they had not delivered
  // this run routes to no one of theirs and releases with the ring space,
  // as a reload that removes a backend does. Counted so (dropped.removed)
  // and said, or their backlog stayed in `stat` for good; their base taken
  // after it, so a later reload that brings one back starts at none.
  for (std::size_t slot = 0; slot < perf::kMaxBackends; ++slot) {
    perf::BackendSlot& left = block_.block().backends[slot];
    if (left.name[0] == 0 || pending_based_[slot]) continue;
    if (const std::optional<std::uint64_t> undelivered = perf::pending_of(left); undelivered && *undelivered != 0) {
      left.sink.dropped_removed.add(*undelivered);
      const std::string_view name = perf::slot_name(left.name);  // bounded by its field: the block is shared memory
      std::fprintf(stderr,
                   "ringroute: backend %.*s, which this config does not run, had %llu events routed to it and not "
                   "delivered when the last router stopped: they are dropped (counted in its dropped.removed)\n",
                   static_cast<int>(name.size()), name.data(), static_cast<unsigned long long>(*undelivered));
    }
    take_pending_base(slot);
  }
  plans_.publish(make_plan(config_, runners_));
  for (auto& worker : workers_) worker->forget_reclaimed(reclaimed_slots_);  // not started: this thread's alone
  reclaimed_slots_.clear();
  // Informational for `stat` (relaxed: it reads each field on its own).
  perf::BlockHeader& header = block_.block().header;
  header.router_pid.store(static_cast<std::int32_t>(::getpid()), std::memory_order_relaxed);
  header.router_stopped.store(0, std::memory_order_relaxed);
  header.router_started_ns.store(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch()).count(),
                                 std::memory_order_relaxed);
  header.ring_count.store(static_cast<std::uint32_t>(config_.rings.size()), std::memory_order_relaxed);
  for (std::size_t i = 0; i < config_.rings.size(); ++i) workers_[i]->start(config_.rings[i].name);
  remove_block_unless_started.started = true;
}

Router::~Router() { stop(std::chrono::milliseconds(0)); }

namespace {

bool same_options(const std::string& a, const std::string& b) {
  if (a == b) return true;
  if (a.empty() || b.empty()) return false;  // no options and some
  try {
    return sinks::options_identity(a) == sinks::options_identity(b);
  } catch (const std::exception&) {
    return false;  // not JSON (no config check lets that through): unlike
  }
}

}  // namespace

void Router::take_pending_base(std::size_t slot) {
  if (pending_based_[slot]) return;
  perf::set_pending_base(block_.block().backends[slot]);
  pending_based_[slot] = true;
}

bool keeps_running(const RouterBackend& running, const RouterBackend& next) {
  return running.enabled && next.enabled && running.name == next.name && running.type == next.type &&
         same_options(running.options_json, next.options_json);
}

std::shared_ptr<sinks::BackendRunner> Router::start_backend(
    const RouterConfig& config, const RouterBackend& backend, std::shared_ptr<sinks::BackendRunner> predecessor,
    const std::vector<std::shared_ptr<sinks::BackendRunner>>& leaving) {
  int slot = block_.backend_slot(backend.name, backend.type);
  if (slot < 0) {
    // The names of runners still running (a reload's old ones included) and
    // of the config being started keep their slots; the rest are stale.
    const auto in_use = [&](std::string_view name) {
      return runners_.find(name) != runners_.end() ||
             std::any_of(config.backends.begin(), config.backends.end(),
                         [&](const RouterBackend& b) { return b.enabled && b.name == name; });
    };
    if (const int reclaimed = block_.reclaim_backend_slot(in_use); reclaimed >= 0) {
      reclaimed_slots_.push_back(reclaimed);  // the next plan tells the workers
      pending_based_[static_cast<std::size_t>(reclaimed)] = false;  // zeroed: another backend's now
      slot = block_.backend_slot(backend.name, backend.type);
    }
  }
  if (slot < 0) {
    throw std::runtime_error("the perf block has no free backend slot for " + backend.name + " (all " +
                             std::to_string(perf::kMaxBackends) +
                             " are held, by the backends running: a backend a reload replaces keeps its slot "
                             "while it drains; a restart takes this config)");
  }
  // A name a reload removed and brings back (its old runner maybe still
  // draining) keeps this run's base: every event this run routed to it is
  // in this run's counts, settled or not.
  take_pending_base(static_cast<std::size_t>(slot));
  try {
    // A write this backend's slot says began and did not end (the router
    // stopped mid-write) may have left its file a cut-off line to cut back;
    // with none, a file's unended last line is not ours. Relaxed: this
    // slot's sinks are an earlier router's, gone, or a runner this reload
    // replaces, whose write in progress only makes the answer "may be".
    bool may_be_torn = false;
    const perf::BackendSlot& written = block_.block().backends[slot];
    for (std::size_t ring = 0; ring < perf::kMaxRings; ++ring) {
      may_be_torn |= written.writing_through[ring].load(std::memory_order_relaxed) !=
                     written.written_through[ring].load(std::memory_order_relaxed);
    }
    auto sink = sinks::make_sink(backend.type, backend.options_json, may_be_torn);
    // Runners a reload stops that append to this one's file (compared as
    // the config check compares paths, hard links included) write their
    // last batches first.
    std::vector<std::shared_ptr<sinks::BackendRunner>> after;
    if (const std::string path = sink->file_path(); !path.empty()) {
      for (const auto& runner : leaving) {
        if (runner != predecessor && !runner->file_path().empty() && sinks::same_file(runner->file_path(), path)) {
          after.push_back(runner);
        }
      }
    }
    return std::make_shared<sinks::BackendRunner>(backend.name, sinks::parse_backend_options(backend.type, backend.options_json),
                                                  std::move(sink), block_.block().backends[slot],
                                                  std::move(predecessor), std::move(after));
  } catch (const std::exception& e) {
    throw std::runtime_error("backend " + backend.name + ": " + e.what());
  }
}

std::unique_ptr<const Plan> Router::make_plan(const RouterConfig& config, const Runners& runners) {
  static std::atomic<std::uint64_t> serial{0};
  auto plan = std::make_unique<Plan>();
  plan->serial = serial.fetch_add(1, std::memory_order_relaxed) + 1;  // uniqueness only
  plan->reclaimed_slots = reclaimed_slots_;
  plan->matcher = matcher::Matcher::compile(config.matching);
  for (const RouterBackend& backend : config.backends) {
    std::shared_ptr<sinks::BackendRunner> runner;
    if (backend.enabled) runner = runners.at(backend.name);
    plan->slot_of.push_back(backend.enabled ? block_.backend_slot(backend.name, backend.type) : 0);
    std::uint32_t encoder = 0;
    if (runner) {
      const auto& options = runner->options().encoding;
      auto it = std::find(plan->encoders.begin(), plan->encoders.end(), options);
      encoder = static_cast<std::uint32_t>(it - plan->encoders.begin());
      if (it == plan->encoders.end()) plan->encoders.push_back(options);
    }
    plan->encoder_of.push_back(encoder);
    plan->backends.push_back(std::move(runner));
  }
  block_.block().header.backend_count.store(static_cast<std::uint32_t>(config.backends.size()),
                                            std::memory_order_relaxed);
  // For stat: which slots this config's enabled backends have, and their
  // types (relaxed: labels). Nothing after this throws, so the plan made is
  // the one published: a refused reload relabels nothing.
  std::array<bool, perf::kMaxBackends> configured{};
  for (std::size_t i = 0; i < plan->backends.size(); ++i) {
    if (!plan->backends[i]) continue;
    configured[static_cast<std::size_t>(plan->slot_of[i])] = true;
    block_.set_backend_type(plan->slot_of[i], config.backends[i].type);
  }
  for (std::size_t slot = 0; slot < perf::kMaxBackends; ++slot) {
    block_.block().backends[slot].in_config.store(configured[slot] ? 1 : 0, std::memory_order_relaxed);
  }
  return plan;
}

std::optional<std::string> Router::refusal(const RouterConfig& config) const {
  if (config.instance != config_.instance) return "instance can't change while running (restart to change it)";
  // No rings is the one default ring: the same only where that is the ring
  // running.
  bool same_rings = config.rings.size() == config_.rings.size() ||
                    (config.rings.empty() && config_.rings.size() == 1 && config_.rings[0].name == RouterRing{}.name);
  for (std::size_t i = 0; same_rings && i < config.rings.size(); ++i) {
    same_rings = config.rings[i].name == config_.rings[i].name;
  }
  if (!same_rings) return "rings can't change while running (restart to change them)";
  return std::nullopt;
}

std::optional<std::string> Router::reload(
    RouterConfig config, const std::function<std::optional<std::chrono::steady_clock::time_point>()>& stop_deadline) {
  if (std::optional<std::string> why = refusal(config)) return why;
  // A ring's settings belong to its segment and its consumer, both made at
  // start: the rest of the file is taken, and the log says these are not.
  for (std::size_t i = 0; i < config.rings.size(); ++i) {
    const RouterRing& now = config_.rings[i];
    const RouterRing& asked = config.rings[i];
    auto unchanged = [&](const char* what, const std::string& from, const std::string& to) {
      if (from == to) return;
      std::fprintf(stderr, "ringroute: reload: rings[%zu].%s %s -> %s takes effect at the next start (ring %s keeps %s)\n",
                   i, what, from.c_str(), to.c_str(), now.name.c_str(), from.c_str());
    };
    unchanged("size_bytes", std::to_string(now.size_bytes), std::to_string(asked.size_bytes));
    unchanged("mode", ring::octal_mode(static_cast<mode_t>(now.mode)), ring::octal_mode(static_cast<mode_t>(asked.mode)));
    unchanged("dead_claim_timeout_ms", std::to_string(now.dead_claim_timeout.count()),
              std::to_string(asked.dead_claim_timeout.count()));
  }
  config.rings = config_.rings;
  const std::chrono::milliseconds removed_drain = config.removed_backend_drain;
  Runners next;
  std::vector<std::shared_ptr<sinks::BackendRunner>> replaced, removed;
  std::unique_ptr<const Plan> plan;
  // Whether the running backend `name` goes on untouched under `config`.
  const auto untouched = [&](const std::string& name) {
    const RouterBackend* old_config = nullptr;
    for (const RouterBackend& b : config_.backends) {
      if (b.name == name && b.enabled) old_config = &b;
    }
    // Compared as what they ask for: the same options in another order (a
    // file reformatted, a key moved) replaced the backend, reopening its
    // file or its connections for nothing.
    return old_config != nullptr && std::any_of(config.backends.begin(), config.backends.end(),
                                                [&](const RouterBackend& b) { return keeps_running(*old_config, b); });
  };
  try {
    // Runners that this reload replaces or removes.
    std::vector<std::shared_ptr<sinks::BackendRunner>> leaving;
    for (const auto& [name, runner] : runners_) {
      if (!untouched(name)) leaving.push_back(runner);
    }
    for (const RouterBackend& backend : config.backends) {
      if (!backend.enabled) continue;
      auto old = runners_.find(backend.name);
      if (untouched(backend.name)) {
        next[backend.name] = old->second;
      } else {
        // A changed backend: the new runner follows the old one (writes
        // what it leaves first), so no event of it is lost or reordered.
        next[backend.name] =
            start_backend(config, backend, old != runners_.end() ? old->second : nullptr, leaving);
      }
    }
    // Before anything is swapped: a compile that throws (out of memory)
    // leaves the running config whole.
    plan = make_plan(config, next);
  } catch (const std::exception& e) {
    return std::string(e.what());  // the runners made so far stop as they go (they wrote nothing)
  }
  // Said by name: "reloaded" alone left a reader to work out which
  // backends a reload restarted (their files reopened, connections made
  // anew) and which it left running.
  std::string kept_names, replaced_names, added_names, removed_names;
  const auto add_name = [](std::string& list, const std::string& name) { list += (list.empty() ? "" : ", ") + name; };
  for (auto& [name, runner] : runners_) {
    auto it = next.find(name);
    if (it == next.end()) {
      removed.push_back(runner);
      add_name(removed_names, name);
    } else if (it->second != runner) {
      replaced.push_back(runner);
      add_name(replaced_names, name);
    } else {
      add_name(kept_names, name);
    }
  }
  for (const auto& [name, runner] : next) {
    if (runners_.find(name) == runners_.end()) add_name(added_names, name);
  }
  {
    std::string said;
    for (const auto& [what, names] : {std::pair{"kept ", &kept_names}, std::pair{"replaced ", &replaced_names},
                                      std::pair{"added ", &added_names}, std::pair{"removed ", &removed_names}}) {
      if (!names->empty()) said += (said.empty() ? "" : "; ") + std::string(what) + *names;
    }
    std::fprintf(stderr, "ringroute: reload: %s\n", said.empty() ? "no backend enabled before or now" : said.c_str());
  }
  runners_ = std::move(next);
  const std::uint64_t serial = plan->serial;
  plans_.publish(std::move(plan));
  reclaimed_slots_.clear();
  config_ = std::move(config);
  // Workers move to the new plan on their next round (at most a sleep away)
  // and hand the old runners their last batches. Only then may those stop:
  // a worker still on the old plan would hand batches to a stopped runner
  // (or one freed), so this waits as long as it takes, saying so.
  const auto started = Clock::now();
  auto next_warning = started + std::chrono::seconds(2);
  for (;;) {
    bool all_moved = true;
    // A worker whose thread ended on its own (an exception out of its loop)
    // touches no runner or batch again: it counts as moved, or the wait
    // would last for ever. One that failed and reads on (its ring cut
    // short: it drains what it holds) still follows the plans, and is
    // waited for as the others.
    for (const auto& worker : workers_) {
      all_moved = all_moved && (worker->plan_serial() >= serial || worker->exited());
    }
    if (all_moved) break;
    if (Clock::now() >= next_warning) {
      next_warning += std::chrono::seconds(2);
      std::fprintf(stderr, "ringroute: reload: a ring worker has not taken the new config after %lld s\n",
                   static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started).count()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // A replaced runner's successor writes what it leaves, so it gets a short
  // while; a removed one has no successor. Each group is stopped together:
  // several dead destinations cost one wait, not one each.
  const auto moved = Clock::now();
  std::vector<sinks::BackendRunner*> group;
  for (auto& runner : replaced) group.push_back(runner.get());
  sinks::BackendRunner::stop_all(group, moved + std::chrono::seconds(1), stop_deadline);
  group.clear();
  for (auto& runner : removed) group.push_back(runner.get());
  if (!removed.empty()) {
    std::fprintf(stderr, "ringroute: reload: removed backend(s) %s have up to %lld ms to write what they hold\n",
                 removed_names.c_str(), static_cast<long long>(removed_drain.count()));
  }
  sinks::BackendRunner::stop_all(group, moved + removed_drain, stop_deadline);
  for (auto& runner : removed) {
    // No configured backend will write them: counted, then given up, and
    // the workers release the ring they held for them.
    // Whatever it counts: a batch its destination took whole before a
    // stop cut it short counts 0 unwritten, and still holds the ring.
    runner->give_up_unwritten();
    if (const std::uint64_t unwritten = runner->unwritten_events(); unwritten != 0) {
      // The sink thread is joined: this thread is the shard's one writer now.
      runner->slot().sink.dropped_removed.add(unwritten);
      std::fprintf(stderr, "ringroute: backend %s removed: %llu events it was handed and did not write are dropped\n",
                   runner->name().c_str(), static_cast<unsigned long long>(unwritten));
    }
  }
  plans_.reclaim();
  return std::nullopt;
}

void Router::reopen() {
  for (auto& [name, runner] : runners_) runner->request_reopen();
}

void Router::stop(std::chrono::milliseconds drain) {
  if (stopped_) return;
  stopped_ = true;
  // One deadline for the workers' wait and the sink threads' after it: the
  // whole stop takes at most `drain` (plus a write in progress), not twice.
  const auto drain_until = Clock::now() + drain;
  for (auto& worker : workers_) worker->request_stop(drain_until);
  for (auto& worker : workers_) {
    worker->join();
    dropped_at_stop_ += worker->lost_at_failure();
  }
  std::vector<sinks::BackendRunner*> all;
  for (auto& [name, runner] : runners_) all.push_back(runner.get());
  sinks::BackendRunner::stop_all(all, drain_until);
  for (const auto& [name, runner] : runners_) {
    // By batch, not by the runner's policy now: a reload may have switched
    // it, and batches handed under the other one are still in its queue.
    // Those holding the ring are kept there for the next start.
    const std::uint64_t lost = runner->unwritten_events_outside_ring();
    if (lost != 0) {
      // The sink thread is joined: this thread is the shard's one writer now.
      runner->slot().sink.dropped_shutdown.add(lost);
      dropped_at_stop_ += lost;
    }
    if (const std::uint64_t unwritten = runner->unwritten_events(); unwritten != 0) {
      left_at_stop_.push_back({name, lost, unwritten - lost});
    }
  }
  rings_released_at_stop_ = true;
  for (const auto& worker : workers_) {
    rings_released_at_stop_ = rings_released_at_stop_ && worker->drained();
    // Kept past the workers: a ring cut during the drain fails its worker
    // then, and `run` asks after stop() returns.
    if (const char* why = worker->failure(); why != nullptr && !failure_at_stop_) failure_at_stop_ = why;
    if (worker->ring_lost()) lost_rings_.push_back(worker->ring_name());
  }
  workers_.clear();
  stopped_mark_.armed = true;
}

std::optional<std::string> Router::failure() const {
  if (failure_at_stop_) return failure_at_stop_;
  for (const auto& worker : workers_) {
    if (const char* why = worker->failure(); why != nullptr) return std::string(why);
  }
  for (const auto& [name, runner] : runners_) {
    if (const char* why = runner->failure(); why != nullptr) return std::string(why);
  }
  return std::nullopt;
}

bool Router::drained() const noexcept {
  if (stopped_) return dropped_at_stop_ == 0 && rings_released_at_stop_;
  for (const auto& worker : workers_) {
    if (!worker->drained()) return false;
  }
  return true;
}

}  // namespace ringroute::ingest
