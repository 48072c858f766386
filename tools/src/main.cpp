#include <cstdio>
#include <exception>

#include "ringroute/tools/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"ringroute: a local event router over shared-memory rings"};
  app.require_subcommand(1);
  const auto emit = ringroute::tools::add_emit(app);
  const auto route = ringroute::tools::add_route(app);
  const auto validate = ringroute::tools::add_validate(app);
  const auto run = ringroute::tools::add_run(app);
  const auto stat = ringroute::tools::add_stat(app);
  CLI::App* bench = app.add_subcommand("bench", "measure throughput");
  bench->require_subcommand(0, 1);
  const auto bench_ring = ringroute::tools::add_bench_ring(*bench);
  const auto bench_router = ringroute::tools::add_bench_router(*bench);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;  // usage errors exit 2, --help exits 0
  }
  try {
    if (app.got_subcommand("emit")) return emit();
    if (app.got_subcommand("route")) return route();
    if (app.got_subcommand("validate")) return validate();
    if (app.got_subcommand("run")) return run();
    if (app.got_subcommand("stat")) return stat();
    if (bench->got_subcommand("ring")) return bench_ring();
    if (app.got_subcommand("bench")) return bench_router();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringroute: %s\n", e.what());
    return 2;
  }
  return 2;
}
