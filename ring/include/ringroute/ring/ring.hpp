// The many-to-one ring: any number of producer processes and threads, one
// consumer. Aeron's ManyToOneRingBuffer design (claim with a CAS on tail, write,
// publish the length with a release store; padding records at the lap's end),
// with three additions: the claim header names the producer's slot so a dead
// producer's claim is skipped as soon as its pid is gone; the consumer releases
// space separately from reading it, so the router can hold space until its
// sinks have written the events; and both sides sleep on futexes instead of
// spinning without bound.
//
// Layout and record format: ring/layout.hpp.
#pragma once

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <memory>
#include <span>

#include "ringroute/ring/layout.hpp"
#include "ringroute/ring/segment.hpp"
#include "ringroute/ring/status.hpp"

namespace ringroute::ring {

namespace detail {

inline std::atomic_ref<std::uint64_t> header_word(std::byte* at) noexcept {
  return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(at));
}

// Process-shared futexes (no FUTEX_PRIVATE_FLAG): the waiters are in other
// processes. Spurious wakeups and EAGAIN are fine: every caller re-checks.
inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                       std::chrono::nanoseconds timeout) noexcept {
  const auto ns = timeout.count() < 0 ? 0 : timeout.count();
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}
// Returns how many it woke (0 on error).
inline long futex_wake_all(std::atomic<std::uint32_t>& word) noexcept {
  const long woken =
      ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
  return woken > 0 ? woken : 0;
}

inline std::int64_t monotonic_ns() noexcept {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Asks for every line of [first, first + bytes) in exclusive state, ahead of
// the stores that will write them: lines last touched on another core come
// over together instead of each first store waiting out its own transfer.
// PREFETCHW, not __builtin_prefetch(p, 1): without -march GCC turns the
// latter into a read prefetch, which fetches the line shared and leaves the
// upgrade to the store. A prefetch never faults, so the range may run past
// what is mapped.
inline void prefetch_for_write(const void* first, std::uint64_t bytes) noexcept {
  const auto start = reinterpret_cast<std::uintptr_t>(first) & ~std::uintptr_t{63};
  const auto end = reinterpret_cast<std::uintptr_t>(first) + bytes;
  for (std::uintptr_t line = start; line < end; line += 64) {
#if defined(__x86_64__) || defined(__i386__)
    asm volatile("prefetchw %0" : : "m"(*reinterpret_cast<const char*>(line)));
#else
    __builtin_prefetch(reinterpret_cast<const char*>(line), 1);
#endif
  }
}

// Asks for every line of [first, first + bytes) to be read soon: lines a
// producer just wrote on another core arrive before the loads that need them.
inline void prefetch_for_read(const void* first, std::uint64_t bytes) noexcept {
  const auto start = reinterpret_cast<std::uintptr_t>(first) & ~std::uintptr_t{63};
  const auto end = reinterpret_cast<std::uintptr_t>(first) + bytes;
  for (std::uintptr_t line = start; line < end; line += 64) {
    __builtin_prefetch(reinterpret_cast<const char*>(line), 0, 3);
  }
}

// Test-only: called by a producer after it has claimed space and before it
// commits, so a test can kill it exactly there. Null in production; one
// predictable branch per claim.
extern std::atomic<void (*)()> after_claim_hook;
// Test-only, likewise: called between the CAS on tail and the claim's
// header store, the one moment a claim has no header.
extern std::atomic<void (*)()> unheaded_claim_hook;
// Test-only, likewise: called by the consumer when it is about to judge
// a claim it found uncommitted (its owner, or a claim without a header
// past the timeout), so a test can commit it, and end its owner, between
// the consumer's read of the header and the judging.
extern std::atomic<void (*)()> before_owner_judged_hook;
// Test-only, likewise: called by a claim that found no room by its cached
// head, before it loads head itself (only then: free on the claims that
// find room), so a test can move the ring on meanwhile.
extern std::atomic<void (*)()> before_head_reload_hook;
// Test-only, likewise: called by a producer's first-lap page touch between
// marking a page touched and counting it (only then: a first lap's work),
// so a test can run a prefault() in between.
extern std::atomic<void (*)()> page_marked_hook;

// Bumped in every child process fork() makes (a pthread_atfork handler,
// registered with the first Producer or Consumer). Relaxed everywhere: only
// the child's own threads read it, after the handler ran on the forking
// thread.
extern std::atomic<std::uint64_t> fork_generation;

// Whether this process is a child fork() made since fork_generation read
// `generation`.
[[nodiscard]] inline bool forked_since(std::uint64_t generation) noexcept {
  return fork_generation.load(std::memory_order_relaxed) != generation;
}

}  // namespace detail

namespace testing {
inline void set_after_claim_hook(void (*hook)()) noexcept {
  detail::after_claim_hook.store(hook, std::memory_order_relaxed);
}
inline void set_unheaded_claim_hook(void (*hook)()) noexcept {
  detail::unheaded_claim_hook.store(hook, std::memory_order_relaxed);
}
inline void set_before_owner_judged_hook(void (*hook)()) noexcept {
  detail::before_owner_judged_hook.store(hook, std::memory_order_relaxed);
}
inline void set_before_head_reload_hook(void (*hook)()) noexcept {
  detail::before_head_reload_hook.store(hook, std::memory_order_relaxed);
}
inline void set_page_marked_hook(void (*hook)()) noexcept {
  detail::page_marked_hook.store(hook, std::memory_order_relaxed);
}
}  // namespace testing

// Space claimed on the ring: `bytes` (aligned) starting at `first`, which is
// where the first record's header goes. Valid until committed.
struct Claim {
  std::byte* first = nullptr;
  std::uint64_t position = 0;
  std::uint32_t bytes = 0;
};

// Bytes a record of `payload_bytes` takes on the ring, header and padding included.
constexpr std::uint64_t record_bytes(std::uint64_t payload_bytes) noexcept {
  return align_record(kRecordHeaderBytes + payload_bytes);
}

// What a waiting claim asks at each wake (every 10 ms at most): true ends
// the wait with not_ready (the producer library's "ring removed and read by
// none", which would otherwise be waited out to the deadline, for good
// under a "wait for good" timeout). A function and its argument: nothing
// allocated.
struct ClaimGiveUp {
  bool (*now)(void* context) noexcept = nullptr;
  void* context = nullptr;
};

// The producer side of one ring.
//
// Thread-safety: every call may run on any number of threads and processes at
// once. Allocation: none after construction. Failure: returned as Status,
// never thrown, except from the constructor.
class Producer {
 public:
  // Takes a producer slot (for the consumer's liveness check and per-producer
  // counters); producers past kMaxProducerSlots share one overflow slot and
  // their claims are skipped only on the timeout, not on pid death.
  explicit Producer(Segment segment);
  // Gives the slot back, unless this is a copy fork() made: the slot is the
  // parent's, and the parent may still be writing.
  ~Producer();
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  // True in a child process that fork() made after this producer was made.
  // Such a copy must not write: its claims would carry the parent's slot
  // (the consumer judges liveness by the parent's pid) and its events the
  // parent's ids. The child opens its own.
  [[nodiscard]] bool forked() const noexcept { return detail::forked_since(fork_generation_); }

  [[nodiscard]] const Segment& segment() const noexcept { return segment_; }
  [[nodiscard]] std::uint32_t max_claim_bytes() const noexcept {
    return static_cast<std::uint32_t>(segment_.max_record_bytes());
  }
  [[nodiscard]] ProducerSlot& slot() const noexcept { return *slot_; }

  // Writes every page of the ring once (Segment::touch_for_write), so the
  // first lap's claims do not each pay a page's first-write fault. Worth it
  // for a producer that will write for a while; a short-lived one (one
  // `ringroute emit`) would spend more here than it ever writes.
  void prefault() noexcept {
    segment_.touch_for_write();
    mark_every_page_touched();
  }
  // Whether this producer has written every page of its mapping (prefault()
  // or a lap of claims): its claims then look at no page.
  [[nodiscard]] bool every_page_touched() const noexcept {
    return untouched_pages_.load(std::memory_order_relaxed) == 0;  // relaxed: a hint, for tests
  }

  // Claims `bytes` contiguous bytes (a multiple of 8, record headers included)
  // with one CAS. full: no room now (counted); too_big: over max_claim_bytes()
  // (counted); bad_argument: 0 or not a multiple of 8; corrupt: the tail is
  // off a record's boundary (written by no producer), nothing claimed.
  [[nodiscard]] Status try_claim(std::uint32_t bytes, Claim& out) noexcept {
    const Status s = claim_once(bytes, out);
    // Relaxed: a count, as in claim().
    if (s == Status::full) [[unlikely]] slot_->full.fetch_add(1, std::memory_order_relaxed);
    return s;
  }

  // As try_claim, but waits up to `timeout` for room: spins briefly, yields,
  // then sleeps on a futex that the consumer wakes when it releases space
  // while someone waits. A claim that had to wait counts once as full.
  [[nodiscard]] Status claim(std::uint32_t bytes, Claim& out, std::chrono::nanoseconds timeout) noexcept;
  // The same, with the deadline shared by several claims (one emit of many
  // runs waits `timeout` in all, not per run): `deadline_ns` 0 is set from
  // `timeout` when a claim first has to wait (so a claim that finds room
  // reads no clock); later claims wait only until it, and one that finds
  // it passed neither spins nor yields.
  [[nodiscard]] Status claim(std::uint32_t bytes, Claim& out, std::chrono::nanoseconds timeout,
                             std::int64_t& deadline_ns, ClaimGiveUp give_up = {}) noexcept;

  // Publishes `n` records laid out back to back from claim.first, record i
  // being lengths[i] bytes (header included; the next starts 8-aligned). The
  // aligned lengths must add up to claim.bytes. Payloads must be written.
  void commit(const Claim& claim, const std::uint32_t* lengths, std::size_t n) noexcept {
    std::byte* const first = claim.first;
    std::uint64_t offset = align_record(lengths[0]);
    // Later headers are relaxed: the release store of the first header below
    // publishes them, and the consumer never reads past an uncommitted first.
    for (std::size_t i = 1; i < n; ++i) {
      detail::header_word(first + offset)
          .store(pack_record_header(static_cast<std::int32_t>(lengths[i]), slot_index_),
                 std::memory_order_relaxed);
      offset += align_record(lengths[i]);
    }
    // Release: pairs with the consumer's acquire load of this header word in
    // poll(), making the payloads and later headers visible with it.
    detail::header_word(first).store(
        pack_record_header(static_cast<std::int32_t>(lengths[0]), slot_index_),
        std::memory_order_release);
    // Counted before the wake, not after: a producer killed in the wake's
    // futex call (a syscall, where a kill lands easily) left its records
    // delivered and never counted written, and `written - read` negative.
    slot_->written.fetch_add(n, std::memory_order_relaxed);
    slot_->bytes.fetch_add(claim.bytes, std::memory_order_relaxed);
    wake_consumer_if_sleeping();
  }

  void commit_one(const Claim& claim, std::uint32_t length) noexcept { commit(claim, &length, 1); }

 private:
  Segment segment_;
  SegmentHeader* header_;
  std::byte* data_;
  std::uint64_t mask_;
  ProducerSlot* slot_;
  std::uint32_t slot_index_;
  std::uint64_t fork_generation_;
  // A descriptor of the segment of our own (close-on-exec), holding our
  // slot's liveness lock (slot_lock_state()); -1 where none could be had.
  int lock_fd_ = -1;
  // Pages of the ring this mapping has written (a bit each), until all
  // have: see touch_claim_pages(). Atomic: threads share a producer.
  std::unique_ptr<std::atomic<std::uint64_t>[]> touched_pages_;
  std::atomic<std::uint64_t> untouched_pages_{0};
  static constexpr unsigned kPageShift = 12;

  // Pages of the ring's data (a ring under a page is one), and the words
  // of touched_pages_ that hold a bit each.
  [[nodiscard]] std::uint64_t page_count() const noexcept {
    return std::max<std::uint64_t>(segment_.capacity() >> kPageShift, 1);
  }
  [[nodiscard]] std::uint64_t page_words() const noexcept { return (page_count() + 63) / 64; }
  void mark_every_page_touched() noexcept;
  // The first write to a page of the ring in this process takes a page
  // fault: microseconds in the kernel. Taken between the CAS that claims
  // space and the store of the claim's header, it widened the window where
  // a producer killed (systemd's stop, the OOM killer) leaves a claim
  // without a header, which stalls every producer on the ring for
  // dead_claim_timeout_ms, from a few instructions to the fault's length,
  // all through a producer's first lap. So the pages a claim covers (its
  // header's first) are written before the CAS: an add of 0, atomic so it
  // can't undo another producer's store there. Only until every page has
  // been: then one relaxed load a claim. Out of line and cold, as only a
  // first lap calls it: inlined, it grew the claim every event takes.
  [[gnu::cold, gnu::noinline]] void touch_claim_pages(std::uint64_t tail_index, std::uint64_t bytes,
                                                   bool wraps) noexcept;
  void touch_page(std::uint64_t index) noexcept;

  [[nodiscard]] Status claim_once(std::uint32_t bytes, Claim& out) noexcept {
    if (bytes == 0 || bytes % kRecordAlignment != 0) [[unlikely]] return Status::bad_argument;
    if (bytes > segment_.max_record_bytes()) [[unlikely]] {
      slot_->too_big.fetch_add(1, std::memory_order_relaxed);
      return Status::too_big;
    }
    const std::uint64_t capacity = mask_ + 1;
    const std::uint64_t required = bytes;
    // Acquire pairs with the release store of head_cache by the producer that
    // read head: the consumer's zeroing of the space up to head must happen
    // before our header store into it, even when that producer then found no
    // room and never touched tail (so tail's CAS chain does not carry it).
    // A stale value only makes us more cautious.
    std::uint64_t head = header_->head_cache.load(std::memory_order_acquire);
    // Acquire pairs with the last claimer's CAS on tail: what it had seen of
    // head comes with it. A stale value only fails the CAS below.
    std::uint64_t tail = header_->tail.load(std::memory_order_acquire);
    std::uint64_t padding;
    std::uint64_t tail_index;
    // Signed: a stale head_cache can be more than a lap behind tail, and the
    // unsigned difference would wrap into "plenty of room".
    auto room = [capacity](std::uint64_t t, std::uint64_t h) {
      return static_cast<std::int64_t>(capacity) - static_cast<std::int64_t>(t - h);
    };
    // Full is said only of a head loaded from the ring and a tail loaded
    // after it. A tail loaded before head can be a lap or more behind it
    // (we were descheduled while others went round), and the pair then
    // reads as a record going over the lap's end into what head leaves at
    // the start: full, of a ring that may be empty.
    bool head_then_tail = false;
    for (;;) {
      // Every claim moves tail by whole records, so a tail off a record's
      // boundary was written by something else with write access to the
      // ring. Taken as it is, a padding header 8 bytes wide would go at
      // the lap's last byte, past the mapping's end (a crash here).
      if (tail % kRecordAlignment != 0) [[unlikely]] return Status::corrupt;
      tail_index = tail & mask_;
      const std::uint64_t to_end = capacity - tail_index;
      // A record that does not fit before the lap's end goes to its start
      // after a padding record; room less the padding is then head's
      // distance past the lap's start, negative while head is in the lap
      // before.
      padding = required > to_end ? to_end : 0;
      if (static_cast<std::int64_t>(padding + required) > room(tail, head)) {
        if (head_then_tail) return Status::full;
        if (auto* hook = detail::before_head_reload_hook.load(std::memory_order_relaxed)) [[unlikely]] hook();
        // Acquire pairs with the consumer's release store of head after zeroing.
        head = header_->head.load(std::memory_order_acquire);
        // Acquire pairs with the last claimer's CAS, as above.
        tail = header_->tail.load(std::memory_order_acquire);
        head_then_tail = true;
        continue;
      }
      if (head_then_tail) header_->head_cache.store(head, std::memory_order_release);
      // Relaxed: see touch_claim_pages().
      if (untouched_pages_.load(std::memory_order_relaxed) != 0) [[unlikely]] {
        touch_claim_pages(tail_index, required, padding != 0);
      }
      // Release: pairs with the consumer's acquire load when it steps over
      // a claim without a header (Consumer::skip_if_stalled); the CAS's
      // release below publishes it with the claim.
      slot_->claim_start.store(tail, std::memory_order_release);
      // acq_rel on success: release orders our earlier reads and the store
      // above, acquire pairs with the previous claimer; on failure, acquire
      // reloads tail, and a full found next loads head and tail afresh.
      if (header_->tail.compare_exchange_weak(tail, tail + padding + required, std::memory_order_acq_rel,
                                              std::memory_order_acquire)) {
        break;
      }
      head_then_tail = false;
    }
    if (auto* hook = detail::unheaded_claim_hook.load(std::memory_order_relaxed)) [[unlikely]] hook();
    if (padding != 0) {
      // Release: pairs with the consumer's acquire load; a padding record has
      // no payload, it only tells the consumer to go to the lap's start.
      detail::header_word(data_ + tail_index)
          .store(pack_record_header(static_cast<std::int32_t>(padding), kPaddingFlag | slot_index_),
                 std::memory_order_release);
      tail_index = 0;
    }
    // A negative length marks the claim as ours until commit; release so a
    // consumer that sees it also sees our slot's owner_pid.
    detail::header_word(data_ + tail_index)
        .store(pack_record_header(-static_cast<std::int32_t>(required), slot_index_),
               std::memory_order_release);
    out.first = data_ + tail_index;
    out.position = tail + padding;
    out.bytes = bytes;
    if (auto* hook = detail::after_claim_hook.load(std::memory_order_relaxed)) [[unlikely]] hook();
    return Status::ok;
  }

  void wake_consumer_if_sleeping() noexcept {
    // Dekker with Consumer::sleep: our commit store, then this fence, then the
    // load of consumer_sleeping; the consumer stores the flag, fences, then
    // re-reads the header. At least one side sees the other's store.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (header_->consumer_sleeping.load(std::memory_order_relaxed) != 0) [[unlikely]] {
      // Relaxed: the fence above orders the commit before it, and pairs
      // with Consumer::sleep's acquire load of the word (a sleeper that
      // reads this increment sees the commit); the kernel compares the word
      // under its own lock.
      header_->consumer_wake.fetch_add(1, std::memory_order_relaxed);
      detail::futex_wake_all(header_->consumer_wake);
    }
  }
};

struct ConsumerOptions {
  // How long a claim may stay uncommitted while its producer still looks alive
  // before it is skipped. These VMs stall live processes for tens of ms.
  std::chrono::milliseconds dead_claim_timeout{2000};
};

// The single consumer of a ring. Reading and releasing are separate: poll()
// hands out records and advances a private read position; release() gives the
// space back to producers (zeroing it) once the caller is done with it. A
// consumer that restarts resumes at the released position.
//
// Thread-safety: one thread at a time (one consumer per ring is enforced
// across processes with a lock on the segment). Allocation: none after
// construction. Failure: the constructor throws RingError(busy) when another
// process consumes the ring; nothing else throws.
class Consumer {
 public:
  explicit Consumer(Segment segment, ConsumerOptions options = {});
  ~Consumer();
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  // Calls on_record(std::span<const std::byte> payload, std::uint64_t end)
  // for up to `max_records` committed records, in ring order; `end` is the
  // position just past the record (what to release once it is done). Skips
  // padding, and claims whose producer died or outlived the timeout. Returns
  // the number of records delivered; never blocks.
  template <class OnRecord>
  std::size_t poll(OnRecord&& on_record, std::size_t max_records) {
    std::size_t delivered = 0;
    std::uint64_t bytes = 0;
    const std::uint64_t capacity = mask_ + 1;
    while (delivered < max_records) {
      // Producers never claim past released + capacity: what lies there is
      // our own unreleased lap, not new records.
      if (read_position_ - released_ >= capacity) break;
      if (read_position_ == next_saved_jump_from_) [[unlikely]] {
        take_saved_jump();
        continue;
      }
      const std::uint64_t index = read_position_ & mask_;
      // Acquire pairs with the producer's release store in commit().
      const std::uint64_t word = detail::header_word(data_ + index).load(std::memory_order_acquire);
      const std::int32_t length = header_length(word);
      if (length > 0) {
        const std::uint64_t advance = align_record(static_cast<std::uint64_t>(length));
        if (static_cast<std::uint64_t>(length) < kRecordHeaderBytes || advance > capacity - index)
            [[unlikely]] {
          framing_broken(index);
          break;
        }
        // No committed record reaches past the producers' tail; one that
        // says it does was not written by the library, and taking it would
        // carry the read (then the release) past what producers claimed.
        // The tail is read again only when a record passes the last one seen.
        if (read_position_ + advance > tail_seen_) [[unlikely]] {
          tail_seen_ = claimed_bound();
          if (read_position_ + advance > tail_seen_) {
            framing_broken(index);
            break;
          }
        }
        read_position_ += advance;
        prefetch_ahead(index, advance);
        if ((header_info(word) & kPaddingFlag) == 0) {
          ++delivered;
          bytes += advance;
          on_record(std::span<const std::byte>(data_ + index + kRecordHeaderBytes,
                                               static_cast<std::size_t>(length) - kRecordHeaderBytes),
                    read_position_);
        }
        continue;
      }
      if (!skip_if_stalled(index, word)) break;
    }
    if (delivered != 0) {
      header_->read.add_single_writer(delivered);
      header_->read_bytes.add_single_writer(bytes);
    }
    return delivered;
  }

  // Calls on_record(payload, end) again for the records of [from, to) that
  // poll() delivered, up to `max_records`; returns the position reached (`to`
  // when done). Both must be positions poll() returned as `end` (or the
  // released position), not yet released: that space is ours. Where poll()
  // stepped over bytes (a skipped claim, broken framing) this steps over the
  // same, so a skipped claim whose producer commits after all stays skipped
  // (unless more than kJumps jumps are held unreleased; then the oldest
  // one's header is read, and reading stops at a broken one).
  // This is how a backend that fell behind catches up while the others
  // read on.
  template <class OnRecord>
  std::uint64_t reread(std::uint64_t from, std::uint64_t to, OnRecord&& on_record,
                       std::size_t max_records) const {
    const std::uint64_t capacity = mask_ + 1;
    std::uint64_t position = from;
    std::size_t delivered = 0;
    while (position < to && delivered < max_records) {
      if (live_jump_ != jump_count_) [[unlikely]] {
        // poll() stepped over bytes here: follow it, whatever they say now.
        if (const Jump* jump = jump_from(position); jump != nullptr) {
          position = jump->to;
          continue;
        }
      }
      const std::uint64_t index = position & mask_;
      // Acquire: as in poll(); poll() has seen this word committed already.
      const std::uint64_t word = detail::header_word(data_ + index).load(std::memory_order_acquire);
      const std::int32_t length = header_length(word);
      std::uint64_t advance = 0;
      if (length > 0) {
        advance = align_record(static_cast<std::uint64_t>(length));
        // poll() gave up on framing here and jumped to the tail.
        if (static_cast<std::uint64_t>(length) < kRecordHeaderBytes || advance > capacity - index) return to;
        position += advance;
        if ((header_info(word) & kPaddingFlag) == 0) {
          ++delivered;
          on_record(std::span<const std::byte>(data_ + index + kRecordHeaderBytes,
                                               static_cast<std::size_t>(length) - kRecordHeaderBytes),
                    position);
        }
        continue;
      }
      if (length < 0) {
        // A claim poll() skipped (its producer died or timed out).
        advance = static_cast<std::uint64_t>(-static_cast<std::int64_t>(length));
        if (advance % kRecordAlignment != 0 || advance > capacity - index) return to;
      } else {
        // A claim whose header never came: poll() skipped its zeroes.
        advance = kRecordAlignment;
        while (position + advance < to && advance < capacity - index &&
               detail::header_word(data_ + index + advance).load(std::memory_order_acquire) == 0) {
          advance += kRecordAlignment;
        }
      }
      position += advance;
    }
    return std::min(position, to);
  }

  // Gives [released, position) back to producers. `position` must be one
  // poll() returned as `end` (or read_position()); earlier positions are ignored.
  void release(std::uint64_t position) noexcept;

  // Sleeps until a producer commits or `timeout` passes. Call after poll()
  // returned 0 a few times (the router's worker spins first; IdleStrategy
  // spins and yields).
  void sleep(std::chrono::nanoseconds timeout) noexcept;

  // Records the router could not decode; the ring counts them for `stat`.
  void count_corrupt(std::uint64_t n = 1) noexcept { header_->corrupt.add_single_writer(n); }

  [[nodiscard]] std::uint64_t read_position() const noexcept { return read_position_; }
  // How far ahead of the record being read poll() asks for lines. The lines
  // were last written on the producer's core; fetched one by one as the
  // reader reaches them, each costs a full transfer. A few KiB ahead keeps
  // that many in flight, yet stays inside what a busy producer has committed.
  static constexpr std::uint64_t kPrefetchAhead = 4096;
  [[nodiscard]] std::uint64_t released_position() const noexcept { return released_; }
  // True when a claim is stalled at the read position (so sleeps stay short).
  [[nodiscard]] bool stalled() const noexcept { return stall_position_ == read_position_; }
  [[nodiscard]] const Segment& segment() const noexcept { return segment_; }
  // FUTEX_WAKE calls made for producers waiting for space (tests).
  [[nodiscard]] std::uint64_t space_wake_calls() const noexcept { return space_wake_calls_; }

 private:
  Segment segment_;
  SegmentHeader* header_;
  std::byte* data_;
  std::uint64_t mask_;
  std::int64_t dead_claim_timeout_ns_;
  // A producer killed while it waited for space leaves the shared waiting
  // count up for good. After kFutileWakesBeforeGap wakes in a row that found
  // nobody, the next is at least kFutileWakeGap later (a live waiter also
  // wakes every 10 ms). Not after one: a live waiter between counting itself
  // and its futex call makes a wake futile too, and a second waiter going
  // to sleep just then would miss the releases of the next millisecond.
  static constexpr std::int64_t kFutileWakeGap = 1'000'000;
  static constexpr std::uint32_t kFutileWakesBeforeGap = 4;
  std::uint32_t futile_wakes_ = 0;  // in a row
  std::int64_t last_wake_ns_ = 0;
  std::uint64_t space_wake_calls_ = 0;
  // Asks for the lines of [index, index + advance) shifted kPrefetchAhead on;
  // record after record, that covers every line once. Skipped where the span
  // would wrap: one record's worth, once a lap.
  void prefetch_ahead(std::uint64_t index, std::uint64_t advance) const noexcept {
    const std::uint64_t from = index + kPrefetchAhead;
    if (from + advance > mask_ + 1) return;
    detail::prefetch_for_read(data_ + from, advance);
  }

  std::uint64_t read_position_ = 0;
  std::uint64_t released_ = 0;
  std::uint64_t tail_seen_ = 0;  // the producers' tail when last read (only rises)
  std::uint64_t stall_position_ = ~std::uint64_t{0};
  // Where a broken header sat at the producers' tail when last found, so it
  // is counted once and slept on (see framing_broken()).
  std::uint64_t broken_at_ = ~std::uint64_t{0};
  std::uint64_t broken_word_ = 0;
  std::int64_t stall_since_ns_ = 0;
  // The producers' tail when the stall began timing: claims past it are
  // younger than the stall, so a skip of dead claims never reaches them.
  std::uint64_t stall_tail_ = 0;
  std::uint32_t stall_checks_ = 0;
  static constexpr std::uint32_t kStallChecksPerClockRead = 64;
  bool slept_since_clock_read_ = false;  // see skip_if_stalled()
  std::int64_t last_liveness_check_ns_ = 0;

  // The header at `index` is not committed. Returns true when it was skipped
  // (dead or timed-out claim), false to stop and try again later.
  bool skip_if_stalled(std::uint64_t index, std::uint64_t word) noexcept;
  void framing_broken(std::uint64_t index) noexcept;

  // Where poll() stepped over bytes that are not records (a skipped claim,
  // broken framing), so that reread() takes the same path: after broken
  // framing the headers would lead it elsewhere. Only those not released
  // yet, which reread() can still be asked for: jump i (counting all ever
  // recorded) is at jumps_[i % kJumps], and those from live_jump_ on are
  // held. Each costs a timeout or a corrupt header, so more than kJumps in
  // one unreleased stretch is unlikely; the oldest is then dropped.
  struct Jump {
    std::uint64_t from, to;
  };
  static constexpr std::size_t kJumps = 32;
  std::array<Jump, kJumps> jumps_{};
  std::size_t jump_count_ = 0, live_jump_ = 0;
  void record_jump(std::uint64_t from, std::uint64_t to) noexcept {
    jumps_[jump_count_++ % kJumps] = {from, to};
    if (jump_count_ - live_jump_ > kJumps) live_jump_ = jump_count_ - kJumps;
  }
  void forget_jumps_before(std::uint64_t released) noexcept {
    while (live_jump_ != jump_count_ && jumps_[live_jump_ % kJumps].to <= released) ++live_jump_;
  }
  [[nodiscard]] const Jump* jump_from(std::uint64_t position) const noexcept {
    for (std::size_t i = live_jump_; i != jump_count_; ++i) {
      if (jumps_[i % kJumps].from == position) return &jumps_[i % kJumps];
    }
    return nullptr;
  }
  // The producers' tail, but at most a lap past what is released: no
  // producer claims further, so a tail past it was written by something
  // else, and reading up to it would carry the read past what release()
  // can give back (it refuses more than a lap: the ring stalled for good).
  [[nodiscard]] std::uint64_t claimed_bound() const noexcept {
    // Acquire pairs with the producers' CAS on tail.
    return std::min(header_->tail.load(std::memory_order_acquire), released_ + mask_ + 1);
  }
  // How far past the read position that bound is; 0 where it is behind it
  // (a tail moved back by something other than the library).
  [[nodiscard]] std::uint64_t claimed_room() const noexcept {
    const std::uint64_t bound = claimed_bound();
    return bound > read_position_ ? bound - read_position_ : 0;
  }
  // The jumps a consumer before us took (SegmentHeader::framing_jumps) that
  // lie ahead, in order: taken at the same positions, before their headers
  // are read. next_saved_jump_from_: the next one's `from`, or kNoJump.
  static constexpr std::uint64_t kNoJump = ~std::uint64_t{0};
  std::array<Jump, SegmentHeader::kFramingJumps> saved_jumps_{};
  std::size_t saved_jump_count_ = 0, next_saved_jump_ = 0;
  // Holds the lock on kConsumerLockByte while this consumer lives; -1 where
  // none could be had (a file system without OFD locks).
  int lock_fd_ = -1;
  std::uint64_t fork_generation_ = 0;  // detail::fork_generation when made
  std::uint64_t next_saved_jump_from_ = kNoJump;
  void take_saved_jump() noexcept;
};

// Spin, then yield, then sleep: an idle loop for consumers other than the
// router (`bench ring`, tests). On 2 cores two spinning producers and a
// spinning consumer fall from 137M to 4M events/s, so nobody spins for
// long. The router's worker has a loop of its own (ingest/src/router.cpp):
// no yields (with more busy threads than cores they cost it CPU for no
// gain), and sleeps as long as its open batches and backends allow.
class IdleStrategy {
 public:
  void reset() noexcept { idle_rounds_ = 0; }
  void idle(Consumer& consumer) noexcept {
    ++idle_rounds_;
    if (idle_rounds_ <= kSpinRounds) {
      detail::cpu_relax();
    } else if (idle_rounds_ <= kSpinRounds + kYieldRounds) {
      ::sched_yield();
    } else {
      // A stalled claim is re-checked every millisecond for a dead producer;
      // otherwise a commit wakes us and the timeout only bounds shutdown.
      consumer.sleep(consumer.stalled() ? std::chrono::milliseconds(1) : std::chrono::milliseconds(100));
    }
  }

 private:
  static constexpr unsigned kSpinRounds = 64;
  static constexpr unsigned kYieldRounds = 16;
  unsigned idle_rounds_ = 0;
};

}  // namespace ringroute::ring
