// Many producer threads and a consumer thread in one process: exactly once,
// in order per producer, with tiny rings so every path (full, wait, padding,
// sleep and wake) runs. In-process so ThreadSanitizer sees both sides.
#include <gtest/gtest.h>

#include <cstring>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "ringroute/ring/ring.hpp"
#include "test_ring.hpp"

using namespace ringroute;
using ringroute::testing::TestRing;

namespace {

struct Record {
  std::uint32_t producer;
  std::uint32_t sequence;
};

// `expect_full`: the ring is small enough that producers must have found
// it full (so the wait, sleep and wake paths ran).
void run(unsigned producers, unsigned per_producer, unsigned batch, std::uint64_t capacity, bool expect_full = false) {
  TestRing r(capacity, "threads");
  ring::Consumer consumer(r.segment);
  // A lost record ends the test with the counts so far, not in ctest's
  // timeout: the consumer gives up after a minute, and the producers then.
  std::atomic<bool> given_up{false};
  std::vector<std::thread> threads;
  for (unsigned id = 0; id < producers; ++id) {
    threads.emplace_back([&, id] {
      ring::Producer p(r.segment);
      const std::uint32_t length = ring::kRecordHeaderBytes + sizeof(Record);
      const std::uint32_t aligned = static_cast<std::uint32_t>(ring::align_record(length));
      std::vector<std::uint32_t> lengths(batch, length);
      for (unsigned seq = 0; seq < per_producer; seq += batch) {
        const unsigned n = std::min(batch, per_producer - seq);
        ring::Claim claim;
        while (p.claim(aligned * n, claim, std::chrono::milliseconds(100)) != ring::Status::ok) {
          if (given_up.load()) return;
        }
        for (unsigned k = 0; k < n; ++k) {
          const Record rec{id, seq + k};
          std::memcpy(claim.first + k * aligned + ring::kRecordHeaderBytes, &rec, sizeof rec);
        }
        p.commit(claim, lengths.data(), n);
      }
    });
  }
  std::vector<std::uint32_t> next(producers, 0);
  std::uint64_t total = 0;
  const std::uint64_t expected = std::uint64_t{producers} * per_producer;
  ring::IdleStrategy idle;
  bool in_order = true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  while (total < expected && std::chrono::steady_clock::now() < deadline) {
    const std::size_t n = ringroute::testing::poll_release_or_idle(consumer, idle, 
        [&](std::span<const std::byte> payload, std::uint64_t) {
          Record rec;
          ASSERT_EQ(payload.size(), sizeof rec);
          std::memcpy(&rec, payload.data(), sizeof rec);
          ASSERT_LT(rec.producer, producers);
          if (rec.sequence != next[rec.producer]) in_order = false;
          next[rec.producer] = rec.sequence + 1;
        },
        256);
    total += n;
  }
  given_up = total < expected;
  for (auto& t : threads) t.join();
  ASSERT_EQ(total, expected) << "records read within a minute";
  EXPECT_TRUE(in_order);
  for (unsigned id = 0; id < producers; ++id) EXPECT_EQ(next[id], per_producer) << "producer " << id;
  EXPECT_EQ(consumer.poll([](std::span<const std::byte>, std::uint64_t) {}, 1), 0u) << "extra records";
  EXPECT_EQ(r.segment.header().skipped.read(), 0u);
  if (expect_full) {
    EXPECT_GT(ring::sum_producer_slots(r.segment.header()).full, 0u) << "the ring never filled";
  }
}

}  // namespace

TEST(RingThreads, OneProducerSingleRecordsExactlyOnceInOrder) { run(1, 100'000, 1, 4096); }
TEST(RingThreads, FourProducersBatchesExactlyOnceInOrder) { run(4, 50'000, 7, 4096); }
TEST(RingThreads, EightProducersTinyRingExactlyOnceInOrder) { run(8, 20'000, 3, 1024, true); }
