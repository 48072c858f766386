// The shared-memory layout of a ring segment. Everything in here is read and
// written by several processes at once, so every offset is fixed and checked
// with static_assert, and the layout version is bumped on any change.
//
//   0                                                            header_bytes
//   +-------------------------------------------------------------+---------------------+
//   | SegmentHeader (control lines, counters, producer slots)      | records (capacity)  |
//   +-------------------------------------------------------------+---------------------+
//
// A record in the data area, 8-byte aligned:
//
//   0               4               8
//   +---------------+---------------+----------------------------+---------+
//   | length (i32)  | info (u32)    | payload (length - 8 bytes) | pad to 8|
//   +---------------+---------------+----------------------------+---------+
//
//   length > 0   committed; `length` is the exact size of header + payload and
//                the next record starts at align8(length).
//   length < 0   claimed but not committed: -length bytes (aligned) belong to
//                the producer in `info`'s slot. A batch claim covers all of its
//                records with one negative length on the first.
//   length == 0  nothing yet (the consumer zeroes what it releases), or a claim
//                whose header the producer has not written yet.
//   info         low 16 bits: the producer slot; bit 31: padding record.
//
// The header word (length, info) is read and written as one 64-bit atomic, so a
// reader never sees a length from one claim and a slot from another.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "ringroute/perf/counter.hpp"

namespace ringroute::ring {

inline constexpr std::uint64_t kSegmentMagic = 0x31474e4952525252ull;  // "RRRRING1" little-endian
// Bump on any change of SegmentHeader or the record format, except a field
// that takes a reserved word or is appended after the slots within the
// header's pages (kHeaderBytes unchanged), where zero means what builds
// without it did: older builds leave it zero, and ignore it.
inline constexpr std::uint32_t kLayoutVersion = 1;
inline constexpr std::size_t kRecordAlignment = 8;
inline constexpr std::size_t kRecordHeaderBytes = 8;
inline constexpr std::size_t kMaxProducerSlots = 256;
inline constexpr std::uint32_t kPaddingFlag = 0x8000'0000u;
inline constexpr std::uint32_t kNoSlot = 0xffffu;  // producers that found every slot taken
inline constexpr std::uint64_t kMinCapacity = 1024;
// Record lengths are 32-bit, and so is the padding record that fills a lap's end.
inline constexpr std::uint64_t kMaxCapacity = 1ull << 30;
// A size_bytes a ring may have: a power of two in [kMinCapacity, kMaxCapacity].
constexpr bool is_ring_capacity(std::uint64_t bytes) noexcept {
  return bytes >= kMinCapacity && bytes <= kMaxCapacity && (bytes & (bytes - 1)) == 0;
}

constexpr std::uint64_t align_record(std::uint64_t n) noexcept {
  return (n + (kRecordAlignment - 1)) & ~std::uint64_t{kRecordAlignment - 1};
}

constexpr std::uint64_t pack_record_header(std::int32_t length, std::uint32_t info) noexcept {
  return static_cast<std::uint32_t>(length) | (std::uint64_t{info} << 32);
}
constexpr std::int32_t header_length(std::uint64_t word) noexcept {
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(word));
}
constexpr std::uint32_t header_info(std::uint64_t word) noexcept {
  return static_cast<std::uint32_t>(word >> 32);
}

using perf::kCacheLine;

// One per producer process (or per open handle): who it is, so a consumer can
// tell a dead producer's claim from a slow one, and its own counters, so
// `full` and `written` can be read per producer. Written by its owner only,
// except `owner_pid` which producers CAS to take a free or dead slot. Slot
// i's owner also holds a lock on byte i of the segment file
// (slot_lock_state(), segment.hpp): alive where its pid can't say.
// The consumer holds a lock on this byte of the segment file while it
// consumes (slot_lock_state(fd, kConsumerLockByte)): a producer that finds
// the ring's file removed tells from it that a router still reads the ring,
// whatever PID namespace either is in, where the consumer's pid can't say.
inline constexpr std::uint32_t kConsumerLockByte = kMaxProducerSlots;

struct alignas(kCacheLine) ProducerSlot {
  // 0 = free. Taken in two CASes (take_owner()): an acq_rel one to a mark,
  // so two producers never share a slot, then a release one from the mark to
  // the pid, which publishes start_ticks and pairs with the consumer's
  // acquire load of the pid when it checks a stalled claim.
  std::atomic<std::int32_t> owner_pid;
  // owner_pid's value while that owner holds the slot's lock (0 otherwise,
  // and in slots of builds before the lock): the consumer then judges it
  // by the lock alone (with locked_ticks). Written by the owner only.
  std::atomic<std::int32_t> locked_by;
  // Process start time (clock ticks since boot, /proc/pid/stat field 22), so a
  // reused pid is not mistaken for the producer that died. Written before
  // owner_pid is published... see take_owner() in ring.cpp for the order.
  std::atomic<std::uint64_t> owner_start_ticks;
  std::atomic<std::uint64_t> written;   // events committed
  std::atomic<std::uint64_t> bytes;     // record bytes committed, headers included
  std::atomic<std::uint64_t> full;      // emits that found no room
  std::atomic<std::uint64_t> too_big;   // emits refused for size
  // The tail position its owner is about to claim at, stored (release)
  // before each CAS on tail. Every value is a claim's start, so a consumer
  // stepping over a claim whose header never came stops at it: the owner
  // may be between its CAS and its header store. The release pairs with the
  // consumer's acquire load: seeing a later value, it also sees the header
  // of the claim before. Zero from producers built before it (no bound).
  std::atomic<std::uint64_t> claim_start;
  // The start ticks of the owner that set locked_by: with them, a stale
  // locked_by (its owner crashed) is not taken for a later owner's that has
  // the same pid (a build before the lock, which never writes these).
  std::atomic<std::uint64_t> locked_ticks;
};
static_assert(sizeof(ProducerSlot) == kCacheLine);

struct SegmentHeader {
  // --- line 0: identity, immutable after creation (except layout_version) ---
  std::uint64_t magic;
  // Written last by the creator with a release store; a producer that loads it
  // with acquire and finds kLayoutVersion sees every other field initialised.
  // 0 means "not ready yet", any other value a layout this build can't read.
  std::atomic<std::uint32_t> layout_version;
  std::uint32_t header_bytes;
  std::uint64_t capacity;
  std::uint64_t max_record_bytes;
  std::int64_t created_unix_ns;
  // The consumer's setting, for a reader of the segment (informational):
  // atomic because every consumer's start rewrites it while producers and
  // `stat` have the header mapped. Relaxed: nothing is published with it.
  std::atomic<std::int64_t> dead_claim_timeout_ns;
  std::uint8_t reserved_line0[kCacheLine - 48];

  // --- line 1: producers' claim position ---
  // Producers CAS it forward to claim space (acq_rel: the release publishes
  // the claimer's claim_start to the consumer's acquire loads of tail; the
  // acquire takes from the claimer before what it had seen of head, so the
  // consumer's zeroing of the space comes before this claimer's header
  // store. Whether a claim pads is decided on the value the CAS confirms,
  // not by the ordering).
  alignas(kCacheLine) std::atomic<std::uint64_t> tail;
  std::uint8_t pad1[kCacheLine - 8];

  // --- line 2: producers' cached copy of head, refreshed only when the ring
  // looks full, so producers don't pull the consumer's line on every claim ---
  alignas(kCacheLine) std::atomic<std::uint64_t> head_cache;
  std::uint8_t pad2[kCacheLine - 8];

  // --- line 3: released position, written by the consumer ---
  // Release store after zeroing the released bytes; pairs with the producers'
  // acquire load in claim(), so a producer reusing space sees it zeroed.
  alignas(kCacheLine) std::atomic<std::uint64_t> head;
  // Set (release) before the consumer zeroes [head, releasing_to) and cleared
  // after head moves; a consumer attaching after a crash finishes the zeroing.
  std::atomic<std::uint64_t> releasing_to;
  std::uint8_t pad3[kCacheLine - 16];

  // --- line 4: consumer ownership and its sleep flag ---
  alignas(kCacheLine) std::atomic<std::int32_t> consumer_pid;
  std::uint32_t reserved4;
  std::atomic<std::uint64_t> consumer_start_ticks;
  // Dekker pair with producers: the consumer stores 1 here, fences (seq_cst)
  // and re-checks for data before it sleeps; a producer stores its commit,
  // fences (seq_cst) and loads this flag. One of the two always sees the other.
  std::atomic<std::uint32_t> consumer_sleeping;
  // Futex word the consumer sleeps on; producers bump it before FUTEX_WAKE.
  std::atomic<std::uint32_t> consumer_wake;
  std::uint8_t pad4[kCacheLine - 24];

  // --- line 5: producers waiting for space (same Dekker pattern, reversed) ---
  alignas(kCacheLine) std::atomic<std::uint32_t> producers_waiting;
  std::atomic<std::uint32_t> space_wake;
  std::uint8_t pad5[kCacheLine - 8];

  // --- lines 6..: ring counters written by the consumer only ---
  perf::PaddedCounter read;           // records handed to the consumer
  perf::PaddedCounter read_bytes;     // their bytes, headers included
  perf::PaddedCounter skipped;        // dead or stalled claims skipped
  perf::PaddedCounter skipped_bytes;
  perf::PaddedCounter corrupt;        // records the router could not decode, or broken framing
  perf::PaddedCounter consumer_sleeps;

  // Producers that found no free slot share this one for counters.
  ProducerSlot overflow_slot;
  ProducerSlot slots[kMaxProducerSlots];

  // --- after the slots: where the consumer gave up on broken framing ---
  // A corrupt header sends the consumer to the producers' tail as it was
  // then. The header stays until the space is released, so a consumer that
  // restarts before that meets it again: it must jump to the same place, or
  // it would skip to the tail as it is by then and lose what was committed
  // in between. The last kFramingJumps jumps, written by the consumer alone
  // (`to` then `from` with release, so no entry is followed half written;
  // the next consumer reads them after taking the ring over, and a crashed
  // one's stores are in the shared pages all the same); `from`
  // is a position, unique for the ring's life, so a jump from behind the
  // released position is simply never met again. Zero in rings made before
  // them: no jump.
  struct FramingJump {
    std::atomic<std::uint64_t> from, to;
  };
  static constexpr std::size_t kFramingJumps = 8;
  FramingJump framing_jumps[kFramingJumps];
  std::atomic<std::uint64_t> framing_jump_count;
};

static_assert(offsetof(SegmentHeader, tail) == 1 * kCacheLine);
static_assert(offsetof(SegmentHeader, head_cache) == 2 * kCacheLine);
static_assert(offsetof(SegmentHeader, head) == 3 * kCacheLine);
static_assert(offsetof(SegmentHeader, consumer_pid) == 4 * kCacheLine);
static_assert(offsetof(SegmentHeader, producers_waiting) == 5 * kCacheLine);
static_assert(offsetof(SegmentHeader, read) == 6 * kCacheLine);
static_assert(offsetof(SegmentHeader, slots) % kCacheLine == 0);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::int32_t>::is_always_lock_free);

// The data area starts on a page boundary so records never share a page with
// the control lines.
inline constexpr std::size_t kHeaderBytes = (sizeof(SegmentHeader) + 4095) & ~std::size_t{4095};
// Fields appended after the slots, zero meaning none, keep the layout
// version: they fit in the pages the header already took, so the data area
// stays where rings made before them have it.
static_assert(kHeaderBytes == 20480);

}  // namespace ringroute::ring
