// The whole config file parser (tools/src/config.cpp) on arbitrary bytes:
// never crashes, places every error it finds in a text that parses, and a
// config it accepts compiles into a matcher.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdlib.h>
#include <string_view>

#include "ringroute/matcher/matcher.hpp"
#include "ringroute/tools/config.hpp"

// Values for ${RR_FUZZ_*} in the inputs: the substitution's checks (UTF-8,
// JSON escaping of quotes and control bytes, numbers past 64 bits) ran only
// for variables the machine happened to have.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ::setenv("RR_FUZZ_QUOTE", "a\"b\\c\n\x01", 1);
  ::setenv("RR_FUZZ_BAD_UTF8", "caf\xc3\x28\xff", 1);
  ::setenv("RR_FUZZ_NUMBER", "4096", 1);
  ::setenv("RR_FUZZ_HUGE", "184467440737095516160", 1);
  ::setenv("RR_FUZZ_TRUE", "true", 1);
  ::setenv("RR_FUZZ_EMPTY", "", 1);
  ::setenv("RR_FUZZ_URL", "http://u:p@127.0.0.1:8080/x?y=${RR_FUZZ_NUMBER}", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto result = ringroute::tools::parse_config(std::string_view(reinterpret_cast<const char*>(data), size));
  if (result.config.has_value() != result.errors.empty()) std::abort();
  for (const auto& error : result.errors) {
    if (error.message.empty()) std::abort();
  }
  // A text that parsed places every error found after parsing inside it:
  // the root at least (locate_errors).
  if (!result.source.empty()) {
    const auto lines = static_cast<std::size_t>(std::count(result.source.begin(), result.source.end(), '\n')) + 1;
    for (const auto& error : result.errors) {
      if (error.line == 0 || error.line > lines || error.column == 0) std::abort();
    }
  }
  if (result.config) {
    auto matcher = ringroute::matcher::Matcher::compile(result.config->matching);
    if (matcher->backend_count() != result.config->backends.size()) std::abort();
  }
  return 0;
}
