// Makes a ring cut short under this process a state it can see, not its
// death.
//
// A segment is a file that every producer may write, so one of them (a bug,
// or a process given the ring's group it should not have) can ftruncate it.
// A page of a shared file mapping past the file's end faults with SIGBUS,
// and a consumer reading there died, taking every ring's events in flight
// with it. With the guard installed, a SIGBUS inside a segment's mapping
// replaces the whole mapping with private zero pages (libwayland-server
// does the same for clients' shm pools): the access that faulted is tried
// again and reads zeros, and Segment::cut_short() says so from then on.
// The segment's contents are lost to this process; the router's worker
// of that ring stops reading it and fails, so the router drains and exits.
//
// A SIGBUS anywhere else goes to the handler that was there before (or
// kills the process, as it would have).
//
// Thread-safety: install once before threads that read segments start;
// segments register each mapping as it is made and unregister it before it
// goes (Segment::Attached), from any thread.
#pragma once

#include <cstddef>

namespace ringroute::ring {

// Installs the SIGBUS handler; idempotent. Throws std::system_error when
// sigaction refuses. Producer processes are the application's: the library
// never installs it there.
void install_truncation_guard();

// Another shared file's mapping guarded as a segment's is, for a reader
// whose file a process it does not control may cut (`stat` and the perf
// block, which a router of another version sizes anew): a fault there
// reads zeros, and cut_short() says so. Unguarded when the guard's table
// is full.
class GuardedMapping {
 public:
  GuardedMapping(const void* begin, std::size_t bytes, bool writable) noexcept;
  ~GuardedMapping();
  GuardedMapping(const GuardedMapping&) = delete;
  GuardedMapping& operator=(const GuardedMapping&) = delete;
  [[nodiscard]] bool cut_short() const noexcept;

 private:
  int index_;
};

namespace detail {

// A segment mapping's place in the guard: its index, or -1 when all are
// taken (that mapping then goes unguarded).
[[nodiscard]] int guard_mapping(void* begin, std::size_t bytes, bool writable) noexcept;
// Before the mapping goes: a fault at its addresses is no longer a ring's.
void unguard_mapping(int index) noexcept;
// Whether a fault replaced the mapping at `index` with zeros.
[[nodiscard]] bool guarded_mapping_cut_short(int index) noexcept;

}  // namespace detail
}  // namespace ringroute::ring
