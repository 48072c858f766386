// JSON string output for the command line's own messages.
#pragma once

#include <cstddef>
#include <istream>
#include <string>
#include <string_view>

#include "ringroute/ingest/event_json.hpp"

namespace ringroute::tools {

// `s` as a JSON string literal: quotes, backslashes and control characters
// escaped, invalid UTF-8 replaced by U+FFFD so every line printed parses.
[[nodiscard]] std::string json_quote(std::string_view s);

// Why `path` can't be read as a file ("no such file", "is a directory",
// ...), or empty when it can be opened for reading.
[[nodiscard]] std::string unreadable_file(const std::string& path);

// Calls on_line(line, number) for each non-blank line of NDJSON input, as
// `emit` and `route` read it (SEMANTICS.md 7): numbers count from 1 and count
// blank lines, a trailing CR is dropped, a line of only whitespace is blank.
template <class OnLine>
void for_each_ndjson_line(std::istream& in, OnLine&& on_line) {
  std::string line;
  std::size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (ingest::is_blank(line)) continue;
    on_line(std::string_view(line), number);
  }
}

}  // namespace ringroute::tools
