#include "ringroute/tools/json_text.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

std::string unreadable_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::strerror(errno);
  struct stat st {};
  const bool directory = ::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
  ::close(fd);
  // An ifstream opens a directory and then reads nothing, which looked like
  // an empty file.
  return directory ? "is a directory" : "";
}

}  // namespace ringroute::tools
