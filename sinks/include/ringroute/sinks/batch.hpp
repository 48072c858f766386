#pragma once
// A batch: formatted events of one ring for one backend, with the ring
// positions they came from, so the sink can say what it has written.

#include <cstdint>
#include <string_view>
#include <vector>

#include "ringroute/sinks/byte_buffer.hpp"

namespace ringroute::sinks {

struct Batch {
  ByteBuffer bytes;
  // Where each event's bytes end in `bytes`: sinks that send events apart
  // (datagrams, one HTTP request per event, request size limits) split here.
  // Reserved for the batch's event limit when the batch is made, so pushing
  // does not allocate.
  std::vector<std::uint32_t> event_ends;
  // Each event's timestamp, for the commit -> written histogram: every event
  // is recorded with its own latency, not the batch's oldest. Reserved as
  // event_ends is.
  std::vector<std::int64_t> event_ns;
  std::uint32_t events = 0;
  std::uint32_t ring = 0;            // ring index in the router (and the perf block)
  std::uint64_t first_start = 0;     // ring position before its first event
  std::uint64_t end = 0;             // ring position after its last event
  std::int64_t opened_ns = 0;        // steady clock when the first event went in (linger)
  bool holds_ring = true;            // false under `drop`: the ring is never held for it
  // Of its events, those a write cut short by a stop delivered all the same
  // (accepted requests): sent, not dropped, should nothing write the batch.
  std::uint32_t delivered = 0;

  // The bytes of events [first, last).
  [[nodiscard]] std::string_view events_bytes(std::size_t first, std::size_t last) const noexcept {
    const std::uint32_t from = first == 0 ? 0 : event_ends[first - 1];
    return {bytes.data() + from, event_ends[last - 1] - from};
  }

  void reset() noexcept {
    bytes.clear();
    event_ends.clear();
    event_ns.clear();
    events = 0;
    first_start = end = 0;
    opened_ns = 0;
    delivered = 0;
  }
};

}  // namespace ringroute::sinks
