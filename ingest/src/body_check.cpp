#include "ringroute/ingest/body_check.hpp"

#include <simdjson.h>

#include <limits>
#include <new>
#include <string>

#include "thread_object.hpp"

namespace ringroute::ingest {

std::size_t first_invalid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    std::size_t len;
    unsigned min;
    if (c < 0x80) { ++i; continue; }
    if (c >= 0xc2 && c <= 0xdf) { len = 2; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; min = 0x10000; }
    else return i;
    if (i + len > n) return i;
    unsigned cp = c & (0x7f >> len);
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += len;
  }
  return n;
}

namespace {

std::size_t first_non_space(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  return i;
}

// Offset of the first byte inside a string that JSON does not allow there:
// a control character (`controls`), or else a backslash that starts no
// escape JSON has (a \u without four hex digits, or half a surrogate pair);
// npos when none. simdjson finds unescaped controls over the whole text
// first and says so at its end, and a bad escape past its string's end.
std::size_t first_bad_string_byte(std::string_view s, bool controls) noexcept {
  auto hex4 = [&](std::size_t at, unsigned& value) {
    if (at + 4 > s.size()) return false;
    value = 0;
    for (std::size_t k = at; k < at + 4; ++k) {
      const char h = s[k];
      const int digit = h >= '0' && h <= '9'   ? h - '0'
                        : h >= 'a' && h <= 'f' ? h - 'a' + 10
                        : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                               : -1;
      if (digit < 0) return false;
      value = value * 16 + static_cast<unsigned>(digit);
    }
    return true;
  };
  bool in_string = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (!in_string) {
      in_string = c == '"';
      continue;
    }
    if (c == '"') {
      in_string = false;
    } else if (c < 0x20) {
      if (controls) return i;
    } else if (c == '\\') {
      if (i + 1 >= s.size()) return std::string_view::npos;  // cut short: not this fault
      const char escaped = s[i + 1];
      // A control byte escaped with a backslash is no escape JSON has, and
      // still the control byte simdjson reported: skipped over, it was
      // found nowhere, and said at the text's end.
      if (controls && static_cast<unsigned char>(escaped) < 0x20) return i + 1;
      unsigned unit = 0, low = 0;
      if (controls || std::string_view("\"\\/bfnrt").find(escaped) != std::string_view::npos) {
        i += 1;
      } else if (escaped != 'u' || !hex4(i + 2, unit) || (unit >= 0xdc00 && unit <= 0xdfff)) {
        return i;
      } else if (unit < 0xd800 || unit > 0xdbff) {
        i += 5;
      } else if (i + 7 < s.size() && s[i + 6] == '\\' && s[i + 7] == 'u' && hex4(i + 8, low) && low >= 0xdc00 &&
                 low <= 0xdfff) {
        i += 11;
      } else {
        return i;
      }
    }
  }
  return std::string_view::npos;
}

static_assert(kMaxBodyDepth == simdjson::DEFAULT_MAX_DEPTH, "a body nests as deep as the DOM parser goes");

// The deepest a text of `kind` may nest: an event line holds its body one
// level down, so a body the producer library takes is taken in a line too.
std::size_t max_depth_of(JsonText kind) noexcept { return kMaxBodyDepth + (kind == JsonText::event_line ? 1 : 0); }

// Walks every value so on-demand reports where the first syntax error is.
// On-demand checks depth only in simdjson's development builds, and this
// walk recurses once per level, so it stops at `max_depth` itself (a deep
// text is a refused text, not a stack overflow).
simdjson::error_code walk(simdjson::ondemand::value value, std::size_t depth, std::size_t max_depth) noexcept {
  if (depth > max_depth) return simdjson::DEPTH_ERROR;
  simdjson::ondemand::json_type type;
  if (auto e = value.type().get(type)) return e;
  switch (type) {
    case simdjson::ondemand::json_type::object: {
      simdjson::ondemand::object object;
      if (auto e = value.get_object().get(object)) return e;
      for (auto field : object) {
        std::string_view key;
        if (auto e = field.unescaped_key().get(key)) return e;
        if (auto e = walk(field.value(), depth + 1, max_depth)) return e;
      }
      return simdjson::SUCCESS;
    }
    case simdjson::ondemand::json_type::array: {
      simdjson::ondemand::array array;
      if (auto e = value.get_array().get(array)) return e;
      for (auto element : array) {
        simdjson::ondemand::value v;
        if (auto e = element.get(v)) return e;
        if (auto e = walk(v, depth + 1, max_depth)) return e;
      }
      return simdjson::SUCCESS;
    }
    case simdjson::ondemand::json_type::number: return value.get_number().error();
    case simdjson::ondemand::json_type::string: return value.get_string().error();
    case simdjson::ondemand::json_type::boolean: return value.get_bool().error();
    case simdjson::ondemand::json_type::null: return value.is_null().error();
  }
  return simdjson::SUCCESS;
}

// The error paths' own reading of a text's strings and brackets, in one
// pass: where its first top-level value ends if that is balanced ({...} or
// [...]; npos otherwise), and at the text's end whether it is inside a
// string (or an escape in one) and, into `open` when given, the brackets
// still open, innermost last. Without `open` it allocates nothing.
struct Brackets {
  std::size_t first_end = std::string_view::npos;
  std::size_t first_too_deep = std::string_view::npos;  // the first bracket opened past max_depth
  bool in_string = false, escaped = false;
};

Brackets scan_brackets(std::string_view s, std::string* open,
                       std::size_t max_depth = std::numeric_limits<std::size_t>::max()) {
  Brackets b;
  std::ptrdiff_t depth = 0;  // below 0 after a stray closing bracket
  bool decided = false;  // first_end is final
  for (std::size_t i = first_non_space(s); i < s.size(); ++i) {
    const char c = s[i];
    if (b.in_string) {
      if (b.escaped) b.escaped = false;
      else if (c == '\\') b.escaped = true;
      else if (c == '"') b.in_string = false;
      continue;
    }
    if (c == '"') {
      b.in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > 0 && static_cast<std::size_t>(depth) > max_depth && b.first_too_deep == std::string_view::npos) {
        b.first_too_deep = i;
      }
      if (open != nullptr) open->push_back(c);
    } else if (c == '}' || c == ']') {
      if (open != nullptr && !open->empty()) open->pop_back();
      if (--depth == 0 && !decided) {
        b.first_end = i + 1;
        decided = true;
      }
    } else if (depth == 0) {
      decided = true;  // a scalar at the top, or bytes after one: no balanced first value
    }
  }
  return b;
}

// Where the first top-level value ends if it is balanced, or npos. Only for
// telling "trailing content" apart.
std::size_t end_of_first_value(std::string_view s) noexcept { return scan_brackets(s, nullptr).first_end; }

// Whether a JSON value may end at `at`: the text's end, whitespace, or what
// follows a value in an array or object. A number followed by anything else
// ("12x") is malformed, not one too large.
bool value_may_end_at(std::string_view text, std::size_t at) noexcept {
  return at == text.size() || std::string_view(" \t\r\n,]}").find(text[at]) != std::string_view::npos;
}

// Whether the number at `at` is an integer as JSON writes them: one that
// simdjson refused is one past 64 bits (it reads every integer of up to 19
// digits, and those of 20 up to 2^64 - 1).
bool integer_at(std::string_view text, std::size_t at) noexcept {
  if (at < text.size() && text[at] == '-') ++at;
  const std::size_t first = at;
  while (at < text.size() && text[at] >= '0' && text[at] <= '9') ++at;
  if (at == first || (text[first] == '0' && at - first > 1)) return false;
  return at - first >= 19 && value_may_end_at(text, at);
}

// Whether the token at `at` is a number as JSON writes them: one that
// simdjson refused then is past what a double holds (1e400).
bool json_number_at(std::string_view text, std::size_t at) noexcept {
  auto digits = [&] {
    const std::size_t first = at;
    while (at < text.size() && text[at] >= '0' && text[at] <= '9') ++at;
    return at - first;
  };
  if (at < text.size() && text[at] == '-') ++at;
  const std::size_t first = at;
  const std::size_t whole = digits();
  if (whole == 0 || (text[first] == '0' && whole > 1)) return false;
  if (at < text.size() && text[at] == '.') {
    ++at;
    if (digits() == 0) return false;
  }
  if (at < text.size() && (text[at] == 'e' || text[at] == 'E')) {
    ++at;
    if (at < text.size() && (text[at] == '+' || text[at] == '-')) ++at;
    if (digits() == 0) return false;
  }
  return value_may_end_at(text, at);
}

struct Located {
  std::size_t offset;
  bool trailing = false;    // a whole value, then more
  bool unfinished = false;  // the text ends inside its value
};

// The slow path, for error messages only: where did it go wrong?
Located locate_error(std::string_view text, simdjson::error_code error, std::size_t max_depth) noexcept {
  if (error == simdjson::UTF8_ERROR) return {first_invalid_utf8(text)};
  // The parser says how, not where; a text that is not an object (`[[[`)
  // has no member for the walk below to enter, and was said at byte 0.
  if (error == simdjson::DEPTH_ERROR) {
    if (const std::size_t at = scan_brackets(text, nullptr, max_depth).first_too_deep; at != std::string_view::npos) {
      return {at};
    }
  }
  if (error == simdjson::UNESCAPED_CHARS || error == simdjson::STRING_ERROR) {
    const std::size_t at = first_bad_string_byte(text, error == simdjson::UNESCAPED_CHARS);
    if (at != std::string_view::npos) return {at};
  }
  const std::size_t end = end_of_first_value(text);
  if (end != std::string_view::npos) {
    const std::size_t rest = end + first_non_space(text.substr(end));
    // Per-thread parsers usable from any destructor (thread_object.hpp):
    // producers check bodies, and may emit at exit.
    struct PrefixParser {
      simdjson::dom::parser parser;
    };
    PrefixParser* const prefix = detail::thread_object<PrefixParser>();
    if (prefix != nullptr && rest < text.size() && !prefix->parser.parse(text.data(), end, true).error()) {
      return {rest, true};
    }
  }
  simdjson::ondemand::parser* const parser = detail::thread_object<simdjson::ondemand::parser>();
  if (parser == nullptr) return {text.size()};
  simdjson::padded_string padded(text);
  simdjson::ondemand::document doc;
  if (parser->iterate(padded).get(doc)) return {text.size()};
  simdjson::ondemand::object object;
  simdjson::error_code e = doc.get_object().get(object);
  if (!e) {
    for (auto field : object) {
      std::string_view key;
      if ((e = field.unescaped_key().get(key))) break;
      if ((e = walk(field.value(), 2, max_depth))) break;
    }
  }
  const char* at = nullptr;
  if (doc.current_location().get(at) || at == nullptr) return {text.size()};
  const auto offset = static_cast<std::size_t>(at - padded.data());
  // On-demand gives up on an unfinished value (`{"a":`, `{"id":"x"`) at
  // its first byte; where it goes wrong is the end, where more was due.
  // Only a value that opens something can be unfinished: `x` or `hello`
  // go wrong at their first byte.
  if (const std::size_t first = first_non_space(text);
      offset == first && end == std::string_view::npos && first < text.size() &&
      (text[first] == '{' || text[first] == '[' || text[first] == '"')) {
    return {text.size(), false, true};
  }
  return {offset <= text.size() ? offset : text.size()};
}

// `text`, cut short inside its value, with its open string and brackets
// closed in order, so a fault before the cut can be found in the copy.
std::string closed_copy(std::string_view text) {
  std::string open;
  const Brackets at_end = scan_brackets(text, &open);
  std::string closed(text);
  if (at_end.escaped) closed += '"';  // completes the escape; the next one closes
  if (at_end.in_string) closed += '"';
  for (auto c = open.rbegin(); c != open.rend(); ++c) closed += *c == '{' ? '}' : ']';
  return closed;
}

// Whether `token` can still grow into a JSON number (`-`, `1.`, `2e+`);
// `--`, `1-` and `0123` cannot.
bool number_prefix(std::string_view token) noexcept {
  const auto digits = [&](std::size_t i) {
    while (i < token.size() && token[i] >= '0' && token[i] <= '9') ++i;
    return i;
  };
  std::size_t i = token.starts_with('-') ? 1 : 0;
  if (i == token.size()) return true;
  if (token[i] == '0') {
    ++i;
  } else if (token[i] >= '1' && token[i] <= '9') {
    i = digits(i);
  } else {
    return false;
  }
  if (i < token.size() && token[i] == '.') {
    const std::size_t fraction = i + 1;
    i = digits(fraction);
    if (i == fraction && i < token.size()) return false;  // `1.e`: a fraction has digits
  }
  if (i < token.size() && (token[i] == 'e' || token[i] == 'E')) {
    ++i;
    if (i < token.size() && (token[i] == '+' || token[i] == '-')) ++i;
    i = digits(i);
  }
  return i == token.size();
}

// Whether the token at `at` (a string, or a run up to a delimiter) is a
// fault of its own: it ends before the text does, or it runs into the end
// but no token starts so (`bad`). One that could still grow into a token
// (`tr` of `true`, `-1.` of a number) may just be cut short.
bool token_is_its_own_fault(std::string_view text, std::size_t at) noexcept {
  if (at >= text.size()) return false;
  if (std::string_view(",:[]{}").find(text[at]) != std::string_view::npos) return true;
  if (text[at] == '"') {
    for (std::size_t i = at + 1; i < text.size(); ++i) {
      if (text[i] == '\\') ++i;
      else if (text[i] == '"') return true;
    }
    return false;
  }
  if (text.find_first_of(" \t\r\n,:[]{}", at + 1) != std::string_view::npos) return true;
  const std::string_view token = text.substr(at);
  for (const std::string_view word : {std::string_view("true"), std::string_view("false"), std::string_view("null")}) {
    if (word.starts_with(token)) return false;
  }
  return !number_prefix(token);
}

// A problem at `offset` with simdjson's `error`: an integer past 64 bits is
// valid JSON, said as such.
JsonProblem problem_at(std::string_view text, std::size_t offset, simdjson::error_code error) noexcept {
  // A byte no JSON value starts with, where one was due: said plainly
  // (simdjson's words for it are about the document's structure).
  if (offset < text.size() && offset == first_non_space(text) &&
      std::string_view("{[\"-0123456789tfn").find(text[offset]) == std::string_view::npos) {
    if (text.substr(offset).starts_with("\xEF\xBB\xBF")) {
      return JsonProblem{offset, "a UTF-8 byte order mark, which JSON text does not start with"};
    }
    return JsonProblem{offset, "expected a JSON value, and no JSON value starts with this byte"};
  }
  if (error == simdjson::NUMBER_ERROR && integer_at(text, offset)) {
    return JsonProblem{offset, "an integer past 64 bits (integers are read up to 64 bits: send it as a string)", false,
                       true};
  }
  if (error == simdjson::NUMBER_ERROR && json_number_at(text, offset)) {
    return JsonProblem{offset, "a number past what a double holds (about 1.8e308)", false, true};
  }
  if (error == simdjson::STRING_ERROR && offset < text.size() && text[offset] == '\\') {
    // A lone surrogate is JSON's grammar, but no text: refused with the rest.
    return JsonProblem{offset,
                       "an escape this reader refuses (it takes \\\" \\\\ \\/ \\b \\f \\n \\r \\t, or \\u and four hex "
                       "digits, a surrogate with its pair)"};
  }
  if (error == simdjson::UNESCAPED_CHARS) {
    return JsonProblem{offset, "a control character inside a string (JSON writes it escaped: \\n, \\t, \\u0001)"};
  }
  return JsonProblem{offset, simdjson::error_message(error)};
}

// A per-thread parser for event lines, one level deeper than a body's
// (max_depth_of): growing it keeps its depth.
struct LineParser {
  simdjson::dom::parser parser;
  // Left unallocated (out of memory), it parses at a body's depth: only a
  // line whose body is at the limit is then refused.
  LineParser() noexcept {
    const simdjson::error_code unallocated = parser.allocate(4096, max_depth_of(JsonText::event_line));
    (void)unallocated;
  }
};

simdjson::dom::parser* dom_parser(JsonText kind) noexcept {
  if (kind == JsonText::body) return detail::thread_object<simdjson::dom::parser>();
  LineParser* const line = detail::thread_object<LineParser>();
  return line != nullptr ? &line->parser : nullptr;
}

}  // namespace

std::optional<JsonProblem> check_json_object(std::string_view text, JsonText kind) noexcept {
  simdjson::dom::parser* const parser = dom_parser(kind);
  if (parser == nullptr) return JsonProblem{0, "out of memory while checking", false, false, true};
  simdjson::dom::element root;
  // realloc_if_needed: the caller's buffer has no SIMDJSON_PADDING, so the
  // parser copies it into its own padded buffer.
  const simdjson::error_code error = parser->parse(text.data(), text.size(), true).get(root);
  if (error) {
    if (error == simdjson::MEMALLOC) return JsonProblem{0, "out of memory while checking", false, false, true};
    const Located at = locate_error(text, error, max_depth_of(kind));
    if (at.trailing) return JsonProblem{at.offset, "trailing content after the JSON value"};
    if (at.unfinished) {
      // Cut short, but perhaps wrong before the cut (`{"a":tru, "b":`):
      // closed, the copy shows the first fault, where there is one.
      try {
        const std::string closed = closed_copy(text);
        simdjson::dom::element ignored;
        const simdjson::error_code closed_error = parser->parse(closed.data(), closed.size(), true).get(ignored);
        if (closed_error && closed_error != simdjson::MEMALLOC) {
          const Located inner = locate_error(closed, closed_error, max_depth_of(kind));
          if (!inner.trailing && !inner.unfinished && inner.offset < text.size() &&
              token_is_its_own_fault(text, inner.offset)) {
            return problem_at(text, inner.offset, closed_error);
          }
        }
      } catch (const std::bad_alloc&) {
        // The end is a true place for it too.
      }
      return JsonProblem{at.offset, "the text ends inside the JSON value (unclosed object, array or string)"};
    }
    return problem_at(text, at.offset, error);
  }
  if (!root.is_object()) return JsonProblem{first_non_space(text), "not a JSON object", true};
  return std::nullopt;
}

}  // namespace ringroute::ingest
