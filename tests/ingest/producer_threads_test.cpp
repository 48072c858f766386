// One producer handle shared by threads, as the C API allows: what the
// handle keeps for all of them (the id sequence, the claim start its slot
// shows, the pages it has touched, why its ring is refused) is written by
// each at once. Threaded: the TSan build runs it.
#include <gtest/gtest.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ringroute/event/event.hpp"
#include "ringroute/producer.hpp"
#include "test_ring.hpp"

using namespace ringroute;
using ringroute::testing::TestRing;

namespace {

constexpr int kThreads = 4;

EventProducer open_shared(const std::string& ring, std::int64_t wait_ns) {
  EventProducer p;
  rr_producer_options o{};
  o.name = "shared";
  o.wait_timeout_ns = wait_ns;
  rr_error error{};
  EXPECT_EQ(p.open(ring, &o, &error), RR_OK) << error.message;
  return p;
}

std::string body_of(int thread, int n) {
  return R"({"t":)" + std::to_string(thread) + R"(,"n":)" + std::to_string(n) + "}";
}

// (thread, n) from a body written by body_of(); false for anything else.
bool parse_body(std::string_view body, int& thread, int& n) {
  const auto t_at = body.find(R"("t":)"), n_at = body.find(R"(,"n":)");
  if (t_at == std::string_view::npos || n_at == std::string_view::npos) return false;
  const char* end = body.data() + body.size();
  return std::from_chars(body.data() + t_at + 4, end, thread).ec == std::errc{} &&
         std::from_chars(body.data() + n_at + 5, end, n).ec == std::errc{};
}

}  // namespace

// Every event once, each thread's in its order. The ring holds them all,
// and is read once the threads are done: a consumer beside them would map
// the ring a second time in this process, and TSan, which knows memory by
// its address, sees nothing that orders one mapping's writes with the other's
// (tests/ring/threads_test.cpp wraps a ring under threads, on one mapping).
// Its first lap still has the threads touch its pages for each other.
TEST(ProducerThreads, ThreadsSharingOneHandleLoseNothingAndKeepEachThreadsOrder) {
  constexpr int kPerThread = 4000;
  TestRing r(4 << 20);
  EventProducer p = open_shared(r.name, 0);
  std::vector<std::thread> producers;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      std::vector<std::string> bodies;
      std::vector<rr_event> batch;
      for (int n = 0; n < kPerThread;) {
        // Singles and batches of 7 in turn: one claim and several.
        const int count = (n / 7) % 2 == 0 ? 1 : std::min(7, kPerThread - n);
        bodies.clear();
        batch.clear();
        for (int k = 0; k < count; ++k) bodies.push_back(body_of(t, n + k));
        for (const std::string& body : bodies) {
          rr_event e{};
          e.body = to_rr_str(body);
          e.app_name = to_rr_str("app");
          batch.push_back(e);
        }
        std::size_t accepted = 0;
        rr_error error{};
        const rr_status s = p.emit_batch(batch, RR_EMIT_BODY_TRUSTED, &accepted, &error);
        if (s != RR_OK) {
          ADD_FAILURE() << "thread " << t << " at " << n << ": " << rr_status_message(s) << ": " << error.message;
          failures.fetch_add(1, std::memory_order_relaxed);
          return;
        }
        n += count;
      }
    });
  }
  for (auto& t : producers) t.join();

  ring::Consumer consumer(r.segment);
  std::vector<int> next_n(kThreads, 0);
  std::set<std::string> ids;
  int read = 0, out_of_order = 0, bad = 0;
  consumer.poll(
      [&](std::span<const std::byte> payload, std::uint64_t) {
        event::EventView v;
        int thread = -1, n = -1;
        if (event::decode(payload, v) != event::DecodeError::none || !parse_body(v.body, thread, n) || thread < 0 ||
            thread >= kThreads) {
          ++bad;
          return;
        }
        if (n != next_n[static_cast<std::size_t>(thread)]) ++out_of_order;
        next_n[static_cast<std::size_t>(thread)] = n + 1;
        ids.emplace(v.get(event::StringField::id));
        ++read;
      },
      SIZE_MAX);

  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(out_of_order, 0);
  EXPECT_EQ(read, kThreads * kPerThread);
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kThreads * kPerThread)) << "ids repeated";
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next_n[static_cast<std::size_t>(t)], kPerThread) << "thread " << t;
  EXPECT_EQ(ring::sum_producer_slots(r.segment.header()).written, static_cast<std::uint64_t>(kThreads * kPerThread));
}

// The ring removed under threads sharing a handle, no router reading it:
// every thread is told so, each in the same words, and none is told
// anything else (each thread's look at the file races the others').
TEST(ProducerThreads, ARingRemovedUnderThreadsSharingAHandleIsSaidAlikeToEach) {
  TestRing r(1 << 16);
  EventProducer p = open_shared(r.name, 0);
  std::atomic<int> started{0};
  std::vector<std::string> last_message(kThreads);
  std::vector<rr_status> last_status(kThreads, RR_OK);
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      const std::string body = body_of(t, 0);
      rr_event e{};
      e.body = to_rr_str(body);
      started.fetch_add(1, std::memory_order_relaxed);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (std::chrono::steady_clock::now() < deadline) {
        rr_error error{};
        const rr_status s = p.emit(e, RR_EMIT_BODY_TRUSTED, &error);
        if (s == RR_FULL) {
          // Nobody reads: room never comes. Keep asking, so the next look
          // at the file comes from one thread or another.
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          continue;
        }
        last_status[static_cast<std::size_t>(t)] = s;
        if (s != RR_OK) {
          last_message[static_cast<std::size_t>(t)] = error.message;
          return;
        }
      }
    });
  }
  while (started.load(std::memory_order_relaxed) < kThreads) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ring::Segment::remove(r.name);
  for (auto& t : producers) t.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(last_status[static_cast<std::size_t>(t)], RR_NOT_READY) << "thread " << t;
    EXPECT_NE(last_message[static_cast<std::size_t>(t)].find("was removed since this handle opened it"),
              std::string::npos)
        << "thread " << t << ": " << last_message[static_cast<std::size_t>(t)];
  }
}
