#include "ringroute/tools/json_text.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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

bool read_failed(const std::istream& in) {
  return in.bad() || (&in == &std::cin && std::ferror(stdin) != 0);
}

}  // namespace ringroute::tools
