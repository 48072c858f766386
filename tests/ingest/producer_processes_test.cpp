// Producer processes against one consumer: exactly once and in order per
// producer, a producer killed between claim and commit, and a consumer killed
// and restarted mid-stream. Every child is forked by the test itself.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "read_events.hpp"
#include "ringroute/ingest/testing.h"
#include "ringroute/producer.hpp"
#include "test_ring.hpp"

using namespace ringroute;
using ringroute::testing::drain;
using ringroute::testing::TestRing;

namespace {

// Forks a child that runs `body` and exits with its return value.
template <class Body>
pid_t spawn(Body&& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    int code = 99;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);
  }
  return pid;
}

int wait_exit_code(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Emits `count` events named "p{index}-{seq}" in batches, waiting for room.
// With `resume_fd`, waits for a byte from it once `pause_at` events (a
// multiple of `batch`) are emitted.
int produce(const std::string& ring, unsigned index, unsigned count, unsigned batch, unsigned pause_at = 0,
            int resume_fd = -1) {
  EventProducer p;
  rr_producer_options o{};
  const std::string name = "p" + std::to_string(index);
  o.name = name.c_str();
  o.wait_timeout_ns = 10'000'000'000;
  if (p.open(ring, &o) != RR_OK) return 3;
  const std::string body = R"({"producer":)" + std::to_string(index) + "}";
  std::vector<rr_event> events(batch);
  for (auto& e : events) {
    e.app_name = to_rr_str("proc-test");
    e.body = to_rr_str(body);
  }
  for (unsigned done = 0; done < count; done += batch) {
    if (resume_fd >= 0 && done == pause_at) {
      char byte;
      if (::read(resume_fd, &byte, 1) != 1) return 5;
    }
    const std::size_t n = std::min<std::size_t>(batch, count - done);
    if (p.emit_batch(std::span<const rr_event>(events.data(), n)) != RR_OK) return 4;
  }
  return 0;
}

// "p3-1234" -> {3, 1234}
std::pair<unsigned, std::uint64_t> parse_id(std::string_view id) {
  const auto dash = id.find('-');
  unsigned index = 0;
  std::uint64_t seq = 0;
  std::from_chars(id.data() + 1, id.data() + dash, index);
  std::from_chars(id.data() + dash + 1, id.data() + id.size(), seq);
  return {index, seq};
}

void exactly_once_in_order(unsigned producers, unsigned per_producer) {
  TestRing r(1 << 20, "procs");
  std::vector<pid_t> children;
  for (unsigned i = 0; i < producers; ++i) {
    children.push_back(spawn([&, i] { return produce(r.name, i, per_producer, 64); }));
  }
  ring::Consumer consumer(r.segment);
  ring::IdleStrategy idle;
  std::vector<std::uint64_t> next(producers, 0);
  std::uint64_t total = 0, out_of_order = 0, decode_errors = 0;
  const std::uint64_t expected = std::uint64_t{producers} * per_producer;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(100);
  while (total < expected && std::chrono::steady_clock::now() < deadline) {
    const std::size_t n = ringroute::testing::poll_release_or_idle(consumer, idle, 
        [&](std::span<const std::byte> payload, std::uint64_t) {
          event::EventView v;
          if (event::decode(payload, v) != event::DecodeError::none) {
            ++decode_errors;
            return;
          }
          const auto [index, seq] = parse_id(v.get(event::StringField::id));
          if (index >= producers || seq != next[index]) {
            ++out_of_order;
          } else {
            ++next[index];
          }
        },
        4096);
    total += n;
  }
  for (pid_t pid : children) EXPECT_EQ(wait_exit_code(pid), 0);
  EXPECT_EQ(total, expected);
  EXPECT_EQ(out_of_order, 0u);
  EXPECT_EQ(decode_errors, 0u);
  for (unsigned i = 0; i < producers; ++i) EXPECT_EQ(next[i], per_producer) << "producer " << i;
  const auto totals = ring::sum_producer_slots(r.segment.header());
  EXPECT_EQ(totals.written, expected);
  EXPECT_EQ(r.segment.header().read.read(), expected);
  EXPECT_EQ(r.segment.header().skipped.read(), 0u);
}

int hook_pipe = -1;
void stop_after_claim() {
  const char byte = 'x';
  (void)!::write(hook_pipe, &byte, 1);
  for (;;) ::pause();  // killed here, holding the claim
}

}  // namespace

TEST(ProducerProcesses, OneProducerMillionEventsExactlyOnceInOrder) { exactly_once_in_order(1, 1'000'000); }
TEST(ProducerProcesses, TwoProducersMillionEventsEachExactlyOnceInOrder) { exactly_once_in_order(2, 1'000'000); }
TEST(ProducerProcesses, EightProducersMillionEventsEachExactlyOnceInOrder) {
  exactly_once_in_order(8, 1'000'000);
}

TEST(ProducerProcesses, ProducerKilledBetweenClaimAndCommitLosesOnlyThatEvent) {
  TestRing r(1 << 16, "kill");
  ring::Consumer consumer(r.segment);  // default 2 s timeout: the pid check must be what skips it
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t victim = spawn([&] {
    if (produce(r.name, 0, 5, 1) != 0) return 3;
    hook_pipe = fds[1];
    rr_testing_set_after_claim_hook(&stop_after_claim);
    return produce(r.name, 1, 1, 1);  // never returns
  });
  char byte;
  ASSERT_EQ(::read(fds[0], &byte, 1), 1);
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  EXPECT_EQ(wait_exit_code(victim), 128 + SIGKILL);
  ::close(fds[0]);
  ::close(fds[1]);
  ASSERT_EQ(produce(r.name, 2, 5, 1), 0);

  std::vector<std::string> ids;
  const auto start = std::chrono::steady_clock::now();
  // Under the consumer's 2 s timeout, with room for a loaded machine.
  constexpr auto kBeforeTheTimeout = std::chrono::milliseconds(1800);
  while (ids.size() < 10 && std::chrono::steady_clock::now() - start < kBeforeTheTimeout) {
    for (const auto& e : drain(consumer)) ids.push_back(e.id);
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"p0-0", "p0-1", "p0-2", "p0-3", "p0-4", "p2-0", "p2-1", "p2-2", "p2-3",
                                           "p2-4"}));
  EXPECT_EQ(r.segment.header().skipped.read(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, kBeforeTheTimeout)
      << "the dead producer should be noticed by its pid, not the 2 s timeout";
}

TEST(ProducerProcesses, ConsumerKilledAndRestartedLosesNothing) {
  TestRing r(1 << 16, "restart");
  constexpr unsigned kEvents = 200'000;
  char path[] = "/tmp/rr-consumed-XXXXXX";
  const int out = ::mkstemp(path);
  ASSERT_GE(out, 0);
  // Writes each event's sequence to the file, then releases: what is released
  // has been written, so a kill at any point loses nothing. Returns when idle
  // and `done()` says so.
  auto consume = [&](auto done) {
    ring::Consumer consumer(r.segment);
    ring::IdleStrategy idle;
    std::vector<std::uint32_t> batch;
    for (;;) {
      batch.clear();
      consumer.poll(
          [&](std::span<const std::byte> payload, std::uint64_t) {
            event::EventView v;
            if (event::decode(payload, v) == event::DecodeError::none) {
              batch.push_back(static_cast<std::uint32_t>(parse_id(v.get(event::StringField::id)).second));
            }
          },
          512);
      if (batch.empty()) {
        if (done(consumer)) return 0;
        idle.idle(consumer);
        continue;
      }
      idle.reset();
      const auto bytes = static_cast<ssize_t>(batch.size() * sizeof(std::uint32_t));
      if (::write(out, batch.data(), static_cast<std::size_t>(bytes)) != bytes) return 5;
      consumer.release(consumer.read_position());
    }
  };
  // The producer holds its second half back until the first consumer is
  // killed, so the kill always comes with events still to read (a loaded
  // machine could keep this thread asleep while all 200,000 went through).
  int resume[2];
  ASSERT_EQ(::pipe(resume), 0);
  const pid_t producer = spawn([&] {
    ::close(resume[1]);  // so a test that failed before the byte ends it, not hangs it
    return produce(r.name, 0, kEvents, 16, kEvents / 2, resume[0]);
  });
  const pid_t first = spawn([&] { return consume([](ring::Consumer&) { return false; }); });
  // Let it get going, then kill it mid-stream.
  const auto start = std::chrono::steady_clock::now();
  while (r.segment.header().read.read() < kEvents / 4 &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(30)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  EXPECT_EQ(wait_exit_code(first), 128 + SIGKILL);
  const std::uint64_t released = r.segment.header().head.load();
  EXPECT_LT(r.segment.header().read.read(), kEvents) << "killed too late to test a restart";
  ASSERT_EQ(::write(resume[1], "x", 1), 1);
  ::close(resume[0]);
  ::close(resume[1]);
  // The restarted consumer (this process) reads the rest: done once the
  // producer has exited and everything it committed is released.
  bool producer_exited = false;
  int producer_status = -1;
  EXPECT_EQ(consume([&](ring::Consumer& c) {
              if (!producer_exited && ::waitpid(producer, &producer_status, WNOHANG) == producer) {
                producer_exited = true;
              }
              return producer_exited && c.released_position() == r.segment.header().tail.load();
            }),
            0);
  EXPECT_TRUE(WIFEXITED(producer_status) && WEXITSTATUS(producer_status) == 0);
  std::set<std::uint32_t> seen;
  EXPECT_GT(released, 0u);
  std::vector<std::uint32_t> all;
  struct stat st {};
  ASSERT_EQ(::fstat(out, &st), 0);
  all.resize(static_cast<std::size_t>(st.st_size) / sizeof(std::uint32_t));
  ASSERT_EQ(::pread(out, all.data(), all.size() * sizeof(std::uint32_t), 0),
            static_cast<ssize_t>(all.size() * sizeof(std::uint32_t)));
  ::close(out);
  ::unlink(path);
  seen.insert(all.begin(), all.end());
  EXPECT_EQ(seen.size(), kEvents) << "events lost";
  EXPECT_EQ(*seen.rbegin(), kEvents - 1);
  // Duplicates: at most what the killed consumer had written but not released.
  EXPECT_LE(all.size() - seen.size(), 512u);
}
