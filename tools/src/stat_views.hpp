#pragma once
// What `ringroute stat` makes of two perf blocks, for the fuzz target: the
// block is in shared memory that anyone who may write it can fill with
// anything, and stat must read whatever is there without crashing.
#include <string>

#include "ringroute/perf/block.hpp"

namespace ringroute::tools {

// The --json snapshot of `later` into `json`, and the live view's two
// tables (`earlier` alone, then `later` with rates against it) to stdout.
void stat_views_of_blocks(const perf::Block& earlier, const perf::Block& later, std::string& json);

}  // namespace ringroute::tools
