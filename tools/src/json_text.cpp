#include "ringroute/tools/json_text.hpp"

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

}  // namespace ringroute::tools
