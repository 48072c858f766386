// Checking that a body is one JSON object, with the byte where it is not.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace ringroute::ingest {

struct JsonProblem {
  std::size_t byte_offset;  // 0-based, into the checked text
  const char* reason;       // static string
  bool valid_json = false;  // true when the text is JSON, just not an object
  bool unsupported = false; // valid JSON with what can't be read here (an integer past 64 bits, a number past a double)
  bool out_of_memory = false;  // not checked: nothing is known of the text
};

// The deepest a body may nest (simdjson's DOM default), counting the body
// itself as 1.
inline constexpr std::size_t kMaxBodyDepth = 1024;

// What a checked text is: a body, or an event line (ingest/event_json.hpp),
// whose body sits one level down and may still nest kMaxBodyDepth deep.
enum class JsonText { body, event_line };

// nullopt when `text` is exactly one JSON object (surrounding whitespace
// allowed), valid UTF-8 throughout. Uses a per-thread simdjson parser (one
// per kind), set up on the thread's first call; after that no allocation
// unless a text is larger than any before it on that thread. Never throws.
[[nodiscard]] std::optional<JsonProblem> check_json_object(std::string_view text,
                                                           JsonText kind = JsonText::body) noexcept;

// Offset of the first byte of `s` that is not valid UTF-8 (no overlongs,
// surrogates or code points past U+10FFFF), or s.size() when none is:
// simdjson says only that some byte is bad, a user needs to know which.
[[nodiscard]] std::size_t first_invalid_utf8(std::string_view s) noexcept;

// `text` without the JSON whitespace around it (RFC 8259: space, tab, LF,
// CR). A body is stored as its object alone: whitespace a producer left
// around it is not the event's, and would end up inside the line a sink
// writes (a newline as a space, since a line holds one event).
[[nodiscard]] inline std::string_view without_surrounding_whitespace(std::string_view text) noexcept {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!text.empty() && space(text.front())) text.remove_prefix(1);
  while (!text.empty() && space(text.back())) text.remove_suffix(1);
  return text;
}

}  // namespace ringroute::ingest
