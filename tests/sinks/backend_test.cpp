// A backend's runner on its own (a file sink behind it): what it records
// about the batches it writes.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ringroute/perf/block.hpp"
#include "ringroute/sinks/backend.hpp"
#include "ringroute/sinks/file_sink.hpp"

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

TEST(BackendRunner, EachEventIsRecordedAtItsOwnLatencyNotItsBatchsOldest) {
  FileBackend backend("b");
  BackendRunner& runner = *backend.runner;
  perf::BackendSlot* const slot = backend.slot.get();

  // One event committed a second ago, then 99 committed just now: counted
  // at the oldest age, all 100 would be over half a second.
  Batch* batch = runner.take_batch();
  const std::int64_t now = realtime_ns();
  for (int i = 0; i < 100; ++i) {
    batch->bytes.append("{}\n");
    batch->event_ends.push_back(static_cast<std::uint32_t>(batch->bytes.size()));
    batch->event_ns.push_back(i == 0 ? now - 1'000'000'000 : now);
  }
  batch->events = 100;
  batch->holds_ring = false;
  runner.submit(batch);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!runner.idle() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(runner.idle());
  runner.stop(std::chrono::milliseconds(0));

  const auto [slow, fast] = split_at(slot->latency, 500'000'000);
  EXPECT_EQ(slow, 1u);
  EXPECT_EQ(fast, 99u);
  EXPECT_EQ(slot->sink.sent.read(), 100u);
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

}  // namespace
}  // namespace ringroute::sinks
