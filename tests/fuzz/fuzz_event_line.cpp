// An NDJSON event line as `emit` reads it: any bytes give an event or an
// error, never a crash; an accepted event's views stay inside the parser's
// buffers (ASan checks), and its levels are in range.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ringroute/ingest/event_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static ringroute::ingest::EventLineParser parser;
  ringroute::ingest::ParsedEvent event;
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  if (parser.parse(line, event)) return 0;
  std::size_t touched = event.input.body.size();
  for (auto s : event.input.strings) touched += s.size();
  for (auto s : event.account_tree) touched += s.size();
  volatile char sink = 0;
  for (auto s : event.input.strings) {
    if (!s.empty()) sink = static_cast<char>(sink + s.front() + s.back());
  }
  if (!event.input.body.empty() && event.input.body.front() != '{') std::abort();
  if (static_cast<unsigned>(event.input.severity) > 2 || static_cast<unsigned>(event.input.verbosity) > 5) {
    std::abort();
  }
  (void)touched;
  return 0;
}
