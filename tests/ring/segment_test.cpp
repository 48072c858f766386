// Creating, attaching and refusing segments: the cases a producer or router
// meets before the first record.
#include <fcntl.h>
#include <sys/syscall.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "ringroute/ring/ring.hpp"
#include "ringroute/ring/truncation_guard.hpp"
#include "private_mounts.hpp"
#include "test_ring.hpp"

using namespace ringroute;
using ringroute::testing::TestRing;
using ringroute::testing::unique_ring_name;

namespace {

// Writes `bytes` into a fresh /dev/shm object, bypassing the ring code.
void write_shm(const std::string& name, const void* bytes, std::size_t size) {
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  if (size != 0) {
    ASSERT_EQ(::write(fd, bytes, size), static_cast<ssize_t>(size));
  }
  ::close(fd);
}

// A child process that tries to consume `segment` too: it exits 0 when it
// is refused as busy with its parent's pid named, 1 when it was let in.
pid_t fork_second_consumer(ring::Segment& segment) {
  const pid_t child = ::fork();
  if (child == 0) {
    try {
      ring::Consumer second(segment);
      ::_exit(1);
    } catch (const ring::RingError& e) {
      const bool named = std::string(e.what()).find(std::to_string(::getppid())) != std::string::npos;
      ::_exit(e.status() == ring::Status::busy && named ? 0 : 2);
    }
  }
  return child;
}

}  // namespace

TEST(Segment, MissingSegmentIsNotReadyNotAnError) {
  ring::Segment s;
  std::string why;
  EXPECT_EQ(ring::Segment::attach(unique_ring_name("missing"), s, &why), ring::Status::not_ready);
  EXPECT_NE(why.find("does not exist"), std::string::npos) << why;
}

TEST(Segment, CreatedWithRequestedCapacityAndMode) {
  const std::string name = unique_ring_name("mode");
  ring::SegmentOptions options;
  options.capacity_bytes = 4096;
  options.mode = 0640;
  const mode_t old_umask = ::umask(0077);  // the configured mode must win over umask
  ring::Segment created = ring::Segment::create_or_attach(name, options);
  ::umask(old_umask);
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  ring::Segment attached;
  std::string why;
  ASSERT_EQ(ring::Segment::attach(name, attached, &why), ring::Status::ok) << why;
  EXPECT_EQ(attached.capacity(), 4096u);
  EXPECT_EQ(attached.max_record_bytes(), 512u);
  ring::Segment::remove(name);
}

// `stat` maps rings read-only: it needs only read permission, and no store
// of its own can reach a ring that producers and the router share.
TEST(Segment, AReadOnlyAttachMapsTheSegmentReadOnly) {
  TestRing ring(4096);
  ring::Segment reader;
  std::string why;
  ASSERT_EQ(ring::Segment::attach(ring.name, reader, &why, ring::Segment::Access::read_only), ring::Status::ok) << why;
  EXPECT_EQ(reader.capacity(), 4096u);
  std::ifstream maps("/proc/self/maps");
  std::string line, permissions;
  const auto* start = reinterpret_cast<const std::byte*>(&reader.header());
  while (std::getline(maps, line)) {
    unsigned long low = 0, high = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &low, &high, perms) != 3) continue;
    if (reinterpret_cast<std::uintptr_t>(start) >= low && reinterpret_cast<std::uintptr_t>(start) < high) {
      permissions = perms;
    }
  }
  EXPECT_EQ(permissions, "r--s");
}

// A FIFO swapped in at a ring's name (anyone may write in /dev/shm) made a
// read-only attach (`stat`, `emit --instance`) wait for a writer for good:
// the name was checked, then opened by name again. Here a thread swaps a
// FIFO and a ring's file in at the name as fast as it can while attaches
// go on for a second, in a child that an alarm kills should one hang.
TEST(Segment, AReadOnlyAttachNeverWaitsOnAFifoSwappedInAtTheName) {
  TestRing ring(4096);
  const std::string path = "/dev/shm/" + ring.name, fifo = path + ".fifo", file = path + ".file";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ASSERT_EQ(::link(path.c_str(), file.c_str()), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::alarm(10);
    std::atomic<bool> done{false};
    std::thread swapper([&] {
      // rename() replaces the name in one step; a hard link keeps each.
      const std::string spare_fifo = fifo + "2", spare_file = file + "2";
      while (!done.load(std::memory_order_relaxed)) {
        (void)::link(fifo.c_str(), spare_fifo.c_str());
        (void)::rename(spare_fifo.c_str(), path.c_str());
        (void)::link(file.c_str(), spare_file.c_str());
        (void)::rename(spare_file.c_str(), path.c_str());
      }
    });
    int rings = 0, fifos = 0;
    for (const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
         std::chrono::steady_clock::now() < until;) {
      ring::Segment reader;
      std::string why;
      const ring::Status status = ring::Segment::attach(ring.name, reader, &why, ring::Segment::Access::read_only);
      rings += status == ring::Status::ok;
      fifos += status == ring::Status::corrupt && why.find("is not a regular file, so no ring") != std::string::npos;
    }
    done = true;
    swapper.join();
    ::_exit(rings > 0 && fifos > 0 ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status)) << "the attaching child was killed (signal " << WTERMSIG(status)
                                 << "): an attach waited on the FIFO";
  if (WIFEXITED(status)) {
    EXPECT_EQ(WEXITSTATUS(status), 0) << "3: the attaches did not meet both kinds";
  }
  // The ring back at its name (the swap ended on either), for TestRing. Where
  // the name is the ring already, rename() of one hard link over another of
  // the same file does nothing: the spare name goes below with the rest.
  ::rename(file.c_str(), path.c_str());
  for (const std::string& name : {fifo, file, fifo + "2", file + "2"}) ::unlink(name.c_str());
}

// tmpfs sizes a file without reserving its pages: a ring larger than what
// /dev/shm has left used to map fine and then kill whoever touched a page
// past the room (the router at start: SIGBUS, no message). Here /dev/shm
// is 1 MiB and the ring 4 MiB: a clear error, and no half-made segment left
// holding the room.
TEST(Segment, ARingLargerThanDevShmHasRoomForIsAClearErrorNotASigbus) {
  const int status = ringroute::testing::run_with_small_dev_shm(1 << 20, [] {
    const std::string name = unique_ring_name("no-room");
    ring::SegmentOptions options;
    options.capacity_bytes = 4 << 20;
    try {
      ring::Segment segment = ring::Segment::create_or_attach(name, options);
      ring::Consumer consumer(std::move(segment));  // touches every page
      std::fprintf(stderr, "a 4 MiB ring was made in a 1 MiB /dev/shm\n");
      return 1;
    } catch (const ring::RingError& e) {
      if (e.status() != ring::Status::io_error || std::string(e.what()).find("/dev/shm has no room") == std::string::npos) {
        std::fprintf(stderr, "unexpected error: %s\n", e.what());
        return 2;
      }
    }
    if (::access(("/dev/shm/" + name).c_str(), F_OK) == 0) {
      std::fprintf(stderr, "the half-made segment was left behind\n");
      return 3;
    }
    options.capacity_bytes = 256 << 10;  // what fits still works
    ring::Segment fits = ring::Segment::create_or_attach(name, options);
    ring::Consumer consumer(std::move(fits));
    ring::Segment::remove(name);
    return 0;
  });
  if (status == ringroute::testing::kNoPrivateMounts) GTEST_SKIP() << "no mount namespace for a small /dev/shm here";
  EXPECT_EQ(status, 0);
}

// A segment another user made first (before the router's first start)
// would be theirs to read, chmod or truncate under the router: refused.
TEST(Segment, ASegmentAnotherUserMadeIsRefused) {
  const std::string name = unique_ring_name("not-ours");
  const int fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0666);
  ASSERT_GE(fd, 0);
  if (::fchown(fd, 65534, 65534) != 0) {
    ::close(fd);
    ring::Segment::remove(name);
    GTEST_SKIP() << "can't give a file to another user here (not root)";
  }
  ::close(fd);
  try {
    (void)ring::Segment::create_or_attach(name, {});
    ADD_FAILURE() << "another user's segment was taken";
  } catch (const ring::RingError& e) {
    EXPECT_NE(std::string(e.what()).find("is owned by uid 65534"), std::string::npos) << e.what();
  }
  ring::Segment::remove(name);
}

// "Permission denied" alone left a producer's or stat's user to find out
// why: whose the segment is, its mode and who asked are said with it.
TEST(Segment, AnOpenRefusedForPermissionsSaysWhoseTheSegmentIsAndItsMode) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root, to try the open as another user";
  const std::string name = unique_ring_name("private");
  ring::SegmentOptions options;
  options.capacity_bytes = 64 << 10;
  options.mode = 0600;
  ring::Segment made = ring::Segment::create_or_attach(name, options);
  const pid_t child = ::fork();
  if (child == 0) {
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) ::_exit(77);
    const std::string said = "Permission denied (uid 0's, gid 0, mode 0600; this process is uid 65534, gid 65534)";
    int failures = 0;
    for (auto access : {ring::Segment::Access::read_write, ring::Segment::Access::read_only}) {
      ring::Segment segment;
      std::string error;
      if (ring::Segment::attach(name, segment, &error, access) != ring::Status::io_error ||
          error.find("cannot open /dev/shm/" + name + ": " + said) == std::string::npos) {
        std::fprintf(stderr, "attach said: %s\n", error.c_str());
        ++failures;
      }
    }
    try {
      (void)ring::Segment::create_or_attach(name, options);
      ++failures;
    } catch (const ring::RingError& e) {
      if (std::string(e.what()).find(": " + said) == std::string::npos) {
        std::fprintf(stderr, "create_or_attach said: %s\n", e.what());
        ++failures;
      }
    }
    ::_exit(failures);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ring::Segment::remove(name);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "can't become another user here";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(Segment, CapacityMustBeAPowerOfTwo) {
  ring::SegmentOptions options;
  options.capacity_bytes = 5000;
  try {
    (void)ring::Segment::create_or_attach(unique_ring_name("pow2"), options);
    FAIL() << "accepted a capacity that is not a power of two";
  } catch (const ring::RingError& e) {
    EXPECT_EQ(e.status(), ring::Status::bad_argument);
    EXPECT_NE(std::string(e.what()).find("power of two"), std::string::npos);
  }
}

TEST(Segment, ExistingSegmentOfAnotherSizeIsAttachedAsItIsWithAWarning) {
  TestRing ring(4096);
  ring::SegmentOptions options;
  options.capacity_bytes = 8192;
  std::string warning;
  ring::Segment again = ring::Segment::create_or_attach(ring.name, options, &warning);
  EXPECT_EQ(again.capacity(), 4096u);
  EXPECT_NE(warning.find("size_bytes 4096"), std::string::npos) << warning;
}

// A config whose mode differs from the segment an earlier one made: its
// consumer applies the configured mode (who may produce is the config's to
// say) and says so; attaching alone changes nothing, and the same mode
// says nothing.
TEST(Segment, AnExistingSegmentTakesTheConfiguredModeFromItsConsumerAndSaysSo) {
  TestRing ring(4096);
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + ring.name).c_str(), &st), 0);
  const mode_t before = st.st_mode & 0777;
  ring::SegmentOptions options;
  options.capacity_bytes = 4096;
  options.mode = before == 0600 ? 0640 : 0600;
  std::string warning;
  ring::Segment again = ring::Segment::create_or_attach(ring.name, options, &warning);
  ASSERT_EQ(::stat(("/dev/shm/" + ring.name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, before);
  EXPECT_EQ(warning, "");
  const std::string note = again.apply_mode(options.mode);
  ASSERT_EQ(::stat(("/dev/shm/" + ring.name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, options.mode);
  EXPECT_NE(note.find("to the configured 0" + std::to_string(options.mode == 0600 ? 600 : 640)), std::string::npos)
      << note;
  EXPECT_EQ(again.apply_mode(options.mode), "");
}

TEST(Segment, EmptyObjectIsNotReady) {
  const std::string name = unique_ring_name("empty");
  write_shm(name, nullptr, 0);
  ring::Segment s;
  std::string why;
  EXPECT_EQ(ring::Segment::attach(name, s, &why), ring::Status::not_ready);
  EXPECT_NE(why.find("still being created"), std::string::npos) << why;
  ring::Segment::remove(name);
}

TEST(Segment, HeaderWithoutVersionIsNotReadyAndTheRouterReinitialisesIt) {
  const std::string name = unique_ring_name("halfmade");
  std::vector<char> zeros(ring::kHeaderBytes + 4096, 0);
  write_shm(name, zeros.data(), zeros.size());
  ring::Segment s;
  std::string why;
  EXPECT_EQ(ring::Segment::attach(name, s, &why), ring::Status::not_ready) << why;
  ring::SegmentOptions options;
  options.capacity_bytes = 4096;
  ring::Segment made = ring::Segment::create_or_attach(name, options);
  EXPECT_EQ(ring::Segment::attach(name, s, &why), ring::Status::ok) << why;
  ring::Segment::remove(name);
}

TEST(Segment, WrongLayoutVersionIsAClearError) {
  TestRing ring(4096);
  ring.segment.header().layout_version.store(ring::kLayoutVersion + 1);
  ring::Segment s;
  std::string why;
  EXPECT_EQ(ring::Segment::attach(ring.name, s, &why), ring::Status::version_mismatch);
  EXPECT_NE(why.find("layout version 2"), std::string::npos) << why;
  ring::SegmentOptions options;
  options.capacity_bytes = 4096;
  try {
    (void)ring::Segment::create_or_attach(ring.name, options);
    FAIL() << "the router attached to a segment of another layout";
  } catch (const ring::RingError& e) {
    EXPECT_EQ(e.status(), ring::Status::version_mismatch);
  }
}

// Another kind of file named as a ring (the perf block, `emit --ring
// x.perf`) is not a ring: its second word used to be read as a layout
// version ("layout version 2, this library reads version 1").
TEST(Segment, AFileWithoutTheMagicIsNotARingWhateverItsVersionWord) {
  TestRing ring(4096);
  ring.segment.header().layout_version.store(ring::kLayoutVersion + 1);
  ring.segment.header().magic = 0x1234;
  ring::Segment s;
  std::string why;
  EXPECT_EQ(ring::Segment::attach(ring.name, s, &why), ring::Status::corrupt);
  EXPECT_NE(why.find("is not a ringroute ring (bad magic)"), std::string::npos) << why;
}

// A segment whose header is right in every way but a capacity past what
// create_or_attach makes (2 GiB, sparse): its records' lengths could
// overflow the header's 32-bit field, so it is refused as corrupt.
TEST(Segment, ACapacityPastTheLimitIsCorrupt) {
  TestRing ring(4096);
  ring::SegmentHeader& header = ring.segment.header();
  const std::uint64_t capacity = ring::kMaxCapacity * 2;
  const std::string name = unique_ring_name("huge");
  std::vector<char> bytes(ring::kHeaderBytes);
  std::memcpy(bytes.data(), &header, ring::kHeaderBytes);
  write_shm(name, bytes.data(), bytes.size());
  const int fd = ::shm_open(name.c_str(), O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(ring::kHeaderBytes + capacity)), 0);
  ::close(fd);
  {
    ring::Segment mapped;
    ASSERT_EQ(ring::Segment::attach(name, mapped, nullptr), ring::Status::corrupt);  // the size disagrees so far
  }
  // Make the header agree with the size, as a crafted segment would.
  std::memcpy(bytes.data() + offsetof(ring::SegmentHeader, capacity), &capacity, sizeof capacity);
  const std::uint64_t max_record = capacity / 8;
  std::memcpy(bytes.data() + offsetof(ring::SegmentHeader, max_record_bytes), &max_record, sizeof max_record);
  const int again = ::shm_open(name.c_str(), O_RDWR, 0600);
  ASSERT_GE(again, 0);
  ASSERT_EQ(::pwrite(again, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  ::close(again);
  ring::Segment s;
  std::string why;
  EXPECT_EQ(ring::Segment::attach(name, s, &why), ring::Status::corrupt) << why;
  // The router's way in refuses it too, before mapping (and so touching)
  // all of it.
  try {
    ring::SegmentOptions options;
    options.capacity_bytes = 4096;
    (void)ring::Segment::create_or_attach(name, options);
    ADD_FAILURE() << "the router attached a segment larger than any ring";
  } catch (const ring::RingError& e) {
    EXPECT_EQ(e.status(), ring::Status::corrupt) << e.what();
  }
  ring::Segment::remove(name);
}

// A producer killed and not reaped yet by its parent is a zombie: kill(pid,
// 0) still finds it and its start time still matches, but it is dead, and
// its claims are skipped at once rather than after the dead-claim timeout.
TEST(Segment, AZombieIsNotAlive) {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  const std::uint64_t ticks = ring::process_start_ticks(child);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);  // a zombie, not reaped
  EXPECT_FALSE(ring::process_alive(child, ticks));
  EXPECT_FALSE(ring::process_alive(child, 0));
  EXPECT_TRUE(ring::process_alive(::getpid(), ring::process_start_ticks(::getpid())));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
}

// A process whose main thread ended (pthread_exit) while another goes on
// shows its leader as a zombie in /proc, but it is alive.
TEST(Segment, AProcessWhoseMainThreadEndedWhileOthersRunIsAlive) {
  int until_closed[2];
  ASSERT_EQ(::pipe(until_closed), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(until_closed[1]);
    std::thread([fd = until_closed[0]] {
      char byte;
      (void)::read(fd, &byte, 1);  // until the parent has looked
      ::_exit(0);
    }).detach();
    ::syscall(SYS_exit, 0);  // this thread only (exit(3) ends them all), without unwinding
  }
  ::close(until_closed[0]);
  const std::uint64_t ticks = ring::process_start_ticks(child);
  bool leader_ended = false;
  for (int i = 0; i < 2000 && !leader_ended; ++i) {  // 10 s: a loaded machine forks slowly
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(child));
    std::ifstream stat(path);
    const std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    leader_ended = text.find(") Z ") != std::string::npos;
    if (!leader_ended) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(leader_ended);
  EXPECT_TRUE(ring::process_alive(child, ticks));
  ::close(until_closed[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
}

TEST(Segment, GarbageIsCorruptNotACrash) {
  const std::string name = unique_ring_name("garbage");
  std::vector<unsigned char> junk(ring::kHeaderBytes + 4096);
  for (std::size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<unsigned char>(i * 131 + 7);
  // Make the version word look right so the other checks are what catch it.
  const std::uint32_t version = ring::kLayoutVersion;
  std::memcpy(junk.data() + offsetof(ring::SegmentHeader, layout_version), &version, 4);
  write_shm(name, junk.data(), junk.size());
  ring::Segment s;
  std::string why;
  EXPECT_EQ(ring::Segment::attach(name, s, &why), ring::Status::corrupt);
  EXPECT_NE(why.find("not a ringroute ring"), std::string::npos) << why;
  ring::Segment::remove(name);
}

TEST(Segment, TruncatedSegmentIsCorrupt) {
  TestRing ring(8192);
  ASSERT_EQ(::truncate(("/dev/shm/" + ring.name).c_str(), static_cast<off_t>(ring::kHeaderBytes + 4096)), 0);
  ring::Segment s;
  std::string why;
  EXPECT_EQ(ring::Segment::attach(ring.name, s, &why), ring::Status::corrupt) << why;
}

TEST(Segment, SecondConsumerIsRefusedWithTheOwnersPid) {
  TestRing ring(4096);
  ring::Consumer first(ring.segment);
  const pid_t child = fork_second_consumer(ring.segment);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

TEST(Segment, ConsumerOfADeadProcessIsTakenOver) {
  TestRing ring(4096);
  const pid_t child = ::fork();
  if (child == 0) {
    ring::Consumer c(ring.segment);
    ::_exit(0);  // no destructor: as if killed
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_NO_THROW(ring::Consumer again(ring.segment));
}

TEST(Segment, ASecondConsumerInTheSameProcessIsRefused) {
  TestRing ring(4096);
  ring::Consumer first(ring.segment);
  try {
    ring::Consumer second(ring.segment);
    FAIL() << "a second consumer was allowed";
  } catch (const ring::RingError& e) {
    EXPECT_EQ(e.status(), ring::Status::busy);
    EXPECT_NE(std::string(e.what()).find("this process already consumes it"), std::string::npos) << e.what();
  }
}

namespace {

// A child that consumes `segment` until killed, its pid in the ring's
// header replaced by `shown_pid` unless that is 0 (as a consumer in another
// PID namespace looks from here); returned once the header shows it.
pid_t fork_lock_holding_consumer(ring::Segment& segment, std::int32_t shown_pid) {
  const pid_t child = ::fork();
  if (child == 0) {
    ring::Consumer c(segment);
    if (shown_pid != 0) segment.header().consumer_pid.store(shown_pid, std::memory_order_release);
    ::pause();
    ::_exit(0);
  }
  const std::int32_t shown = shown_pid != 0 ? shown_pid : child;
  for (int i = 0; i < 5000 && segment.header().consumer_pid.load() != shown; ++i) {  // 10 s
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return child;
}

// Why a second consumer of `segment` is refused as busy ("" if let in).
std::string second_consumer_refusal(ring::Segment& segment) {
  try {
    ring::Consumer second(segment);
  } catch (const ring::RingError& e) {
    return e.status() == ring::Status::busy ? std::string(e.what()) : "not busy: " + std::string(e.what());
  }
  return "";
}

}  // namespace

// A consumer that holds the lock and whose pid we can see is named by
// it: "another process" left the reader of the refusal to find which
// router to stop.
TEST(Segment, AConsumerThatHoldsTheLockIsNamedByItsPid) {
  TestRing ring(4096);
  const pid_t child = fork_lock_holding_consumer(ring.segment, 0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(ring.segment.header().consumer_pid.load(), child);
  const std::string why = second_consumer_refusal(ring.segment);
  EXPECT_NE(why.find("already consumed by pid " + std::to_string(child) + " "), std::string::npos) << why;
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
}

// A consumer whose pid names no process we can see (another PID namespace:
// here a pid and start ticks of nobody) but that holds the ring's consumer
// lock lives: a second one is refused. Judged by the pid alone, it was
// taken for dead and two consumers read the ring.
TEST(Segment, AConsumerThatHoldsTheLockIsAliveWhateverItsPidSays) {
  TestRing ring(4096);
  const pid_t child = fork_lock_holding_consumer(ring.segment, 0x7ffffff0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(ring.segment.header().consumer_pid.load(), 0x7ffffff0);
  const std::string why = second_consumer_refusal(ring.segment);
  EXPECT_NE(why.find("it holds the ring's consumer lock"), std::string::npos) << why;
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  // Gone, its lock goes with it: the ring is taken over.
  EXPECT_NO_THROW(ring::Consumer again(ring.segment));
}

// A router restarted in a container comes back as the same pid (often 1)
// and finds its own pid in the header, left by the process it replaces:
// other start ticks mean that process is gone, and the ring is taken over.
TEST(Segment, AConsumerLeftByAnEarlierProcessWithOurPidIsTakenOver) {
  TestRing ring(4096);
  ring::SegmentHeader& header = ring.segment.header();
  header.consumer_start_ticks.store(ring::process_start_ticks(::getpid()) + 1);
  header.consumer_pid.store(static_cast<std::int32_t>(::getpid()));
  EXPECT_NO_THROW(ring::Consumer again(ring.segment));
}

// A consumer taking the ring marks the pid first and publishes it after its
// start ticks; another waits out the mark. A mark whose taker died between
// the two stores does not hold the ring for good: it is taken over after a
// second.
TEST(Segment, AConsumerWaitsOutAnotherTakingTheRingAndAStaleMarkAfterASecond) {
  TestRing ring(4096);
  ring::SegmentHeader& header = ring.segment.header();
  header.consumer_pid.store(-1);
  const auto start = std::chrono::steady_clock::now();
  {
    ring::Consumer taken(ring.segment);
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
    EXPECT_EQ(header.consumer_pid.load(), static_cast<std::int32_t>(::getpid()));
    EXPECT_EQ(header.consumer_start_ticks.load(), ring::process_start_ticks(::getpid()));
  }
  // A mark cleared within the wait: the waiter then finds the new owner.
  header.consumer_pid.store(-1);
  const pid_t child = fork_second_consumer(ring.segment);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  header.consumer_start_ticks.store(ring::process_start_ticks(::getpid()));
  header.consumer_pid.store(static_cast<std::int32_t>(::getpid()));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  header.consumer_pid.store(0);
}

TEST(Segment, TouchForWriteChangesNoByteAndUndoesNoConcurrentWrite) {
  TestRing ring(1 << 20, "touch");
  std::byte* data = ring.segment.data();
  const std::uint64_t capacity = ring.segment.capacity();
  for (std::uint64_t i = 0; i < capacity; ++i) data[i] = static_cast<std::byte>(i * 131 + 7);
  constexpr std::uint64_t kPage = 4096;
  constexpr std::uint64_t kRounds = 2000;
  const std::uint64_t pages = capacity / kPage;
  auto word = [&](std::uint64_t page) {
    return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(data + page * kPage));
  };
  std::vector<std::uint64_t> first(pages);
  for (std::uint64_t page = 0; page < pages; ++page) first[page] = word(page).load();
  // Pages are touched over and over while a writer adds one to the first
  // word of every page, round after round: a touch that read and wrote back
  // in two steps would lose some of those adds.
  std::atomic<bool> done{false};
  std::thread toucher([&] {
    while (!done.load(std::memory_order_relaxed)) ring.segment.touch_for_write();
  });
  for (std::uint64_t round = 0; round < kRounds; ++round) {
    for (std::uint64_t page = 0; page < pages; ++page) word(page).fetch_add(1, std::memory_order_relaxed);
  }
  done.store(true);
  toucher.join();
  for (std::uint64_t page = 0; page < pages; ++page) {
    ASSERT_EQ(word(page).load(), first[page] + kRounds) << "page " << page;
    for (std::uint64_t i = page * kPage + 8; i < (page + 1) * kPage; ++i) {
      ASSERT_EQ(data[i], static_cast<std::byte>(i * 131 + 7)) << "byte " << i;
    }
  }
}

// A producer (or anyone who may write the ring's file) can ftruncate it; a
// page of the mapping past the new end then faults with SIGBUS. Guarded,
// the process reads zeros there and the segment says it was cut short.
TEST(Segment, ARingCutShortUnderAGuardedProcessReadsZerosInsteadOfKillingIt) {
  ring::install_truncation_guard();
  TestRing ring(1 << 16);
  ring::Segment reader;
  std::string why;
  ASSERT_EQ(ring::Segment::attach(ring.name, reader, &why, ring::Segment::Access::read_only), ring::Status::ok)
      << why;
  TestRing other(1 << 16, "uncut");
  std::memset(ring.segment.data(), 0x5a, 64);
  std::memset(other.segment.data(), 0x5a, 64);
  EXPECT_FALSE(ring.segment.cut_short());

  const int fd = ::shm_open(ring.name.c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 0), 0);
  ::close(fd);

  // The writable mapping: a read past the end, then the header; both are
  // zeros now, and the mapping stays writable (the router releases into it).
  EXPECT_EQ(std::to_integer<int>(ring.segment.data()[ring.segment.capacity() - 1]), 0);
  EXPECT_TRUE(ring.segment.cut_short());
  EXPECT_EQ(std::to_integer<int>(ring.segment.data()[0]), 0);
  EXPECT_EQ(ring.segment.header().tail.load(std::memory_order_relaxed), 0u);
  ring.segment.data()[0] = std::byte{1};
  // The read-only mapping of the same file is its own: cut short when it
  // faults, and still read-only.
  EXPECT_FALSE(reader.cut_short());
  EXPECT_EQ(reader.header().magic, 0u);
  EXPECT_TRUE(reader.cut_short());
  // Another segment keeps its bytes.
  EXPECT_EQ(std::to_integer<int>(other.segment.data()[63]), 0x5a);
  EXPECT_FALSE(other.segment.cut_short());
}

// What the guard does not own still kills: a fault outside any segment, and
// a SIGBUS sent by kill(). By the signal, or where a handler was there
// before the guard (ASan's), by that handler's abort.
TEST(Segment, ASigbusOutsideAnyRingStillKills) {
#if defined(__SANITIZE_THREAD__) || defined(RINGROUTE_TSAN)
  GTEST_SKIP() << "TSan takes a SIGBUS it does not own for itself (exit 66)";
#endif
  ring::install_truncation_guard();
#if defined(__SANITIZE_ADDRESS__)
  // ASan takes the fault itself, says so and aborts (abort_on_error, as
  // scripts/test runs it) or exits 1.
  constexpr bool kSanitized = true;
  const char* const says = "BUS";
#else
  constexpr bool kSanitized = false;
  const char* const says = "";
#endif
  const auto killed = [](int status) {
    if (kSanitized && WIFEXITED(status)) return WEXITSTATUS(status) == 1;
    return WIFSIGNALED(status) && (WTERMSIG(status) == SIGBUS || (kSanitized && WTERMSIG(status) == SIGABRT));
  };
  EXPECT_EXIT(
      {
        char path[] = "/tmp/rr-sigbus-XXXXXX";
        const int fd = ::mkstemp(path);
        ::unlink(path);
        if (fd < 0 || ::ftruncate(fd, 4096) != 0) ::_exit(3);
        auto* page = static_cast<volatile char*>(::mmap(nullptr, 8192, PROT_READ, MAP_SHARED, fd, 0));
        if (page == MAP_FAILED) ::_exit(4);
        (void)page[4096];  // past the file's end: SIGBUS
        ::_exit(0);
      },
      killed, says);
  EXPECT_EXIT(::raise(SIGBUS), killed, says);
}

// A SIGBUS sent to the process, not a fault, goes where it went before the
// guard: ignored where it was ignored (the guard re-raised it, and a router
// started with SIGBUS ignored died of a kill), and to a handler of the
// process's own where it had one. Each case in a fresh process, so the
// guard is installed over that process's own choice.
TEST(Segment, TheGuardKeepsWhatTheProcessDidWithASigbusSentToIt) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        ::signal(SIGBUS, SIG_IGN);
        ring::install_truncation_guard();
        ::raise(SIGBUS);
        ::_exit(7);
      },
      ::testing::ExitedWithCode(7), "");
  EXPECT_EXIT(
      {
        ::signal(SIGBUS, +[](int) { ::_exit(8); });
        ring::install_truncation_guard();
        ::raise(SIGBUS);
        ::_exit(9);
      },
      ::testing::ExitedWithCode(8), "");
  // Run with the signals its sigaction blocks while it runs, as the kernel
  // would have run it.
  EXPECT_EXIT(
      {
        struct sigaction own {};
        own.sa_handler = +[](int) {
          sigset_t now;
          ::pthread_sigmask(SIG_BLOCK, nullptr, &now);
          ::_exit(::sigismember(&now, SIGUSR2) == 1 ? 10 : 11);
        };
        ::sigemptyset(&own.sa_mask);
        ::sigaddset(&own.sa_mask, SIGUSR2);
        ::sigaction(SIGBUS, &own, nullptr);
        ring::install_truncation_guard();
        ::raise(SIGBUS);
        ::_exit(12);
      },
      ::testing::ExitedWithCode(10), "");
}
