// The producer library's API in one process: arguments, body checks with
// byte offsets, generated fields, batches, full rings.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "read_events.hpp"
#include "ringroute/producer.hpp"
#include "test_ring.hpp"

using namespace ringroute;
using ringroute::testing::drain;
using ringroute::testing::TestRing;

namespace {

EventProducer open_producer(const std::string& ring, const char* name = "t", std::int64_t wait_ns = 0) {
  EventProducer p;
  rr_producer_options o{};
  o.name = name;
  o.wait_timeout_ns = wait_ns;
  rr_error error{};
  EXPECT_EQ(p.open(ring, &o, &error), RR_OK) << error.message;
  return p;
}

rr_event with_body(std::string_view body) {
  rr_event e{};
  e.body = to_rr_str(body);
  return e;
}

// A ring made under `name` (another router's start, after the first ring
// was removed or renamed away).
ring::Segment ring_made_anew(const std::string& name) {
  ring::SegmentOptions options;
  options.capacity_bytes = 4096;
  options.mode = 0600;
  return ring::Segment::create_or_attach(name, options);
}

}  // namespace

TEST(Producer, MissingRingIsNotReady) {
  EventProducer p;
  rr_error error{};
  EXPECT_EQ(p.open(ringroute::testing::unique_ring_name("none"), nullptr, &error), RR_NOT_READY);
  EXPECT_NE(std::string(error.message).find("does not exist"), std::string::npos) << error.message;
  EXPECT_FALSE(p.is_open());
}

// A ring is a file of /dev/shm by its name: a path or an overlong name is
// the caller's mistake (it was RR_IO_ERROR, shm_open's "Invalid
// argument"), and a file too short to hold a ring's header is no ring (it
// was "still being created" for ever).
TEST(Producer, ARingNameThatIsNoFileNameIsABadArgumentAndAShortFileNoRing) {
  for (const std::string& name : {std::string("a/b"), std::string(".."), std::string("."), std::string(300, 'r')}) {
    EventProducer p;
    rr_error error{};
    EXPECT_EQ(p.open(name, nullptr, &error), RR_BAD_ARGUMENT) << name;
    EXPECT_NE(std::string(error.message).find("a ring name is a file name of /dev/shm"), std::string::npos)
        << error.message;
  }
  {
    // shm_open's own form, a leading '/', names the same ring.
    TestRing r(4096);
    EventProducer slashed;
    EXPECT_EQ(slashed.open("/" + r.name), RR_OK);
  }
  const std::string short_file = ringroute::testing::unique_ring_name("short");
  const int fd = ::shm_open(short_file.c_str(), O_CREAT | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "hello", 5), 5);
  ::close(fd);
  EventProducer p;
  rr_error error{};
  EXPECT_EQ(p.open(short_file, nullptr, &error), RR_CORRUPT);
  EXPECT_NE(std::string(error.message).find("is 5 bytes, short of a ring's header"), std::string::npos)
      << error.message;
  ::shm_unlink(short_file.c_str());
}

TEST(Producer, GeneratedIdsCountUpAcrossBatchesAndDigitCarries) {
  TestRing r(1 << 20);
  ring::Consumer c(r.segment);
  EventProducer p = open_producer(r.name, "seq");
  std::vector<rr_event> events(97);  // windows and batches that end mid-carry
  events[5].id = to_rr_str("mine");  // a caller's id still uses up its number
  std::vector<std::string> ids;
  for (int round = 0; round < 23; ++round) {
    ASSERT_EQ(p.emit_batch(events), RR_OK);
    for (const auto& e : drain(c)) ids.push_back(e.id);
  }
  ASSERT_EQ(ids.size(), 97u * 23u);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    ASSERT_EQ(ids[i], i % 97 == 5 ? std::string("mine") : "seq-" + std::to_string(i)) << i;
  }
}

// A ring whose tail something other than a producer moved off a record's
// boundary: the emit is refused, saying so, and the producer lives (it
// died of SIGSEGV storing a padding header past the ring's end).
TEST(Producer, ATailOffARecordBoundaryIsCorruptAndSaidSo) {
  TestRing r(1 << 16);
  EventProducer p = open_producer(r.name, "odd");
  r.segment.header().tail.store(r.segment.header().head.load() + 13);
  std::vector<rr_event> events(2);
  std::size_t accepted = 99;
  rr_error error{};
  EXPECT_EQ(p.emit_batch(events, 0, &accepted, &error), RR_CORRUPT);
  EXPECT_EQ(accepted, 0u);
  EXPECT_NE(std::string(error.message).find("tail is not on a record boundary"), std::string::npos) << error.message;
}

TEST(Producer, WrongVersionRingIsVersionMismatch) {
  TestRing r(4096);
  r.segment.header().layout_version.store(99);
  EventProducer p;
  EXPECT_EQ(p.open(r.name), RR_VERSION_MISMATCH);
}

TEST(Producer, ZeroedEventGetsDefaultsAndGeneratedFields) {
  TestRing r(1 << 16);
  ring::Consumer c(r.segment);
  EventProducer p = open_producer(r.name, "gen");
  const rr_event e{};
  ASSERT_EQ(p.emit(e), RR_OK);
  ASSERT_EQ(p.emit(e), RR_OK);
  const auto got = drain(c);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].id, "gen-0");
  EXPECT_EQ(got[1].id, "gen-1");
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  EXPECT_EQ(got[0].node, host);
  EXPECT_EQ(got[0].severity, event::Severity::ok);
  EXPECT_EQ(got[0].verbosity, event::Verbosity::info);
  EXPECT_EQ(got[0].body, "{}");
  EXPECT_FALSE(got[0].has_topic);
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  EXPECT_NEAR(static_cast<double>(got[0].timestamp_ns),
              static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count()), 60e9);
}

TEST(Producer, GivenFieldsArriveAsGiven) {
  TestRing r(1 << 16);
  ring::Consumer c(r.segment);
  EventProducer p = open_producer(r.name);
  const rr_str tree[] = {to_rr_str("org-01"), to_rr_str("grp-0102")};
  rr_event e{};
  e.id = to_rr_str("my-id");
  e.account_id = to_rr_str("acct-010203");
  e.app_name = to_rr_str("app007");
  e.node = to_rr_str("n1");
  e.topic = rr_present("");
  e.account_tree = tree;
  e.account_tree_len = 2;
  e.severity = RR_SEVERITY_CRITICAL;
  e.verbosity = RR_VERBOSITY_TRACE;
  e.timestamp_ns = 42;
  e.body = to_rr_str(R"({"x":"é"})");
  ASSERT_EQ(p.emit(e), RR_OK);
  const auto got = drain(c);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, "my-id");
  EXPECT_EQ(got[0].account_id, "acct-010203");
  EXPECT_EQ(got[0].app_name, "app007");
  EXPECT_EQ(got[0].node, "n1");
  EXPECT_TRUE(got[0].has_topic);
  EXPECT_EQ(got[0].topic, "");
  EXPECT_EQ(got[0].account_tree, (std::vector<std::string>{"org-01", "grp-0102"}));
  EXPECT_EQ(got[0].severity, event::Severity::critical);
  EXPECT_EQ(got[0].verbosity, event::Verbosity::trace);
  EXPECT_EQ(got[0].timestamp_ns, 42);
  EXPECT_EQ(got[0].body, R"({"x":"é"})");
}

struct BadBody {
  const char* body;
  std::size_t offset;
};

class ProducerBadBody : public ::testing::TestWithParam<BadBody> {};

TEST_P(ProducerBadBody, IsRefusedWithTheByteOffset) {
  TestRing r(4096);
  EventProducer p = open_producer(r.name);
  rr_error error{};
  EXPECT_EQ(p.emit(with_body(GetParam().body), 0, &error), RR_BAD_ARGUMENT);
  EXPECT_EQ(error.byte_offset, GetParam().offset) << error.message;
  EXPECT_NE(std::string(error.message).find("body: byte " + std::to_string(GetParam().offset)),
            std::string::npos)
      << error.message;
  EXPECT_EQ(ring::sum_producer_slots(r.segment.header()).written, 0u);
}

INSTANTIATE_TEST_SUITE_P(Bodies, ProducerBadBody,
                         ::testing::Values(BadBody{"[1,2]", 0}, BadBody{"  \"str\"", 2}, BadBody{"{\"a\":}", 5},
                                           BadBody{"{\"a\":1,}", 7}, BadBody{"{\"a\":\"\xff\"}", 6},
                                           BadBody{"{\"a\":1} x", 8}, BadBody{"", 0}));

// JSON whitespace around the object (a C producer's body often ends in
// "\n") is not the body's: it was stored, and a sink wrote it into the
// event's line (the newline as a space).
TEST(Producer, WhitespaceAroundABodyIsNotStored) {
  TestRing r(4096);
  ring::Consumer c(r.segment);
  EventProducer p = open_producer(r.name);
  ASSERT_EQ(p.emit(with_body(" \t{\"a\": 1}\r\n")), RR_OK);
  ASSERT_EQ(p.emit(with_body("{\"b\":2}\n"), RR_EMIT_BODY_TRUSTED), RR_OK);
  const auto events = drain(c);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].body, "{\"a\": 1}");
  EXPECT_EQ(events[1].body, "{\"b\":2}");
}

// After the handle's next look at its ring (every 10 ms), emits are
// refused with `said`, the first and every one after.
namespace {

void expect_refused_after_a_look(EventProducer& p, const std::string& said) {
  std::this_thread::sleep_for(std::chrono::milliseconds(15));
  rr_error error{};
  EXPECT_EQ(p.emit(with_body("{}"), 0, &error), RR_NOT_READY);
  EXPECT_NE(std::string(error.message).find(said), std::string::npos) << error.message;
  EXPECT_EQ(p.emit(with_body("{}")), RR_NOT_READY) << "said once, then taken again";
}

}  // namespace

// A ring removed under a handle (a stuck ring cleared by hand, perhaps
// made anew) is read by no router: the handle took event after event with
// RR_OK, into it, until it was full.
TEST(Producer, ARingRemovedUnderAHandleIsSaidWithinTenMilliseconds) {
  TestRing r(4096);
  EventProducer p = open_producer(r.name);
  ASSERT_EQ(p.emit(with_body("{}")), RR_OK);
  ring::Segment::remove(r.name);
  expect_refused_after_a_look(p, "ring " + r.name + " was removed since this handle opened it");
}

// A router lays a ring cut to nothing out again, on the same file. At
// another size_bytes the handle's offsets no longer name its records, and
// a third of the events it took with RR_OK were lost; cut, its next write
// was its death (SIGBUS). Both are refused while they last; a ring made
// anew at the handle's size is written again.
TEST(Producer, ARingCutOrMadeAnewAtAnotherSizeIsRefusedWhileItLasts) {
  TestRing r(4096);
  EventProducer p = open_producer(r.name);
  ASSERT_EQ(p.emit(with_body("{}")), RR_OK);
  const auto cut_to_nothing = [&] {
    const int fd = ::shm_open(("/" + r.name).c_str(), O_RDWR, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 0), 0);
    ::close(fd);
  };
  const auto made_anew = [&](std::uint64_t capacity) {
    ring::SegmentOptions options;
    options.capacity_bytes = capacity;
    options.mode = 0600;
    return ring::Segment::create_or_attach(r.name, options);
  };
  const std::string refused = "ring " + r.name + " is no longer laid out as this handle mapped it";
  cut_to_nothing();
  expect_refused_after_a_look(p, refused);
  {
    const ring::Segment larger = made_anew(8192);
    expect_refused_after_a_look(p, refused);
  }
  cut_to_nothing();
  const ring::Segment same = made_anew(4096);
  std::this_thread::sleep_for(std::chrono::milliseconds(15));
  EXPECT_EQ(p.emit(with_body("{}")), RR_OK);
}

namespace {

// A child that emits into `ring`, cuts the ring's file down to its header
// and emits again; with `guarded`, after rr_guard_truncated_rings(). Exits
// 0 when both emits after the cut are refused as the cut, 1 to 4 at the
// step that went otherwise; the cut itself may kill it.
pid_t fork_producer_that_cuts_its_ring(const std::string& ring_name, bool guarded) {
  const pid_t child = ::fork();
  if (child != 0) return child;
  rr_error error{};
  if (guarded && rr_guard_truncated_rings(&error) != RR_OK) ::_exit(1);
  EventProducer p = open_producer(ring_name);
  if (p.emit(with_body("{}")) != RR_OK) ::_exit(2);
  const int fd = ::shm_open(("/" + ring_name).c_str(), O_RDWR, 0);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(ring::kHeaderBytes)) != 0) ::_exit(3);
  ::close(fd);
  const bool first = p.emit(with_body("{}"), 0, &error) == RR_NOT_READY &&
                     std::string(error.message).find("was cut short while this call wrote into it") != std::string::npos;
  // For good, and said so: not "until it is whole again", which it never
  // is to this handle.
  const bool later = p.emit(with_body("{}"), 0, &error) == RR_NOT_READY &&
                     std::string(error.message).find("whose mapping of it is zeros now: open the ring again") !=
                         std::string::npos;
  ::_exit(first && later ? 0 : 4);
}

}  // namespace

// A ring cut short under a producer killed the producer's process with
// SIGBUS at its next write: a gateway embedding the library died of an
// admin's mistake. Asked for, the library takes the fault and refuses the
// emits instead; unasked, it installs no handler in the host's process.
TEST(Producer, ARingCutShortUnderAGuardedProducerIsRefusedNotItsDeath) {
#if defined(__SANITIZE_THREAD__) || defined(RINGROUTE_TSAN)
  GTEST_SKIP() << "TSan's own SIGBUS handler runs before the guard's";
#endif
  for (const bool guarded : {true, false}) {
    TestRing r(1 << 16);
    const pid_t child = fork_producer_that_cuts_its_ring(r.name, guarded);
    ASSERT_GT(child, 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    if (guarded) {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
    } else {
      // SIGBUS; under ASan, whose handler takes it, a report and an abort
      // (abort_on_error) or exit 1.
      const bool killed = WIFSIGNALED(status) && (WTERMSIG(status) == SIGBUS || WTERMSIG(status) == SIGABRT);
      EXPECT_TRUE(killed || (WIFEXITED(status) && WEXITSTATUS(status) == 1)) << "status " << status;
    }
  }
}

// Renamed away, the ring's file is still linked: the handle looked only at
// the link count and went on taking events with RR_OK into a file no router
// would read, once the next start had made a ring anew under the name.
TEST(Producer, ARingRenamedAwayAndMadeAnewUnderItsNameIsSaid) {
  TestRing r(4096);
  EventProducer p = open_producer(r.name);
  ASSERT_EQ(p.emit(with_body("{}")), RR_OK);
  const std::string moved = r.name + "-moved";
  ASSERT_EQ(::rename(("/dev/shm/" + r.name).c_str(), ("/dev/shm/" + moved).c_str()), 0);
  struct Removed {
    std::string name;
    ~Removed() { ring::Segment::remove(name); }
  } remove_moved{moved};
  const ring::Segment anew = ring_made_anew(r.name);
  std::this_thread::sleep_for(std::chrono::milliseconds(15));
  rr_error error{};
  EXPECT_EQ(p.emit(with_body("{}"), 0, &error), RR_NOT_READY);
  EXPECT_NE(std::string(error.message).find("was removed since this handle opened it"), std::string::npos)
      << error.message;
}

// Removed while its router runs (tmpfiles, logind's RemoveIPC, a hand), a
// ring is still read by that router: emits go on into it. Once that router
// is gone, none reads it.
TEST(Producer, ARingRemovedUnderItsRunningRouterIsEmittedIntoUntilThatRouterIsGone) {
  TestRing r(4096);
  EventProducer p = open_producer(r.name);
  {
    ring::Consumer router(r.segment);
    ring::Segment::remove(r.name);
    std::this_thread::sleep_for(std::chrono::milliseconds(15));
    ASSERT_EQ(p.emit(with_body(R"({"still":"read"})")), RR_OK);
    const auto events = drain(router);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].body, R"({"still":"read"})");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(15));
  EXPECT_EQ(p.emit(with_body("{}")), RR_NOT_READY);
}

// A producer in another PID namespace can't judge the router by its pid
// (here: start ticks that name no process): the router's lock on the ring
// says it reads the ring. Emits were refused RR_NOT_READY while it did.
TEST(Producer, ARouterWhosePidCantBeJudgedIsKnownToReadByItsLock) {
  TestRing r(4096);
  EventProducer p = open_producer(r.name);
  ring::Consumer router(r.segment);
  r.segment.header().consumer_start_ticks.store(1, std::memory_order_relaxed);
  ring::Segment::remove(r.name);
  std::this_thread::sleep_for(std::chrono::milliseconds(15));
  rr_error error{};
  ASSERT_EQ(p.emit(with_body(R"({"still":"read"})"), 0, &error), RR_OK) << error.message;
  EXPECT_EQ(drain(router).size(), 1u);
}

// Another ring under the name: the old one's router has stopped (one per
// instance), whatever its pid says.
TEST(Producer, ARingMadeAnewUnderItsNameIsSaidWhileTheOldOneHasAConsumer) {
  TestRing r(4096);
  EventProducer p = open_producer(r.name);
  ring::Consumer old_router(r.segment);
  ring::Segment::remove(r.name);
  const ring::Segment anew = ring_made_anew(r.name);
  std::this_thread::sleep_for(std::chrono::milliseconds(15));
  rr_error error{};
  EXPECT_EQ(p.emit(with_body("{}"), 0, &error), RR_NOT_READY);
  EXPECT_NE(std::string(error.message).find("another ring may have its name"), std::string::npos) << error.message;
}

TEST(Producer, TrustedBodyIsNotChecked) {
  TestRing r(4096);
  ring::Consumer c(r.segment);
  EventProducer p = open_producer(r.name);
  ASSERT_EQ(p.emit(with_body("not json"), RR_EMIT_BODY_TRUSTED), RR_OK);
  EXPECT_EQ(drain(c).at(0).body, "not json");
}

// A body that could not be checked for want of memory is not a bad body:
// RR_IO_ERROR, as producer.h says, not RR_BAD_ARGUMENT (a good event
// thrown away as malformed). A process with its address space held to what
// it has, plus less than the check of a 4 MiB body takes. Not a fork of
// this one: earlier tests' threads leave address space reserved and
// unused (a glibc arena's 64 MiB), where the check found its memory under
// the limit; the child is this binary run again for this test alone.
TEST(Producer, ABodyThatCouldNotBeCheckedForWantOfMemoryIsAnIoError) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "an address-space limit and a sanitizer's shadow memory do not mix";
#endif
  auto check_under_the_limit = []() -> int {
    TestRing r(64u << 20);
    EventProducer p = open_producer(r.name);
    std::string body = "{\"pad\":\"" + std::string(4u << 20, 'x') + "\"}";
    std::string status;
    {
      std::ifstream in("/proc/self/status");
      for (std::string line; std::getline(in, line);) {
        if (line.rfind("VmSize:", 0) == 0) status = line;
      }
    }
    const unsigned long long kib = std::strtoull(status.c_str() + 7, nullptr, 10);
    rlimit limit{(kib + 16 * 1024) * 1024, RLIM_INFINITY};
    ::setrlimit(RLIMIT_AS, &limit);
    rr_error error{};
    const rr_status s = p.emit(with_body(body), 0, &error);
    limit.rlim_cur = RLIM_INFINITY;  // the ring's removal needs none, but the test's own exit may
    ::setrlimit(RLIMIT_AS, &limit);
    return s == RR_IO_ERROR ? 0 : s == RR_BAD_ARGUMENT ? 3 : s == RR_OK ? 4 : 5;
  };
  const std::string style = GTEST_FLAG_GET(death_test_style);
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // _exit, so nothing of the test framework runs after; the ring is gone by then.
  EXPECT_EXIT(::_exit(check_under_the_limit()), ::testing::ExitedWithCode(0), "");
  GTEST_FLAG_SET(death_test_style, style);
}

TEST(Producer, PrefaultBetweenEmitsChangesNoEventAndNeedsAnOpenProducer) {
  TestRing r(1 << 16);
  ring::Consumer c(r.segment);
  EventProducer p = open_producer(r.name, "pf");
  ASSERT_EQ(p.emit(with_body(R"({"n":1})")), RR_OK);  // committed, not yet read
  ASSERT_EQ(p.prefault(), RR_OK);
  ASSERT_EQ(p.emit(with_body(R"({"n":2})")), RR_OK);
  const auto events = drain(c);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].body, R"({"n":1})");
  EXPECT_EQ(events[1].body, R"({"n":2})");
  EXPECT_EQ(events[1].id, "pf-1");
  EXPECT_EQ(rr_producer_prefault(nullptr), RR_BAD_ARGUMENT);
}

// A pre-fork daemon opens its producer, then forks workers: a worker using
// the parent's handle would write under the parent's slot and ids. It is
// told to open its own; the parent's handle goes on working.
TEST(Producer, AHandleOpenedBeforeForkIsRefusedInTheChild) {
  TestRing r(1 << 16);
  ring::Consumer c(r.segment);
  EventProducer p = open_producer(r.name, "pre");
  const pid_t child = ::fork();
  if (child == 0) {
    rr_error error{};
    const rr_status s = p.emit(with_body("{}"), 0, &error);
    const bool told = s == RR_BAD_ARGUMENT && std::strstr(error.message, "before fork()") != nullptr;
    EventProducer own = open_producer(r.name, "child");
    ::_exit(told && own.emit(with_body(R"({"from":"child"})")) == RR_OK ? 0 : 1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ(p.emit(with_body(R"({"from":"parent"})")), RR_OK);
  const auto events = drain(c);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].body, R"({"from":"child"})");
  EXPECT_EQ(events[1].id, "pre-0");
}

// A program that flushes a last event from an atexit handler (a logger's
// shutdown) emits after exit() has destroyed the main thread's
// thread_local objects. The body check's parsers were such objects: the
// check then parsed with a destroyed parser. A bad body there takes the
// error path's parsers too.
rr_producer* g_exit_producer = nullptr;
int g_exit_status = 0;

void emit_at_exit() {
  rr_event good = with_body(R"({"at":"exit"})");
  rr_event bad = with_body(R"({"at":exit})");
  rr_error error{};
  const bool ok = rr_emit(g_exit_producer, &good, 0, &error) == RR_OK &&
                  rr_emit(g_exit_producer, &bad, 0, &error) == RR_BAD_ARGUMENT &&
                  std::strstr(error.message, "byte 6") != nullptr;
  ::_exit(ok ? g_exit_status : 3);
}

TEST(Producer, AnEmitFromAnAtexitHandlerChecksItsBody) {
  TestRing r(1 << 16);
  ring::Consumer c(r.segment);
  const pid_t child = ::fork();
  if (child == 0) {
    rr_producer_options o{};
    o.name = "exiting";
    rr_error error{};
    if (rr_producer_open(r.name.c_str(), &o, &g_exit_producer, &error) != RR_OK) ::_exit(1);
    rr_event first = with_body(R"({"at":"start"})");
    if (rr_emit(g_exit_producer, &first, 0, &error) != RR_OK) ::_exit(2);
    std::atexit(emit_at_exit);
    std::exit(0);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << WTERMSIG(status);
  ASSERT_EQ(WEXITSTATUS(status), 0);
  const auto events = drain(c);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].body, R"({"at":"start"})");
  EXPECT_EQ(events[1].body, R"({"at":"exit"})");
}

TEST(Producer, BadArgumentsAreNamed) {
  TestRing r(4096);
  {
    // An empty node to stamp events with names no host, as an event's own.
    EventProducer empty_node;
    rr_producer_options o{};
    o.node = "";
    rr_error error{};
    EXPECT_EQ(empty_node.open(r.name, &o, &error), RR_BAD_ARGUMENT);
    EXPECT_NE(std::string(error.message).find("node must be 1 to 65535 bytes"), std::string::npos) << error.message;
  }
  EventProducer p = open_producer(r.name);
  rr_error error{};
  rr_event e{};
  e.account_id = rr_present("");
  EXPECT_EQ(p.emit(e, 0, &error), RR_BAD_ARGUMENT);
  EXPECT_NE(std::string(error.message).find("account_id: empty"), std::string::npos) << error.message;
  e = rr_event{};
  e.id = rr_present("");  // an id that names no event, shared by every event given it
  EXPECT_EQ(p.emit(e, 0, &error), RR_BAD_ARGUMENT);
  EXPECT_NE(std::string(error.message).find("id: empty"), std::string::npos) << error.message;
  e = rr_event{};
  e.node = rr_present("");
  EXPECT_EQ(p.emit(e, 0, &error), RR_BAD_ARGUMENT);
  EXPECT_NE(std::string(error.message).find("node: empty"), std::string::npos) << error.message;
  e = rr_event{};
  const int out_of_range = 9;  // as a C caller could store; a C++ cast would be UB
  std::memcpy(&e.severity, &out_of_range, sizeof out_of_range);
  EXPECT_EQ(p.emit(e, 0, &error), RR_BAD_ARGUMENT);
  EXPECT_NE(std::string(error.message).find("severity"), std::string::npos) << error.message;
  e = rr_event{};
  e.account_tree_len = 1;
  EXPECT_EQ(p.emit(e, 0, &error), RR_BAD_ARGUMENT);
  EXPECT_EQ(p.emit(e, 0x80, &error), RR_BAD_ARGUMENT);
  EXPECT_NE(std::string(error.message).find("unknown flags"), std::string::npos) << error.message;
  // `out` is null after every failure, a missing ring name's too: a caller
  // that closes what it got must not free garbage.
  auto* const garbage = reinterpret_cast<rr_producer*>(std::uintptr_t{1});
  rr_producer* out = garbage;
  EXPECT_EQ(rr_producer_open(nullptr, nullptr, &out, &error), RR_BAD_ARGUMENT);
  EXPECT_EQ(out, nullptr);
  out = garbage;
  EXPECT_EQ(rr_producer_open("", nullptr, &out, &error), RR_BAD_ARGUMENT);
  EXPECT_EQ(out, nullptr);
  EXPECT_STREQ(error.message, "rr_producer_open: the ring name is empty");
}

TEST(Producer, BatchWithOneBadEventWritesNothing) {
  TestRing r(1 << 16);
  ring::Consumer c(r.segment);
  EventProducer p = open_producer(r.name);
  std::vector<rr_event> events(5, with_body("{}"));
  events[3] = with_body("{oops}");
  rr_error error{};
  std::size_t accepted = 99;
  EXPECT_EQ(p.emit_batch(events, 0, &accepted, &error), RR_BAD_ARGUMENT);
  EXPECT_EQ(error.event_index, 3u);
  EXPECT_EQ(accepted, 0u);
  EXPECT_NE(std::string(error.message).find("event 3: body: byte 1"), std::string::npos) << error.message;
  EXPECT_TRUE(drain(c).empty());
}

TEST(Producer, BadFieldInAOneWindowOrALongBatchWritesNothing) {
  TestRing r(1 << 20);
  ring::Consumer c(r.segment);
  EventProducer p = open_producer(r.name);
  const std::string too_long(70000, 'a');
  for (const std::size_t size : {std::size_t{120}, std::size_t{400}}) {
    for (int kind = 0; kind < 3; ++kind) {
      std::vector<rr_event> events(size, with_body("{}"));
      rr_event& bad = events[size - 7];
      if (kind == 0) bad.app_name = rr_present("");
      if (kind == 1) bad.topic = to_rr_str(too_long);
      if (kind == 2) bad.account_tree_len = 2;  // with a NULL tree
      rr_error error{};
      EXPECT_NE(p.emit_batch(events, 0, nullptr, &error), RR_OK) << size << " " << kind;
      EXPECT_EQ(error.event_index, size - 7) << error.message;
      EXPECT_TRUE(drain(c).empty()) << size << " " << kind;
    }
  }
  // Empty optional strings and a tree are fine, in either path.
  const rr_str tree[] = {to_rr_str("root"), to_rr_str("acct")};
  for (const std::size_t size : {std::size_t{3}, std::size_t{300}}) {
    std::vector<rr_event> events(size, with_body("{}"));
    events[1].topic = rr_present("");
    events[1].account_tree = tree;
    events[1].account_tree_len = 2;
    ASSERT_EQ(p.emit_batch(events), RR_OK);
    const auto got = drain(c);
    ASSERT_EQ(got.size(), size);
    EXPECT_TRUE(got[1].has_topic);
    EXPECT_EQ(got[1].topic, "");
    EXPECT_EQ(got[1].account_tree, (std::vector<std::string>{"root", "acct"}));
  }
}

TEST(Producer, LargeBatchIsSplitIntoClaimsAndKeepsOrder) {
  TestRing r(1 << 16);  // max claim 8 KiB
  ring::Consumer c(r.segment);
  EventProducer p = open_producer(r.name, "big");
  std::vector<rr_event> events(500, with_body(R"({"k":1})"));
  std::size_t accepted = 0;
  ASSERT_EQ(p.emit_batch(events, 0, &accepted), RR_OK);
  EXPECT_EQ(accepted, 500u);
  const auto got = drain(c);
  ASSERT_EQ(got.size(), 500u);
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].id, "big-" + std::to_string(i));
}

TEST(Producer, FullRingReturnsFullCountsItAndKeepsWhatWasAccepted) {
  TestRing r(4096);
  ring::Consumer c(r.segment);
  EventProducer p = open_producer(r.name, "f");
  const std::string body = R"({"pad":")" + std::string(100, 'x') + R"("})";
  int accepted = 0;
  rr_status s;
  while ((s = p.emit(with_body(body))) == RR_OK) ++accepted;
  EXPECT_EQ(s, RR_FULL);
  EXPECT_GT(accepted, 10);
  EXPECT_EQ(ring::sum_producer_slots(r.segment.header()).full, 1u);
  const auto got = drain(c);
  ASSERT_EQ(got.size(), static_cast<std::size_t>(accepted));
  for (int i = 0; i < accepted; ++i) {
    EXPECT_EQ(got[i].id, "f-" + std::to_string(i));
    EXPECT_EQ(got[i].body, body);
  }
  EXPECT_EQ(p.emit(with_body(body)), RR_OK);
}

// INT64_MAX, the natural "wait for good", once wrapped the deadline into
// the past: the emit gave up with RR_FULL at once instead of waiting.
TEST(Producer, AWaitForGoodWaitsForRoom) {
  TestRing r(4096);
  ring::Consumer c(r.segment);
  EventProducer filler = open_producer(r.name, "f");
  const std::string body = R"({"pad":")" + std::string(100, 'x') + R"("})";
  while (filler.emit(with_body(body)) == RR_OK) {
  }
  EventProducer waiter = open_producer(r.name, "w", std::numeric_limits<std::int64_t>::max());
  std::atomic<int> status{-1};
  std::thread emitting([&] { status = waiter.emit(with_body(body)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(status.load(), -1) << "gave up without waiting";
  const std::size_t drained = drain(c).size();
  emitting.join();
  EXPECT_EQ(status.load(), RR_OK);
  EXPECT_GT(drained, 10u);
}

// A ring removed while an emit waits for room in it, and read by no router:
// the wait ends with RR_NOT_READY at the next wake, as a new emit would be
// told. It was waited out to the deadline (for good under "wait for good").
TEST(Producer, ARingRemovedWhileAnEmitWaitsForRoomEndsTheWait) {
  TestRing r(4096);
  EventProducer filler = open_producer(r.name, "f");
  const std::string body = R"({"pad":")" + std::string(100, 'x') + R"("})";
  while (filler.emit(with_body(body)) == RR_OK) {
  }
  EventProducer waiter = open_producer(r.name, "w", 2'000'000'000);
  std::atomic<int> status{-1};
  rr_error error{};
  std::thread emitting([&] { status = waiter.emit(with_body(body), 0, &error); });
  // Removed only once the emit waits: removed before it began, the emit is
  // told so at once, which is another message.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (r.segment.header().producers_waiting.load() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(status.load(), -1) << "gave up without waiting";
  ring::Segment::remove(r.name);
  emitting.join();
  EXPECT_EQ(status.load(), RR_NOT_READY);
  EXPECT_NE(std::string(error.message).find("was removed while this emit waited for room"), std::string::npos)
      << error.message;
}

// `wait_timeout_ns` bounds the whole emit: a batch of several claims that
// each found room just in time waited the timeout once per claim.
TEST(Producer, TheWaitTimeoutBoundsTheWholeBatchNotEachClaim) {
  TestRing r(4096);  // max claim 512 bytes: a few events a claim
  ring::Consumer c(r.segment);
  EventProducer filler = open_producer(r.name, "f");
  const std::string body = R"({"pad":")" + std::string(100, 'x') + R"("})";
  while (filler.emit(with_body(body)) == RR_OK) {
  }
  // Room for about one claim every 120 ms, each within the 200 ms timeout.
  std::atomic<bool> done{false};
  std::thread consumer([&] {
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(120));
      c.poll([](std::span<const std::byte>, std::uint64_t) {}, 3);
      c.release(c.read_position());
    }
  });
  EventProducer waiter = open_producer(r.name, "w", 200'000'000);
  const std::vector<rr_event> events(30, with_body(body));
  std::size_t accepted = 0;
  const auto start = std::chrono::steady_clock::now();
  const rr_status status = waiter.emit_batch(events, 0, &accepted);
  const auto took = std::chrono::steady_clock::now() - start;
  done = true;
  consumer.join();
  EXPECT_EQ(status, RR_FULL);
  EXPECT_LT(accepted, events.size());
  EXPECT_LT(took, std::chrono::milliseconds(1000));  // one timeout (200 ms); per claim it took 1.2 s
}

// An error's byte offset is the body's, and only a body error's: a later
// error of another kind in the same rr_error does not keep the old one.
TEST(Producer, AnErrorAfterABodyErrorHasNoByteOffset) {
  TestRing r(4096);
  EventProducer p = open_producer(r.name);
  rr_error error{};
  ASSERT_EQ(p.emit(with_body(R"({"a":tru})"), 0, &error), RR_BAD_ARGUMENT);
  EXPECT_EQ(error.byte_offset, 5u);
  rr_event bad{};
  const int out_of_range = 99;  // as a C caller may store it (a cast to the enum is undefined in C++)
  std::memcpy(&bad.severity, &out_of_range, sizeof out_of_range);
  ASSERT_EQ(p.emit(bad, 0, &error), RR_BAD_ARGUMENT);
  EXPECT_EQ(error.byte_offset, 0u) << error.message;
}

TEST(Producer, EventLargerThanAClaimIsTooBig) {
  TestRing r(4096);  // max claim 512 bytes
  EventProducer p = open_producer(r.name);
  const std::string body = R"({"pad":")" + std::string(600, 'x') + R"("})";
  rr_error error{};
  EXPECT_EQ(p.emit(with_body(body), 0, &error), RR_TOO_BIG);
  EXPECT_NE(std::string(error.message).find("at most 512"), std::string::npos) << error.message;
  // Counted in the producer's slot, as `stat` shows it: the library refuses
  // such an event before claiming, where the ring used to count it.
  const std::string small_body = R"({"pad":")" + std::string(480, 'x') + R"("})";  // fits alone, not with its fields
  rr_event fields = with_body(small_body);
  fields.app_name = rr_present(std::string_view("an-application-name-that-tips-it-over"));
  EXPECT_EQ(p.emit(fields, 0, &error), RR_TOO_BIG);
  EXPECT_EQ(ring::sum_producer_slots(r.segment.header()).too_big, 2u);
}

// A body's size is checked before it is added to the others or parsed: a
// size near SIZE_MAX (a -1 from a failed read) wrapped the record's size into
// a small claim that the copy then overran, and a body too big for the ring
// was parsed whole (and refused as bad JSON, not as too big).
TEST(Producer, ABodyTooBigForTheRingIsRefusedBeforeItIsSizedOrParsed) {
  TestRing r(4096);  // max claim 512 bytes
  ring::Consumer c(r.segment);
  EventProducer p = open_producer(r.name);
  const std::string text = "{}";
  rr_event e{};
  e.body = rr_str{text.data(), static_cast<std::size_t>(-1)};
  rr_error error{};
  EXPECT_EQ(p.emit(e, RR_EMIT_BODY_TRUSTED, &error), RR_TOO_BIG);
  EXPECT_NE(std::string(error.message).find("event 0: body:"), std::string::npos) << error.message;
  const std::string not_json(600, '!');
  EXPECT_EQ(p.emit(with_body(not_json), 0, &error), RR_TOO_BIG);
  EXPECT_NE(std::string(error.message).find("at most 512"), std::string::npos) << error.message;
  EXPECT_TRUE(drain(c).empty());
  EXPECT_EQ(r.segment.header().tail.load(), 0u);
}

// NULL means absent; NULL with a length is a caller's mistake (a failed
// allocation), refused by name rather than sent as an absent field.
TEST(Producer, NullWithALengthIsRefusedNotTakenAsAbsent) {
  TestRing r(4096);
  ring::Consumer c(r.segment);
  EventProducer p = open_producer(r.name);
  rr_error error{};
  rr_event e{};
  e.body = rr_str{nullptr, 500};
  EXPECT_EQ(p.emit(e, 0, &error), RR_BAD_ARGUMENT);
  EXPECT_NE(std::string(error.message).find("body: NULL with length 500"), std::string::npos) << error.message;
  e = rr_event{};
  e.app_name = rr_str{nullptr, 5};
  EXPECT_EQ(p.emit(e, 0, &error), RR_BAD_ARGUMENT);
  EXPECT_NE(std::string(error.message).find("app_name: NULL with length 5"), std::string::npos) << error.message;
  EXPECT_TRUE(drain(c).empty());
}

// The library's per-thread scratch (33 KB) was static TLS, carved out of
// every thread the host process makes, emitting or not: a thread asked for
// with a 32 KiB stack failed to start (EINVAL) once the library was linked.
TEST(Producer, LinkingTheLibraryLeavesSmallStackThreadsAlone) {
  pthread_attr_t attr;
  ASSERT_EQ(::pthread_attr_init(&attr), 0);
  ASSERT_EQ(::pthread_attr_setstacksize(&attr, 32 * 1024), 0);
  pthread_t thread;
  const int started = ::pthread_create(&thread, &attr, [](void*) -> void* { return nullptr; }, nullptr);
  EXPECT_EQ(started, 0) << std::strerror(started);
  if (started == 0) ::pthread_join(thread, nullptr);
  ::pthread_attr_destroy(&attr);
  // And the first emit on a thread still works (its scratch on the heap).
  TestRing ring(1 << 16, "scratch");
  EventProducer producer;
  ASSERT_EQ(producer.open(ring.name), RR_OK);
  rr_event event{};
  std::thread([&] { EXPECT_EQ(producer.emit(event), RR_OK); }).join();
}
