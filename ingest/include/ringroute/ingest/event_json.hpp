// Events as NDJSON lines: what `ringroute emit` reads on stdin and `ringroute
// route` reads from a file. A line holds one JSON object with the event
// fields of DESIGN.md and any member the json formatter writes, in either
// naming (`account_id` or Kazoo's `Account-ID`), so a file sink's output can be
// fed back in (SEMANTICS.md section 7).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "ringroute/event/event.hpp"

namespace ringroute::ingest {

struct ParsedEvent {
  event::EventInput input;                   // strings view the parser's buffers
  std::vector<std::string_view> account_tree;
  bool has_account_tree = false;
  bool has_severity = false;
  bool has_verbosity = false;
  bool has_timestamp = false;
  bool has_body = false;
};

// Parses one line at a time. Views in a ParsedEvent stay valid until the next
// parse() on the same parser. Not for the hot path: allocates as lines grow.
class EventLineParser {
 public:
  // nullopt on success; otherwise the reason, naming the member
  // (`severity: unknown level "sever" (expected ok, warning, critical)`).
  [[nodiscard]] std::optional<std::string> parse(std::string_view line, ParsedEvent& out);

 private:
  simdjson::ondemand::parser parser_;
  simdjson::padded_string buffer_;
};

// Encodes a parsed event as the ring record the router reads (so `route`
// matches exactly what a router would). nullopt on success; otherwise why not
// (a field or the tree over the record's limits).
[[nodiscard]] std::optional<std::string> encode_record(const ParsedEvent& event,
                                                       std::vector<std::byte>& out);

// RFC 3339 date-time ("2026-11-23T16:55:28.123456Z", offsets allowed, up to
// nanoseconds) to ns since the epoch; nullopt if malformed or out of range
// (int64 ns: 1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z),
// and then `*out_of_range` (when given) says which.
[[nodiscard]] std::optional<std::int64_t> parse_rfc3339(std::string_view text, bool* out_of_range = nullptr) noexcept;

// True for a line of only whitespace (space, tab, CR, LF).
[[nodiscard]] bool is_blank(std::string_view line) noexcept;

}  // namespace ringroute::ingest
