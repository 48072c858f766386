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

// The longest event line `emit` and `route` read: the largest record any
// ring takes (an eighth of 1 GiB). Unbounded, a line without end (a pipe
// from /dev/zero) took memory until the process was killed.
inline constexpr std::size_t kMostEventLineBytes = std::size_t{128} << 20;

// Reads the next line of `in` (up to a '\n', which is read and not kept)
// into `line`, keeping at most `most` + 1 bytes of it (one past the bound
// tells a line over it); `length` is the whole line's. False at the end of
// the input (or a read error: read_failed()).
bool read_line(std::istream& in, std::string& line, std::size_t most, std::size_t& length);

// Calls on_line(line, number) for each non-blank line of NDJSON input, as
// `emit` and `route` read it (SEMANTICS.md 7): numbers count from 1 and count
// blank lines, a trailing CR is dropped, a line of only whitespace is blank.
// A line longer than `most` bytes is read to its end and not kept:
// on_too_long(number, length) instead.
template <class OnLine, class OnTooLong>
void for_each_ndjson_line(std::istream& in, OnLine&& on_line, OnTooLong&& on_too_long,
                          std::size_t most = kMostEventLineBytes) {
  std::string line;
  std::size_t number = 0, length = 0;
  while (read_line(in, line, most, length)) {
    ++number;
    if (length > most) {
      on_too_long(number, length);
      continue;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (ingest::is_blank(line)) continue;
    on_line(std::string_view(line), number);
  }
}

// What emit and route say of a line past kMostEventLineBytes.
[[nodiscard]] std::string too_long_line(std::size_t length);

}  // namespace ringroute::tools
