// Perf block slots across reloads: backends renamed by one reload after
// another take the slots of names no config holds any more. They used to
// keep theirs for good, and the block's 256 filled up.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "backends.hpp"
#include "ringroute/ingest/router.hpp"
#include "ringroute/perf/block.hpp"
#include "ringroute/ring/segment.hpp"

namespace ringroute::ingest {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// 100 file backends named {prefix}0 ... {prefix}99, small batches (each
// runner warms four of them).
RouterConfig named(const std::string& instance, const std::string& dir, const std::string& prefix) {
  RouterConfig config;
  config.instance = instance;
  config.rings.push_back({instance, 1 << 20, 0600, 2000ms});
  std::string specs = "[";
  for (int i = 0; i < 100; ++i) {
    const std::string name = prefix + std::to_string(i);
    config.backends.push_back(
        {name, "file", true, R"({"path":")" + dir + "/" + name + R"(.ndjson","batch":{"max_bytes":4096}})"});
    specs += (i ? "," : "") + std::string(R"({"name":")") + name + R"(","bindings":[{"verbosity":"trace"}]})";
  }
  config.matching = testing::backends_from_json(specs + "]");
  return config;
}

TEST(RouterSlots, BackendsRenamedReloadAfterReloadTakeTheSlotsOfNamesNoLongerUsed) {
  const std::string instance = "rr-test-slots-" + std::to_string(::getpid());
  const std::string dir = "/tmp/" + instance;
  fs::create_directories(dir);
  {
    Router router(named(instance, dir, "a"));
    // a* and b* run side by side during the reload: 200 slots. Then c*
    // needs 100 more while b* still runs: only a*'s, which no config holds
    // now, can make room.
    EXPECT_EQ(router.reload(named(instance, dir, "b")), std::nullopt);
    EXPECT_EQ(router.reload(named(instance, dir, "c")), std::nullopt);
    EXPECT_EQ(router.reload(named(instance, dir, "d")), std::nullopt);
    router.stop(100ms);
  }
  fs::remove_all(dir);
  ring::Segment::remove(instance);
  perf::BlockMapping::remove(instance);
}

}  // namespace
}  // namespace ringroute::ingest
