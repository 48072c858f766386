// The verbs of the `ringroute` command. Each registers its subcommand on the
// CLI11 app and returns the function that runs it (exit status: 0 ok, 1 some
// input was bad, 2 usage, config or I/O error).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace ringroute::tools {

using Run = std::function<int()>;

Run add_emit(CLI::App& app);
Run add_bench_ring(CLI::App& bench);
Run add_route(CLI::App& app);
Run add_validate(CLI::App& app);
Run add_run(CLI::App& app);
Run add_stat(CLI::App& app);
Run add_bench_router(CLI::App& bench);

}  // namespace ringroute::tools
