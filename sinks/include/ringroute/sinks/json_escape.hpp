#pragma once
// JSON string escaping for formatters (RFC 8259): `"`, `\` and control
// characters escaped, invalid UTF-8 replaced by U+FFFD so every document
// written parses. Scans 16 bytes at a time; plain ASCII runs are copied whole.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace ringroute::sinks {

// The most bytes escape_json() writes for `n` input bytes (`\u00XX` is 6).
[[nodiscard]] constexpr std::size_t escaped_bound(std::size_t n) noexcept { return 6 * n; }

namespace detail {
char* escape_json_general(std::string_view text, char* out) noexcept;

// Whether any of the 8 bytes is a control character, '"', '\\' or >= 0x80
// (the classic "has a zero byte" tests, exact as a yes/no answer).
inline bool word_has_special(std::uint64_t w) noexcept {
  constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  const std::uint64_t below_space = (w - ones * 0x20) & ~w;
  const std::uint64_t quote = w ^ (ones * '"');
  const std::uint64_t backslash = w ^ (ones * '\\');
  const std::uint64_t is_quote = (quote - ones) & ~quote;
  const std::uint64_t is_backslash = (backslash - ones) & ~backslash;
  return ((below_space | is_quote | is_backslash | w) & highs) != 0;
}
}  // namespace detail

// Writes the escaped bytes of `text` (no quotes) at `out`, which has room for
// escaped_bound(text.size()); returns one past the last byte written.
// Inline for the common case of a short plain string (8 to 15 bytes: two
// overlapping word copies and a word test, without reading past the string).
inline char* escape_json(std::string_view text, char* out) noexcept {
  const std::size_t n = text.size();
  if (n >= 8 && n < 16) {
    std::uint64_t head, tail;
    std::memcpy(&head, text.data(), 8);
    std::memcpy(&tail, text.data() + n - 8, 8);
    if (!detail::word_has_special(head) && !detail::word_has_special(tail)) {
      std::memcpy(out, &head, 8);
      std::memcpy(out + n - 8, &tail, 8);
      return out + n;
    }
  }
  return detail::escape_json_general(text, out);
}

// Length of the valid UTF-8 sequence starting at text[i] (a byte >= 0x80), or
// 0 when there is none (overlong, surrogate, beyond U+10FFFF, truncated).
[[nodiscard]] std::size_t utf8_sequence_length(std::string_view text, std::size_t i) noexcept;

}  // namespace ringroute::sinks
