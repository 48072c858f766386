// A reload that gives a backend's file to another backend (a rename that
// keeps the path): the new runner must not append to the file while the
// old one, stopped by the reload after a while, still writes its last
// batches there.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "backends.hpp"
#include "emit_events.hpp"
#include "ringroute/producer.hpp"
#include "ringroute/ingest/router.hpp"
#include "ringroute/perf/block.hpp"
#include "ringroute/ring/segment.hpp"

namespace ringroute::ingest {
namespace {

using namespace std::chrono_literals;

RouterConfig one_file_backend(const std::string& instance, const std::string& name, const std::string& options) {
  RouterConfig config;
  config.instance = instance;
  config.rings.push_back({instance, 1 << 20, 0600, 2000ms});
  config.backends.push_back({name, "file", true, options});
  config.matching =
      testing::backends_from_json(R"([{"name":")" + name + R"(","bindings":[{"verbosity":"trace"}]}])");
  return config;
}

using testing::emit_events;

// Only once the reload has returned: a slot's name is written by the
// reload's thread, unordered with this one until then.
std::uint64_t sent_by(const perf::Block& block, const std::string& name) {
  for (const perf::BackendSlot& slot : block.backends) {
    if (perf::slot_name(slot.name) == name) return slot.sink.sent.read();
  }
  return 0;
}

// While a reload runs: every slot's, read without its name ("old" never
// sends, so any is "new"'s).
std::uint64_t sent_by_all(const perf::Block& block) {
  std::uint64_t sent = 0;
  for (const perf::BackendSlot& slot : block.backends) sent += slot.sink.sent.read();
  return sent;
}

// "old" can never finish a batch: /dev/null takes the write and refuses the
// fdatasync that `fsync: batch` asks for (EINVAL), so its batches are
// retried until the reload that removed it gives them up. "new", the same
// file without fsync, writes whatever it is handed, but only once "old" has
// stopped; before, it wrote at once beside it.
TEST(RouterReload, ABackendGivenTheFileOfOneStillWritingWaitsUntilThatOneStops) {
  const std::string instance = "rr-test-same-file-" + std::to_string(::getpid());
  {
    Router router(one_file_backend(instance, "old", R"({"path":"/dev/null","fsync":"batch"})"));
    ASSERT_TRUE(emit_events(instance, 5));
    std::this_thread::sleep_for(100ms);  // "old" retries its batch
    ASSERT_EQ(sent_by(router.block(), "old"), 0u);

    // The removed backend gets 1.5 s (room for a TSan build on 2 loaded
    // cores to do what follows within it); the stop deadline is a bound
    // past it, which the reload must not need.
    const auto window_ends = std::chrono::steady_clock::now() + 5s;
    RouterConfig next = one_file_backend(instance, "new", R"({"path":"/dev/null"})");
    next.removed_backend_drain = 1500ms;
    // The reload asks for its stop deadline only once every worker reads by
    // the new plan. Not polled through the block: its slot names are written
    // by the reload's thread meanwhile, a race TSan sees in one process
    // (stat reads them from another).
    std::atomic<bool> plan_taken{false};
    auto reload = std::async(std::launch::async, [&] {
      return router.reload(next, [&]() -> std::optional<std::chrono::steady_clock::time_point> {
                             plan_taken.store(true);
                             return window_ends;
                           });
    });
    while (!plan_taken.load() && std::chrono::steady_clock::now() < window_ends) std::this_thread::sleep_for(1ms);
    ASSERT_TRUE(plan_taken.load());
    ASSERT_TRUE(emit_events(instance, 5));
    std::this_thread::sleep_for(500ms);
    ASSERT_EQ(reload.wait_for(0s), std::future_status::timeout) << "the reload ended before the check";
    EXPECT_EQ(sent_by_all(router.block()), 0u) << "written beside the backend that still writes the file";

    EXPECT_EQ(reload.get(), std::nullopt);
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (sent_by(router.block(), "new") < 5 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(sent_by(router.block(), "new"), 5u);
    EXPECT_EQ(sent_by(router.block(), "old"), 0u);
    router.stop(100ms);
  }
  ring::Segment::remove(instance);
  perf::BlockMapping::remove(instance);
}

// The thread named `name` in this process (0: none).
pid_t thread_named(const std::string& name) {
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string text;
    std::getline(comm, text);
    if (text == name) return static_cast<pid_t>(std::stoi(task.path().filename().string()));
  }
  return 0;
}

// A backend whose options are the same in another order goes on untouched
// (its sink thread, file and connections kept): the options were compared
// as text, so a config reformatted or a key moved replaced it.
TEST(RouterReload, OptionsInAnotherOrderLeaveTheBackendUntouched) {
  const std::string instance = "rr-test-reorder-" + std::to_string(::getpid());
  {
    Router router(one_file_backend(
        instance, "b", R"({"path":"/dev/null","batch":{"max_events":10,"linger_ms":5},"fsync":"never"})"));
    // The thread names itself once it runs.
    pid_t first = 0;
    for (const auto named_by = std::chrono::steady_clock::now() + 2s;
         (first = thread_named("rr-sink:b")) == 0 && std::chrono::steady_clock::now() < named_by;) {
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_NE(first, 0);
    EXPECT_EQ(router.reload(one_file_backend(instance, "b",
                                             R"({"fsync":"never","batch":{"linger_ms":5,"max_events":10},"path":"/dev/null"})")),
              std::nullopt);
    EXPECT_EQ(thread_named("rr-sink:b"), first) << "replaced for keys in another order";
    // And a change is one: a new sink thread.
    EXPECT_EQ(router.reload(one_file_backend(instance, "b",
                                             R"({"fsync":"never","batch":{"linger_ms":5,"max_events":11},"path":"/dev/null"})")),
              std::nullopt);
    // Its successor named (the old one is joined by the reload).
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while ((thread_named("rr-sink:b") == first || thread_named("rr-sink:b") == 0) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    EXPECT_NE(thread_named("rr-sink:b"), first);
    EXPECT_NE(thread_named("rr-sink:b"), 0);
    router.stop(100ms);
  }
  ring::Segment::remove(instance);
  perf::BlockMapping::remove(instance);
}

}  // namespace
}  // namespace ringroute::ingest
