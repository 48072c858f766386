// The counter block: slots found again by name after a restart, a reader
// that only maps it, and the histogram's bucket arithmetic.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "private_mounts.hpp"
#include "ringroute/perf/block.hpp"

namespace ringroute::perf {
namespace {

std::string instance_name() { return "rr-test-perf-" + std::to_string(::getpid()); }

// The line a backend's log said last, for `stat`: nothing before the
// first, cut to its field, and read whole or not at all while its sink
// thread writes another (a seqlock).
TEST(PerfBlock, ASaidLineIsReadWholeOrNotAtAll) {
  auto said = std::make_unique<SaidLine>();
  EXPECT_FALSE(read_said(*said));
  write_said(*said, "connect to 127.0.0.1:9: Connection refused (retrying)", 42);
  auto seen = read_said(*said);
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->text, "connect to 127.0.0.1:9: Connection refused (retrying)");
  EXPECT_EQ(seen->at_unix_ns, 42);
  EXPECT_EQ(seen->at_boot_s, 0u);  // not given: not known
  write_said(*said, std::string(500, 'x'), 43, 7);
  EXPECT_EQ(read_said(*said)->text, std::string(kSaidBytes - 1, 'x'));
  EXPECT_EQ(read_said(*said)->at_boot_s, 7u);
  EXPECT_GT(boot_seconds(), 0u);
  const std::string long_line(kSaidBytes - 1, 'a'), short_line(10, 'b');
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 200000; ++i) write_said(*said, i % 2 == 0 ? long_line : short_line, i);
    done.store(true);
  });
  std::size_t reads = 0, torn = 0;
  while (!done.load()) {
    const auto now = read_said(*said);
    if (!now) continue;
    ++reads;
    if (now->text != long_line && now->text != short_line && now->text != std::string(kSaidBytes - 1, 'x')) ++torn;
  }
  writer.join();
  EXPECT_EQ(torn, 0u) << "of " << reads << " reads";
}

TEST(PerfBlock, SlotsAndCountersSurviveAReopen) {
  const std::string instance = instance_name();
  BlockMapping::remove(instance);
  std::int64_t made = 0;
  {
    BlockMapping m = BlockMapping::create_or_open(instance);
    EXPECT_EQ(m.ring_slot("r1"), 0);
    EXPECT_EQ(m.backend_slot("files", "file"), 0);
    EXPECT_EQ(m.backend_slot("web", "http"), 1);
    m.block().backends[1].sink.sent.add(42);
    m.block().backends[1].written_through[0].store(4096, std::memory_order_release);
    made = m.block().header.created_ns.load();
  }
  BlockMapping again = BlockMapping::create_or_open(instance);
  EXPECT_EQ(again.block().header.created_ns.load(), made) << "the same block, made once";
  EXPECT_EQ(again.backend_slot("web", "http"), 1);
  EXPECT_EQ(again.block().backends[1].sink.sent.read(), 42u);
  EXPECT_EQ(again.block().backends[1].written_through[0].load(), 4096u);
  std::string error;
  auto reader = BlockMapping::open_read_only(instance, &error);
  ASSERT_TRUE(reader) << error;
  EXPECT_STREQ(reader->block().backends[0].name, "files");
  EXPECT_STREQ(reader->block().backends[0].type, "file");
  // A backend whose type a reload changed keeps its slot; its label
  // changes when the reload's plan is made (Router::make_plan).
  EXPECT_EQ(again.backend_slot("files", "socket"), 0);
  EXPECT_STREQ(reader->block().backends[0].type, "file");
  again.set_backend_type(0, "socket");
  EXPECT_STREQ(reader->block().backends[0].type, "socket");
  EXPECT_TRUE(BlockMapping::remove(instance));
  EXPECT_FALSE(BlockMapping::open_read_only(instance, &error));
  EXPECT_NE(error.find("is a router running"), std::string::npos) << error;
}

// A file of the wrong size is said to be another version's block only
// when it starts as a block does: random bytes sent the reader looking for
// a version of ringroute that never made them.
TEST(PerfBlock, AFileOfTheWrongSizeIsAnotherVersionsBlockOnlyWithTheMagic) {
  const std::string instance = instance_name() + "-size";
  BlockMapping::remove(instance);
  const int fd = ::shm_open(("/" + instance + ".perf").c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  const std::string garbage(1000, 'g');
  ASSERT_EQ(::write(fd, garbage.data(), garbage.size()), static_cast<ssize_t>(garbage.size()));
  std::string error;
  EXPECT_FALSE(BlockMapping::open_read_only(instance, &error));
  EXPECT_NE(error.find("is not a ringroute counter block (no magic)"), std::string::npos) << error;
  ASSERT_EQ(::pwrite(fd, &kBlockMagic, sizeof kBlockMagic, 0), static_cast<ssize_t>(sizeof kBlockMagic));
  EXPECT_FALSE(BlockMapping::open_read_only(instance, &error));
  EXPECT_NE(error.find("is 1000 bytes, where a counter block of this build is"), std::string::npos) << error;
  // Zeros where the magic goes: another version's block, sized and not yet
  // whole, as much as anything.
  ASSERT_EQ(::ftruncate(fd, 0), 0);
  ASSERT_EQ(::ftruncate(fd, 1000), 0);
  EXPECT_FALSE(BlockMapping::open_read_only(instance, &error));
  EXPECT_NE(error.find("is 1000 bytes, where a counter block of this build is"), std::string::npos) << error;
  ASSERT_EQ(::ftruncate(fd, 4), 0);  // too short to hold the magic
  EXPECT_FALSE(BlockMapping::open_read_only(instance, &error));
  EXPECT_NE(error.find("(no magic)"), std::string::npos) << error;
  ::close(fd);
  EXPECT_TRUE(BlockMapping::remove(instance));
}

// SEMANTICS.md allows names of 128 characters: one fills its field, with
// no terminating zero, and is still found again (and told apart from one
// alike but for its last character).
TEST(PerfBlock, ANameThatFillsItsFieldIsFoundAgain) {
  const std::string instance = instance_name() + "-long";
  BlockMapping::remove(instance);
  BlockMapping m = BlockMapping::create_or_open(instance);
  const std::string a(kNameBytes, 'a'), b = std::string(kNameBytes - 1, 'a') + "b";
  EXPECT_EQ(m.backend_slot(a, "file"), 0);
  EXPECT_EQ(m.backend_slot(b, "file"), 1);
  EXPECT_EQ(m.backend_slot(a, "file"), 0);
  EXPECT_EQ(m.backend_slot(std::string(kNameBytes - 1, 'a'), "file"), 2);
  EXPECT_EQ(m.ring_slot(a), 0);
  EXPECT_EQ(m.ring_slot(a), 0);
  EXPECT_EQ(std::string(m.block().rings[0].name, ::strnlen(m.block().rings[0].name, kNameBytes)), a);
  EXPECT_TRUE(BlockMapping::remove(instance));
}

// One router per instance: a second one (of this build or another, whose
// block layout differs) is refused while the first holds the block. A
// router of another build used to wipe a running router's block
// (positions and counters) before it was refused the ring. Once nobody
// holds it, a block of another layout is started again.
TEST(PerfBlock, ABlockIsHeldByOneRouterAndStartedAgainOnlyWhenFree) {
  const std::string instance = instance_name() + "-layout";
  BlockMapping::remove(instance);
  std::int64_t first_made = 0;
  {
    BlockMapping running = BlockMapping::create_or_open(instance);
    ASSERT_EQ(running.backend_slot("kept", "file"), 0);
    first_made = running.block().header.created_ns.load();
    ASSERT_GT(first_made, 0);
    for (std::uint32_t version : {kBlockVersion, kBlockVersion + 1}) {  // this build, another
      running.block().header.version.store(version);
      try {
        (void)BlockMapping::create_or_open(instance);
        ADD_FAILURE() << "a block in use was opened by a second router";
      } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("is held by another router of instance"), std::string::npos)
            << e.what();
      }
      EXPECT_STREQ(running.block().backends[0].name, "kept");
    }
    // Readers take no lock.
    running.block().header.version.store(kBlockVersion);
    std::string error;
    EXPECT_TRUE(BlockMapping::open_read_only(instance, &error)) << error;
    running.block().header.version.store(kBlockVersion + 1);  // left as another build's
  }
  BlockMapping again = BlockMapping::create_or_open(instance);  // nobody holds it now
  EXPECT_EQ(again.block().header.version.load(), kBlockVersion);
  EXPECT_EQ(again.block().backends[0].name[0], 0);
  // Made anew: a scraper tells its counters started over by this.
  EXPECT_GT(again.block().header.created_ns.load(), first_made);
  EXPECT_TRUE(BlockMapping::remove(instance));
}

// As a ring's: a block larger than what /dev/shm has left is an error at
// start, not a SIGBUS at the first counter written past the room.
TEST(PerfBlock, ABlockLargerThanDevShmHasRoomForIsAClearErrorNotASigbus) {
  const int status = testing::run_with_small_dev_shm(sizeof(Block) / 2, [] {
    try {
      BlockMapping m = BlockMapping::create_or_open(instance_name());
      std::memset(static_cast<void*>(&m.block()), 1, sizeof(Block));
      std::fprintf(stderr, "a block was made in a /dev/shm half its size\n");
      return 1;
    } catch (const std::runtime_error& e) {
      if (std::strstr(e.what(), "/dev/shm has no room") == nullptr) {
        std::fprintf(stderr, "unexpected error: %s\n", e.what());
        return 2;
      }
    }
    return 0;
  });
  if (status == testing::kNoPrivateMounts) GTEST_SKIP() << "no mount namespace for a small /dev/shm here";
  EXPECT_EQ(status, 0);
}

// A block another user made first would let them set the written-through
// positions that decide what a restart skips: refused.
TEST(PerfBlock, ABlockAnotherUserMadeIsRefused) {
  const std::string instance = instance_name() + "-not-ours";
  const std::string name = "/" + instance + ".perf";
  const int fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0666);
  ASSERT_GE(fd, 0);
  if (::fchown(fd, 65534, 65534) != 0) {
    ::close(fd);
    BlockMapping::remove(instance);
    GTEST_SKIP() << "can't give a file to another user here (not root)";
  }
  ::close(fd);
  try {
    (void)BlockMapping::create_or_open(instance);
    ADD_FAILURE() << "another user's block was taken";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("is owned by uid 65534"), std::string::npos) << e.what();
  }
  BlockMapping::remove(instance);
}

// "Permission denied" alone did not say why (a ring's refusal said whose
// it was): whose the block is, its mode and who asked, for the router and
// for stat.
TEST(Block, AnOpenRefusedForPermissionsSaysWhoseTheBlockIsAndItsMode) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root, to try the open as another user";
  const std::string instance = "rr-test-private-" + std::to_string(::getpid());
  BlockMapping::remove(instance);
  { BlockMapping made = BlockMapping::create_or_open(instance, 0600); }
  const pid_t child = ::fork();
  if (child == 0) {
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) ::_exit(77);
    const std::string said = block_path(instance) +
                             ": Permission denied (uid 0's, gid 0, mode 0600; this process is uid 65534, gid 65534)";
    int failures = 0;
    std::string error;
    if (BlockMapping::open_read_only(instance, &error) || error != said) {
      std::fprintf(stderr, "open_read_only said: %s\n", error.c_str());
      ++failures;
    }
    try {
      (void)BlockMapping::create_or_open(instance, 0600);
      ++failures;
    } catch (const std::runtime_error& e) {
      if (e.what() != said) {
        std::fprintf(stderr, "create_or_open said: %s\n", e.what());
        ++failures;
      }
    }
    ::_exit(failures);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  BlockMapping::remove(instance);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "can't become another user here";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// A file at the block's name that is no block (a ring named INSTANCE.perf,
// mapped by its producers) is left alone: started again, it was cut to
// nothing under them.
TEST(PerfBlock, AFileThatIsNotABlockIsLeftAlone) {
  const std::string instance = "rr-perf-not-a-block-" + std::to_string(::getpid());
  const std::string path = "/dev/shm/" + instance + ".perf";
  const std::string ring_like(1 << 16, 'r');
  {
    std::ofstream(path) << ring_like;
  }
  try {
    (void)BlockMapping::create_or_open(instance);
    ADD_FAILURE() << "a file that is not a block was taken for one";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("holds something other than a perf block"), std::string::npos) << e.what();
  }
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<std::size_t>(st.st_size), ring_like.size());
  ::unlink(path.c_str());
  // An empty file (a block whose maker stopped before sizing it) is made one.
  { std::ofstream touch(path); }
  EXPECT_NO_THROW((void)BlockMapping::create_or_open(instance));
  BlockMapping::remove(instance);
}

TEST(PerfBlock, HistogramBucketsAreLogLinear) {
  for (std::uint64_t v : {0ull, 7ull, 8ull, 15ull, 16ull, 1000ull, 123456789ull, ~0ull}) {
    const std::size_t b = Histogram::bucket_of(v);
    ASSERT_LT(b, kHistogramBuckets);
    EXPECT_LE(Histogram::lower_bound(b), v);
    EXPECT_GE(Histogram::upper_bound(b), v);
    if (b + 1 < kHistogramBuckets && v != ~0ull) {
      EXPECT_GT(Histogram::lower_bound(b + 1), v);
    }
  }
  // Each bucket ends where the next begins; the last one is open.
  for (std::size_t b = 0; b + 1 < kHistogramBuckets; ++b) {
    EXPECT_EQ(Histogram::upper_bound(b) + 1, Histogram::lower_bound(b + 1));
  }
  EXPECT_EQ(Histogram::upper_bound(kHistogramBuckets - 1), UINT64_MAX);
  // At most 12.5% wide beyond the exact range.
  for (std::size_t b = 8; b + 1 < 400; ++b) {
    const double low = static_cast<double>(Histogram::lower_bound(b));
    EXPECT_LE(static_cast<double>(Histogram::lower_bound(b + 1)) / low, 1.126);
  }
}

TEST(PerfBlock, QuantilesAreUpperEdgesOfTheirBucket) {
  std::array<std::uint64_t, kHistogramBuckets> counts{};
  EXPECT_EQ(histogram_quantile(counts, 0.99), 0u);
  counts[Histogram::bucket_of(1000)] = 98;    // ~1 us
  counts[Histogram::bucket_of(2'000'000)] = 2;  // ~2 ms
  const std::uint64_t p50 = histogram_quantile(counts, 0.5);
  EXPECT_GE(p50, 1000u);
  EXPECT_LT(p50, 1200u);
  const std::uint64_t p99 = histogram_quantile(counts, 0.99);
  EXPECT_GE(p99, 2'000'000u);
  EXPECT_LT(p99, 2'300'000u);
}

// Nearest rank: p99 of 100 samples is the 99th, p999 the 100th; with only
// two samples, p99 is the larger. (A rank of floor(q * (n - 1)) + 1 put
// all three one sample low.)
TEST(PerfBlock, QuantilesAreByNearestRank) {
  std::array<std::uint64_t, kHistogramBuckets> counts{};
  counts[Histogram::bucket_of(1000)] = 99;
  counts[Histogram::bucket_of(2'000'000)] = 1;
  EXPECT_LT(histogram_quantile(counts, 0.99), 1200u);
  EXPECT_GE(histogram_quantile(counts, 0.999), 2'000'000u);
  counts = {};
  counts[Histogram::bucket_of(1000)] = 1;
  counts[Histogram::bucket_of(1'000'000'000)] = 1;
  EXPECT_LT(histogram_quantile(counts, 0.5), 1200u);
  EXPECT_GE(histogram_quantile(counts, 0.99), 1'000'000'000u);
}

// Counts a block's writer made up, summing past 2^64: each quantile is
// still where its rank falls. The sum wrapped to 1, so every quantile was
// the first bucket's, p99 of samples half of which are 2 ms included.
TEST(PerfBlock, QuantilesOfCountsSummingPast64BitsStayInBucketsThatHoldSamples) {
  std::array<std::uint64_t, kHistogramBuckets> counts{};
  counts[Histogram::bucket_of(1000)] = UINT64_MAX / 2 + 2;
  counts[Histogram::bucket_of(2'000'000)] = UINT64_MAX / 2 + 1;
  const std::uint64_t p10 = histogram_quantile(counts, 0.1);
  EXPECT_GE(p10, 1000u);
  EXPECT_LT(p10, 1200u);
  const std::uint64_t p99 = histogram_quantile(counts, 0.99);
  EXPECT_GE(p99, 2'000'000u);
  EXPECT_LT(p99, 2'300'000u);
  // Every bucket full: each quantile by its rank, the largest too.
  counts.fill(UINT64_MAX);
  EXPECT_EQ(histogram_quantile(counts, 1.0), UINT64_MAX);  // the last bucket is open
  EXPECT_EQ(histogram_quantile(counts, 0.0), Histogram::upper_bound(0));
  EXPECT_EQ(histogram_quantile(counts, 0.5), Histogram::upper_bound(kHistogramBuckets / 2 - 1));
}

}  // namespace
}  // namespace ringroute::perf
