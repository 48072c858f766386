// The ring's record protocol in one process: tiny capacities force
// wrap-around and padding; stalled claims are made by hand.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ringroute/ring/ring.hpp"
#include "private_mounts.hpp"
#include "test_ring.hpp"

using namespace ringroute;
using ringroute::testing::TestRing;

namespace {

// Claims and commits one record whose payload is `text`.
ring::Status put(ring::Producer& p, std::string_view text) {
  ring::Claim c;
  const auto length = static_cast<std::uint32_t>(ring::kRecordHeaderBytes + text.size());
  const ring::Status s = p.try_claim(static_cast<std::uint32_t>(ring::align_record(length)), c);
  if (s != ring::Status::ok) return s;
  std::memcpy(c.first + ring::kRecordHeaderBytes, text.data(), text.size());
  p.commit_one(c, length);
  return s;
}

std::vector<std::string> take(ring::Consumer& c, std::size_t max = 1000, bool release = true) {
  std::vector<std::string> out;
  c.poll([&](std::span<const std::byte> payload,
             std::uint64_t) { out.emplace_back(reinterpret_cast<const char*>(payload.data()), payload.size()); },
         max);
  if (release) c.release(c.read_position());
  return out;
}

ring::ConsumerOptions fast_timeout() {
  ring::ConsumerOptions o;
  o.dead_claim_timeout = std::chrono::milliseconds(50);
  return o;
}

// Polls until something arrives or `deadline_ms` passes (a stalled claim is
// skipped only after enough polls and time).
std::vector<std::string> take_within(ring::Consumer& c, int deadline_ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(deadline_ms);
  std::vector<std::string> out;
  while (out.empty() && std::chrono::steady_clock::now() < until) {
    out = take(c);
    if (out.empty()) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return out;
}

// `child` ended (status 0) holding a claim: a record put after it
// comes within `within_ms`, the claim skipped once.
void expect_dead_claim_skipped(TestRing& r, ring::Consumer& c, pid_t child, int within_ms) {
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ring::Producer p(r.segment);
  ASSERT_EQ(put(p, "after"), ring::Status::ok);
  EXPECT_EQ(take_within(c, within_ms), (std::vector<std::string>{"after"}));
  EXPECT_EQ(r.segment.header().skipped.read(), 1u);
}

// A child that claims 64 bytes and exits holding the claim (status 0; 1
// when the claim failed); its slot still names it.
pid_t fork_producer_that_dies_holding_a_claim(TestRing& r) {
  const pid_t child = ::fork();
  if (child == 0) {
    ring::Producer p(r.segment);
    ring::Claim claim;
    if (p.try_claim(64, claim) != ring::Status::ok) ::_exit(1);
    ::_exit(0);
  }
  return child;
}

// Commits "good" then "doomed", and rewrites doomed's header (at byte 16)
// to claim `length` bytes: a header the library never wrote.
void put_good_then_broken_header(ring::Producer& p, TestRing& r, std::int32_t length) {
  ASSERT_EQ(put(p, "good"), ring::Status::ok);
  ASSERT_EQ(put(p, "doomed"), ring::Status::ok);
  ring::detail::header_word(r.segment.data() + 16).store(ring::pack_record_header(length, 0));
}

}  // namespace

TEST(Ring, RecordsComeOutInOrderWithExactLengths) {
  TestRing r(1024);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  ASSERT_EQ(put(p, "a"), ring::Status::ok);
  ASSERT_EQ(put(p, "bcdefghij"), ring::Status::ok);
  ASSERT_EQ(put(p, ""), ring::Status::ok);
  EXPECT_EQ(take(c), (std::vector<std::string>{"a", "bcdefghij", ""}));
  EXPECT_EQ(r.segment.header().read.read(), 3u);
  EXPECT_EQ(ring::sum_producer_slots(r.segment.header()).written, 3u);
}

TEST(Ring, AllReleasedOnlyOnceTheConsumerHasReleasedWhatItRead) {
  TestRing r(1024);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  EXPECT_TRUE(ring::all_released(r.segment.header())) << "an empty ring";
  ASSERT_EQ(put(p, "a"), ring::Status::ok);
  EXPECT_FALSE(ring::all_released(r.segment.header())) << "a committed record";
  EXPECT_EQ(take(c, 1000, /*release=*/false), std::vector<std::string>{"a"});
  EXPECT_FALSE(ring::all_released(r.segment.header())) << "read but not released";
  c.release(c.read_position());
  EXPECT_TRUE(ring::all_released(r.segment.header()));
}

TEST(Ring, WrapsAroundWithPaddingManyLaps) {
  TestRing r(1024);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  std::uint64_t next = 0;
  std::uint64_t expected = 0;
  // Record sizes that don't divide the capacity, so laps end in padding.
  for (int round = 0; round < 2000; ++round) {
    for (int k = 0; k < 3; ++k) {
      const std::string text = std::to_string(next) + std::string(next % 37, '.');
      if (put(p, text) == ring::Status::ok) ++next;
    }
    for (const auto& got : take(c)) {
      ASSERT_EQ(got, std::to_string(expected) + std::string(expected % 37, '.'));
      ++expected;
    }
  }
  EXPECT_EQ(expected, next);
  EXPECT_GT(r.segment.header().tail.load(), 100u * 1024u) << "should have wrapped many times";
}

TEST(Ring, FullIsReturnedAndCountedAndNothingIsOverwritten) {
  TestRing r(1024);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  int accepted = 0;
  while (put(p, "record-" + std::to_string(accepted) + "-xxxxxxxxxxxxxxxx") == ring::Status::ok) ++accepted;
  EXPECT_EQ(accepted, 1024 / 40);
  EXPECT_EQ(put(p, "one more, longer than the gap"), ring::Status::full);
  EXPECT_EQ(ring::sum_producer_slots(r.segment.header()).full, 2u);
  const auto got = take(c, 1000, /*release=*/false);
  ASSERT_EQ(got.size(), static_cast<std::size_t>(accepted));
  for (int i = 0; i < accepted; ++i) EXPECT_EQ(got[i], "record-" + std::to_string(i) + "-xxxxxxxxxxxxxxxx");
  // Read but not released: still full.
  EXPECT_EQ(put(p, "still full, longer than the gap"), ring::Status::full);
  c.release(c.read_position());
  EXPECT_EQ(put(p, "room again"), ring::Status::ok);
}

TEST(Ring, TooBigAndBadSizesAreRefused) {
  TestRing r(1024);
  ring::Producer p(r.segment);
  ring::Claim claim;
  EXPECT_EQ(p.try_claim(136, claim), ring::Status::too_big);  // max is 1024 / 8
  EXPECT_EQ(p.try_claim(12, claim), ring::Status::bad_argument);
  EXPECT_EQ(p.try_claim(0, claim), ring::Status::bad_argument);
  EXPECT_EQ(ring::sum_producer_slots(r.segment.header()).too_big, 1u);
}

TEST(Ring, BatchClaimPublishesAllRecordsAtOnce) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  const std::vector<std::uint32_t> lengths{9, 16, 23};
  ring::Claim claim;
  ASSERT_EQ(p.try_claim(16 + 16 + 24, claim), ring::Status::ok);
  std::memcpy(claim.first + 8, "A", 1);
  std::memcpy(claim.first + 16 + 8, "BBBBBBBB", 8);
  std::memcpy(claim.first + 32 + 8, "CCCCCCCCCCCCCCC", 15);
  EXPECT_TRUE(take(c).empty()) << "nothing visible before commit";
  p.commit(claim, lengths.data(), lengths.size());
  EXPECT_EQ(take(c), (std::vector<std::string>{"A", "BBBBBBBB", "CCCCCCCCCCCCCCC"}));
}

TEST(Ring, RestartedConsumerResumesAtTheReleasedPosition) {
  TestRing r(1024);
  ring::Producer p(r.segment);
  for (int i = 0; i < 6; ++i) ASSERT_EQ(put(p, "e" + std::to_string(i)), ring::Status::ok);
  {
    ring::Consumer c(r.segment);
    std::uint64_t after_second = 0;
    int n = 0;
    c.poll([&](std::span<const std::byte>, std::uint64_t end) { if (++n == 2) after_second = end; }, 4);
    c.release(after_second);  // four read, two released: the crash loses no event
  }
  ring::Consumer again(r.segment);
  EXPECT_EQ(take(again), (std::vector<std::string>{"e2", "e3", "e4", "e5"}));
}

TEST(Ring, InterruptedReleaseIsFinishedByTheNextConsumer) {
  TestRing r(1024);
  ring::Producer p(r.segment);
  ASSERT_EQ(put(p, "first"), ring::Status::ok);
  ASSERT_EQ(put(p, "second"), ring::Status::ok);
  std::uint64_t end_of_first = 0;
  {
    ring::Consumer c(r.segment);
    int n = 0;
    c.poll([&](std::span<const std::byte>, std::uint64_t end) { if (++n == 1) end_of_first = end; }, 1);
  }
  // As if a consumer died after marking the release but before moving head.
  r.segment.header().releasing_to.store(end_of_first);
  ring::Consumer again(r.segment);
  EXPECT_EQ(r.segment.header().head.load(), end_of_first);
  EXPECT_EQ(take(again), (std::vector<std::string>{"second"}));
}

// Found dead by its slot (its pid gone, its lock free), not by the timeout:
// a minute here, so only the liveness check can skip the claim in time.
TEST(Ring, ClaimOfADeadProducerIsSkippedAndCounted) {
  TestRing r(4096);
  ring::Consumer c(r.segment, ring::ConsumerOptions{std::chrono::minutes(1)});
  const pid_t child = fork_producer_that_dies_holding_a_claim(r);
  ASSERT_NO_FATAL_FAILURE(expect_dead_claim_skipped(r, c, child, 1000));
  EXPECT_EQ(r.segment.header().skipped_bytes.read(), 64u);
}

// `stat`'s producers are those alive: a producer killed keeps its slot
// taken (its pid stays until another producer needs the slot), and the
// count of taken slots climbed with every producer a host ever restarted.
TEST(Ring, LiveProducersLeaveOutAKilledProducersSlot) {
  TestRing r(4096);
  ring::Producer here(r.segment);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ring::Producer p(r.segment);
    (void)!::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  char byte;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  ::close(ready[1]);
  EXPECT_EQ(ring::live_producers(r.segment), 2u);
  ::kill(child, SIGKILL);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  EXPECT_EQ(ring::live_producers(r.segment), 1u);
  std::uint32_t taken = 0;
  for (const auto& slot : r.segment.header().slots) taken += slot.owner_pid.load() != 0 ? 1 : 0;
  EXPECT_EQ(taken, 2u) << "its slot is still taken";
}

// A consumer that sleeps between polls, as the router does once its ring is
// idle, judges a dead producer's claim on its first poll after a sleep: it
// looked at the clock only every 64th poll, so with 1 ms sleeps every record
// behind the claim waited some 64 ms (the README says a few milliseconds).
TEST(Ring, AConsumerSleepingBetweenPollsJudgesADeadClaimWithinAFewPolls) {
  TestRing r(4096);
  ring::Consumer c(r.segment, ring::ConsumerOptions{std::chrono::minutes(1)});
  const pid_t child = fork_producer_that_dies_holding_a_claim(r);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ring::Producer p(r.segment);
  ASSERT_EQ(put(p, "after"), ring::Status::ok);
  int polls = 0;
  std::vector<std::string> got;
  while (got.empty() && polls < 64) {
    got = take(c);
    ++polls;
    if (got.empty()) c.sleep(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(got, std::vector<std::string>{"after"});
  // The first poll finds the claim, the one after the first sleep judges it.
  EXPECT_LE(polls, 3);
  EXPECT_EQ(r.segment.header().skipped.read(), 1u);
}

TEST(Ring, StalledClaimOfALiveProducerIsSkippedAfterTheTimeout) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment, fast_timeout());
  ring::Claim stalled;
  ASSERT_EQ(p.try_claim(32, stalled), ring::Status::ok);
  ASSERT_EQ(put(p, "behind it"), ring::Status::ok);
  EXPECT_TRUE(take(c).empty());
  EXPECT_EQ(take_within(c, 2000), (std::vector<std::string>{"behind it"}));
  EXPECT_EQ(r.segment.header().skipped.read(), 1u);
}

// A producer in a PID namespace of its own (a container sharing only
// /dev/shm, with its own /proc) writes a pid that names another process, or
// none, in the router's. Its slot lock tells the consumer it lives: a claim
// it holds is waited for (here 300 ms), not skipped as a dead producer's.
TEST(Ring, AClaimOfALiveProducerInAnotherPidNamespaceIsWaitedFor) {
  TestRing r(4096);
  ring::Consumer c(r.segment);  // the 2 s default timeout
  int claimed[2];  // the inner producer says it holds its claim
  ASSERT_EQ(::pipe2(claimed, O_CLOEXEC), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(claimed[0]);
    // A user namespace of its own lets it run without root; where those are
    // refused, root can do without one; else there is no namespace to be had.
    const uid_t uid = ::geteuid();
    const gid_t gid = ::getegid();
    if (::unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS) == 0) {
      // Ourselves as ourselves, so the ring's file is still ours to open.
      auto write_file = [](const char* path, const std::string& text) {
        const int fd = ::open(path, O_WRONLY);
        const bool written = fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
        if (fd >= 0) ::close(fd);
        return written;
      };
      write_file("/proc/self/setgroups", "deny");  // needed before gid_map without root; refused with it
      if (!write_file("/proc/self/uid_map", std::to_string(uid) + " " + std::to_string(uid) + " 1") ||
          !write_file("/proc/self/gid_map", std::to_string(gid) + " " + std::to_string(gid) + " 1")) {
        ::_exit(77);
      }
    } else if (::unshare(CLONE_NEWPID | CLONE_NEWNS) != 0) {
      ::_exit(77);
    }
    const pid_t inner = ::fork();  // pid 1 of the new namespace
    if (inner == 0) {
      // Its own /proc, as a container has: its start time is its own.
      if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
          ::mount("proc", "/proc", "proc", 0, nullptr) != 0) {
        ::_exit(77);
      }
      ring::Producer p(r.segment);
      ring::Claim claim;
      if (::getpid() != 1 || p.try_claim(64, claim) != ring::Status::ok) ::_exit(1);
      char byte = 1;
      (void)!::write(claimed[1], &byte, 1);
      // Long enough for the consumer to judge it many times; short of the
      // 2 s timeout.
      std::this_thread::sleep_for(std::chrono::milliseconds(800));
      const std::string text = "from another namespace";
      std::memcpy(claim.first + ring::kRecordHeaderBytes, text.data(), text.size());
      p.commit_one(claim, static_cast<std::uint32_t>(ring::kRecordHeaderBytes + text.size()));
      ::_exit(0);
    }
    ::close(claimed[1]);  // the inner one's end of file, if it dies unheard
    int status = 0;
    ::waitpid(inner, &status, 0);
    ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 2);
  }
  ::close(claimed[1]);
  char byte = 0;
  const bool claimed_it = ::read(claimed[0], &byte, 1) == 1;
  ::close(claimed[0]);
  // While the claim is held, the consumer judges it (a stall) and waits.
  bool judged = false, delivered_early = false;
  const auto judging = std::chrono::steady_clock::now() + std::chrono::milliseconds(400);
  while (claimed_it && std::chrono::steady_clock::now() < judging) {
    delivered_early |= !take(c).empty();
    judged |= c.stalled();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const std::vector<std::string> got = claimed_it ? take_within(c, 1500) : std::vector<std::string>{};
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "no PID namespace to be had";
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(judged);
  EXPECT_FALSE(delivered_early);
  EXPECT_EQ(got, (std::vector<std::string>{"from another namespace"}));
  EXPECT_EQ(r.segment.header().skipped.read(), 0u);
}

// A child fork() made shares its parent's descriptors, the one holding the
// slot lock among them: it closes its copy, or a producer that died would
// look alive (by its lock) for as long as its child lives, and its claim
// would be skipped only on the timeout.
TEST(Ring, AChildOfAProducerDoesNotKeepItsSlotAliveAfterItDies) {
  TestRing r(4096);
  ring::Consumer c(r.segment);  // the 2 s default timeout
  int forked[2], hold[2];  // the grandchild says it runs; it lives until `hold` closes
  ASSERT_EQ(::pipe2(forked, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(hold, O_CLOEXEC), 0);
  const pid_t producer = ::fork();
  if (producer == 0) {
    ::close(hold[1]);
    ring::Producer p(r.segment);
    ring::Claim claim;
    if (p.try_claim(64, claim) != ring::Status::ok) ::_exit(1);
    const pid_t grandchild = ::fork();
    if (grandchild == 0) {  // outlives its parent
      const int null = ::open("/dev/null", O_WRONLY);  // not the test's output: nothing waits on it
      ::dup2(null, STDOUT_FILENO);
      ::dup2(null, STDERR_FILENO);
      char byte = 1;
      (void)!::write(forked[1], &byte, 1);  // the fork handlers have run
      (void)!::read(hold[0], &byte, 1);
      ::_exit(0);
    }
    ::close(forked[1]);  // a grandchild that died unheard is an end of file, not a wait
    if (grandchild < 0) ::_exit(1);
    char byte = 0;
    if (::read(forked[0], &byte, 1) != 1) ::_exit(1);
    ::_exit(0);  // dies holding the claim
  }
  ::close(forked[1]);
  ::close(hold[0]);
  struct Release {
    int fd;
    ~Release() { ::close(fd); }
  } release_grandchild{hold[1]};
  ::close(forked[0]);
  ASSERT_NO_FATAL_FAILURE(expect_dead_claim_skipped(r, c, producer, 1000));
}

// The consumer reads a claim's header, finds it uncommitted, and judges
// its owner a moment later. An owner that committed and closed its handle
// (or exited) in between was judged dead, and its committed record skipped
// as a dead claim: lost.
//
// A producer held in a hook while the consumer judges its claim:
// `held_state` 1 it waits in the hook, 2 it may go on, 3 it is done.
std::atomic<int> held_state{0};
std::atomic<bool> owner_judged{false};  // the consumer's hook ran: the race was run
void hold_the_producer() {
  held_state.store(1);
  while (held_state.load() != 2) std::this_thread::yield();
}
void let_the_producer_finish() {
  owner_judged.store(true);
  held_state.store(2);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (held_state.load() != 3 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
}

// Runs `produce` on a thread that `set_hook` holds at its hook (waited for
// up to 2 s); `held_state` is 3 once `produce` has returned.
template <class Produce>
std::thread start_held_producer(void (*set_hook)(void (*)()), Produce produce) {
  held_state.store(0);
  set_hook(&hold_the_producer);
  std::thread producer([produce] {
    produce();
    held_state.store(3);
  });
  const auto held_by = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (held_state.load() != 1 && std::chrono::steady_clock::now() < held_by) std::this_thread::yield();
  set_hook(nullptr);
  EXPECT_EQ(held_state.load(), 1) << "the producer never reached its hook: the race below is not run";
  return producer;
}

// Polls `c` for up to 2 s, letting the held producer finish as a claim is
// judged, until a record comes or a claim is skipped; then lets it go if
// the judging never came, joins it, and returns what came.
std::vector<std::string> take_while_judging(TestRing& r, ring::Consumer& c, std::thread& producer) {
  owner_judged.store(false);
  ring::testing::set_before_owner_judged_hook(&let_the_producer_finish);
  std::vector<std::string> got;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (got.empty() && r.segment.header().skipped.read() == 0 && std::chrono::steady_clock::now() < until) {
    got = take(c);
    if (got.empty()) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  ring::testing::set_before_owner_judged_hook(nullptr);
  EXPECT_TRUE(owner_judged.load()) << "the consumer never judged the held claim: the race was not run";
  if (held_state.load() != 3) held_state.store(2);
  producer.join();
  if (got.empty()) got = take_within(c, 100);
  return got;
}

// A producer held by `set_hook` puts `text` and closes its handle, let go
// as the consumer judges its claim: the record is read, nothing skipped.
void expect_held_record_read_not_skipped(void (*set_hook)(void (*)()), const ring::ConsumerOptions& options,
                                         const std::string& text) {
  TestRing r(4096);
  ring::Consumer c(r.segment, options);
  std::thread producer = start_held_producer(set_hook, [&] {
    ring::Producer p(r.segment);
    (void)put(p, text);
  });
  EXPECT_EQ(take_while_judging(r, c, producer), (std::vector<std::string>{text}));
  EXPECT_EQ(r.segment.header().skipped.read(), 0u);
}

TEST(Ring, AClaimCommittedAndClosedWhileItsOwnerIsJudgedIsReadNotSkipped) {
  // The 2 s timeout: the owner is judged by its slot, whose pid is 0 once
  // the producer's handle is closed.
  expect_held_record_read_not_skipped(&ring::testing::set_after_claim_hook, ring::ConsumerOptions{}, "committed");
}

TEST(Ring, ClaimWhoseHeaderNeverCameIsSkippedToTheNextRecord) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment, fast_timeout());
  // A producer that died between its CAS on tail and its header store.
  r.segment.header().tail.fetch_add(48);
  ASSERT_EQ(put(p, "next"), ring::Status::ok);
  EXPECT_EQ(take_within(c, 2000), (std::vector<std::string>{"next"}));
  EXPECT_EQ(r.segment.header().skipped_bytes.read(), 48u);
}

// Stepping over the zeroes of a claim whose producer died before its
// header store must stop where a live producer's claim begins, though that
// one has no header yet either: its owner is between its CAS and its header
// store. Stepping over it too lost its record when it came.
std::atomic<int> unheaded_state{0};  // 1: a producer waits in the hook; 2: let it go
void wait_without_header() {
  unheaded_state.store(1);
  while (unheaded_state.load() != 2) std::this_thread::yield();
}

// A dead claim of 48 bytes, then a live producer's claim held between its
// CAS and its header store: the skip must take the 48 bytes only, and the
// live record come out once its header is written. `stall_first`: the
// consumer's stall begins timing before the live claim is made;
// `forget_claim_starts`: the slots keep no claim start to stop at.
void skip_a_dead_claim_before_a_live_one(bool stall_first, bool forget_claim_starts) {
  TestRing r(4096);
  ring::Consumer c(r.segment, fast_timeout());
  // A producer that died between its CAS on tail and its header store.
  r.segment.header().tail.fetch_add(48);
  if (stall_first) {
    for (int i = 0; i < 1000; ++i) EXPECT_TRUE(take(c).empty());
  }
  unheaded_state.store(0);
  ring::testing::set_unheaded_claim_hook(&wait_without_header);
  std::thread live([&] {
    ring::Producer p(r.segment);
    (void)put(p, "live");
  });
  const auto hooked_by = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (unheaded_state.load() != 1 && std::chrono::steady_clock::now() < hooked_by) std::this_thread::yield();
  ring::testing::set_unheaded_claim_hook(nullptr);
  if (unheaded_state.load() != 1) {
    live.join();
    FAIL() << "the producer never stopped between its CAS and its header store";
  }
  if (forget_claim_starts) {
    for (auto& slot : r.segment.header().slots) slot.claim_start.store(0);
    r.segment.header().overflow_slot.claim_start.store(0);
  }
  // Poll until the dead claim is skipped; the live one must still be ahead.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (r.segment.header().skipped.read() == 0 && std::chrono::steady_clock::now() < until) {
    EXPECT_TRUE(take(c).empty());
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  EXPECT_EQ(r.segment.header().skipped_bytes.read(), 48u);
  unheaded_state.store(2);
  live.join();
  EXPECT_EQ(take(c), (std::vector<std::string>{"live"}));
}

namespace {

// Whether this process has `at`'s page mapped (/proc/self/pagemap's
// "present" bit), so a write there takes no page fault.
bool page_present(const void* at) {
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::uint64_t entry = 0;
  const off_t offset = static_cast<off_t>(reinterpret_cast<std::uintptr_t>(at) / 4096 * sizeof entry);
  const bool read = ::pread(fd, &entry, sizeof entry, offset) == static_cast<ssize_t>(sizeof entry);
  ::close(fd);
  return read && (entry >> 63) != 0;
}

std::atomic<const std::byte*> claim_header_at{nullptr};
std::atomic<int> claims_on_absent_pages{0};
void count_claim_on_absent_page() {
  if (!page_present(claim_header_at.load())) claims_on_absent_pages.fetch_add(1);
}

}  // namespace

// A producer killed between its CAS and its claim's header store leaves a
// claim that stalls the ring for dead_claim_timeout_ms. The first write to
// each page of the ring, a page fault (microseconds in the kernel), fell
// in that window all through the first lap. The page is now written
// before the CAS.
TEST(Ring, AClaimsHeaderPageIsMappedBeforeTheClaim) {
#if defined(__SANITIZE_THREAD__) || defined(RINGROUTE_TSAN)
  GTEST_SKIP() << "a TSan build does not touch pages (ring.cpp: touch_page)";
#endif
  constexpr std::uint64_t kCapacity = 1 << 20;
  TestRing r(kCapacity);
  ring::Consumer c(r.segment);
  // A mapping of its own, as a producer process has: the creator's wrote
  // every page. Its reads of the header map the first pages around it.
  ring::Segment attached;
  std::string why;
  ASSERT_EQ(ring::Segment::attach(r.name, attached, &why), ring::Status::ok) << why;
  ring::Producer p(attached);
  ASSERT_FALSE(page_present(attached.data() + kCapacity / 2)) << "the ring's pages are mapped already: nothing to test";
  claims_on_absent_pages.store(0);
  ring::testing::set_unheaded_claim_hook(&count_claim_on_absent_page);
  // 1 KiB claims through a lap and some: a new page every fourth, and the
  // lap's end, where the claim goes to the start after a padding.
  constexpr int kLap = static_cast<int>(kCapacity / 1024);
  std::uint64_t position = 0;
  for (int i = 0; i < kLap + 64; ++i) {
    const std::uint32_t bytes = i == kLap - 1 ? 1016 : 1024;
    claim_header_at.store(attached.data() + (position & (kCapacity - 1)));
    ring::Claim claim;
    ASSERT_EQ(p.try_claim(bytes, claim), ring::Status::ok) << i;
    std::memset(claim.first + 8, 'x', bytes - 8);
    p.commit_one(claim, bytes);
    position = claim.position + bytes;
    (void)take(c);
  }
  ring::testing::set_unheaded_claim_hook(nullptr);
  EXPECT_EQ(claims_on_absent_pages.load(), 0);
  EXPECT_TRUE(p.every_page_touched());
}

// Claims that cover several pages (a batch) leave pages that no header
// ever starts on: those are touched too, or the producer would look for
// untouched pages at every claim for good.
TEST(Ring, ALapOfClaimsLongerThanAPageTouchesEveryPage) {
  constexpr std::uint64_t kCapacity = 1 << 20;
  // Of one size, so every lap ends alike: 40 and 100 KiB leave a padding
  // of several pages, which a lap's claims never start on.
  for (const std::uint32_t bytes : {3u * 4096, 40u * 1024, 100u * 1024}) {
    TestRing r(kCapacity);
    ring::Consumer c(r.segment);
    ring::Producer p(r.segment);
    EXPECT_FALSE(p.every_page_touched());
    for (std::uint64_t written = 0; written < 4 * kCapacity; written += bytes) {
      ring::Claim claim;
      ASSERT_EQ(p.try_claim(bytes, claim), ring::Status::ok);
      p.commit_one(claim, bytes);
      (void)take(c);
    }
    EXPECT_TRUE(p.every_page_touched()) << bytes;
  }
}

namespace {

ring::Producer* prefaulted_between = nullptr;
void prefault_once() {
  if (ring::Producer* p = std::exchange(prefaulted_between, nullptr)) p->prefault();
}

}  // namespace

// prefault() on one thread while a claim on another, sharing the handle,
// had marked a page touched and not yet counted it: the count was set to
// 0 under the claim, which then took it below 0 (a wrap), and the handle
// looked for untouched pages at every claim for good. Review found it in
// 4 of 400 tries; the hook puts the prefault exactly there.
TEST(Ring, APrefaultBesideAClaimTouchingAPageLeavesEveryPageTouched) {
  TestRing r(1 << 20);
  ring::Consumer c(r.segment);
  ring::Producer p(r.segment);
  prefaulted_between = &p;
  ring::testing::set_page_marked_hook(&prefault_once);
  ring::Claim claim;
  ASSERT_EQ(p.try_claim(4096, claim), ring::Status::ok);
  ring::testing::set_page_marked_hook(nullptr);
  p.commit_one(claim, 4096);
  EXPECT_EQ(prefaulted_between, nullptr) << "the hook never ran";
  EXPECT_TRUE(p.every_page_touched());
}

TEST(Ring, SkippingAClaimWhoseHeaderNeverCameStopsAtALiveClaimStillWithoutOne) {
  skip_a_dead_claim_before_a_live_one(false, false);
}

// As above, with the live claim's start gone from its slot: threads sharing
// a handle, and producers sharing the overflow slot, overwrite each other's
// claim_start. A claim made after the stall began is never skipped, start
// or no start.
TEST(Ring, SkippingAClaimWhoseHeaderNeverCameStopsWhereTheStallBeganWithoutAClaimStart) {
  skip_a_dead_claim_before_a_live_one(true, true);
}

TEST(Ring, BrokenFramingIsCountedAsCorruptAndReadingGoesOn) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  // The second header's length runs past the ring's end.
  ASSERT_NO_FATAL_FAILURE(put_good_then_broken_header(p, r, 1 << 20));
  EXPECT_EQ(take(c), (std::vector<std::string>{"good"}));
  EXPECT_EQ(r.segment.header().corrupt.read(), 1u);
  ASSERT_EQ(put(p, "later"), ring::Status::ok);
  EXPECT_EQ(take(c), (std::vector<std::string>{"later"}));
}

// A tail off a record's boundary (anything that can write the ring can put
// it there) is a corrupt ring to a producer: at the lap's last byte its
// padding header was stored past the mapping's end, and the producer died
// of SIGSEGV. Every claim path goes through the same loop: try_claim and
// the waiting claim both.
TEST(Ring, ATailOffARecordBoundaryIsCorruptToAProducerNotACrash) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  auto& header = r.segment.header();
  // An empty ring near its lap's end (head where tail would be), so the
  // claim has room and goes as far as its padding.
  header.head.store(4032);
  header.head_cache.store(4032);
  for (const std::uint64_t odd : {std::uint64_t{63}, std::uint64_t{60}, std::uint64_t{13}}) {
    header.tail.store(4032 + odd);
    ring::Claim claim;
    EXPECT_EQ(p.try_claim(64, claim), ring::Status::corrupt) << odd;
    EXPECT_EQ(p.claim(64, claim, std::chrono::milliseconds(10)), ring::Status::corrupt) << odd;
    EXPECT_EQ(header.tail.load(), 4032 + odd) << "a refused claim moves nothing";
  }
}

// The consumer that meets a corrupt header jumps to the producers' tail as
// it is then. One restarted before the header is released meets it again,
// and used to jump to the tail as it was by then: what was committed in
// between was skipped, lost. It now takes the same jump, and counts the
// corruption once.
// The jump is taken before the header is read: one that ran past the tail
// then (64 bytes here) may lie within it by the restart, and was read as a
// record over what came after it.
TEST(Ring, ARestartedConsumerTakesTheJumpOverACorruptHeaderThatTheOneBeforeTook) {
  for (const std::int32_t length : {1 << 20, 64}) {
    SCOPED_TRACE(length);
    TestRing r(4096);
    ring::Producer p(r.segment);
    ASSERT_NO_FATAL_FAILURE(put_good_then_broken_header(p, r, length));
    {
      ring::Consumer c(r.segment);
      EXPECT_EQ(take(c, 1000, /*release=*/false), (std::vector<std::string>{"good"}));
      ASSERT_EQ(put(p, "after the jump"), ring::Status::ok);
      EXPECT_EQ(take(c, 1000, /*release=*/false), (std::vector<std::string>{"after the jump"}));
    }  // stopped (or crashed) before releasing anything
    ASSERT_EQ(put(p, "while none ran"), ring::Status::ok);
    ring::Consumer again(r.segment);
    EXPECT_EQ(take(again), (std::vector<std::string>{"good", "after the jump", "while none ran"}));
    EXPECT_EQ(r.segment.header().corrupt.read(), 1u);
    // Released past the header now: nothing is jumped again.
    ASSERT_EQ(put(p, "last"), ring::Status::ok);
    EXPECT_EQ(take(again), (std::vector<std::string>{"last"}));
  }
}

// A tail written by something other than the library can be laps ahead:
// skipping to it would have release() zero past the end of the mapping.
// The skip stops a lap past what is released.
TEST(Ring, ABrokenHeaderWithATailLapsAheadSkipsAtMostALap) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  ASSERT_EQ(put(p, "good"), ring::Status::ok);
  ring::detail::header_word(r.segment.data() + 16).store(ring::pack_record_header(4, 0));
  r.segment.header().tail.store(r.segment.header().tail.load() + 10 * 4096);
  EXPECT_EQ(take(c), (std::vector<std::string>{"good"}));
  EXPECT_EQ(r.segment.header().corrupt.read(), 1u);
  // A lap past what was released when the header was found (nothing yet).
  EXPECT_EQ(c.read_position(), 4096u);
  EXPECT_EQ(c.released_position(), 4096u);
}

// The tail a broken header sends the read to is written by producers, and
// may be anything: one off a record boundary had the next header read
// across the end of the data (an 8-byte load at 4093 of 4096).
TEST(Ring, ABrokenHeaderWithATailOffARecordBoundaryResumesOnOne) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  ASSERT_EQ(put(p, "good"), ring::Status::ok);
  ring::detail::header_word(r.segment.data() + 16).store(ring::pack_record_header(4, 0));
  r.segment.header().tail.store(4093);
  EXPECT_EQ(take(c), (std::vector<std::string>{"good"}));
  EXPECT_EQ(r.segment.header().corrupt.read(), 1u);
  EXPECT_EQ(c.read_position() % ring::kRecordAlignment, 0u) << c.read_position();
  EXPECT_LE(c.read_position(), 4093u);
}

// A record that would carry the read more than a lap past what is released
// was not written by the library (producers claim no further): taken, its
// release was refused as more than a lap, and the ring stalled for good
// without a word.
TEST(Ring, ARecordReachingMoreThanALapPastTheReleaseIsCorrupt) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  const std::string payload(248, 'x');  // 256-byte records
  for (int i = 0; i < 8; ++i) ASSERT_EQ(put(p, payload), ring::Status::ok);
  ASSERT_EQ(take(c).size(), 8u);
  ASSERT_EQ(c.released_position(), 2048u);
  for (int i = 0; i < 8; ++i) ASSERT_EQ(put(p, payload), ring::Status::ok);
  // At the next lap's start, a record of nearly a lap: it would end at
  // 4096 + 4088, more than a lap past 2048.
  ring::detail::header_word(r.segment.data()).store(ring::pack_record_header(4088, 0));
  r.segment.header().tail.store(4096 + 2 * 4096);
  EXPECT_EQ(take(c).size(), 8u);
  EXPECT_EQ(r.segment.header().corrupt.read(), 1u);
  EXPECT_EQ(c.released_position(), c.read_position()) << "the release was refused: the ring is stuck";
  EXPECT_LE(c.read_position(), 2048u + 4096u);
}

// A broken header at the producers' tail leaves nowhere to skip to: it is
// counted (and logged) once, sleep() waits on it instead of returning at
// once (the router spun, logging every poll), and the producer that claims
// there next is read.
TEST(Ring, ABrokenHeaderAtTheTailIsCountedOnceAndSleptOn) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  ASSERT_EQ(put(p, "good"), ring::Status::ok);
  ring::detail::header_word(r.segment.data() + 16).store(ring::pack_record_header(24, 0));
  EXPECT_EQ(take(c), (std::vector<std::string>{"good"}));
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(take(c).empty());
  EXPECT_EQ(r.segment.header().corrupt.read(), 1u);
  const auto start = std::chrono::steady_clock::now();
  c.sleep(std::chrono::milliseconds(50));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(45));
  ASSERT_EQ(put(p, "later"), ring::Status::ok);
  EXPECT_EQ(take(c), (std::vector<std::string>{"later"}));
}

// A record whose length runs past what producers claimed (inside the lap,
// so the lap-end check passes) was not written by the library: taken, it
// would carry the read, then the release, past the producers' tail.
TEST(Ring, ARecordLongerThanWhatWasClaimedIsCorruptNotRead) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  ASSERT_NO_FATAL_FAILURE(put_good_then_broken_header(p, r, 1024));
  EXPECT_EQ(take(c), (std::vector<std::string>{"good"}));
  EXPECT_EQ(r.segment.header().corrupt.read(), 1u);
  EXPECT_EQ(c.read_position(), r.segment.header().tail.load());
  ASSERT_EQ(put(p, "later"), ring::Status::ok);
  EXPECT_EQ(take(c), (std::vector<std::string>{"later"}));
}

// With every record read and none released (a router whose sinks are
// stuck), the word at the read position is the consumer's own oldest
// record: sleep() must wait, not return at once (the router then spun).
TEST(Ring, AConsumerFullOfItsOwnUnreleasedRecordsSleeps) {
  TestRing r(1024);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  while (put(p, "exactly-24-bytes-payload") == ring::Status::ok) {  // 32-byte records fill it exactly
  }
  ASSERT_EQ(take(c, 1000, /*release=*/false).size(), 1024u / 32);
  ASSERT_EQ(c.read_position() - c.released_position(), 1024u);
  const auto start = std::chrono::steady_clock::now();
  c.sleep(std::chrono::milliseconds(50));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(45));
}

// A producer handle belongs to the process that opened it. A copy fork()
// made must not write (its claims would carry the parent's slot, so the
// consumer would judge them by the parent's life), nor give the slot back.
TEST(Ring, AProducerCopiedByForkDoesNotGiveBackItsParentsSlot) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  EXPECT_FALSE(p.forked());
  const std::int32_t owner = r.segment.header().slots[0].owner_pid.load();
  ASSERT_EQ(owner, ::getpid());
  const pid_t child = ::fork();
  if (child == 0) {
    // The child's copy knows it is one; destroying it leaves the slot be.
    const bool forked = p.forked();
    p.~Producer();
    new (&p) ring::Producer(r.segment);  // the child's own: another slot
    const bool own_slot = !p.forked() && r.segment.header().slots[0].owner_pid.load() == getppid();
    ::_exit(forked && own_slot ? 0 : 1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(r.segment.header().slots[0].owner_pid.load(), owner);
  EXPECT_EQ(put(p, "parent"), ring::Status::ok);
}

// A child made without the fork handlers (a raw fork or clone system call,
// as some runtimes make them) does not know its copy is one. Destroying
// that copy gave the parent's slot back while the parent lived on, and the
// consumer then took the parent's claims for a dead producer's.
TEST(Ring, AProducerCopiedByARawForkDoesNotGiveBackItsParentsSlot) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  const std::int32_t owner = r.segment.header().slots[0].owner_pid.load();
  ASSERT_EQ(owner, ::getpid());
  const long child = ::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);  // fork's flags, without its handlers (SYS_fork is not on every architecture)
  ASSERT_GE(child, 0);
  if (child == 0) {
    p.~Producer();
    ::_exit(r.segment.header().slots[0].owner_pid.load() == getppid() ? 0 : 1);
  }
  int status = 0;
  ::waitpid(static_cast<pid_t>(child), &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(r.segment.header().slots[0].owner_pid.load(), owner);
  EXPECT_EQ(put(p, "parent"), ring::Status::ok);
}

// Without /proc (a sandbox that has none) a producer still gets a slot
// lock of its own, from the segment opened again by name: without one, a
// producer whose pid the consumer cannot see was judged by that pid alone,
// taken for dead, and its claims skipped.
TEST(Ring, AProducerWithoutProcStillHoldsItsSlotLock) {
  TestRing r(4096);
  const int status = ringroute::testing::run_in_private_mounts([&] {
    if (::mount("none", "/proc", "tmpfs", 0, nullptr) != 0) return ringroute::testing::kNoPrivateMounts;
    if (::access("/proc/self", F_OK) == 0) return 3;
    ring::Producer p(r.segment);
    const ring::ProducerSlot& slot = r.segment.header().slots[0];
    return slot.owner_pid.load() == ::getpid() && slot.locked_by.load() == ::getpid() ? 0 : 1;
  });
  if (status == ringroute::testing::kNoPrivateMounts) GTEST_SKIP() << "no mount namespace to hide /proc in here";
  EXPECT_EQ(status, 0);
}

// A producer killed while it waited for room leaves the shared count of
// waiters up for good; the consumer then made a FUTEX_WAKE call at every
// release. After a wake that finds nobody it waits a millisecond.
TEST(Ring, AWaiterThatDiedCostsTheConsumerAWakeAMillisecondNotOneARelease) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  r.segment.header().producers_waiting.store(1);  // as a waiter killed in its sleep leaves it
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(put(p, "x"), ring::Status::ok);
    ASSERT_EQ(take(c).size(), 1u);
  }
  const auto elapsed_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  // The first few futile wakes in a row go out at once (see the next test).
  EXPECT_LE(c.space_wake_calls(), static_cast<std::uint64_t>(elapsed_ms) + 6) << elapsed_ms << " ms";
}

// A wake finds nobody also when the waiter has counted itself but not yet
// reached its futex call. That alone must not hold back the next wakes: a
// second producer going to sleep just then would wait for its own timeout.
TEST(Ring, OneWakeThatFoundNobodyDoesNotHoldBackTheNext) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  r.segment.header().producers_waiting.store(1);  // counted, not asleep yet
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(put(p, "x"), ring::Status::ok);
    ASSERT_EQ(take(c).size(), 1u);
  }
  EXPECT_EQ(c.space_wake_calls(), 2u);
}

TEST(Ring, ProducerWaitsForRoomWithinItsTimeout) {
  TestRing r(1024);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  while (put(p, "filler-filler-filler") == ring::Status::ok) {
  }
  std::thread releaser([&] {
    // Once the producer waits (a loaded machine may start its claim late).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (r.segment.header().producers_waiting.load() == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    take(c);
  });
  ring::Claim claim;
  EXPECT_EQ(p.claim(32, claim, std::chrono::seconds(2)), ring::Status::ok);
  p.commit_one(claim, 32);
  releaser.join();
  EXPECT_EQ(p.claim(1024 / 8, claim, std::chrono::milliseconds(0)), ring::Status::ok);
  // Woken by the release, not only by its own 10 ms re-check (which alone
  // would pass the claim above all the same): the release found it waiting.
  EXPECT_GE(c.space_wake_calls(), 1u);
}

TEST(Ring, ProducerWaitGivesUpAfterItsTimeout) {
  TestRing r(1024);
  ring::Producer p(r.segment);
  while (put(p, "filler-filler-filler") == ring::Status::ok) {
  }
  ring::Claim claim;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(p.claim(32, claim, std::chrono::milliseconds(30)), ring::Status::full);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(30));
}

TEST(Ring, SleepingConsumerIsWokenByACommit) {
  TestRing r(1024);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  std::thread producer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    (void)put(p, "wake");
  });
  const auto start = std::chrono::steady_clock::now();
  c.sleep(std::chrono::seconds(2));
  // Woken well before the 2 s timeout (generous bound for a loaded VM).
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1500));
  producer.join();
  EXPECT_EQ(take(c), (std::vector<std::string>{"wake"}));
}

TEST(Ring, StaleHeadCacheMoreThanALapBehindNeverOverwrites) {
  TestRing r(1024);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  // Three laps with the consumer keeping up, so producers never look at head
  // and their cached copy stays at 0.
  for (int i = 0; i < 3 * 1024 / 32; ++i) {
    ASSERT_EQ(put(p, "lap-filler-lap-filler-x"), ring::Status::ok);
    take(c);
  }
  r.segment.header().head_cache.store(0);
  // Now fill without consuming: exactly one lap fits, then full.
  int accepted = 0;
  while (accepted < 1000 && put(p, "fill-" + std::to_string(accepted) + "-padpadpadpadpad") == ring::Status::ok) {
    ++accepted;
  }
  ASSERT_LE(accepted, 1024 / 32) << "claimed past the consumer";
  const auto got = take(c);
  ASSERT_EQ(got.size(), static_cast<std::size_t>(accepted));
  // Every record is 32 bytes and the tail is at a lap's start: the lap is
  // taken whole (a producer that took the stale cache for "full" took none).
  EXPECT_EQ(accepted, 1024 / 32);
  for (int i = 0; i < accepted; ++i) EXPECT_EQ(got[i], "fill-" + std::to_string(i) + "-padpadpadpadpad");
}

namespace {
ring::Producer* lap_producer = nullptr;
ring::Consumer* lap_consumer = nullptr;
// Drains the ring, puts a record over the lap's end and drains it too: an
// empty ring whose head and tail are a lap past where they were.
void move_the_ring_a_lap_on() {
  ring::testing::set_before_head_reload_hook(nullptr);  // the put below reloads head too
  take(*lap_consumer);
  ASSERT_EQ(put(*lap_producer, std::string(128 - ring::kRecordHeaderBytes, 'o')), ring::Status::ok);
  ASSERT_EQ(take(*lap_consumer).size(), 1u);
}
}  // namespace

TEST(Ring, AClaimWhoseTailWentALapOnMeanwhileIsNotRefusedAsFull) {
  TestRing r(4096);  // records up to 512 bytes
  ring::Producer p(r.segment);
  ring::Producer other(r.segment);
  ring::Consumer c(r.segment);
  // 126 records of 32 bytes: the tail is 64 bytes short of the lap's end.
  for (int i = 0; i < 126; ++i) ASSERT_EQ(put(p, "thirty-two-byte-record-" + std::to_string(i % 10)), ring::Status::ok);
  ASSERT_EQ(r.segment.header().tail.load(), 4032u);
  // p's claim of 256 bytes finds no room by its cached head (0), and while
  // it goes for head the ring moves on: head and tail meet at 4224, index
  // 128. Its tail (4032) is then a lap behind that head; taken together,
  // they said "the record goes to the lap's start, where there are 128
  // bytes": full, of an empty ring.
  lap_producer = &other;
  lap_consumer = &c;
  ring::testing::set_before_head_reload_hook(&move_the_ring_a_lap_on);
  ring::Claim claim;
  const ring::Status s = p.try_claim(256, claim);
  ring::testing::set_before_head_reload_hook(nullptr);
  ASSERT_EQ(r.segment.header().head.load(), 4224u) << "the hook did not run";
  ASSERT_EQ(s, ring::Status::ok);
  EXPECT_EQ(claim.position, 4224u);
  p.commit_one(claim, 256);
  EXPECT_EQ(take(c).size(), 1u);
  EXPECT_EQ(ring::sum_producer_slots(r.segment.header()).full, 0u);
}

// What a router's start does with the ring `name` (of 4096 bytes).
ring::Segment create_or_attach_4096(const std::string& name) {
  ring::SegmentOptions options;
  options.capacity_bytes = 4096;
  options.mode = 0600;
  return ring::Segment::create_or_attach(name, options);
}

// A ring cut to nothing is laid out again on the same file, and a producer
// still attached to it keeps its slot (and the slot's lock), though the new
// header says the slot is free. Its claim was skipped as a dead producer's
// at the first look (about a millisecond), and its commit then landed in
// space given back.
TEST(Ring, AClaimOfAProducerStillAttachedToARingLaidOutAgainIsWaitedFor) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ASSERT_EQ(::truncate(("/dev/shm/" + r.name).c_str(), 0), 0);
  ring::Segment again = create_or_attach_4096(r.name);
  ring::Consumer c(again);
  ring::Claim claim;
  ASSERT_EQ(p.try_claim(16, claim), ring::Status::ok);
  // Enough polls of the stalled claim for its owner to be judged (a clock
  // read every 64), by count: a loaded machine's slow polls must not end
  // the loop before the judging.
  for (int poll = 0; poll < 300; ++poll) {
    EXPECT_TRUE(take(c).empty());
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  EXPECT_EQ(again.header().skipped.read(), 0u) << "a live producer's claim was skipped";
  std::memcpy(claim.first + ring::kRecordHeaderBytes, "late-but-kept", 8);
  p.commit_one(claim, 16);
  EXPECT_EQ(take(c), (std::vector<std::string>{"late-but"}));
}

// A header whose layout version reads 0 is a ring whose creator died before
// finishing, laid out again by the next start. With a router consuming it
// (a stray store, a hostile writer), that wiped the ring under the router.
TEST(Ring, ARingAConsumerHoldsIsNotLaidOutAgainThoughItsVersionReadsZero) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  ASSERT_EQ(put(p, "kept"), ring::Status::ok);
  r.segment.header().layout_version.store(0);
  try {
    (void)create_or_attach_4096(r.name);
    ADD_FAILURE() << "laid out again under its consumer";
  } catch (const ring::RingError& e) {
    EXPECT_EQ(e.status(), ring::Status::busy) << e.what();
  }
  r.segment.header().layout_version.store(ring::kLayoutVersion);
  EXPECT_EQ(take(c), (std::vector<std::string>{"kept"}));
}

// reread() follows poll()'s jumps; it kept the last 8, and a broken header
// older than that was read again: it gave up there, and the rest of the
// range was lost to the backend catching up.
TEST(Ring, RereadFollowsABrokenHeaderJumpWithManySkipsAfterIt) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  std::vector<std::string> polled;
  auto on_record = [&](std::span<const std::byte> payload, std::uint64_t) {
    polled.emplace_back(reinterpret_cast<const char*>(payload.data()), payload.size());
  };
  ASSERT_NO_FATAL_FAILURE(put_good_then_broken_header(p, r, 4));
  c.poll(on_record, 100);
  ASSERT_EQ(r.segment.header().corrupt.read(), 1u);
  for (int i = 0; i < 12; ++i) {
    {
      // A claim given up: its producer closed without committing it.
      ring::Producer gone(r.segment);
      ring::Claim claim;
      ASSERT_EQ(gone.try_claim(16, claim), ring::Status::ok);
    }
    ASSERT_EQ(put(p, "after-" + std::to_string(i)), ring::Status::ok);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    const std::size_t before = polled.size();
    while (polled.size() == before && std::chrono::steady_clock::now() < until) {
      c.poll(on_record, 100);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  ASSERT_EQ(r.segment.header().skipped.read(), 12u);
  ASSERT_EQ(polled.size(), 13u);
  std::vector<std::string> again;
  auto collect = [&](std::span<const std::byte> payload, std::uint64_t) {
    again.emplace_back(reinterpret_cast<const char*>(payload.data()), payload.size());
  };
  EXPECT_EQ(c.reread(c.released_position(), c.read_position(), collect, 100), c.read_position());
  EXPECT_EQ(again, polled);
}

TEST(Ring, RereadGivesBackWhatPollReadAcrossPaddingAndSkippedClaims) {
  TestRing r(1024);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment, fast_timeout());
  // Move near the lap's end so the records below wrap with a padding record.
  for (int i = 0; i < 9; ++i) ASSERT_EQ(put(p, std::string(90, 'x')), ring::Status::ok);
  take(c);
  const std::uint64_t from = c.read_position();
  std::vector<std::string> polled;
  ring::Claim stalled;
  for (int i = 0; i < 6; ++i) {
    if (i == 2) {
      ASSERT_EQ(p.try_claim(32, stalled), ring::Status::ok);  // never committed
    }
    ASSERT_EQ(put(p, "r" + std::to_string(i) + std::string(static_cast<std::size_t>(i) * 11, '.')),
              ring::Status::ok);
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  std::vector<std::uint64_t> ends;
  while (polled.size() < 6 && std::chrono::steady_clock::now() < until) {
    c.poll([&](std::span<const std::byte> payload, std::uint64_t end) {
      polled.emplace_back(reinterpret_cast<const char*>(payload.data()), payload.size());
      ends.push_back(end);
    }, 100);
  }
  ASSERT_EQ(polled.size(), 6u);
  ASSERT_EQ(r.segment.header().skipped.read(), 1u);
  EXPECT_LT(ends.back() & 1023, from & 1023) << "the records should have wrapped";

  // All at once, then in steps of two from where each step ended.
  std::vector<std::string> again;
  std::vector<std::uint64_t> again_ends;
  auto collect = [&](std::span<const std::byte> payload, std::uint64_t end) {
    again.emplace_back(reinterpret_cast<const char*>(payload.data()), payload.size());
    again_ends.push_back(end);
  };
  EXPECT_EQ(c.reread(from, c.read_position(), collect, 100), c.read_position());
  EXPECT_EQ(again, polled);
  EXPECT_EQ(again_ends, ends);
  again.clear();
  again_ends.clear();
  std::uint64_t at = from;
  for (int step = 0; step < 10 && at != c.read_position(); ++step) at = c.reread(at, c.read_position(), collect, 2);
  EXPECT_EQ(at, c.read_position());
  EXPECT_EQ(again, polled);
  // From the middle: the records after that position only.
  again.clear();
  EXPECT_EQ(c.reread(ends[3], c.read_position(), collect, 100), c.read_position());
  EXPECT_EQ(again, (std::vector<std::string>(polled.begin() + 4, polled.end())));
}

// A backend behind rereads what poll() delivered. Where poll() found a
// record longer than what producers claimed and jumped to the tail, the
// reread must jump with it: following that header instead carried it past
// the records after the jump (or into the middle of one).
TEST(Ring, RereadFollowsPollOverBrokenFraming) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment);
  const std::uint64_t from = c.read_position();
  ASSERT_NO_FATAL_FAILURE(put_good_then_broken_header(p, r, 1024));
  EXPECT_EQ(take(c, 1000, /*release=*/false), (std::vector<std::string>{"good"}));
  ASSERT_EQ(r.segment.header().corrupt.read(), 1u);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(put(p, "later-" + std::to_string(i)), ring::Status::ok);
  EXPECT_EQ(take(c, 1000, /*release=*/false), (std::vector<std::string>{"later-0", "later-1", "later-2"}));
  std::vector<std::string> again;
  EXPECT_EQ(c.reread(from, c.read_position(),
                     [&](std::span<const std::byte> payload, std::uint64_t) {
                       again.emplace_back(reinterpret_cast<const char*>(payload.data()), payload.size());
                     },
                     100),
            c.read_position());
  EXPECT_EQ(again, (std::vector<std::string>{"good", "later-0", "later-1", "later-2"}));
}

// A producer stalled between its CAS and its header store past the
// timeout, that writes its record while the consumer decides to step over
// the zeroes: the consumer scanned on from the claim's start for the next
// non-zero word, stopped inside the record's payload, and took it for a
// header.

TEST(Ring, AHeaderThatComesAsAStalledClaimIsJudgedIsReadNotScannedPast) {
  expect_held_record_read_not_skipped(&ring::testing::set_unheaded_claim_hook, fast_timeout(),
                                      "a record long enough that its payload is read as a header");
}

// A header word whose length is 0 but whose other half is not (no library
// writes one; a process that may write the ring can) is stepped over once
// the timeout passes, as a claim without a header is: the re-read before
// the step compared it with zero, and the ring stalled there for good.
TEST(Ring, AHeaderWordOfLengthZeroWithBitsBesideIsSteppedOverAfterTheTimeout) {
  TestRing r(4096);
  ring::Producer p(r.segment);
  ring::Consumer c(r.segment, fast_timeout());
  const std::uint64_t at = r.segment.header().tail.fetch_add(48);
  ring::detail::header_word(r.segment.data() + at).store(ring::pack_record_header(0, 7), std::memory_order_release);
  ASSERT_EQ(put(p, "next"), ring::Status::ok);
  EXPECT_EQ(take_within(c, 2000), (std::vector<std::string>{"next"}));
}
