// The verbs of the `ringroute` command. Each registers its subcommand on the
// CLI11 app and returns the function that runs it (exit status: 0 ok, 1 some
// input was bad, 2 usage, config or I/O error).
#pragma once

#include <CLI/CLI.hpp>

#include <cmath>
#include <exception>
#include <functional>
#include <string>

#include "ringroute/tools/config.hpp"

namespace ringroute::tools {

using Run = std::function<int()>;

// For counts, sizes and milliseconds, checked before CLI11's own range check
// and conversion: theirs answer "abc" or "-5" with the option's range (a
// 300-digit one for a double), this names the text.
inline CLI::Validator whole_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) {
          return "not a whole number: " + text;
        }
        return "";
      },
      "WHOLE");
}

// For --instance and --ring: the config's rule for names (name_problem),
// so a name with a '/' or a terminal escape is said as such, not as
// "Invalid argument" from shm_open or echoed raw.
inline CLI::Validator instance_name() {
  return CLI::Validator([](std::string& text) { return name_problem(text, kMaxInstanceBytes); }, "NAME");
}
inline CLI::Validator ring_name() {
  return CLI::Validator([](std::string& text) { return name_problem(text, kMaxNameBytes, true); }, "RING");
}

// For seconds and rates: CLI::Range lets NaN through (every comparison with
// it is false), and infinity makes no sense either.
inline CLI::Validator finite_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        try {
          return std::isfinite(std::stod(text)) ? "" : "not a finite number: " + text;
        } catch (const std::exception&) {
          return "not a number: " + text;
        }
      },
      "FINITE");
}

Run add_emit(CLI::App& app);
Run add_bench_ring(CLI::App& bench);
Run add_route(CLI::App& app);
Run add_validate(CLI::App& app);
Run add_run(CLI::App& app);
Run add_stat(CLI::App& app);
Run add_bench_router(CLI::App& bench);

}  // namespace ringroute::tools
