// A backend's runner on its own (a file sink behind it): what it records
// about the batches it writes, and how a runner that replaces another on
// reload takes over what that one left.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ringroute/perf/block.hpp"
#include "ringroute/sinks/backend.hpp"
#include "ringroute/sinks/file_sink.hpp"
#include "ringroute/sinks/http_sink.hpp"
#include "ringroute/sinks/socket_sink.hpp"

namespace ringroute::sinks {
namespace {

namespace fs = std::filesystem;

std::int64_t realtime_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// How many events the histogram holds at or above `ns`, and below it.
std::pair<std::uint64_t, std::uint64_t> split_at(const perf::Histogram& h, std::uint64_t ns) {
  std::uint64_t above = 0, below = 0;
  for (std::size_t b = 0; b < perf::kHistogramBuckets; ++b) {
    const std::uint64_t n = h.buckets[b].read();
    (perf::Histogram::lower_bound(b) >= ns ? above : below) += n;
  }
  return {above, below};
}

// A backend named `name` writing to a file in a directory of its own,
// removed with it.
struct FileBackend {
  explicit FileBackend(const std::string& name)
      : dir("/tmp/rr-backend-test-" + std::to_string(::getpid())), slot(std::make_unique<perf::BackendSlot>()) {
    fs::remove_all(dir);
    FileSinkOptions file;
    file.path = dir + "/out.ndjson";
    runner = std::make_unique<BackendRunner>(name, BackendOptions{}, std::make_unique<FileSink>(file), *slot);
  }
  ~FileBackend() {
    runner.reset();
    fs::remove_all(dir);
  }
  std::string dir;
  std::unique_ptr<perf::BackendSlot> slot;
  std::unique_ptr<BackendRunner> runner;
};

// Each wait is in the upper half of its step (10 ms doubling to 5 s), and
// two backends failing at one ring position wait apart: the jitter was
// seeded by the position alone, so they retried in step.
TEST(RetryBackoff, WaitsGrowToFiveSecondsAndTwoBackendsAtOnePositionWaitApart) {
  RetryBackoff a("collector-a", 4096), b("collector-b", 4096), again("collector-a", 4096);
  std::int64_t step = 10;
  int differ = 0;
  for (int i = 0; i < 16; ++i) {
    const auto wait_a = a.next().count(), wait_b = b.next().count();
    EXPECT_EQ(again.next().count(), wait_a) << "one backend's waits for one batch are its own";
    for (auto wait : {wait_a, wait_b}) {
      EXPECT_GE(wait, step / 2) << "try " << i;
      EXPECT_LE(wait, step) << "try " << i;
    }
    differ += wait_a != wait_b ? 1 : 0;
    step = std::min<std::int64_t>(step * 2, 5000);
  }
  EXPECT_GE(differ, 12) << "two backends drew the same waits";
}

TEST(BackendRunner, EachEventIsRecordedAtItsOwnLatencyNotItsBatchsOldest) {
  FileBackend backend("b");
  BackendRunner& runner = *backend.runner;
  perf::BackendSlot* const slot = backend.slot.get();

  // One event committed ten seconds ago, then 99 committed just now:
  // counted at the oldest age, all 100 would be over five seconds (a margin
  // a loaded TSan build needs for the write).
  Batch* batch = runner.take_batch();
  const std::int64_t now = realtime_ns();
  for (int i = 0; i < 100; ++i) {
    batch->bytes.append("{}\n");
    batch->event_ends.push_back(static_cast<std::uint32_t>(batch->bytes.size()));
    batch->event_ns.push_back(i == 0 ? now - 10'000'000'000 : now);
  }
  // The timestamp is the producer's to set: one from long before 1970 is
  // counted as the longest latency, not an overflow (UBSan) landing anywhere.
  batch->bytes.append("{}\n");
  batch->event_ends.push_back(static_cast<std::uint32_t>(batch->bytes.size()));
  batch->event_ns.push_back(std::numeric_limits<std::int64_t>::min());
  batch->events = 101;
  batch->holds_ring = false;
  runner.submit(batch);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!runner.idle() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(runner.idle());
  runner.stop(std::chrono::milliseconds(0));

  const auto [slow, fast] = split_at(slot->latency, 5'000'000'000);
  EXPECT_EQ(slow, 2u);
  EXPECT_EQ(fast, 99u);
  EXPECT_EQ(slot->latency.buckets[perf::Histogram::bucket_of(std::numeric_limits<std::int64_t>::max())].read(), 1u);
  EXPECT_EQ(slot->sink.sent.read(), 101u);
}

// The names of this process's threads, as `ps -T` shows them.
std::vector<std::string> thread_names() {
  std::vector<std::string> names;
  for (const auto& task : fs::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name)) names.push_back(name);
  }
  return names;
}

TEST(BackendRunner, SinkThreadIsNamedAfterItsBackendCutToTheKernelsLimit) {
  FileBackend backend("billing-events-archive");
  // The thread names itself as it starts.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  std::vector<std::string> names;
  do {
    names = thread_names();
    if (std::find(names.begin(), names.end(), "rr-sink:billing") != names.end()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_NE(std::find(names.begin(), names.end(), "rr-sink:billing"), names.end());
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A batch of one line holding ring bytes up to `end` of ring 0.
void submit_line(BackendRunner& runner, const std::string& line, std::uint64_t end) {
  Batch* batch = runner.take_batch();
  batch->bytes.append(line);
  batch->event_ends.push_back(static_cast<std::uint32_t>(batch->bytes.size()));
  batch->event_ns.push_back(realtime_ns());
  batch->events = 1;
  batch->ring = 0;
  batch->first_start = end - 10;
  batch->end = end;
  batch->holds_ring = true;
  runner.submit(batch);
}

// A file sink that can never open its file: every write is a retry.
std::unique_ptr<Sink> dead_file_sink() {
  FileSinkOptions file;
  file.path = "/proc/version/cannot/be/here.ndjson";
  return std::make_unique<FileSink>(file);
}

// A sink whose writes are all retried, counting the ticks it gets.
class RetryingSink : public Sink {
 public:
  explicit RetryingSink(std::atomic<int>& ticks) : ticks_(ticks) {}
  Outcome write(const Batch&, std::string& why) override {
    why = "down";
    return Outcome::retry;
  }
  void tick(std::chrono::steady_clock::time_point) override { ticks_.fetch_add(1); }

 private:
  std::atomic<int>& ticks_;
};

// A sink is ticked at least every 100 ms, a batch being retried or not:
// ticks are its interval syncs of batches written before, its age
// rotation, its noticing a vanished file. While a batch waited out its
// backoff, none came, for as long as the destination was down.
TEST(BackendRunner, ASinkIsTickedWhileABatchIsRetried) {
  perf::BackendSlot slot;
  std::atomic<int> ticks{0};
  BackendRunner runner("b", BackendOptions{}, std::make_unique<RetryingSink>(ticks), slot);
  submit_line(runner, "x\n", 10);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // into the retry
  const int before = ticks.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_GE(ticks.load() - before, 5);
  runner.stop(std::chrono::milliseconds(0));
}

// A sink that answers its writes as `script` says, in turn (then ok), each
// after its pause, saying `why` ("nope" for a refusal, "down" for a retry
// where it is empty).
class ScriptedSink : public Sink {
 public:
  struct Step {
    Outcome outcome;
    std::chrono::milliseconds pause{0};
    std::string why;  // the default's when empty
  };
  explicit ScriptedSink(std::vector<Step> script) : script_(std::move(script)) {}
  Outcome write(const Batch&, std::string& why) override {
    if (next_ >= script_.size()) return Outcome::ok;
    const Step step = script_[next_++];
    std::this_thread::sleep_for(step.pause);
    why = !step.why.empty() ? step.why : step.outcome == Outcome::failed ? "nope" : "down";
    return step.outcome;
  }

 private:
  std::vector<Step> script_;
  std::size_t next_ = 0;
};

// A sink whose first `count` writes end as `outcome`, the rest ok.
std::unique_ptr<Sink> scripted(std::size_t count, Outcome outcome) {
  return std::make_unique<ScriptedSink>(std::vector<ScriptedSink::Step>(count, {outcome}));
}

// What the log said once the runner has had `wait` to say it.
std::string log_of(BackendRunner& runner, std::chrono::milliseconds wait) {
  std::this_thread::sleep_for(wait);
  runner.stop(std::chrono::milliseconds(0));
  return ::testing::internal::GetCapturedStderr();
}

// The end of a trouble is said: the log's last word on a backend was the
// failure, however long it had been delivering again. Lines held back (at
// most one a second) are counted, and the last of them said.
TEST(BackendRunner, TheLogSaysATroubleIsOverAndWhatItHeldBack) {
  perf::BackendSlot slot;
  ::testing::internal::CaptureStderr();
  BackendRunner runner("b", BackendOptions{}, scripted(3, Outcome::retry), slot);
  submit_line(runner, "x\n", 10);
  const std::string said = log_of(runner, std::chrono::milliseconds(1600));
  EXPECT_EQ(slot.sink.sent.read(), 1u);
  EXPECT_NE(said.find("ringroute: backend b: down (retrying)\n"), std::string::npos) << said;
  // Two more tries failed and the end came within the second: held back,
  // then said, the end last.
  EXPECT_NE(said.find("ringroute: backend b: 3 more lines held back since the last (at most one a second); the last: "
                      "delivering again, after 3 failed tries over "),
            std::string::npos)
      << said;
}

// Rejections held back are said with the next line said, whatever it is
// about: a retry's line took their place and they were never summed.
// And a trouble dates from the try that met it (a timeout is seconds into
// it): "over 0.0 s" it said of a second's wait.
TEST(BackendRunner, RejectionsHeldBackAreSaidWithTheNextLineOfAnyKind) {
  perf::BackendSlot slot;
  ::testing::internal::CaptureStderr();
  std::vector<ScriptedSink::Step> script(5, {Outcome::failed});
  script.push_back({Outcome::retry, std::chrono::milliseconds(1100)});
  BackendRunner runner("b", BackendOptions{}, std::make_unique<ScriptedSink>(script), slot);
  for (std::uint64_t i = 1; i <= 6; ++i) submit_line(runner, "x\n", 10 * i);
  const std::string said = log_of(runner, std::chrono::milliseconds(1500));
  EXPECT_EQ(slot.sink.dropped_failed.read(), 5u);
  EXPECT_EQ(slot.sink.sent.read(), 1u);
  EXPECT_NE(said.find("ringroute: backend b: down (retrying) [4 more lines held back since the last (at most one a "
                      "second), with 4 events rejected and not retried in them]\n"),
            std::string::npos)
      << said;
  EXPECT_NE(said.find("delivering again, after 1 failed tries over 1."), std::string::npos) << said;
}

// The line `stat` shows (perf::SaidLine) keeps its outcome when it is too
// long for its field: the cause is cut, at a character's start. Cut at
// the end, it lost "(N events rejected, not retried)", and could split a
// character.
TEST(BackendRunner, TheLineStatShowsKeepsItsOutcomeWhenCut) {
  perf::BackendSlot slot;
  std::string why = "HTTP 400 from http://127.0.0.1:9/in: ";
  while (why.size() < 400) why += "\xC3\xA9";  // é, two bytes each
  BackendRunner runner("b", BackendOptions{}, std::make_unique<ScriptedSink>(std::vector<ScriptedSink::Step>{
                                                  {Outcome::failed, std::chrono::milliseconds(0), why}}),
                       slot);
  submit_line(runner, "x\n", 10);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (slot.sink.dropped_failed.read() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  runner.stop(std::chrono::milliseconds(0));
  const auto said = perf::read_said(slot.said);
  ASSERT_TRUE(said);
  EXPECT_LT(said->text.size(), perf::kSaidBytes);
  EXPECT_TRUE(said->text.ends_with("\xC3\xA9... (1 events rejected, not retried)")) << said->text;
  EXPECT_TRUE(said->text.starts_with("HTTP 400 from http://127.0.0.1:9/in: \xC3\xA9")) << said->text;
}

// What a runner held back when it stops (a stop, a reload) is said then:
// a trouble that ended less than a second before a stop was the log's
// last word on the backend.
TEST(BackendRunner, WhatTheLogHeldBackIsSaidAtAStop) {
  perf::BackendSlot slot;
  ::testing::internal::CaptureStderr();
  BackendRunner runner("b", BackendOptions{}, scripted(1, Outcome::retry), slot);
  submit_line(runner, "x\n", 10);
  const std::string said = log_of(runner, std::chrono::milliseconds(300));
  EXPECT_EQ(slot.sink.sent.read(), 1u);
  EXPECT_NE(said.find("ringroute: backend b: 1 more lines held back since the last (at most one a second); the last: "
                      "delivering again, after 1 failed tries over "),
            std::string::npos)
      << said;
}

// Rejected events are all in the log, those of lines held back too: it said
// one line's count a second, and a steady stream of rejections read as a
// few hundredths of itself.
TEST(BackendRunner, TheLogCountsEveryRejectedEventThoughItHoldsLinesBack) {
  perf::BackendSlot slot;
  ::testing::internal::CaptureStderr();
  BackendRunner runner("b", BackendOptions{}, scripted(50, Outcome::failed), slot);
  for (std::uint64_t i = 1; i <= 50; ++i) submit_line(runner, "x\n", 10 * i);
  const std::string said = log_of(runner, std::chrono::milliseconds(1600));
  EXPECT_EQ(slot.sink.dropped_failed.read(), 50u);
  EXPECT_NE(said.find("ringroute: backend b: nope (1 events rejected, not retried)\n"), std::string::npos) << said;
  EXPECT_NE(said.find("ringroute: backend b: 49 more lines held back since the last (at most one a second), with 49 "
                      "events rejected and not retried in them; the last: nope (1 events rejected, not retried)"),
            std::string::npos)
      << said;
}

// A batch reserves room for a full one only up to a bound: a config's
// `batch.max_bytes` of 1 GiB made each runner reserve and touch 4 GiB at
// start (four warm batches), and every later batch reserve 2 GiB however
// little it held. Past the bound a batch grows as it fills.
TEST(BackendRunner, ABatchReservesAtMostABoundedSizeWhateverItsLimit) {
  perf::BackendSlot slot;
  BackendOptions options;
  options.batch_max_bytes = 1ull << 30;
  options.batch_max_events = 1u << 30;
  BackendRunner runner("b", options, dead_file_sink(), slot);
  Batch* batch = runner.take_batch();
  EXPECT_LE(batch->bytes.capacity(), 5u << 20);
  EXPECT_LE(batch->event_ends.capacity(), 16384u);
  std::string big(8u << 20, 'x');  // and it still takes more than that
  batch->bytes.append(big);
  EXPECT_EQ(batch->bytes.size(), big.size());
}

// A queue is bounded by the memory its batches hold. A destination down (or
// slower than an idle ring's one-event batches) queued batches that each
// reserved a megabyte for a full one, counted at the bytes they held: 64
// MiB of `queue.max_bytes` let 100,000 of them, 100 GiB, pile up.
TEST(BackendRunner, AQueueOfOneEventBatchesIsBoundedByTheMemoryTheyHold) {
  perf::BackendSlot slot;
  BackendOptions options;
  options.queue_max_bytes = 8u << 20;
  BackendRunner runner("b", options, dead_file_sink(), slot);
  int handed = 0;
  while (!runner.over_limit() && handed < 1000) submit_line(runner, "x\n", 10u * static_cast<unsigned>(++handed));
  EXPECT_TRUE(runner.over_limit());
  EXPECT_LE(handed, 8) << "each batch holds about a megabyte";
  runner.stop(std::chrono::milliseconds(0));
}

TEST(BackendRunner, AStoppedRunnerCountsWhatItWasHandedAndDidNotWrite) {
  perf::BackendSlot slot;
  BackendRunner runner("b", BackendOptions{}, dead_file_sink(), slot);
  for (int i = 1; i <= 3; ++i) submit_line(runner, std::to_string(i) + "\n", 10u * static_cast<unsigned>(i));
  runner.stop(std::chrono::milliseconds(50));
  EXPECT_EQ(runner.unwritten_events(), 3u);
  EXPECT_EQ(slot.written_through[0].load(), 0u);
}

// A router stopping (or reloading) with several destinations down waits
// one drain for all of them, not one each: three runners that can never
// write, stopped together with a 1 s drain, take about 1 s, where one
// after the other they took 3.
TEST(BackendRunner, RunnersStoppedTogetherShareOneDrain) {
  std::vector<std::unique_ptr<perf::BackendSlot>> slots;
  std::vector<std::unique_ptr<BackendRunner>> runners;
  std::vector<BackendRunner*> all;
  for (int i = 0; i < 3; ++i) {
    slots.push_back(std::make_unique<perf::BackendSlot>());
    runners.push_back(std::make_unique<BackendRunner>("b" + std::to_string(i), BackendOptions{}, dead_file_sink(),
                                                      *slots.back()));
    submit_line(*runners.back(), "x\n", 10);
    all.push_back(runners.back().get());
  }
  const auto start = std::chrono::steady_clock::now();
  BackendRunner::stop_all(all, start + std::chrono::milliseconds(1000));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, std::chrono::milliseconds(1000));
  EXPECT_LT(elapsed, std::chrono::milliseconds(2500));
  for (const auto& runner : runners) EXPECT_EQ(runner->unwritten_events(), 1u);
}

// The reload case: the backend's options changed while its old destination
// was down. The new runner writes nothing while the old one runs (the two
// would interleave, and the later one's written-through position would
// release ring space the earlier one had not written), then writes the
// old one's leftovers, then its own, in order.
TEST(BackendRunner, AReplacementWritesWhatItsPredecessorLeftFirstAndNothingBefore) {
  const std::string dir = "/tmp/rr-backend-follow-" + std::to_string(::getpid());
  fs::remove_all(dir);
  perf::BackendSlot slot;
  auto old_runner = std::make_shared<BackendRunner>("b", BackendOptions{}, dead_file_sink(), slot);
  for (int i = 1; i <= 3; ++i) submit_line(*old_runner, std::to_string(i) + "\n", 10u * static_cast<unsigned>(i));
  FileSinkOptions file;
  file.path = dir + "/out.ndjson";
  BackendRunner new_runner("b", BackendOptions{}, std::make_unique<FileSink>(file), slot, old_runner);
  submit_line(new_runner, "4\n", 40);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_EQ(slurp(file.path), "");
  EXPECT_EQ(slot.written_through[0].load(), 0u);
  EXPECT_FALSE(new_runner.idle());

  old_runner->stop(std::chrono::milliseconds(0));
  old_runner.reset();  // the new runner keeps it as long as it needs its batches
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!new_runner.idle() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(new_runner.idle());
  EXPECT_EQ(slurp(file.path), "1\n2\n3\n4\n");
  EXPECT_EQ(slot.written_through[0].load(), 40u);
  EXPECT_EQ(slot.sink.sent.read(), 4u);
  new_runner.stop(std::chrono::milliseconds(0));
  EXPECT_EQ(new_runner.unwritten_events(), 0u);
  fs::remove_all(dir);
}

// Replaced again and again while its destination is down (a reload a
// minute through an outage), a backend keeps no runner before the last:
// each held the one before it until the leftovers were written, and the
// chain (batches, sinks, io_urings) grew by one a reload. The leftovers
// still go first, in order, once a destination takes them.
TEST(BackendRunner, ReplacementsWhileTheDestinationIsDownHoldNoRunnerBeforeThem) {
  const std::string dir = "/tmp/rr-backend-chain-" + std::to_string(::getpid());
  fs::remove_all(dir);
  perf::BackendSlot slot;
  auto first = std::make_shared<BackendRunner>("b", BackendOptions{}, dead_file_sink(), slot);
  for (int i = 1; i <= 3; ++i) submit_line(*first, std::to_string(i) + "\n", 10u * static_cast<unsigned>(i));
  const std::weak_ptr<BackendRunner> first_left = first;
  auto second = std::make_shared<BackendRunner>("b", BackendOptions{}, dead_file_sink(), slot, first);
  first->stop(std::chrono::milliseconds(0));
  first.reset();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!first_left.expired() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(first_left.expired()) << "the second runner let the first go once it took its leftovers";

  FileSinkOptions file;
  file.path = dir + "/out.ndjson";
  BackendRunner third("b", BackendOptions{}, std::make_unique<FileSink>(file), slot, second);
  submit_line(third, "4\n", 40);
  second->stop(std::chrono::milliseconds(0));
  second.reset();
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!third.idle() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(third.idle());
  EXPECT_EQ(slurp(file.path), "1\n2\n3\n4\n");
  EXPECT_EQ(slot.written_through[0].load(), 40u);
  third.stop(std::chrono::milliseconds(0));
  EXPECT_EQ(third.unwritten_events(), 0u);
  fs::remove_all(dir);
}

// Options in another order are the same options, but for the order of
// HTTP headers, which goes on the wire.
TEST(BackendOptions, TheirIdentityIgnoresKeyOrderButNotTheHeadersOrder) {
  EXPECT_EQ(options_identity(R"({"a":1,"b":{"y":[1,{"q":2,"p":3}],"x":"s"}})"),
            options_identity(R"({"b":{"x":"s","y":[1,{"p":3,"q":2}]},"a":1})"));
  EXPECT_NE(options_identity(R"({"a":1,"b":2})"), options_identity(R"({"a":1,"b":3})"));
  EXPECT_NE(options_identity(R"({"a":[1,2]})"), options_identity(R"({"a":[2,1]})"));
  EXPECT_NE(options_identity(R"({"headers":{"X-A":"1","X-B":"2"}})"),
            options_identity(R"({"headers":{"X-B":"2","X-A":"1"}})"));
  // A key cannot pass for the end of another.
  EXPECT_NE(options_identity(R"({"ab":"c"})"), options_identity(R"({"a":"bc"})"));
}

// What the router checks its descriptor limit against at start.
TEST(BackendOptions, MostDescriptorsCountsTheConnectionsALoadMayOpen) {
  EXPECT_EQ(most_descriptors("file", R"({"path":"x"})"), 3u);  // io_uring, the file and the next at rotation
  EXPECT_EQ(most_descriptors("http", R"({"url":"http://h/"})"), 1u + HttpSinkOptions{}.max_connections);
  EXPECT_EQ(most_descriptors("http", R"({"url":"http://h/","max_connections":2})"), 3u);
  EXPECT_EQ(most_descriptors("socket", R"({"url":"syslog://h"})"), 1u + SocketSinkOptions{}.max_connections);
  EXPECT_EQ(most_descriptors("socket", R"({"url":"unix:///dev/log","max_connections":5})"), 6u);
  EXPECT_EQ(most_descriptors("socket", R"({"url":"syslog+udp://h:514","max_connections":5})"), 2u);
  EXPECT_EQ(most_descriptors("socket", R"({"url":"unixgram:///dev/log"})"), 2u);
}

// A leftover keeps only what it holds: each kept the megabyte it reserved
// for a full batch, outside every queue bound, so a backend replaced at
// each reload through an outage grew by a megabyte a reload (80 reloads of
// one event each: 100 MB).
TEST(BackendRunner, LeftoversTakenOverKeepOnlyTheBytesTheyHold) {
  perf::BackendSlot slot;
  constexpr int kReplacements = 8;
  auto runner = std::make_shared<BackendRunner>("b", BackendOptions{}, dead_file_sink(), slot);
  const std::size_t warm = runner->held_batch_bytes();  // its pool's few full-size batches
  ASSERT_GE(warm, 1u << 20);
  for (int i = 1; i <= kReplacements; ++i) {
    submit_line(*runner, std::to_string(i) + "\n", 10u * static_cast<unsigned>(i));
    auto next = std::make_shared<BackendRunner>("b", BackendOptions{}, dead_file_sink(), slot, runner);
    const std::weak_ptr<BackendRunner> left = runner;
    runner->stop(std::chrono::milliseconds(0));
    runner = std::move(next);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!left.expired() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_TRUE(left.expired()) << "replacement " << i << " did not take over";
  }
  // Its own pool, the one leftover whose write the last stop cut short
  // (a send may still read it), and the rest shrunk to their bytes.
  const std::size_t bound = warm + (BackendOptions{}.batch_max_bytes + 4096) + 64 * 1024;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (runner->held_batch_bytes() > bound && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_LE(runner->held_batch_bytes(), bound);
  runner->stop(std::chrono::milliseconds(0));
  EXPECT_EQ(runner->unwritten_events(), static_cast<std::uint64_t>(kReplacements));
}

// The batches a runner faults in at its start are bounded by its queue
// (queue.max_bytes bounds what its batches take) and, over all runners, by
// the process's budget: each made four full ones, so 256 backends held a
// GiB at start, and a backend with a 1 KiB queue 4 MiB.
TEST(BackendRunner, TheBatchesMadeAtStartAreBoundedByTheQueueAndThePerProcessBudget) {
  const std::size_t batch = BackendOptions{}.batch_max_bytes + 4096;
  std::vector<perf::BackendSlot> slots(100);
  {
    BackendOptions small_queue;
    small_queue.queue_max_bytes = 1024;
    BackendRunner runner("q", small_queue, dead_file_sink(), slots[0]);
    EXPECT_EQ(runner.held_batch_bytes(), batch);  // one: a batch goes whatever the bound
  }
  std::vector<std::unique_ptr<BackendRunner>> runners;
  std::size_t held = 0;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    runners.push_back(std::make_unique<BackendRunner>("b" + std::to_string(i), BackendOptions{}, dead_file_sink(),
                                                      slots[i]));
    held += runners.back()->held_batch_bytes();
  }
  EXPECT_GE(held, (64u << 20) - 4 * batch);
  EXPECT_LE(held, 64u << 20);
  EXPECT_EQ(runners.front()->held_batch_bytes(), 4 * batch);  // the first ones as before
  EXPECT_EQ(runners.back()->held_batch_bytes(), 0u);
  // Given back with the runners.
  runners.clear();
  BackendRunner again("again", BackendOptions{}, dead_file_sink(), slots[0]);
  EXPECT_EQ(again.held_batch_bytes(), 4 * batch);
}

}  // namespace
// A datagram is its own frame, whatever the case of its URL's scheme: with
// "SYSLOG+UDP://" the config took the scheme as UDP and the sink sent each
// datagram with an octet-count prefix.
// A runner stopped before it was handed anything (one a refused start or
// reload throws away) leaves its file as it was: the stop's wake ran a
// tick, which takes a file with age rotation for a first write (its torn
// tail cut, rotated past its age).
TEST(BackendRunner, ARunnerStoppedBeforeItsFirstBatchLeavesItsFileAlone) {
  const std::string dir = "/tmp/rr-backend-untouched-" + std::to_string(::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  FileSinkOptions file;
  file.path = dir + "/out.ndjson";
  file.rotate_seconds = 1;
  std::ofstream(file.path) << "{\"a\":1}\n{\"b\":";
  perf::BackendSlot slot;
  BackendRunner runner("untouched", BackendOptions{}, std::make_unique<FileSink>(file), slot);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // waiting for a batch (its first tick is at 100 ms)
  runner.stop(std::chrono::milliseconds(0));
  std::ifstream in(file.path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "{\"a\":1}\n{\"b\":");
  EXPECT_FALSE(fs::exists(file.path + ".1"));
  fs::remove_all(dir);
}

TEST(BackendOptions, ADatagramSchemeIsReadWhateverItsCase) {
  for (const char* url : {"syslog+udp://127.0.0.1:514", "SYSLOG+UDP://127.0.0.1:514", "UnixGram:///dev/log"}) {
    const auto options = parse_backend_options("socket", std::string(R"({"url": ")") + url + "\"}");
    EXPECT_EQ(options.encoding.framing, Framing::none) << url;
  }
  const auto stream = parse_backend_options("socket", R"({"url": "SYSLOG+TCP://127.0.0.1:514"})");
  EXPECT_EQ(stream.encoding.framing, Framing::octet_counting);
}

// RFC 3164 on request; its HOSTNAME left out on local sockets, as syslog(3)
// does there (their readers take a first word for the TAG).
TEST(BackendOptions, Rfc3164LeavesTheHostnameOutOnLocalSocketsOnly) {
  EXPECT_EQ(parse_backend_options("socket", R"({"url": "unixgram:///dev/log"})").encoding.syslog_format,
            SyslogFormat::rfc5424);
  for (const char* url : {"unixgram:///dev/log", "unix:///run/log.sock", "syslog+udp://127.0.0.1:514",
                          "syslog://127.0.0.1:514", "syslog+tls://localhost:6514"}) {
    const auto options =
        parse_backend_options("socket", std::string(R"({"syslog_format": "rfc3164", "url": ")") + url + "\"}");
    EXPECT_EQ(options.encoding.syslog_format, SyslogFormat::rfc3164) << url;
    EXPECT_EQ(options.encoding.rfc3164_hostname, std::string_view(url).substr(0, 4) != "unix") << url;
  }
}

}  // namespace ringroute::sinks

