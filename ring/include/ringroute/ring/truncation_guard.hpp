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

// A mapping of a shared file that a process this one does not control may
// cut, guarded while this lives: every segment's (Segment::Attached), and
// the perf block as `stat` reads it (a router of another version sizes it
// anew). A fault there reads zeros, and cut_short() says so. Unguarded
// when the guard's table is full (256 mappings at once).
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
}  // namespace ringroute::ring
