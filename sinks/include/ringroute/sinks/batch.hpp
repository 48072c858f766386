#pragma once
// A batch: formatted events of one ring for one backend, with the ring
// positions they came from, so the sink can say what it has written.

#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include "ringroute/sinks/byte_buffer.hpp"

namespace ringroute::sinks {

struct Batch {
  ByteBuffer bytes;
  // Where each event's bytes end in `bytes`: sinks that send events apart
  // (datagrams, one HTTP request per event, request size limits) split here.
  // Reserved for the batch's event limit when the batch is made (up to
  // 16,384 events, BackendRunner::new_batch()), so pushing does not
  // allocate below it; a batch past it grows once and keeps the room.
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
  // (accepted requests): sent, not dropped, should nothing write the batch;
  // and which they are, [first, last) ascending, so a successor that does
  // write it leaves them out (drop_delivered()).
  std::uint32_t delivered = 0;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> delivered_ranges;
  // A stop ended a write of it: a send of that sink may still read its
  // bytes until the sink is gone (its destructor waits them out), so they
  // stay where they are until then.
  bool write_cut_short = false;
  // What it was counted as against `queue.max_bytes` when handed over.
  std::uint64_t queued_bytes = 0;

  // The memory it holds, which is what a queue of it holds: a batch handed
  // over with one event (an idle ring's) holds what it reserved for a full
  // one, and counting what it was filled with let a slow destination's
  // queue of such batches hold a megabyte an event.
  [[nodiscard]] std::uint64_t memory_bytes() const noexcept {
    return bytes.capacity() + event_ends.capacity() * sizeof(std::uint32_t) +
           event_ns.capacity() * sizeof(std::int64_t);
  }

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
    delivered_ranges.clear();
    write_cut_short = false;
  }

  // Takes the delivered events out (their bytes, ends and timestamps), so
  // whatever writes the batch next sends the rest only; its ring positions
  // stay what they were. A changed backend's new runner wrote a batch its
  // predecessor's stop had cut short whole, requests the destination had
  // accepted too.
  void drop_delivered() noexcept {
    if (delivered_ranges.empty()) return;
    std::uint32_t kept = 0;
    std::size_t range = 0;
    std::uint32_t write_at = 0;  // bytes kept so far
    for (std::uint32_t e = 0; e < events; ++e) {
      while (range < delivered_ranges.size() && delivered_ranges[range].second <= e) ++range;
      if (range < delivered_ranges.size() && delivered_ranges[range].first <= e) continue;
      const std::uint32_t from = e == 0 ? 0 : event_ends[e - 1];
      const std::uint32_t length = event_ends[e] - from;
      if (write_at != from) std::memmove(bytes.data() + write_at, bytes.data() + from, length);
      write_at += length;
      event_ends[kept] = write_at;
      if (e < event_ns.size()) event_ns[kept] = event_ns[e];
      ++kept;
    }
    bytes.resize_down(write_at);
    event_ends.resize(kept);
    if (event_ns.size() > kept) event_ns.resize(kept);
    events = kept;
    delivered = 0;
    delivered_ranges.clear();
  }
};

}  // namespace ringroute::sinks
