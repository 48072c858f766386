// The router's counter block: a shared-memory file beside the rings
// (/dev/shm/{instance}.perf) that `ringroute stat` reads without asking the
// router, and that outlives a router crash (it also keeps each backend's
// written-through ring position, which a restarted router needs).
//
// Every counter has one writer thread: per backend, one shard per router
// worker and one for the sink thread, each on its own cache lines; readers
// sum the shards. Counters grow with relaxed stores (see counter.hpp).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ringroute/perf/counter.hpp"

namespace ringroute::perf {

inline constexpr std::uint64_t kBlockMagic = 0x3130465052525252ull;  // "RRRRPF01"
// 3: BackendSlot::in_config; 4: BackendSlot::written_from; 5: BackendSlot::said,
// BlockHeader::router_stopped
inline constexpr std::uint32_t kBlockVersion = 5;
inline constexpr std::size_t kMaxRings = 16;
inline constexpr std::size_t kMaxBackends = 256;
inline constexpr std::size_t kMaxWorkers = 16;
inline constexpr std::size_t kNameBytes = 128;

// A slot's name as stored: one that fills its field has no terminating zero.
[[nodiscard]] inline std::string_view slot_name(const char (&field)[kNameBytes]) noexcept {
  return {field, ::strnlen(field, kNameBytes)};
}
inline constexpr std::size_t kHistogramBuckets = 512;

// A single-writer counter without padding, for counters grouped in a shard.
struct Counter {
  std::atomic<std::uint64_t> value{0};
  void add(std::uint64_t n) noexcept {
    value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t read() const noexcept { return value.load(std::memory_order_relaxed); }
};

// Log-linear latency buckets in nanoseconds: values below 8 exactly, then 8
// buckets per power of two (at most 12.5% wide). Single writer.
struct Histogram {
  std::array<Counter, kHistogramBuckets> buckets;

  static std::size_t bucket_of(std::uint64_t ns) noexcept {
    if (ns < 8) return static_cast<std::size_t>(ns);
    const unsigned e = 63u - static_cast<unsigned>(__builtin_clzll(ns));
    return 8 + (e - 3) * 8 + ((ns >> (e - 3)) & 7);
  }
  // The smallest value that falls in `bucket`.
  static std::uint64_t lower_bound(std::size_t bucket) noexcept {
    if (bucket < 8) return bucket;
    const std::size_t e = (bucket - 8) / 8 + 3;
    return (8 + (bucket - 8) % 8) << (e - 3);
  }
  // The largest value that falls in `bucket` (the last bucket is open).
  static std::uint64_t upper_bound(std::size_t bucket) noexcept {
    return bucket + 1 < kHistogramBuckets ? lower_bound(bucket + 1) - 1 : UINT64_MAX;
  }
  void record(std::uint64_t ns, std::uint64_t count = 1) noexcept { buckets[bucket_of(ns)].add(count); }
};

// The latency at `quantile` (0..1) from summed bucket counts, by nearest
// rank: the upper edge of the bucket holding that rank's sample (so never
// below it), or 0 when empty.
[[nodiscard]] std::uint64_t histogram_quantile(const std::array<std::uint64_t, kHistogramBuckets>& counts,
                                               double quantile) noexcept;

struct alignas(kCacheLine) RingSlot {
  char name[kNameBytes];
  std::atomic<std::int64_t> segment_created_ns;  // which segment positions below refer to
  // Events that may be delivered again after a restart (the crash hit
  // mid-write): every event of a batch whose write may have begun.
  Counter replayed;
  Counter corrupt;   // records that did not decode (also counted in the ring)
  // 1 once a router started with a config that does not name this ring
  // (its figures stay, frozen, until the slot is reclaimed); 0 for the
  // rings its config names, and in a block an earlier build wrote (which
  // said nothing: every ring shown). Written by the router's constructor,
  // relaxed on both sides: a label, ordered with nothing. In the slot's
  // padding, so the block's layout (and version) is unchanged; a router of
  // an earlier build started on the block leaves the labels as they were
  // (a ring it consumes may be hidden until this build's router starts).
  std::atomic<std::uint32_t> not_in_config;
};
static_assert(sizeof(RingSlot) == 3 * kCacheLine, "a field added past the padding changes the layout");

// Written by one router worker (its shard index).
struct alignas(kCacheLine) BackendWorkerShard {
  Counter matched;
  Counter dropped_queue_full;  // `drop` policy, queue full
  Counter skipped_written;     // already written before a restart: not delivered again
  // Matched, not yet read back by a backend behind when a reload removed
  // it. Within the shard's line, so the block's layout (and version) is
  // unchanged.
  Counter dropped_removed;
};
static_assert(sizeof(BackendWorkerShard) == kCacheLine, "a counter added past the line changes the layout");

// Written by the backend's sink thread.
struct alignas(kCacheLine) BackendSinkShard {
  Counter sent;      // events written / acknowledged
  Counter bytes;
  Counter batches;
  Counter retries;
  // Failed attempts (each retried or, for rejects, dropped), and the file
  // sink's failed interval syncs and rotations, neither retried nor dropped.
  Counter failures;
  Counter dropped_failed;  // events given up on (rejected by the destination)
  Counter rotations;
  Counter reopens;
  Counter connects;          // connections opened (socket, http)
  Counter connect_failures;  // refused, unreachable, TLS handshake or verification failed
  Counter timeouts;          // connect or response deadlines passed
  Counter truncated;         // datagrams cut to max_datagram_bytes
  // `drop` policy: events handed over and not written when the router
  // stopped (they do not hold the ring, so no restart delivers them).
  // Added by the router after the sink thread is joined; in the shard's
  // padding, so the block's layout (and version) is unchanged.
  Counter dropped_shutdown;
  // Handed to a backend a reload removed, and not written by it within its
  // drain (router.removed_backend_drain_ms; its ring space went with the
  // removal). Added by the reload after
  // the sink thread is joined; in the padding, as above.
  Counter dropped_removed;
  // HTTP: bytes of the request bodies a 2xx answered, as sent (after
  // `gzip`), where `bytes` counts them as formatted; what a collector's
  // ingress and the link carry. In the padding, as above.
  Counter body_bytes_sent;
  // What the router running now found unsettled here when it first took
  // this slot (an earlier router's events it did not see through, which it
  // routes again; a backend its config leaves out has them counted in
  // dropped_removed first), with kPendingBaseSet: pending_of() subtracts
  // it. Written once a router by its control thread, before any
  // runner or worker of that router writes this slot. 0: set by no router
  // of this build. In the padding, as above.
  Counter pending_base;
};
static_assert(sizeof(BackendSinkShard) == 2 * kCacheLine, "a counter added past the padding changes the layout");

// The last line a backend's log said (or held back, at most one a second
// being said), and whether it is retrying a batch now: so `stat` says why
// a backend fails, not only that it does. Written by its sink thread
// alone; read by other processes as a seqlock (write_said(), read_said()).
inline constexpr std::size_t kSaidBytes = 232;
struct alignas(kCacheLine) SaidLine {
  std::atomic<std::uint64_t> sequence;   // odd while the line is written
  std::atomic<std::int64_t> at_unix_ns;  // when it was said; 0: nothing yet
  std::atomic<std::uint32_t> retrying;   // 1 from a failed try until the batch is written
  // CLOCK_BOOTTIME seconds when it was said (0: a router of an earlier
  // build): how long ago, whatever the wall clock did since.
  std::atomic<std::uint32_t> at_boot_s;
  std::array<std::atomic<std::uint64_t>, kSaidBytes / 8> text;  // NUL-padded
};
static_assert(sizeof(SaidLine) == 4 * kCacheLine);

struct SaidSeen {
  std::string text;
  std::int64_t at_unix_ns = 0;
  std::uint32_t at_boot_s = 0;  // 0: not known
};
// Sets the line; the sink thread's alone to call.
void write_said(SaidLine& said, std::string_view text, std::int64_t at_unix_ns, std::uint32_t at_boot_s = 0) noexcept;
// CLOCK_BOOTTIME in whole seconds, as at_boot_s holds it (never 0).
[[nodiscard]] std::uint32_t boot_seconds() noexcept;
// The line as one write left it, or nullopt when none was ever written or
// every try met a write in progress.
[[nodiscard]] std::optional<SaidSeen> read_said(const SaidLine& said);

struct alignas(kCacheLine) BackendSlot {
  char name[kNameBytes];
  char type[16];  // as the backend was last started (a reload may change it)
  // 1 while the router's config has this backend enabled; 0 once a reload
  // removed, renamed or disabled it (its figures stay, frozen, until the
  // slot is reclaimed). Written by the router's control thread as it makes
  // each plan; relaxed on both sides: a label, ordered with nothing.
  std::atomic<std::uint32_t> in_config;
  // Per ring: every event up to this position is written (release store by
  // the sink; the worker's acquire load pairs with it before it releases ring
  // space). `writing_through` is set before a write starts, so a restart knows
  // which events may have been written twice.
  std::array<std::atomic<std::uint64_t>, kMaxRings> written_through;
  std::array<std::atomic<std::uint64_t>, kMaxRings> writing_through;
  // Per ring: where the backend started reading: the router's start, or the
  // read position when a reload added it (or gave it this slot). Records
  // before it were never routed to it, so written_through says nothing of
  // them: a restart that finds records older than this in the ring (held
  // for a backend the reload removed) routes every record to it again
  // rather than skip those as written. Set by the ring's worker before it
  // routes anything to the backend; relaxed: read by a later router, after
  // this one's end.
  std::array<std::atomic<std::uint64_t>, kMaxRings> written_from;
  std::array<BackendWorkerShard, kMaxWorkers> worker;
  BackendSinkShard sink;
  Histogram latency;  // commit (event timestamp) to written, per event
  SaidLine said;
};

// A backend's backlog: events routed to it (matched) and not yet settled:
// written, dropped for any reason, or found written already by a restart.
// Within one router's run each event routed is settled once (a batch
// refused in part, a reload's hand-over or a backend behind included), so
// matched - settled is what it holds: queued, in flight, or left in the
// ring by a backend behind. An earlier router's events it did not settle
// (a crash's, or a `block` backend's still in the ring at a stop) are
// routed again by the next, so that router takes them as its base.
inline constexpr std::uint64_t kPendingBaseSet = std::uint64_t{1} << 63;
struct BackendBalance {
  std::uint64_t matched = 0, settled = 0;
};
// Settled read before matched, and each shard's drops before its matched
// (counted after it by the same thread): a reader mid-update sees a backlog
// too high by what moved meanwhile, not one below zero.
[[nodiscard]] BackendBalance balance_of(const BackendSlot& slot) noexcept;
// Its backlog as its router (running or gone) saw it; nullopt where no
// router of this build set its base (pending_base).
[[nodiscard]] std::optional<std::uint64_t> pending_of(const BackendSlot& slot) noexcept;
// Takes what the slot holds unsettled now as its base: the router's control
// thread, once a run, before any runner or worker of it writes the slot.
void set_pending_base(BackendSlot& slot) noexcept;

// Readers of another build find these by offset: a change here is a new
// kBlockVersion.
static_assert(offsetof(BackendSlot, in_config) == kNameBytes + 16);
static_assert(offsetof(BackendSlot, written_through) == kNameBytes + 16 + 8);
static_assert(sizeof(BackendSlot) % kCacheLine == 0);

struct BlockHeader {
  std::uint64_t magic;
  std::atomic<std::uint32_t> version;  // written last (release) by the creator
  // 1 once the router of router_pid finished its stop; 0 from its start, so
  // a router that is gone with 0 here died (killed, crashed) or was left
  // stuck in its stop. Relaxed on both sides: a label for `stat`.
  std::atomic<std::uint32_t> router_stopped;
  std::atomic<std::int32_t> router_pid;
  std::atomic<std::int64_t> router_started_ns;
  std::atomic<std::uint32_t> ring_count;
  std::atomic<std::uint32_t> backend_count;
  std::atomic<std::uint64_t> config_generation;
  // When this block was made (wall clock): every counter started at zero
  // then, so a scraper that sees it change knows its figures started over
  // (a reboot, a block of another version made anew) rather than reading
  // the drop as a negative rate. Set before the version's release store;
  // 0 in a block made by a build before it. After the fields readers of
  // other builds find by offset, so the layout's version is unchanged.
  std::atomic<std::int64_t> created_ns;
};
static_assert(sizeof(BlockHeader) <= kCacheLine, "the rings' slots would move: a new kBlockVersion");

struct Block {
  alignas(kCacheLine) BlockHeader header;
  RingSlot rings[kMaxRings];
  BackendSlot backends[kMaxBackends];
};

// A mapping of a block, read-write (the router) or read-only (stat).
class BlockMapping {
 public:
  // Creates /dev/shm/{instance}.perf or opens the one a previous router left
  // (its contents kept). Throws std::runtime_error naming the file. The
  // mapping holds an exclusive flock on the file while it lives: one
  // router per instance, and a block of another layout (another build) is
  // started again only when no router holds it. Readers (`stat`) take no
  // lock.
  static BlockMapping create_or_open(const std::string& instance, std::uint32_t mode = 0660);
  // Read-only; nullopt and `*error` when there is none or it is not a block.
  // `mapped`, when given, is called with the mapping before its header is
  // read (the file can be cut short under a reader between its size
  // checked and its header read: `stat` guards the mapping there).
  static std::optional<BlockMapping> open_read_only(const std::string& instance, std::string* error,
                                                    const std::function<void(const Block&)>& mapped = {});
  static bool remove(const std::string& instance) noexcept;

  BlockMapping(BlockMapping&& other) noexcept : block_(other.block_), fd_(other.fd_), made_now_(other.made_now_) {
    other.block_ = nullptr;
    other.fd_ = -1;
  }
  BlockMapping& operator=(BlockMapping&& other) noexcept;
  BlockMapping(const BlockMapping&) = delete;
  BlockMapping& operator=(const BlockMapping&) = delete;
  ~BlockMapping();

  [[nodiscard]] Block& block() const noexcept { return *block_; }
  // Whether create_or_open() made the file (none was there): a router that
  // then fails to start removes it rather than leave an instance's block
  // behind that never ran.
  [[nodiscard]] bool made_now() const noexcept { return made_now_; }
  // The rings its router named, in slot order (the first config's first
  // ring first), less those only an earlier config named: how `emit
  // --instance` and `bench --attach` find them.
  [[nodiscard]] std::vector<std::string> ring_names() const {
    std::vector<std::string> names;
    for (const auto& slot : block_->rings) {
      // Relaxed: a label (see RingSlot::not_in_config).
      if (slot.name[0] != 0 && slot.not_in_config.load(std::memory_order_relaxed) == 0) {
        names.emplace_back(slot_name(slot.name));
      }
    }
    return names;
  }

  // The slot for a ring or backend by name: the one it had before (so
  // positions and totals carry over a restart), else a free one. -1 when full.
  int ring_slot(std::string_view name);
  // A new backend slot is labelled with `type`; one found again keeps its
  // label until set_backend_type() (a reload that changes the type and is
  // then refused must not relabel the running backend).
  int backend_slot(std::string_view name, std::string_view type);
  void set_backend_type(int slot, std::string_view type) noexcept;
  // A slot taken back from a backend `in_use` says is gone (renamed or
  // removed by an earlier reload or config, or taken by a refused reload),
  // zeroed for the next backend_slot(): names that come and go would
  // otherwise fill the block for good. -1 when every named slot is in use.
  // Its positions go with it: a backend of that name added again later
  // starts from the ring's released position.
  int reclaim_backend_slot(const std::function<bool(std::string_view)>& in_use);
  // The same for rings, at a router's start (rings change only then): a
  // ring `in_use` says no config and no router holds. Every backend's
  // positions in it start over (the slot names no segment, and the worker
  // that takes it zeroes positions of a segment other than its own).
  int reclaim_ring_slot(const std::function<bool(std::string_view)>& in_use);

 private:
  explicit BlockMapping(Block* block, int fd = -1, bool made_now = false)
      : block_(block), fd_(fd), made_now_(made_now) {}
  Block* block_;
  int fd_;  // create_or_open's, holding the lock; -1 for read-only mappings
  bool made_now_;
};

[[nodiscard]] std::string block_path(const std::string& instance);
// Why this build can't read a mapped block (its magic, its version), as
// words to follow the block's path; nullopt when it can.
[[nodiscard]] std::optional<std::string> unreadable_block(const Block& block);
// The same for a block file of `bytes` bytes: only sizeof(Block) is one.
[[nodiscard]] std::optional<std::string> unreadable_block_size(std::uint64_t bytes);

}  // namespace ringroute::perf
