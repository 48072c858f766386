#include "ringroute/sinks/json_escape.hpp"

#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace ringroute::sinks {
namespace {

constexpr char kHex[] = "0123456789abcdef";

// Writes the escape for the special byte at text[i]; returns bytes consumed.
inline std::size_t escape_one(std::string_view text, std::size_t i, char*& out) noexcept {
  const auto c = static_cast<unsigned char>(text[i]);
  if (c >= 0x80) {
    const std::size_t n = utf8_sequence_length(text, i);
    if (n == 0) {
      std::memcpy(out, "\xEF\xBF\xBD", 3);
      out += 3;
      return 1;
    }
    std::memcpy(out, text.data() + i, n);
    out += n;
    return n;
  }
  char short_form = 0;
  switch (c) {
    case '"': short_form = '"'; break;
    case '\\': short_form = '\\'; break;
    case '\b': short_form = 'b'; break;
    case '\f': short_form = 'f'; break;
    case '\n': short_form = 'n'; break;
    case '\r': short_form = 'r'; break;
    case '\t': short_form = 't'; break;
    default: break;
  }
  if (short_form != 0) {
    out[0] = '\\';
    out[1] = short_form;
    out += 2;
  } else if (c < 0x20) {
    std::memcpy(out, "\\u00", 4);
    out[4] = kHex[c >> 4];
    out[5] = kHex[c & 15];
    out += 6;
  } else {
    *out++ = static_cast<char>(c);
  }
  return 1;
}

inline bool is_special(unsigned char c) noexcept { return c < 0x20 || c == '"' || c == '\\' || c >= 0x80; }

}  // namespace

std::size_t utf8_sequence_length(std::string_view text, std::size_t i) noexcept {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  std::size_t n;
  std::uint32_t min;
  if (c >= 0xC2 && c <= 0xDF) n = 2, min = 0x80;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, min = 0x800;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, min = 0x10000;
  else return 0;
  if (i + n > text.size()) return 0;
  std::uint32_t code = c & (0x7Fu >> n);
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3F);
  }
  if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return n;
}

// Reached from the inline escape_json() for strings of 16 bytes or more and
// for short ones that hold a byte to escape (its word test already failed).
char* detail::escape_json_general(std::string_view text, char* out) noexcept {
  const std::size_t n = text.size();
  const char* p = text.data();
  std::size_t i = 0;
#if defined(__SSE2__)
  while (i + 16 <= n) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    const unsigned mask = detail::special_bytes(v);
    // The whole 16 bytes are stored either way; only the plain prefix counts.
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), v);
    if (mask == 0) {
      out += 16;
      i += 16;
      continue;
    }
    const unsigned plain = static_cast<unsigned>(__builtin_ctz(mask));
    out += plain;
    i += plain;
    i += escape_one(text, i, out);
  }
#endif
  while (i < n) {
    if (!is_special(static_cast<unsigned char>(p[i]))) {
      *out++ = p[i++];
    } else {
      i += escape_one(text, i, out);
    }
  }
  return out;
}

}  // namespace ringroute::sinks
