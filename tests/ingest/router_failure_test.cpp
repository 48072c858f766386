// A router worker that runs out of memory stops reading and says so; the
// router goes on to a stop as on SIGTERM. An exception out of the worker's
// thread was std::terminate: the whole router gone without a drain or a
// word of which ring.
#include <gtest/gtest.h>

#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <string>
#include <thread>

#include "backends.hpp"
#include "peers.hpp"
#include "replaced_new.hpp"
#include "ringroute/ingest/router.hpp"
#include "ringroute/producer.hpp"
#include "ringroute/ring/segment.hpp"

namespace {
// Armed: every allocation on a ring worker's thread ("rr-ring:...") fails.
std::atomic<bool> fail_worker_allocations{false};
}  // namespace

void* replaced_new_hook(std::size_t size, std::size_t alignment) noexcept {
  if (fail_worker_allocations.load(std::memory_order_relaxed)) {
    char name[16] = {};
    ::prctl(PR_GET_NAME, name);
    if (std::strncmp(name, "rr-ring:", 8) == 0) return nullptr;
  }
  return ringroute::testing::replaced_new_malloc(size, alignment);
}

namespace ringroute::ingest {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Whether this process has `path` open.
bool has_open(const fs::path& path) {
  for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
    std::error_code error;
    if (fs::read_symlink(entry.path(), error) == path) return true;
  }
  return false;
}

TEST(RouterFailure, AWorkerOutOfMemoryStopsAndSaysSoInsteadOfTakingTheRouterDown) {
  const std::string name = "rr-test-oom-" + std::to_string(::getpid());
  RouterConfig config;
  config.instance = name;
  config.rings.push_back({name, 4 << 20, 0600, 2000ms});
  // A destination nobody listens on, under `block`: its batches wait, the
  // worker fills more, and once the four warm ones are out it makes one.
  config.backends.push_back({"dead", "http", true,
                             R"({"url":"http://127.0.0.1:)" + std::to_string(testing::free_port()) + R"(/"})"});
  // A file backend the reload removes: its runner, and so its file, lives
  // as long as some plan holds it.
  const fs::path gone_path = fs::temp_directory_path() / (name + "-gone.log");
  config.backends.push_back({"gone", "file", true, R"({"path":")" + gone_path.string() + R"("})"});
  config.matching = testing::backends_from_json(
      R"([{"name":"dead","bindings":[{"verbosity":"trace"}]},{"name":"gone","bindings":[{"verbosity":"trace"}]}])");
  {
    Router router(config);
    std::this_thread::sleep_for(100ms);  // the worker has started and taken its plan
    EventProducer producer;
    rr_producer_options options{};
    options.wait_timeout_ns = 100'000'000;
    ASSERT_EQ(producer.open(name, &options), RR_OK);
    fail_worker_allocations.store(true);
    rr_event event{};
    event.body = to_rr_str(R"({"k":"some body text"})");
    std::optional<std::string> failure;
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    for (int i = 0; !failure && std::chrono::steady_clock::now() < deadline; ++i) {
      (void)producer.emit(event, RR_EMIT_BODY_TRUSTED);
      if (i % 256 == 0) failure = router.failure();
    }
    fail_worker_allocations.store(false);
    ASSERT_TRUE(failure) << "the worker never failed an allocation";
    ASSERT_TRUE(has_open(gone_path)) << "the file backend never opened its file: the check below shows nothing";
    EXPECT_NE(failure->find("the worker of ring " + name + " stopped: std::bad_alloc"), std::string::npos) << *failure;
    // A reload does not wait for ever for the failed worker to take it.
    RouterConfig next = config;
    next.backends.pop_back();
    next.backends.push_back({"more", "file", true, R"({"path":"/dev/null"})"});
    next.matching = testing::backends_from_json(
        R"([{"name":"dead","bindings":[{"verbosity":"trace"}]},{"name":"more","bindings":[{"verbosity":"trace"}]}])");
    auto reload = std::async(std::launch::async, [&] { return router.reload(next); });
    ASSERT_EQ(reload.wait_for(3s), std::future_status::ready) << "the reload waits for the failed worker";
    ASSERT_FALSE(reload.get()) << "the reload was refused";
    // The failed worker held the plan it was in when it threw.
    EXPECT_FALSE(has_open(gone_path)) << "the removed backend's runner is still alive";
    router.stop(100ms);
    EXPECT_FALSE(router.drained());  // what it did not hand over stays in the ring
  }
  ring::Segment::remove(name);
  perf::BlockMapping::remove(name);
  fs::remove(gone_path);
}

}  // namespace
}  // namespace ringroute::ingest
