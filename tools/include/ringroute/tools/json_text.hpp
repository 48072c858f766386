// JSON string output for the command line's own messages.
#pragma once

#include <cstddef>
#include <istream>
#include <memory>
#include <streambuf>
#include <string>
#include <string_view>

#include "ringroute/ingest/event_json.hpp"

namespace ringroute::tools {

// `s` as a JSON string literal: quotes, backslashes and control characters
// escaped, invalid UTF-8 replaced by U+FFFD so every line printed parses.
[[nodiscard]] std::string json_quote(std::string_view s);

// A file the command line reads (a config, EVENTS), opened once: a FIFO
// can't be opened a second time once its writer has gone. `problem()` says
// why it can't be read ("No such file or directory", "is a directory"), or
// is empty; then `stream()` reads it.
class InputFile {
 public:
  explicit InputFile(const std::string& path);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  [[nodiscard]] const std::string& problem() const noexcept { return problem_; }
  [[nodiscard]] std::istream& stream() noexcept { return stream_; }

 private:
  std::string problem_;
  std::unique_ptr<std::streambuf> buffer_;
  std::istream stream_{nullptr};
};

// Whether reading `in` failed (not ended): an I/O error. std::cin reads
// through stdio, whose errors reach the stream as an end of file.
[[nodiscard]] bool read_failed(const std::istream& in);

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
