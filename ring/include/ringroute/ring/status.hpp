// Outcomes of ring calls. Hot-path calls return a Status and never throw;
// setup calls (creating a segment, taking the consumer role) throw RingError,
// which carries the same Status so callers can still tell the cases apart.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace ringroute::ring {

enum class Status : std::uint8_t {
  ok = 0,
  full,              // no room now; nothing was written
  too_big,           // larger than the ring's max record (capacity / 8)
  bad_argument,      // a caller error: the message says which argument
  not_ready,         // the segment does not exist yet or is still being created
  version_mismatch,  // the segment was made by an incompatible layout version
  busy,              // another consumer holds the ring
  io_error,          // an OS call failed; the message has errno's text
  corrupt,           // the segment's header is not a ring's
};

[[nodiscard]] constexpr const char* to_string(Status s) noexcept {
  switch (s) {
    case Status::ok: return "ok";
    case Status::full: return "full";
    case Status::too_big: return "too big";
    case Status::bad_argument: return "bad argument";
    case Status::not_ready: return "not ready";
    case Status::version_mismatch: return "version mismatch";
    case Status::busy: return "busy";
    case Status::io_error: return "I/O error";
    case Status::corrupt: return "corrupt segment";
  }
  return "unknown status";
}

class RingError : public std::runtime_error {
 public:
  RingError(Status status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  [[nodiscard]] Status status() const noexcept { return status_; }

 private:
  Status status_;
};

}  // namespace ringroute::ring
