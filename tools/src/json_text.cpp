#include "ringroute/tools/json_text.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ext/stdio_filebuf.h>
#include <iostream>

#include "ringroute/sinks/json_escape.hpp"

namespace ringroute::tools {

std::string json_quote(std::string_view s) {
  // The formatter's escaper: the same RFC 8259 escapes and U+FFFD for invalid
  // UTF-8 as in every line the router writes.
  std::string out(sinks::escaped_bound(s.size()) + 2, '\0');
  out[0] = '"';
  char* end = sinks::escape_json(s, out.data() + 1);
  *end++ = '"';
  out.resize(static_cast<std::size_t>(end - out.data()));
  return out;
}

InputFile::InputFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    problem_ = std::strerror(errno);
    return;
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    // An ifstream opens a directory and reads nothing, as if it were empty.
    ::close(fd);
    problem_ = "is a directory";
    return;
  }
  // The buffer owns the descriptor from here and closes it.
  buffer_ = std::make_unique<__gnu_cxx::stdio_filebuf<char>>(fd, std::ios::in | std::ios::binary);
  stream_.rdbuf(buffer_.get());
}

InputFile::~InputFile() = default;

bool read_line(std::istream& in, std::string& line, std::size_t most, std::size_t& length) {
  line.clear();
  length = 0;
  bool any = false;
  char chunk[1 << 16];
  for (;;) {
    in.getline(chunk, sizeof chunk);
    const auto got = static_cast<std::size_t>(in.gcount());
    // Ended by the input's end (eof), a newline (read and counted in
    // gcount, not stored), or a full chunk (fail alone: the line goes on).
    const bool ended = in.eof(), newline = !in.fail() && !ended, error = in.bad();
    const std::size_t stored = newline ? got - 1 : got;
    any = any || got != 0;
    length += stored;
    if (const std::size_t keep = line.size() < most ? std::min(stored, most + 1 - line.size()) : 0; keep != 0) {
      // Grown by doubling, but never past the bound: a string's own growth
      // would take twice it for the longest line.
      if (line.size() + keep > line.capacity()) {
        line.reserve(std::min(most + 1, std::max(2 * line.capacity(), line.size() + keep)));
      }
      line.append(chunk, keep);
    }
    if (newline) return true;
    if (ended || error) return any && !error;
    in.clear();  // the chunk was full: the same line goes on
  }
}

std::string too_long_line(std::size_t length) {
  return "a line of more than " + std::to_string(kMostEventLineBytes) + " bytes (" + std::to_string(length) +
         "), longer than any event a ring takes";
}

bool read_failed(const std::istream& in) {
  return in.bad() || (&in == &std::cin && std::ferror(stdin) != 0);
}

}  // namespace ringroute::tools
