// A named shared-memory segment under /dev/shm holding one ring.
//
// The router creates segments; producers only attach (a missing segment is
// Status::not_ready, never created by a producer, so a producer started before
// the router cannot make a ring of the wrong size).
//
// Thread-safety: a Segment is an immutable view once constructed; share it
// freely between threads. Allocation: construction only. Failure: see each call.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "ringroute/ring/layout.hpp"
#include "ringroute/ring/status.hpp"

namespace ringroute::ring {

// A permission mode as logs show it: "0660".
[[nodiscard]] std::string octal_mode(mode_t mode);
// What "Permission denied" on `path` is about, said after it: whose the file
// is and its mode, against this process's ids (" (uid 0's, gid 0, mode
// 0600; this process is uid 1000, gid 1000)"); empty when it can't be read.
[[nodiscard]] std::string access_note(const std::string& path);

struct SegmentOptions {
  std::uint64_t capacity_bytes = 64ull << 20;  // data area; a power of two
  mode_t mode = 0660;                          // applied with fchmod, so umask does not narrow it
  std::int64_t dead_claim_timeout_ms = 2000;
};

// Start time of a process in clock ticks since boot (field 22 of
// /proc/PID/stat), or 0 when the process does not exist. Together with the pid
// it names a process uniquely across pid reuse.
[[nodiscard]] std::uint64_t process_start_ticks(pid_t pid) noexcept;

// True when `pid` still runs and, if start_ticks != 0, is the same process.
[[nodiscard]] bool process_alive(pid_t pid, std::uint64_t start_ticks) noexcept;

// Producer slot i's liveness lock: byte i of the segment file, which the
// producer owning the slot holds with an open-file-description lock on a
// descriptor of its own. The kernel drops it when the owner's process ends
// (its descriptors close), in whatever PID namespace it runs: a producer in
// a container of its own, whose pid means nothing in the router's, is told
// alive by it. Whether another descriptor than `fd`'s holds slot i's lock,
// or unknown (fcntl failed: no memory, a sandbox): then it says nothing.
enum class SlotLock : std::uint8_t { held, free, unknown };
[[nodiscard]] SlotLock slot_lock_state(int fd, std::uint32_t slot_index) noexcept;

// Whether slot `slot_index`'s owner `pid` (> 0) lives: by its lock where it
// took one and the lock can be asked, else by its pid and start time (the
// lock breaking a tie). Its fields are read relaxed: a caller that needs
// them as of a claim reads the claim's header with acquire first.
[[nodiscard]] bool slot_owner_alive(int fd, const ProducerSlot& slot, std::uint32_t slot_index,
                                    std::int32_t pid) noexcept;

class Segment {
 public:
  struct Attached;  // the mapping, kept alive by shared_ptr so views can share it

  // Router side. Creates the segment with `options`, or attaches to an existing
  // one as it is (an existing segment of another capacity is kept, and
  // `*warning` says so). A half-created segment (creator died before writing
  // the layout version) is re-initialised. Throws RingError on failure.
  static Segment create_or_attach(const std::string& name, const SegmentOptions& options,
                                  std::string* warning = nullptr);

  // How attach() maps a segment. Readers of counters (`stat`) map it
  // read-only: they need only read permission, and a stray store of theirs
  // faults rather than corrupting the ring producers and the router share.
  // Nothing may write through a read-only segment's header() or data().
  enum class Access : bool { read_only, read_write };

  // Producer side: attach to an existing, initialised segment. Never throws.
  // Returns not_ready (missing, or still being created), version_mismatch,
  // corrupt (not a ring), io_error; `*error` gets a sentence naming the segment.
  [[nodiscard]] static Status attach(const std::string& name, Segment& out, std::string* error,
                                     Access access = Access::read_write) noexcept;

  // Removes the name; mappings stay valid until closed. Returns false if absent.
  static bool remove(const std::string& name) noexcept;

  Segment() = default;

  [[nodiscard]] bool valid() const noexcept { return header_ != nullptr; }
  [[nodiscard]] SegmentHeader& header() const noexcept { return *header_; }
  [[nodiscard]] std::byte* data() const noexcept { return data_; }
  [[nodiscard]] std::uint64_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::uint64_t max_record_bytes() const noexcept { return max_record_bytes_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  // The shared-memory file descriptor (for the consumer's flock).
  [[nodiscard]] int fd() const noexcept;
  // Whether the file was found cut short under this mapping (ftruncate by
  // one who may write it): with the truncation guard installed, the fault
  // replaced the mapping with zeros, and what the segment held is lost to
  // this process. Always false without the guard (the fault killed it).
  [[nodiscard]] bool cut_short() const noexcept;
  // The same asked of the file (an fstat), for where nothing may read the
  // mapping again to find out: a ring cut while no one touched it faults
  // no one, and cut_short() stays false.
  [[nodiscard]] bool file_cut_short() const noexcept;
  // Gives the segment `mode` when it has another (a config changed it since
  // the segment was made): a sentence saying so, or why it could not, or
  // empty when the mode was right. For the consumer, once it owns the ring:
  // a process refused the ring must not change who may produce into it.
  [[nodiscard]] std::string apply_mode(mode_t mode) const;
  // Writes to every page of the data area once, without changing a byte (an
  // atomic add of zero to one word a page, so a producer or the consumer
  // writing there at the same time loses nothing). The mapping is populated
  // already; this pays, at attach, for what some hypervisors charge on a
  // page's first write through each mapping (shadow page tables: about 5 us
  // a page here, 80 ms for a 64 MiB ring that would otherwise land on the
  // first lap's events). The consumer calls it at attach, a producer only
  // when asked (Producer::prefault); readers of counters don't.
  void touch_for_write() const noexcept;

 private:
  std::shared_ptr<Attached> attached_;
  SegmentHeader* header_ = nullptr;
  std::byte* data_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t max_record_bytes_ = 0;
  std::string name_;

  // `capacity` as checked, not read again from the header: a producer may
  // write it, and a value changed after the check would place data_ and
  // mask the ring anywhere.
  void bind(std::shared_ptr<Attached> attached, std::string name, std::uint64_t capacity) noexcept;
};

// Sum of the counters of every producer slot.
struct ProducerTotals {
  std::uint64_t written = 0, bytes = 0, full = 0, too_big = 0;
};
[[nodiscard]] ProducerTotals sum_producer_slots(const SegmentHeader& header) noexcept;

// How many producer slots an owner that still lives holds (slot_owner_alive),
// not how many are taken: a producer killed keeps its slot taken until
// another needs it. Producers in the overflow slot are not counted (they
// share it, unnamed).
[[nodiscard]] std::uint32_t live_producers(const Segment& segment) noexcept;

// Whether the consumer has released every byte producers claimed (head has
// caught up with tail): nothing committed or being written is left in the
// ring. A snapshot of two positions other processes move, stale either way:
// for a drain check or a slot's reuse, never for reading records.
[[nodiscard]] bool all_released(const SegmentHeader& header) noexcept;

}  // namespace ringroute::ring
