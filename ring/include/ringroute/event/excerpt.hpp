// Input quoted back in an error message, bounded.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ringroute::event {

// The most of a value (a key, a string, a level's name) an error message
// quotes: one quoted whole made a 10 MB key a 10 MB line of output.
inline constexpr std::size_t kMostQuotedBytes = 200;

// The start of `text` an error message quotes: all of it up to
// kMostQuotedBytes, else that many bytes less any UTF-8 sequence the cut
// would split (the caller says how long the whole was).
[[nodiscard]] inline std::string_view quoted_excerpt(std::string_view text) noexcept {
  if (text.size() <= kMostQuotedBytes) return text;
  std::size_t end = kMostQuotedBytes;
  // Back over continuation bytes (10xxxxxx) to the start of the sequence cut.
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

// What follows quoted_excerpt(text) in a message: "... (N bytes)" where it
// was cut, else nothing.
[[nodiscard]] inline std::string excerpt_tail(std::string_view text) {
  return text.size() <= kMostQuotedBytes ? std::string() : "... (" + std::to_string(text.size()) + " bytes)";
}

}  // namespace ringroute::event
