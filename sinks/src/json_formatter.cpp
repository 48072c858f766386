#include "ringroute/sinks/json_formatter.hpp"

#include <array>
#include <charconv>
#include <cstring>
#include <string_view>
#include <vector>

#include <simdjson.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "ringroute/sinks/json_escape.hpp"

namespace ringroute::sinks {
namespace {

using event::EventView;
using event::StringField;

// A member name padded to 32 bytes, so writing it is one fixed-size copy
// (the formatter's bound leaves room for the padding).
struct PaddedName {
  char text[32]{};
  std::uint8_t size = 0;
  constexpr PaddedName(const char* s) {  // NOLINT: built from literals below
    while (s[size] != 0) {
      text[size] = s[size];
      ++size;
    }
  }
};

struct MemberName {
  PaddedName normalized;
  PaddedName wire;  // Kazoo's name, written with normalize=false
};

constexpr MemberName kAccountId{"\"account_id\":", "\"Account-ID\":"};
constexpr MemberName kAccountTree{"\"account_tree\":", "\"Account-Tree\":"};
constexpr MemberName kAppName{"\"app_name\":", "\"App-Name\":"};
constexpr MemberName kAppVersion{"\"app_version\":", "\"App-Version\":"};
constexpr MemberName kBody{"\"body\":", "\"Body\":"};
constexpr MemberName kId{"\"id\":", "\"ID\":"};
constexpr MemberName kNode{"\"node\":", "\"Node\":"};
constexpr MemberName kSeverity{"\"severity\":", "\"Severity\":"};
constexpr MemberName kTimestamp{"\"timestamp\":", "\"Timestamp\":"};
constexpr MemberName kGregorian{"\"gregorian_time\":", "\"Gregorian-Time\":"};
constexpr MemberName kVerbosity{"\"verbosity\":", "\"Verbosity\":"};
constexpr MemberName kTopic{"\"topic\":", "\"Topic\":"};
constexpr MemberName kStreamName{"\"stream_name\":", "\"Stream-Name\":"};
constexpr MemberName kEventType{"\"event_type\":", "\"Event-Type\":"};
constexpr MemberName kTag{"\"tag\":", "\"Tag\":"};
constexpr std::size_t kNameRoom = 34;  // a comma, then a 32-byte padded copy

inline char* put_name(char* out, const PaddedName& name) noexcept {
  std::memcpy(out, name.text, sizeof name.text);
  return out + name.size;
}

// A level's name in quotes, padded so writing it is one 16-byte copy.
struct QuotedLevel {
  char text[16]{};
  std::uint8_t size = 0;
};
template <std::size_t N>
constexpr std::array<QuotedLevel, N> quoted_levels(const std::array<std::string_view, N>& names) {
  std::array<QuotedLevel, N> levels{};
  for (std::size_t i = 0; i < N; ++i) {
    QuotedLevel& level = levels[i];
    level.text[level.size++] = '"';
    for (char c : names[i]) level.text[level.size++] = c;
    level.text[level.size++] = '"';
  }
  return levels;
}
constexpr auto kQuotedSeverities = quoted_levels(event::kSeverityNames);
constexpr auto kQuotedVerbosities = quoted_levels(event::kVerbosityNames);
static_assert(sizeof kQuotedSeverities[0].text <= kNameRoom && sizeof kQuotedVerbosities[0].text <= kNameRoom);

inline char* put_level(char* out, const QuotedLevel& level) noexcept {
  std::memcpy(out, level.text, sizeof level.text);
  return out + level.size;
}

inline char* put(char* out, std::string_view bytes) noexcept {
  std::memcpy(out, bytes.data(), bytes.size());
  return out + bytes.size();
}

// Days since 1970-01-01 to (year, month, day): Howard Hinnant's civil_from_days.
void civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) noexcept {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
}

inline void two_digits(char* out, unsigned v) noexcept {
  out[0] = static_cast<char>('0' + v / 10);
  out[1] = static_cast<char>('0' + v % 10);
}

// floor(ns / 1e9) and the nanoseconds left, for any int64.
inline void split_ns(std::int64_t ns, std::int64_t& seconds, std::int64_t& nanos) noexcept {
  seconds = ns / 1'000'000'000;
  nanos = ns % 1'000'000'000;
  if (nanos < 0) {
    nanos += 1'000'000'000;
    --seconds;
  }
}

// "YYYY-MM-DDTHH:MM:SS" (19 bytes) for a Unix second; years outside
// 0000-9999 are clamped (RFC 3339 has four digits).
void second_text(std::int64_t second, char* out) noexcept {
  std::int64_t days = second / 86400;
  std::int64_t rest = second % 86400;
  if (rest < 0) {
    rest += 86400;
    --days;
  }
  std::int64_t year;
  unsigned month, day;
  civil_from_days(days, year, month, day);
  if (year < 0) year = 0, month = 1, day = 1, rest = 0;
  if (year > 9999) year = 9999, month = 12, day = 31, rest = 86399;
  const auto y = static_cast<unsigned>(year);
  two_digits(out, y / 100);
  two_digits(out + 2, y % 100);
  out[4] = '-';
  two_digits(out + 5, month);
  out[7] = '-';
  two_digits(out + 8, day);
  out[10] = 'T';
  two_digits(out + 11, static_cast<unsigned>(rest / 3600));
  out[13] = ':';
  two_digits(out + 14, static_cast<unsigned>(rest / 60 % 60));
  out[16] = ':';
  two_digits(out + 17, static_cast<unsigned>(rest % 60));
}

}  // namespace

char* put_rfc3339_micros(std::int64_t ns, char* out, TimestampCache& cache) noexcept {
  std::int64_t second, nanos;
  split_ns(ns, second, nanos);
  if (second != cache.second) {
    second_text(second, cache.text);
    char* end = std::to_chars(cache.text + 20, cache.text + 44, second + event::kGregorianToUnix).ptr;
    cache.text[19] = static_cast<char>(end - (cache.text + 20));
    cache.second = second;
  }
  out = put(out, {cache.text, 19});
  *out++ = '.';
  const auto micros = static_cast<unsigned>(nanos / 1000);
  two_digits(out, micros / 10000);
  two_digits(out + 2, micros / 100 % 100);
  two_digits(out + 4, micros % 100);
  out += 6;
  *out++ = 'Z';
  return out;
}

namespace {

// The quoted timestamp; the cache remembers the last second's text (and
// after it, its gregorian seconds and their length at text[19]), which most
// consecutive events share.
char* put_timestamp(std::int64_t ns, char* out, TimestampCache& cache) noexcept {
  *out++ = '"';
  out = put_rfc3339_micros(ns, out, cache);
  *out++ = '"';
  return out;
}

inline char* put_string(char* out, std::string_view s) noexcept {
  *out++ = '"';
  out = escape_json(s, out);
  *out++ = '"';
  return out;
}

// Copies a body; raw control bytes become spaces, so the document stays on
// one line and holds none (rsyslog writes a TAB as "#011" by default, and
// the MSG no longer parses). In valid JSON the only raw ones are CR, LF and
// TAB between tokens, so a checked body is written as before; the others
// (NUL, ESC, ...) come only in a body the producer marked trusted without
// checking it, and a NUL ends a record for receivers such as syslog-ng.
// One pass: copy, then look for any byte below 0x20, 16 at a time.
char* put_body(char* out, std::string_view body) noexcept {
  const char* p = body.data();
  const std::size_t n = body.size();
  std::memcpy(out, p, n);
#if defined(__SSE2__)
  if (n >= 16) {
    // v <= 0x1f exactly where min(v, 0x1f) == v (unsigned).
    const __m128i highest_control = _mm_set1_epi8(0x1f);
    auto controls = [highest_control](__m128i v) { return _mm_cmpeq_epi8(_mm_min_epu8(v, highest_control), v); };
    // Compare results pile up in one register; one movemask at the end.
    // The source is scanned, not the copy: reading the copy back right after
    // the memcpy stalled on store forwarding (BM_JsonFormat/0 11 -> 19 ns),
    // and a one-pass SSE copy-and-scan cost 30 ns more with metadata (48 ->
    // 78 ns). The price: a producer rewriting a committed body while it is
    // copied can split its own line (README, "What is not guaranteed").
    const __m128i last = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + n - 16));
    __m128i found = controls(last);
    for (std::size_t i = 0; i + 16 <= n; i += 16) {
      found = _mm_or_si128(found, controls(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i))));
    }
    if (_mm_movemask_epi8(found) == 0) [[likely]] return out + n;
  }
#endif
  for (std::size_t i = 0; i < n; ++i) {
    if (static_cast<unsigned char>(out[i]) < 0x20) out[i] = ' ';
  }
  return out + n;
}

}  // namespace

// The slow paths: pretty printing and Kazoo's body normalisation, through a DOM.
struct JsonFormatter::Reformatter {
  // One level deeper than a body may nest (simdjson's default, what ingest
  // takes): a pretty document with metadata holds the body one level down,
  // and at the default a body at the limit was written compact. Growing the
  // parser keeps its depth; left unallocated (out of memory) it parses at
  // the default.
  Reformatter() noexcept {
    const simdjson::error_code unallocated = parser.allocate(4096, simdjson::DEFAULT_MAX_DEPTH + 1);
    (void)unallocated;
  }

  simdjson::dom::parser parser;
  ByteBuffer scratch;
  ByteBuffer body;
  ByteBuffer stable;  // a body from the ring, copied (rewrite())
  // The number tokens of the text being rewritten, in order: the DOM keeps
  // a number's value, not its text, and written from its value `-0` lost
  // its sign, `1.0` became the integer `1` and `1E2` `100`. A walk of the
  // DOM meets numbers in the text's order (null members, the only ones
  // skipped, hold none), so the n-th met is written as the n-th token.
  std::vector<std::string_view> numbers;
  std::size_t next_number = 0;

  // Writes `value`; normalize: keys lower-cased with '-' as '_', null members dropped.
  void write(simdjson::dom::element value, ByteBuffer& out, bool normalize, int indent) {
    using simdjson::dom::element_type;
    switch (value.type()) {
      case element_type::OBJECT: {
        const simdjson::dom::object object = value.get_object().value_unsafe();
        const int inner = inner_indent(indent);
        out.push_back('{');
        bool first = true;
        for (auto [key, member] : object) {
          if (normalize && member.is_null()) continue;
          if (!first) out.push_back(',');
          first = false;
          newline(out, inner);
          std::string_view name = key;
          std::string normalized_key;
          if (normalize) {
            normalized_key.assign(name);
            for (char& c : normalized_key) {
              if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
              if (c == '-') c = '_';
            }
            name = normalized_key;
          }
          string(name, out);
          out.append(inner >= 0 ? ": " : ":");
          write(member, out, normalize, inner);
        }
        if (!first && inner >= 0) newline(out, indent);
        out.push_back('}');
        return;
      }
      case element_type::ARRAY: {
        const simdjson::dom::array array = value.get_array().value_unsafe();
        const int inner = inner_indent(indent);
        out.push_back('[');
        bool first = true;
        for (simdjson::dom::element item : array) {
          if (!first) out.push_back(',');
          first = false;
          newline(out, inner);
          write(item, out, normalize, inner);
        }
        if (!first && inner >= 0) newline(out, indent);
        out.push_back(']');
        return;
      }
      case element_type::STRING: string(value.get_string().value_unsafe(), out); return;
      case element_type::INT64:
      case element_type::UINT64:
      case element_type::DOUBLE:
        if (next_number < numbers.size()) [[likely]] {
          out.append(numbers[next_number++]);
        } else {  // not reached: the text had as many tokens as the DOM numbers
          number(value.get_double().value_unsafe(), out);
        }
        return;
      case element_type::BOOL: out.append(value.get_bool().value_unsafe() ? "true" : "false"); return;
      case element_type::NULL_VALUE: out.append("null"); return;
    }
  }

  // Pretty output indents at most kMaxPrettyDepth levels; deeper values
  // are written compactly. Indented all the way, a body nested 1,000 deep
  // (simdjson takes 1,024) wrote up to 2,000 spaces a line: a 40 KB event
  // became 40 MB, and a ring-sized one gigabytes of batch.
  static constexpr int kMaxPrettyDepth = 32;
  static int inner_indent(int indent) { return indent < 0 || indent >= kMaxPrettyDepth ? -1 : indent + 1; }

  static void newline(ByteBuffer& out, int indent) {
    if (indent < 0) return;
    out.push_back('\n');
    char* p = out.reserve_more(static_cast<std::size_t>(indent) * 2);
    std::memset(p, ' ', static_cast<std::size_t>(indent) * 2);
    out.commit_to(p + indent * 2);
  }
  static void string(std::string_view s, ByteBuffer& out) {
    char* p = out.reserve_more(escaped_bound(s.size()) + 2);
    out.commit_to(put_string(p, s));
  }
  // The text's number tokens into `numbers`; `text` is JSON (the DOM
  // parsed it), so outside strings a '-' or a digit starts one.
  void find_numbers(std::string_view text) {
    numbers.clear();
    next_number = 0;
    const char* p = text.data();
    const char* const end = p + text.size();
    while (p < end) {
      const char c = *p;
      if (c == '"') {
        for (++p; p < end && *p != '"'; ++p) {
          if (*p == '\\') ++p;  // the escaped byte is never the closing quote
        }
        ++p;
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        const char* const start = p;
        while (p < end && ((*p >= '0' && *p <= '9') || *p == '-' || *p == '+' || *p == '.' || *p == 'e' ||
                           *p == 'E')) {
          ++p;
        }
        numbers.emplace_back(start, static_cast<std::size_t>(p - start));
      } else {
        ++p;
      }
    }
  }
  template <class Number>
  static void number(Number v, ByteBuffer& out) {
    char* p = out.reserve_more(32);
    auto [end, ec] = std::to_chars(p, p + 32, v);
    out.commit_to(end);
  }

  // Parses `text`; false when it is not JSON (then the caller writes it as it came).
  bool rewrite(std::string_view text, ByteBuffer& out, bool normalize, int indent) {
    // The DOM and the number tokens come from one copy: a body read from
    // the ring can change under us (a producer rewriting its committed
    // record), and tokens found in other bytes than the DOM's would write
    // a line that does not parse.
    if (text.data() != scratch.data() && text.data() != body.data()) {
      stable.clear();
      stable.append(text);
      text = stable.view();
    }
    simdjson::dom::element root;
    if (parser.parse(text.data(), text.size()).get(root) != simdjson::SUCCESS) return false;
    find_numbers(text);
    write(root, out, normalize, indent);
    return true;
  }
};

JsonFormatter::JsonFormatter(JsonFormatOptions options) : options_(options) {
  if (options_.pretty || options_.normalize_body) reformatter_ = std::make_unique<Reformatter>();
}
JsonFormatter::~JsonFormatter() = default;
JsonFormatter::JsonFormatter(JsonFormatter&&) noexcept = default;
JsonFormatter& JsonFormatter::operator=(JsonFormatter&&) noexcept = default;

void JsonFormatter::write_metadata(const EventView& e, ByteBuffer& out, std::string_view body) {
  std::size_t bound = 16 * kNameRoom + 96 + body.size();
  for (std::size_t f = 0; f < event::kStringFieldCount; ++f) {
    if ((e.present >> f) & 1u) bound += escaped_bound(e.strings[f].size()) + 2;
  }
  // The tree's lengths are read from the ring on every walk, and a
  // producer may rewrite them under us: sized by the bytes they can name,
  // not by one walk's lengths, or the writing walk could pass the bound.
  if (e.has_account_tree()) bound += escaped_bound(e.account_tree.byte_size()) + 3 * e.account_tree.size();
  char* p = out.reserve_more(bound);
  const bool wire = !options_.normalize;
  bool first = true;
  auto name = [&](const MemberName& member) {
    if (!first) *p++ = ',';
    first = false;
    p = put_name(p, wire ? member.wire : member.normalized);
  };
  auto optional_string = [&](const MemberName& member, StringField field) {
    if (!e.has(field)) return;
    name(member);
    p = put_string(p, e.get(field));
  };
  *p++ = '{';
  optional_string(kAccountId, StringField::account_id);
  if (e.has_account_tree()) {
    name(kAccountTree);
    *p++ = '[';
    bool first_ancestor = true;
    for (std::string_view ancestor : e.account_tree) {
      if (!first_ancestor) *p++ = ',';
      first_ancestor = false;
      p = put_string(p, ancestor);
    }
    *p++ = ']';
  }
  optional_string(kAppName, StringField::app_name);
  optional_string(kAppVersion, StringField::app_version);
  name(kBody);
  p = put_body(p, body);
  optional_string(kId, StringField::id);
  optional_string(kNode, StringField::node);
  name(kSeverity);
  p = put_level(p, kQuotedSeverities[static_cast<std::size_t>(e.severity)]);
  name(kTimestamp);
  p = put_timestamp(e.timestamp_ns, p, timestamp_);
  name(kGregorian);
  // put_timestamp left this second's gregorian digits (at most 12) in the
  // cache; a fixed 16-byte copy, as a variable one compiles to `rep movs`.
  std::memcpy(p, timestamp_.text + 20, 16);
  p += timestamp_.text[19];
  name(kVerbosity);
  p = put_level(p, kQuotedVerbosities[static_cast<std::size_t>(e.verbosity)]);
  optional_string(kTopic, StringField::topic);
  optional_string(kStreamName, StringField::stream_name);
  optional_string(kEventType, StringField::event_type);
  optional_string(kTag, StringField::tag);
  *p++ = '}';
  out.commit_to(p);
}

void JsonFormatter::write_line(const EventView& e, ByteBuffer& out, std::string_view body) {
  if (options_.include_metadata) {
    write_metadata(e, out, body);
  } else {
    char* p = out.reserve_more(body.size());
    out.commit_to(put_body(p, body));
  }
  out.push_back('\n');
}

namespace {
// An event without a body is written with `{}`. So is a body of only
// spaces and bytes below 0x20 (which the line gets as spaces), which only
// a producer that marked it trusted without checking sends: copied, it
// made `"body":   }`, a line no reader parses. One compare an event: a
// checked body starts with a token, or with whitespace only when it came
// so from the producer.
std::string_view body_or_empty(std::string_view body) noexcept {
  if (!body.empty() && static_cast<unsigned char>(body.front()) > 0x20) [[likely]] return body;
  for (const char c : body) {
    if (static_cast<unsigned char>(c) > 0x20) return body;
  }
  return "{}";
}
}  // namespace

void JsonFormatter::format(const EventView& e, ByteBuffer& out) {
  std::string_view body = body_or_empty(e.body);
  if (!reformatter_) {
    write_line(e, out, body);
    return;
  }
  Reformatter& r = *reformatter_;
  if (options_.normalize_body) {
    r.body.clear();
    if (r.rewrite(body, r.body, true, -1)) body = r.body.view();
  }
  if (!options_.pretty) {
    write_line(e, out, body);
    return;
  }
  std::string_view document = body;
  if (options_.include_metadata) {
    r.scratch.clear();
    write_metadata(e, r.scratch, body);
    document = r.scratch.view();
  }
  const std::size_t before = out.size();
  if (!r.rewrite(document, out, false, 0)) {
    out.resize_down(before);
    char* p = out.reserve_more(document.size());
    out.commit_to(put_body(p, document));
  }
  out.push_back('\n');
}

std::string format_rfc3339_micros(std::int64_t ns) {
  char buffer[40];
  TimestampCache cache;
  char* end = put_rfc3339_micros(ns, buffer, cache);
  return std::string(buffer, end);
}

}  // namespace ringroute::sinks
