// ConnectionDemand on a clock the test moves: when a sink wants one more
// connection, and when one back.
#include <gtest/gtest.h>

#include <chrono>

#include "ringroute/sinks/connection_demand.hpp"

namespace {

using ringroute::sinks::ConnectionDemand;
using namespace std::chrono_literals;

const ConnectionDemand::Clock::time_point t0 = ConnectionDemand::Clock::now();

// `count` windows from `now` (moved past them), each with `busy` of waiting.
void windows(ConnectionDemand& demand, ConnectionDemand::Clock::time_point& now, std::uint32_t count,
             std::chrono::milliseconds busy) {
  for (std::uint32_t window = 0; window < count; ++window) {
    if (busy.count() != 0) demand.add_busy(now, now + busy);
    now += ConnectionDemand::kWindow;
    demand.weigh(now);
  }
}

TEST(ConnectionDemand, OneConnectionWhileItWaitsLessThanHalfAWindow) {
  ConnectionDemand demand(8);
  auto now = t0;
  for (int window = 0; window < 20; ++window) {
    demand.add_busy(now, now + 24ms);  // under half of each 50 ms
    now += 50ms;
    EXPECT_FALSE(demand.weigh(now));
  }
  EXPECT_EQ(demand.wanted(), 1u);
}

TEST(ConnectionDemand, OneMoreAWindowWhileWaitingMoreThanHalfOfItUpToTheMost) {
  ConnectionDemand demand(3);
  auto now = t0;
  for (std::uint32_t window = 1; window <= 5; ++window) {
    demand.add_busy(now, now + 30ms);
    now += 50ms;
    EXPECT_EQ(demand.weigh(now), window <= 2) << window;
    EXPECT_EQ(demand.wanted(), std::min<std::uint32_t>(window + 1, 3)) << window;
  }
}

TEST(ConnectionDemand, AWindowIsWeighedOnlyOnceItIsWhole) {
  ConnectionDemand demand(4);
  demand.add_busy(t0, t0 + 40ms);
  EXPECT_FALSE(demand.weigh(t0 + 40ms));  // 40 of 40 ms, but not a window yet
  EXPECT_EQ(demand.wanted(), 1u);
  EXPECT_TRUE(demand.weigh(t0 + 50ms));
}

// Exchanges in flight at once (requests on several connections) count their
// time once: two connections each waiting 20 ms of a window, side by side,
// are 20 ms of waiting, not 40.
TEST(ConnectionDemand, ExchangesInFlightTogetherCountOnce) {
  ConnectionDemand demand(8);
  auto now = t0;
  for (int window = 0; window < 10; ++window) {
    demand.exchange_begins(now);
    demand.exchange_begins(now + 1ms);
    demand.exchange_ends(now + 20ms);
    demand.exchange_ends(now + 21ms);
    now += 50ms;
    EXPECT_FALSE(demand.weigh(now));
  }
  EXPECT_EQ(demand.wanted(), 1u);
  // One after the other they are 40 ms.
  demand.exchange_begins(now);
  demand.exchange_ends(now + 20ms);
  demand.exchange_begins(now + 20ms);
  demand.exchange_ends(now + 40ms);
  EXPECT_TRUE(demand.weigh(now + 50ms));
}

// An exchange still in flight when the window ends counts its part in that
// window, and the rest in the next: one long wait (a slow answer) is a
// destination that lags in each window it fills.
TEST(ConnectionDemand, AnExchangeInFlightCountsInEachWindowItFills) {
  ConnectionDemand demand(8);
  demand.exchange_begins(t0);
  EXPECT_TRUE(demand.weigh(t0 + 50ms));
  EXPECT_TRUE(demand.weigh(t0 + 100ms));
  demand.exchange_ends(t0 + 110ms);
  EXPECT_FALSE(demand.weigh(t0 + 150ms));  // 10 of 50 ms
  EXPECT_EQ(demand.wanted(), 3u);
  // A write that ends with exchanges counted (a stop) counts none past it.
  demand.exchange_begins(t0 + 150ms);
  demand.end_exchanges(t0 + 151ms);
  EXPECT_FALSE(demand.weigh(t0 + 200ms));
  demand.exchange_ends(t0 + 210ms);  // nothing in flight: ignored
  EXPECT_FALSE(demand.weigh(t0 + 250ms));
  EXPECT_EQ(demand.wanted(), 3u);
}

// A connection is given back for each kQuietWindows windows in a row under
// a twentieth busy, weighed one by one or at once: a sink written to once
// in ten seconds weighs 200 windows of quiet in one go. Counted one a
// weighing, a burst's connections stayed for 200 writes (over half an hour
// at that pace), each spreading its few events over all of them; and one
// given back a weighing at most, a burst's eight were still seven at the
// next write a minute on.
TEST(ConnectionDemand, QuietWindowsGiveConnectionsBackHoweverRarelyWeighed) {
  ConnectionDemand demand(4);
  auto now = t0;
  windows(demand, now, 3, 50ms);
  ASSERT_EQ(demand.wanted(), 4u);
  windows(demand, now, ConnectionDemand::kQuietWindows - 1, 0ms);
  EXPECT_EQ(demand.wanted(), 4u);  // one window short
  windows(demand, now, 1, 0ms);
  EXPECT_EQ(demand.wanted(), 3u);
  now += ConnectionDemand::kWindow * ConnectionDemand::kQuietWindows;  // one write, ten seconds on
  demand.add_busy(now, now + 1ms);
  demand.weigh(now + 1ms);
  EXPECT_EQ(demand.wanted(), 2u);
  // Between a twentieth and a half is neither: no connection back, and the
  // quiet ones before it are not added to the ones after.
  windows(demand, now, ConnectionDemand::kQuietWindows - 1, 0ms);
  windows(demand, now, 2 * ConnectionDemand::kQuietWindows, 10ms);
  windows(demand, now, 1, 0ms);
  EXPECT_EQ(demand.wanted(), 2u);
  // A burst, then a minute of quiet weighed at once: all but one back.
  windows(demand, now, 2, 50ms);
  ASSERT_EQ(demand.wanted(), 4u);
  now += 60s;
  demand.add_busy(now, now + 1ms);
  demand.weigh(now + 1ms);
  EXPECT_EQ(demand.wanted(), 1u);
}

TEST(ConnectionDemand, HeldAtWhatTheSinkCouldOpen) {
  ConnectionDemand demand(64);
  auto now = t0;
  windows(demand, now, 5, 50ms);
  ASSERT_EQ(demand.wanted(), 6u);
  demand.hold_at(4, now);
  EXPECT_EQ(demand.wanted(), 4u);
  // Held for kQuietWindows windows however busy: one more each window
  // would try one more connection each window, and fail as the last did.
  windows(demand, now, ConnectionDemand::kQuietWindows - 1, 50ms);
  EXPECT_EQ(demand.wanted(), 4u);
  windows(demand, now, 1, 50ms);
  EXPECT_EQ(demand.wanted(), 5u);  // then tried again
  demand.hold_at(6, now);
  EXPECT_EQ(demand.wanted(), 5u);  // never more than it wanted
  demand.hold_at(0, now);
  EXPECT_EQ(demand.wanted(), 1u);  // never none
  ConnectionDemand none(0);
  EXPECT_EQ(none.wanted(), 1u);
  none.add_busy(t0, t0 + 50ms);
  EXPECT_FALSE(none.weigh(t0 + 50ms));  // at most one
}

}  // namespace
