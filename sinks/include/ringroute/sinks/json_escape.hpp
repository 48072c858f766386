#pragma once
// JSON string escaping for formatters (RFC 8259): `"`, `\` and control
// characters escaped, invalid UTF-8 replaced by U+FFFD so every document
// written parses. Scans 16 bytes at a time; plain ASCII runs are copied whole.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

#if defined(__SSE2__)
// A bit per byte of `v` that is a control character, '"', '\\' or >= 0x80.
// The compare is signed, so bytes >= 0x80 count as below the space: they
// need the UTF-8 check.
inline unsigned special_bytes(__m128i v) noexcept {
  const __m128i special = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
                                       _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                                    _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
  return static_cast<unsigned>(_mm_movemask_epi8(special));
}
#endif
}  // namespace detail

// Writes the escaped bytes of `text` (no quotes) at `out`, which has room for
// escaped_bound(text.size()); returns one past the last byte written.
// Inline for the common case of a short plain string: copied with fixed-size
// (overlapping) loads and stores, tested a word at a time, never reading past
// the string.
inline char* escape_json(std::string_view text, char* out) noexcept {
  const std::size_t n = text.size();
  const char* p = text.data();
  if (n < 16) {
    std::uint64_t head, tail;
    if (n >= 8) {
      std::memcpy(&head, p, 8);
      std::memcpy(&tail, p + n - 8, 8);
      std::memcpy(out, &head, 8);
      std::memcpy(out + n - 8, &tail, 8);
    } else if (n >= 4) {
      std::uint32_t a, b;
      std::memcpy(&a, p, 4);
      std::memcpy(&b, p + n - 4, 4);
      std::memcpy(out, &a, 4);
      std::memcpy(out + n - 4, &b, 4);
      head = tail = a | (static_cast<std::uint64_t>(b) << 32);
    } else if (n > 0) {
      // Bytes 0, n/2 and n-1 are every byte of a 1-3 byte string; the rest
      // of the word is filled with 'A', which needs no escape.
      out[0] = p[0];
      out[n >> 1] = p[n >> 1];
      out[n - 1] = p[n - 1];
      head = tail = static_cast<unsigned char>(p[0]) |
                    (static_cast<std::uint64_t>(static_cast<unsigned char>(p[n >> 1])) << 8) |
                    (static_cast<std::uint64_t>(static_cast<unsigned char>(p[n - 1])) << 16) |
                    (0x4141414141ull << 24);
    } else {
      return out;
    }
#if defined(__SSE2__)
    // Both words in one vector: a third of the word tests' instructions,
    // and the formatter escapes six short strings an event.
    if (detail::special_bytes(_mm_set_epi64x(static_cast<long long>(tail), static_cast<long long>(head))) == 0) {
      return out + n;
    }
#else
    if (!detail::word_has_special(head) && !detail::word_has_special(tail)) return out + n;
#endif
  }
  return detail::escape_json_general(text, out);
}

// Length of the valid UTF-8 sequence starting at text[i] (a byte >= 0x80), or
// 0 when there is none (overlong, surrogate, beyond U+10FFFF, truncated).
[[nodiscard]] std::size_t utf8_sequence_length(std::string_view text, std::size_t i) noexcept;

}  // namespace ringroute::sinks
