// What a restart finds written already is counted as `skipped_written`,
// whichever way the backend comes to it: read at once, or read back later
// by a backend that fell behind.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "backends.hpp"
#include "emit_events.hpp"
#include "http_receiver.hpp"
#include "peers.hpp"
#include "ringroute/producer.hpp"
#include "ringroute/ingest/router.hpp"
#include "ringroute/perf/block.hpp"
#include "ringroute/ring/segment.hpp"

namespace ringroute::ingest {
namespace {

using namespace std::chrono_literals;
using testing::emit_events;
namespace fs = std::filesystem;

struct BackendCounts {
  std::uint64_t matched = 0, skipped_written = 0, dropped_queue_full = 0, sent = 0;
};

// Backend `name`'s counters, every worker's shard summed.
BackendCounts counts_of(const std::string& instance, const std::string& name) {
  std::string error;
  auto mapping = perf::BlockMapping::open_read_only(instance, &error);
  if (!mapping) throw std::runtime_error(error);
  BackendCounts counts;
  for (const perf::BackendSlot& slot : mapping->block().backends) {
    if (perf::slot_name(slot.name) != name) continue;
    for (const perf::BackendWorkerShard& shard : slot.worker) {
      counts.matched += shard.matched.read();
      counts.skipped_written += shard.skipped_written.read();
      counts.dropped_queue_full += shard.dropped_queue_full.read();
    }
    counts.sent = slot.sink.sent.read();
  }
  return counts;
}

std::size_t events_received(const testing::HttpReceiver& receiver) {
  std::size_t events = 0;
  for (const testing::HttpRequest& request : receiver.requests()) {
    events += static_cast<std::size_t>(std::count(request.body.begin(), request.body.end(), '\n'));
  }
  return events;
}

template <class Done>
bool within_5s(Done done) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Two rings. Backend "a" wrote ring two's events before the restart; a
// backend that never gets through ("dead") keeps them in the ring, so the
// next start reads them again. There, ring one's events fill a's queue
// while its server holds its answer, and ring two's worker marks a behind
// at its next round: the events it skips as written are then read back by
// the catch-up. It skipped them counting nothing, so a's `matched` was not
// its `sent` plus its `skipped_written`.
TEST(RouterRestart, WhatABackendBehindSkipsAsWrittenIsCounted) {
  const std::string instance = "rr-test-restart-" + std::to_string(::getpid());
  const std::string one = instance + "-one", two = instance + "-two";
  struct Cleanup {
    std::string instance, one, two;
    ~Cleanup() {
      ring::Segment::remove(one);
      ring::Segment::remove(two);
      perf::BlockMapping::remove(instance);
    }
  } leave_nothing{instance, one, two};
  constexpr int kWritten = 20000, kNew = 5000;

  std::atomic<bool> hold{false};
  testing::HttpReceiver receiver([&](const testing::HttpRequest&, std::size_t) {
    while (hold.load()) std::this_thread::sleep_for(1ms);
    return testing::HttpResponse{};
  });
  const std::string dead_url = "http://127.0.0.1:" + std::to_string(testing::free_port()) + "/";
  RouterConfig config;
  config.instance = instance;
  config.rings.push_back({one, 8 << 20, 0600, 2000ms});
  config.rings.push_back({two, 8 << 20, 0600, 2000ms});
  config.backends.push_back({"a", "http", true,
                             R"({"url":"http://127.0.0.1:)" + std::to_string(receiver.port()) +
                                 R"(/","batch":{"max_events":500},"queue":{"max_events":100}})"});
  config.backends.push_back({"dead", "http", true, R"({"url":")" + dead_url + R"("})"});
  config.matching = testing::backends_from_json(
      R"([{"name":"a","bindings":[{"verbosity":"trace"}]},{"name":"dead","bindings":[{"verbosity":"trace"}]}])");

  {
    Router router(config);
    ASSERT_TRUE(emit_events(two, kWritten));
    // Received is not yet written through: the sink reads the answer after
    // the receiver has the request, and a drain of 100 ms may not wait for it.
    ASSERT_TRUE(within_5s([&] { return counts_of(instance, "a").sent >= std::uint64_t{kWritten}; }));
    router.stop(100ms);  // "dead" holds ring two: its events stay in it
  }
  ASSERT_EQ(events_received(receiver), std::size_t{kWritten});
  ASSERT_TRUE(emit_events(one, kNew));  // no router reads them yet
  const BackendCounts before = counts_of(instance, "a");

  hold = true;
  {
    Router router(config);
    // Every record read and routed (counted as matched, a behind or not),
    // with a's queue full of ring one's events all the while.
    ASSERT_TRUE(within_5s([&] { return counts_of(instance, "a").matched - before.matched >= kWritten + kNew; }));
    hold = false;
    ASSERT_TRUE(within_5s([&] { return counts_of(instance, "a").sent - before.sent >= std::uint64_t{kNew}; }));
    router.stop(100ms);
  }
  const BackendCounts after = counts_of(instance, "a");
  EXPECT_EQ(events_received(receiver), std::size_t{kWritten + kNew}) << "ring two's events written again";
  EXPECT_EQ(after.matched - before.matched, std::uint64_t{kWritten + kNew});
  EXPECT_EQ(after.sent - before.sent, std::uint64_t{kNew});
  EXPECT_EQ(after.skipped_written - before.skipped_written, std::uint64_t{kWritten});
}

// Ring slot `ring`'s `replayed`.
std::uint64_t replayed_of(const std::string& instance, const std::string& ring) {
  std::string error;
  auto mapping = perf::BlockMapping::open_read_only(instance, &error);
  if (!mapping) throw std::runtime_error(error);
  for (const perf::RingSlot& slot : mapping->block().rings) {
    if (perf::slot_name(slot.name) == ring) return slot.replayed.read();
  }
  return 0;
}

// A restart after a crash in the middle of a write: the block says backend
// "d" was writing every event of the ring, and had written none of them.
// Each event it takes again is `replayed`; one its full queue drops (its
// policy is `drop`, its server holds its answers) reaches it neither time,
// and was counted as replayed all the same.
TEST(RouterRestart, AnEventADropBackendDropsIsNotCountedAsReplayed) {
  const std::string instance = "rr-test-replayed-" + std::to_string(::getpid());
  const std::string ring = instance + "-ring";
  struct Cleanup {
    std::string instance, ring;
    ~Cleanup() {
      ring::Segment::remove(ring);
      perf::BlockMapping::remove(instance);
    }
  } leave_nothing{instance, ring};
  constexpr int kEvents = 20000;

  std::atomic<bool> hold{false};
  std::atomic<bool> stopping{false};
  testing::HttpReceiver receiver([&](const testing::HttpRequest&, std::size_t) {
    while (hold.load() && !stopping.load()) std::this_thread::sleep_for(1ms);
    return testing::HttpResponse{};
  });
  const std::string dead_url = "http://127.0.0.1:" + std::to_string(testing::free_port()) + "/";
  const std::string url = "http://127.0.0.1:" + std::to_string(receiver.port()) + "/";
  RouterConfig config;
  config.instance = instance;
  config.rings.push_back({ring, 8 << 20, 0600, 2000ms});
  config.backends.push_back({"d", "http", true, R"({"url":")" + url + R"(","batch":{"max_events":100}})"});
  config.backends.push_back({"dead", "http", true, R"({"url":")" + dead_url + R"("})"});
  config.matching = testing::backends_from_json(
      R"([{"name":"d","bindings":[{"verbosity":"trace"}]},{"name":"dead","bindings":[{"verbosity":"trace"}]}])");

  {
    Router router(config);
    ASSERT_TRUE(emit_events(ring, kEvents));
    ASSERT_TRUE(within_5s([&] { return counts_of(instance, "d").sent >= std::uint64_t{kEvents}; }));
    router.stop(100ms);  // "dead" holds the ring: its events stay in it
  }
  {
    // The crash: d had begun writing everything and finished nothing.
    perf::BlockMapping mapping = perf::BlockMapping::create_or_open(instance, 0600);
    const int ring_slot = mapping.ring_slot(ring);  // the one the router took
    ASSERT_GE(ring_slot, 0);
    bool found = false;
    for (perf::BackendSlot& slot : mapping.block().backends) {
      auto& written = slot.written_through[static_cast<std::size_t>(ring_slot)];
      auto& writing = slot.writing_through[static_cast<std::size_t>(ring_slot)];
      if (perf::slot_name(slot.name) == "d") {
        ASSERT_GT(written.load(), 0U);
        ASSERT_EQ(writing.load(), written.load());
        written.store(0);
        found = true;
      } else {
        writing.store(0);  // "dead"'s attempts would make their events replayed too
      }
    }
    ASSERT_TRUE(found);
  }
  ASSERT_EQ(replayed_of(instance, ring), 0U);

  config.backends[0].options_json =
      R"({"url":")" + url + R"(","batch":{"max_events":100},"queue":{"max_events":200,"when_full":"drop"}})";
  const BackendCounts before = counts_of(instance, "d");
  hold = true;
  {
    Router router(config);
    ASSERT_TRUE(within_5s([&] { return counts_of(instance, "d").matched - before.matched >= kEvents; }));
    hold = false;
    ASSERT_TRUE(within_5s([&] {
      const BackendCounts now = counts_of(instance, "d");
      return now.sent - before.sent + now.dropped_queue_full >= std::uint64_t{kEvents};
    }));
    router.stop(100ms);
  }
  stopping = true;
  const BackendCounts after = counts_of(instance, "d");
  const std::uint64_t sent = after.sent - before.sent;
  const std::uint64_t dropped = after.dropped_queue_full;
  ASSERT_GT(dropped, 0U) << "the queue never filled: the test shows nothing";
  EXPECT_EQ(sent + dropped, std::uint64_t{kEvents});
  EXPECT_EQ(replayed_of(instance, ring), sent) << sent << " sent again, " << dropped << " dropped";
}

}  // namespace
}  // namespace ringroute::ingest
