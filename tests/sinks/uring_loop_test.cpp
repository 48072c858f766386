// The network sinks' io_uring loop (internal to ringroute::sinks): what a
// sink whose write() threw relies on to start clean.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "uring_loop.hpp"

namespace ringroute::sinks {
namespace {

// A receive in flight keeps its buffer: closing the socket does not end it
// (the ring holds its own reference to the file). cancel_all() must, so
// that the buffer can be reused without the kernel writing into it later.
TEST(UringLoop, CancelAllEndsAReceiveInFlightBeforeItsBufferIsReused) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  char buffer[16] = {};
  {
    UringLoop loop("test", 8);
    loop.recv(fds[0], buffer, sizeof buffer, 7, std::chrono::milliseconds(0));
    loop.recv(fds[0], buffer, sizeof buffer, 8, std::chrono::milliseconds(5000));  // with a linked timeout
    ASSERT_EQ(loop.in_flight(), 2u);
    const auto start = std::chrono::steady_clock::now();
    loop.cancel_all(std::chrono::seconds(1));
    EXPECT_EQ(loop.in_flight(), 0u);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(900));
    // Data arriving now, while the ring still lives (its teardown would end
    // the receives whatever cancel_all did), finds none of ours waiting.
    ASSERT_EQ(::send(fds[1], "hello", 5, MSG_NOSIGNAL), 5);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(std::memcmp(buffer, "\0\0\0\0\0", 5), 0);
  }
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(UringLoop, CancelAllWithNothingInFlightReturnsAtOnce) {
  UringLoop loop("test", 8);
  const auto start = std::chrono::steady_clock::now();
  loop.cancel_all(std::chrono::seconds(1));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));  // not the second it may wait
}

}  // namespace
}  // namespace ringroute::sinks
