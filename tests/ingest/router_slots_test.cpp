// Perf block slots across reloads: backends renamed by one reload after
// another take the slots of names no config holds any more. They used to
// keep theirs for good, and the block's 256 filled up.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "backends.hpp"
#include "emit_events.hpp"
#include "peers.hpp"
#include "ringroute/producer.hpp"
#include "ringroute/ingest/router.hpp"
#include "ringroute/perf/block.hpp"
#include "ringroute/ring/segment.hpp"

namespace ringroute::ingest {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// 100 file backends named {prefix}0 ... {prefix}99, small batches (each
// runner warms four of them).
RouterConfig named(const std::string& instance, const std::string& dir, const std::string& prefix) {
  RouterConfig config;
  config.instance = instance;
  config.rings.push_back({instance, 1 << 20, 0600, 2000ms});
  std::string specs = "[";
  for (int i = 0; i < 100; ++i) {
    const std::string name = prefix + std::to_string(i);
    config.backends.push_back(
        {name, "file", true, R"({"path":")" + dir + "/" + name + R"(.ndjson","batch":{"max_bytes":4096}})"});
    specs += (i ? "," : "") + std::string(R"({"name":")") + name + R"(","bindings":[{"verbosity":"trace"}]})";
  }
  config.matching = testing::backends_from_json(specs + "]");
  return config;
}

std::size_t lines_of(const std::string& path) {
  std::ifstream in(path);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

// How many lines `path` holds once it holds `count`, or 5 s have passed.
std::size_t lines_within_5s(const std::string& path, std::size_t count) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (lines_of(path) < count && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  return lines_of(path);
}

// Emits 100 events into `ring` and waits (up to 5 s) for `path` to hold
// 100 lines; returns how many it holds.
std::size_t emit_100_and_wait(const std::string& ring, const std::string& path) {
  if (!testing::emit_events(ring, 100)) return 0;
  return lines_within_5s(path, 100);
}

TEST(RouterSlots, BackendsRenamedReloadAfterReloadTakeTheSlotsOfNamesNoLongerUsed) {
  const std::string instance = "rr-test-slots-" + std::to_string(::getpid());
  const std::string dir = "/tmp/" + instance;
  fs::create_directories(dir);
  {
    Router router(named(instance, dir, "a"));
    // a* and b* run side by side during the reload: 200 slots. Then c*
    // needs 100 more while b* still runs: only a*'s, which no config holds
    // now, can make room.
    EXPECT_EQ(router.reload(named(instance, dir, "b")), std::nullopt);
    EXPECT_EQ(router.reload(named(instance, dir, "c")), std::nullopt);
    EXPECT_EQ(router.reload(named(instance, dir, "d")), std::nullopt);
    router.stop(100ms);
  }
  fs::remove_all(dir);
  ring::Segment::remove(instance);
  perf::BlockMapping::remove(instance);
}

// A slot taken back holds the old backend's written-through position; the
// workers had read it at start, and the new backend skipped every event up
// to it as written. Here "a" wrote 100 events that a dead backend keeps in
// the ring; at the next start "b" takes a's slot and must get all 100.
TEST(RouterSlots, ABackendInATakenBackSlotSkipsNothingTheOldOneWrote) {
  const std::string instance = "rr-test-slot-pos-" + std::to_string(::getpid());
  const std::string dir = "/tmp/" + instance;
  fs::create_directories(dir);
  const std::string dead = R"({"url":"http://127.0.0.1:)" + std::to_string(testing::free_port()) + R"(/"})";
  auto config = [&](const std::string& name) {
    RouterConfig c;
    c.instance = instance;
    c.rings.push_back({instance, 1 << 20, 0600, 2000ms});
    c.backends.push_back({name, "file", true, R"({"path":")" + dir + "/" + name + R"(.ndjson"})"});
    c.backends.push_back({"dead", "http", true, dead});
    c.matching = testing::backends_from_json(R"([{"name":")" + name +
                                             R"(","bindings":[{"verbosity":"trace"}]},{"name":"dead","bindings":[{"verbosity":"trace"}]}])");
    return c;
  };
  {
    Router router(config("a"));  // slots 0 (a) and 1 (dead)
    ASSERT_EQ(emit_100_and_wait(instance, dir + "/a.ndjson"), 100u);
    router.stop(100ms);  // "dead" holds the ring: the 100 stay in it
  }
  {
    perf::BlockMapping block = perf::BlockMapping::create_or_open(instance, 0640);
    for (std::size_t i = 2; i < perf::kMaxBackends; ++i) ASSERT_GE(block.backend_slot("x" + std::to_string(i), "file"), 0);
  }
  {
    Router router(config("b"));  // every slot named: b takes a's
    EXPECT_EQ(lines_within_5s(dir + "/b.ndjson", 100), 100u);
    router.stop(100ms);
  }
  fs::remove_all(dir);
  ring::Segment::remove(instance);
  perf::BlockMapping::remove(instance);
}

// Ring slots: a ring name used once kept its slot for good, and the 17th
// ring name an instance ever had could not start ("no free ring slot").
// Slots of rings no config names are taken back, but not one whose ring
// still holds records not released (its positions spare them being
// written twice when a config names it again).
TEST(RouterSlots, RingsNoLongerConfiguredGiveTheirSlotsToNewOnes) {
  const std::string instance = "rr-test-ring-slots-" + std::to_string(::getpid());
  const std::string dir = "/tmp/" + instance;
  const std::string held = instance + "-held", fresh = instance + "-new";
  fs::create_directories(dir);
  {
    // `held` has a record nobody read.
    ring::SegmentOptions options;
    options.capacity_bytes = 1 << 16;
    (void)ring::Segment::create_or_attach(held, options);
    EventProducer producer;
    ASSERT_EQ(producer.open(held), RR_OK);
    rr_event event{};
    event.body = to_rr_str(R"({"k":1})");
    ASSERT_EQ(producer.emit(event, RR_EMIT_BODY_TRUSTED), RR_OK);
  }
  {
    perf::BlockMapping block = perf::BlockMapping::create_or_open(instance, 0640);
    ASSERT_EQ(block.ring_slot(held), 0);  // the first a reclaim would look at
    for (int i = 1; i < 16; ++i) ASSERT_EQ(block.ring_slot("gone-" + std::to_string(i)), i);
  }
  {
    RouterConfig c;
    c.instance = instance;
    c.rings.push_back({fresh, 1 << 20, 0600, 2000ms});
    c.backends.push_back({"f", "file", true, R"({"path":")" + dir + R"(/f.ndjson"})"});
    c.matching = testing::backends_from_json(R"([{"name":"f","bindings":[{"verbosity":"trace"}]}])");
    Router router(c);
    EXPECT_EQ(emit_100_and_wait(fresh, dir + "/f.ndjson"), 100u);
    router.stop(100ms);
  }
  {
    perf::BlockMapping block = perf::BlockMapping::create_or_open(instance, 0640);
    EXPECT_EQ(block.ring_slot(held), 0);   // kept
    EXPECT_EQ(block.ring_slot(fresh), 1);  // gone-1's
  }
  fs::remove_all(dir);
  ring::Segment::remove(held);
  ring::Segment::remove(fresh);
  perf::BlockMapping::remove(instance);
}

}  // namespace
}  // namespace ringroute::ingest
