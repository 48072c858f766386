// The router's hot path allocates nothing per event: after a warm-up (pools,
// queues and buffers grown to their working size) 200,000 more events go
// through ring -> match -> format -> batch -> file with a bounded number of
// allocations in the whole process, whatever the event count.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <span>
#include <thread>

#include "backends.hpp"
#include "replaced_new.hpp"
#include "ringroute/ingest/router.hpp"
#include "ringroute/perf/block.hpp"
#include "ringroute/producer.hpp"
#include "ringroute/ring/segment.hpp"

namespace {
std::atomic<std::uint64_t> allocations{0};
}  // namespace

// Every operator new in the process counts (router threads included).
void* replaced_new_hook(std::size_t size, std::size_t alignment) noexcept {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return ringroute::testing::replaced_new_malloc(size, alignment);
}

namespace ringroute::ingest {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

void emit(EventProducer& producer, int count) {
  static const char* accounts[] = {"acct-1", "acct-2", "acct-3"};
  static const char* apps[] = {"app001", "app002"};
  rr_event batch[64];
  for (int sent = 0; sent < count;) {
    for (int i = 0; i < 64; ++i) {
      batch[i] = rr_event{};
      batch[i].account_id = to_rr_str(accounts[(sent + i) % 3]);
      batch[i].app_name = to_rr_str(apps[(sent + i) % 2]);
      batch[i].severity = static_cast<rr_severity>(1 + (sent + i) % 3);
      batch[i].body = to_rr_str(R"({"k":"some body text","n":12345})");
    }
    std::size_t accepted = 0;
    const auto n = static_cast<std::size_t>(std::min(64, count - sent));
    const rr_status s = producer.emit_batch(std::span<const rr_event>(batch, n), RR_EMIT_BODY_TRUSTED, &accepted);
    ASSERT_TRUE(s == RR_OK || s == RR_FULL) << rr_status_message(s);
    sent += static_cast<int>(accepted);
  }
}

void wait_drained(const std::string& ring, const Router& router) {
  ring::Segment segment;
  ASSERT_EQ(ring::Segment::attach(ring, segment, nullptr), ring::Status::ok);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!ring::all_released(segment.header()) || !router.drained()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(1ms);
  }
}

TEST(RouterAllocations, NothingAllocatesPerEventOnceWarm) {
  const std::string name = "rr-test-alloc-" + std::to_string(::getpid());
  const std::string dir = "/tmp/" + name;
  fs::remove_all(dir);
  RouterConfig config;
  config.instance = name;
  config.rings.push_back({name, 1 << 20, 0600, 2000ms});
  // Batches of 10 on one backend: 20,000 of them in the measured run, so
  // an allocation every so many batches (the worker's deque of batches in
  // flight took one every 32) shows as hundreds, not as a few.
  config.backends.push_back(
      {"all", "file", true, R"({"path":")" + dir + R"(/all.ndjson","batch":{"max_events":10}})"});
  config.backends.push_back(
      {"warn", "file", true,
       R"({"path":")" + dir + R"(/warn.ndjson","formatter":{"type":"json","options":{"include_metadata":false}}})"});
  config.matching = testing::backends_from_json(R"([{"name":"all","bindings":[{"verbosity":"trace"}]},
    {"name":"warn","bindings":[{"severity":"warning","app_name":["app001","app002"],"account_id":"*"}]}])");
  {
    Router router(config);
    EventProducer producer;
    rr_producer_options options{};
    options.wait_timeout_ns = 1'000'000'000;
    ASSERT_EQ(producer.open(name, &options), RR_OK);
    emit(producer, 50'000);  // warm-up: pools, queues, buffers, page cache
    wait_drained(name, router);
    const std::uint64_t before = allocations.load();
    emit(producer, 200'000);
    wait_drained(name, router);
    const std::uint64_t during = allocations.load() - before;
    // A few for batches a slower sink held longer than in the warm-up
    // (about 4 each), not one per event, nor one per so many batches
    // (20,200 here).
    EXPECT_LT(during, 200u) << during << " allocations for 200,000 events";
    // And the events went the whole way (matched, formatted, written): a
    // router that routed nothing would allocate nothing too.
    std::uint64_t sent = 0;
    for (const perf::BackendSlot& slot : router.block().backends) {
      if (perf::slot_name(slot.name) == "all") sent = slot.sink.sent.read();
    }
    EXPECT_EQ(sent, 250'000u);
    router.stop(2s);
  }
  fs::remove_all(dir);
  ring::Segment::remove(name);
  perf::BlockMapping::remove(name);
}

}  // namespace
}  // namespace ringroute::ingest
