#pragma once
// JSON string escaping for formatters (RFC 8259): `"`, `\` and control
// characters escaped, invalid UTF-8 replaced by U+FFFD so every document
// written parses. Scans 16 bytes at a time; plain ASCII runs are copied whole.

#include <cstddef>
#include <string_view>

namespace ringroute::sinks {

// The most bytes escape_json() writes for `n` input bytes (`\u00XX` is 6).
[[nodiscard]] constexpr std::size_t escaped_bound(std::size_t n) noexcept { return 6 * n; }

// Writes the escaped bytes of `text` (no quotes) at `out`, which has room for
// escaped_bound(text.size()); returns one past the last byte written.
char* escape_json(std::string_view text, char* out) noexcept;

// Length of the valid UTF-8 sequence starting at text[i] (a byte >= 0x80), or
// 0 when there is none (overlong, surrogate, beyond U+10FFFF, truncated).
[[nodiscard]] std::size_t utf8_sequence_length(std::string_view text, std::size_t i) noexcept;

}  // namespace ringroute::sinks
