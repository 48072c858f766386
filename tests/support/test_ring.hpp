// A ring made for one test: a unique name, removed when the test ends.
#pragma once

#include <unistd.h>

#include <atomic>
#include <string>

#include "ringroute/ring/ring.hpp"
#include "ringroute/ring/segment.hpp"

namespace ringroute::testing {

inline std::string unique_ring_name(const char* what) {
  static std::atomic<int> counter{0};
  return std::string("rr-test-") + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

struct TestRing {
  std::string name;
  ring::Segment segment;

  explicit TestRing(std::uint64_t capacity, const char* what = "ring") : name(unique_ring_name(what)) {
    ring::SegmentOptions options;
    options.capacity_bytes = capacity;
    options.mode = 0600;
    segment = ring::Segment::create_or_attach(name, options);
  }
  ~TestRing() { ring::Segment::remove(name); }
  TestRing(const TestRing&) = delete;
  TestRing& operator=(const TestRing&) = delete;
};

// One round of a consumer loop: poll, release what was read, or idle (spin,
// yield, sleep) when nothing came. Returns the number of records read.
template <class OnRecord>
std::size_t poll_release_or_idle(ring::Consumer& consumer, ring::IdleStrategy& idle, OnRecord&& on_record,
                                 std::size_t max_records) {
  const std::size_t n = consumer.poll(on_record, max_records);
  if (n != 0) {
    consumer.release(consumer.read_position());
    idle.reset();
  } else {
    idle.idle(consumer);
  }
  return n;
}

}  // namespace ringroute::testing
