// `ringroute bench` as a user runs it: the real binary, producer processes,
// the in-process router and real files; what its report says, not how fast.
#include <gtest/gtest.h>

#include <sys/prctl.h>
#include <simdjson.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "shell_quote.hpp"

namespace {

struct Result {
  int status;
  std::string out;
};

// `stderr_only`: what it says on stderr, in `out`.
Result run(const std::string& args, bool stderr_only = false) {
  const std::string cmd = ringroute::testing::shell_quoted(RINGROUTE_BINARY) + " bench " + args +
                          (stderr_only ? " 2>&1 >/dev/null" : " 2>/dev/null");
  Result result{-1, {}};
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) result.out.append(buffer, n);
  const int raw = ::pclose(pipe);
  result.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return result;
}

}  // namespace

TEST(BenchCommand, JsonReportCountsEveryEventDeliveredAndSplitsTheRoutersCpu) {
  const Result res = run("--config " + ringroute::testing::shell_quoted(RINGROUTE_BENCH_CONFIGS + std::string("/one-backend.json")) +
                         " --producers 1 --size 100 --seconds 1 --rate 200000 --json");
  ASSERT_EQ(res.status, 0) << res.out;
  simdjson::dom::parser parser;
  simdjson::dom::element report;
  ASSERT_EQ(parser.parse(res.out).get(report), simdjson::SUCCESS) << res.out;
  std::uint64_t events = 0, delivered = 0, dropped = 1;
  ASSERT_EQ(report["events"].get(events), simdjson::SUCCESS) << res.out;
  ASSERT_EQ(report["delivered"].get(delivered), simdjson::SUCCESS);
  ASSERT_EQ(report["dropped"].get(dropped), simdjson::SUCCESS);
  // The producers ran a second at 200,000 a second (under a sanitizer on
  // 2 loaded cores, perhaps well below: no speed is judged here); all of it
  // is written.
  EXPECT_GT(events, 10'000u);
  EXPECT_EQ(delivered, events);
  EXPECT_EQ(dropped, 0u);
  double events_per_sec = 0, p99 = 0, router = -1, workers = -1, sinks = -1;
  ASSERT_EQ(report["events_per_sec"].get(events_per_sec), simdjson::SUCCESS);
  ASSERT_EQ(report["p99_us"].get(p99), simdjson::SUCCESS);
  ASSERT_EQ(report["router_cpu_s_per_million"].get(router), simdjson::SUCCESS);
  ASSERT_EQ(report["workers_cpu_s_per_million"].get(workers), simdjson::SUCCESS);
  ASSERT_EQ(report["sinks_cpu_s_per_million"].get(sinks), simdjson::SUCCESS);
  EXPECT_GT(events_per_sec, 0);
  EXPECT_GT(p99, 0);
  // Found by their thread names: zero here would mean the names were lost
  // (each alone may take less than the clock tick /proc counts in).
  EXPECT_GT(workers + sinks, 0);
}

// A rate so low the second event is centuries away: the producer sends its
// first and waits out the run. Its due time overflowed int64, and it ran
// at full speed instead. And a low rate is kept to the event: a whole batch
// of 64 at each due time ran it up to 63 events ahead.
TEST(BenchCommand, ATinyRateIsAWaitNotFullSpeed) {
  // The report's "events" member, read without a parser: the number after it.
  auto events_at = [](const std::string& rate, const char* seconds) -> std::uint64_t {
    const Result res =
        run("--config " + ringroute::testing::shell_quoted(RINGROUTE_BENCH_CONFIGS + std::string("/one-backend.json")) +
            " --producers 1 --size 100 --seconds " + seconds + " --rate " + rate + " --json");
    EXPECT_EQ(res.status, 0) << res.out;
    const std::size_t at = res.out.find("\"events\":");
    if (at == std::string::npos) {
      ADD_FAILURE() << res.out;
      return 0;
    }
    return std::stoull(res.out.substr(at + 9));
  };
  EXPECT_LE(events_at("1e-12", "0.3"), 1u);
  // 20 a second for half a second: the first at once, then one each 50 ms
  // (11), and a few more where the bench's stop comes late on a loaded
  // machine; a batch at each due time sent 64.
  const std::uint64_t events = events_at("20", "0.5");
  EXPECT_GE(events, 1u);
  EXPECT_LE(events, 24u);
}

TEST(BenchCommand, BadArgumentsAreUsageErrors) {
  const std::string config = "--config " + ringroute::testing::shell_quoted(RINGROUTE_BENCH_CONFIGS + std::string("/one-backend.json")) + " ";
  for (const char* bad : {"--producers 0", "--seconds nan", "--seconds 0", "--rate -1", "--rate inf", "--warmup nan"}) {
    EXPECT_EQ(run(config + bad).status, 2) << bad;
  }
}

// A body too big for the ring is said with the sizes, as emit says it; the
// producer's error was the status alone ("too big").
TEST(BenchCommand, AnEventTooBigForTheRingIsSaidWithItsSize) {
  const std::string dir = "/tmp/rr-bench-too-big-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  {
    FILE* config = std::fopen((dir + "/edr.json").c_str(), "w");
    ASSERT_NE(config, nullptr);
    std::fputs(R"({"rings": [{"size_bytes": 1024}], "backends": [{"name": "f", "type": "file",
                   "options": {"path": "out.ndjson"}, "bindings": [{}]}]})",
               config);
    std::fclose(config);
  }
  const Result res = run("--config " + dir + "/edr.json --dir " + dir + " --size 200 --seconds 0.2 --quiet", true);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(res.status, 2);
  EXPECT_NE(res.out.find("producer 0: emit: event 0: body: 200 bytes, and a record is at most 128 on the ring"),
            std::string::npos)
      << res.out;
}

// Ctrl-C (or SIGTERM) stops the bench, and what it made in /dev/shm (its
// rings, perf block and sink files, all named rr-bench-{pid}) goes with it.
TEST(BenchCommand, AnInterruptedBenchLeavesNothingBehind) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Not left running for its 30 s if this test fails before it kills it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::freopen("/dev/null", "w", stderr);
    std::freopen("/dev/null", "w", stdout);
    ::execl(RINGROUTE_BINARY, RINGROUTE_BINARY, "bench", "--config",
            (std::string(RINGROUTE_BENCH_CONFIGS) + "/one-backend.json").c_str(), "--seconds", "30", "--rate",
            "100000", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const std::string prefix = "rr-bench-" + std::to_string(pid);
  auto leftovers = [&] {
    int n = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
      const std::string name = entry.path().filename().string();
      n += name == prefix || name.starts_with(prefix + "-") || name.starts_with(prefix + ".") ? 1 : 0;
    }
    return n;
  };
  // Running: its ring exists (the router makes it after the bench catches
  // interrupts).
  const std::string ring = "/dev/shm/" + prefix + "-0";
  for (int i = 0; i < 1000 && !std::filesystem::exists(ring); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!std::filesystem::exists(ring)) ::kill(pid, SIGKILL);
  ASSERT_TRUE(std::filesystem::exists(ring));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(pid, SIGINT);
  int status = 0;
  bool reaped = false;
  for (int i = 0; i < 200 && !(reaped = ::waitpid(pid, &status, WNOHANG) == pid); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!reaped) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    FAIL() << "the bench did not stop within 2 s of SIGINT";
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130);
  EXPECT_EQ(leftovers(), 0);
}
