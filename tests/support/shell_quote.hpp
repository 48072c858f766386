#pragma once
// A path as one word of a shell command line: the tests paste the build's
// paths (RINGROUTE_BINARY and friends) into system() and popen(), and a
// checkout under a directory with a space split them.

#include <string>
#include <string_view>

namespace ringroute::testing {

// `text` in single quotes, each quote in it written '\''.
inline std::string shell_quoted(std::string_view text) {
  std::string out = "'";
  for (const char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

}  // namespace ringroute::testing
