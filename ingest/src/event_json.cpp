#include "ringroute/ingest/event_json.hpp"

#include "ringroute/event/excerpt.hpp"
#include "ringroute/ingest/body_check.hpp"

#include <array>
#include <charconv>
#include <cstring>

namespace ringroute::ingest {

namespace {

enum class Member : std::uint8_t {
  account_id, account_tree, app_name, app_version, body, id, node, severity, timestamp,
  gregorian_time, verbosity, topic, stream_name, event_type, tag,
};
constexpr std::size_t kMemberCount = 15;

struct MemberName {
  std::string_view normalized;
  std::string_view wire;  // Kazoo's name, as the formatter writes with normalize=false
};
constexpr std::array<MemberName, kMemberCount> kMembers{{
    {"account_id", "Account-ID"},     {"account_tree", "Account-Tree"}, {"app_name", "App-Name"},
    {"app_version", "App-Version"},   {"body", "Body"},                 {"id", "ID"},
    {"node", "Node"},                 {"severity", "Severity"},         {"timestamp", "Timestamp"},
    {"gregorian_time", "Gregorian-Time"}, {"verbosity", "Verbosity"},   {"topic", "Topic"},
    {"stream_name", "Stream-Name"},   {"event_type", "Event-Type"},     {"tag", "Tag"},
}};

using event::kGregorianToUnix;

std::string quoted(std::string_view s) {
  const std::string_view excerpt = event::quoted_excerpt(s);
  std::string out = "\"";
  for (char c : excerpt) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      out += '?';
      continue;
    }
    out += c;
  }
  out += '"';
  return out + event::excerpt_tail(s);
}

std::optional<event::StringField> string_field(Member m) {
  switch (m) {
    case Member::account_id: return event::StringField::account_id;
    case Member::app_name: return event::StringField::app_name;
    case Member::app_version: return event::StringField::app_version;
    case Member::id: return event::StringField::id;
    case Member::node: return event::StringField::node;
    case Member::topic: return event::StringField::topic;
    case Member::stream_name: return event::StringField::stream_name;
    case Member::event_type: return event::StringField::event_type;
    case Member::tag: return event::StringField::tag;
    default: return std::nullopt;
  }
}

std::string type_error(std::string_view member, std::string_view expected) {
  return std::string(member) + ": expected " + std::string(expected);
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
constexpr std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

}  // namespace

bool is_blank(std::string_view line) noexcept {
  for (char c : line) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  }
  return true;
}

std::optional<std::int64_t> parse_rfc3339(std::string_view t, bool* out_of_range) noexcept {
  auto digits = [&](std::size_t at, std::size_t n, int& out) {
    if (at + n > t.size()) return false;
    out = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (t[i] < '0' || t[i] > '9') return false;
      out = out * 10 + (t[i] - '0');
    }
    return true;
  };
  int year, month, day, hour, minute, second;
  if (!digits(0, 4, year) || t.size() < 20 || t[4] != '-' || !digits(5, 2, month) || t[7] != '-' ||
      !digits(8, 2, day) || (t[10] != 'T' && t[10] != 't' && t[10] != ' ') || !digits(11, 2, hour) ||
      t[13] != ':' || !digits(14, 2, minute) || t[16] != ':' || !digits(17, 2, second)) {
    return std::nullopt;
  }
  static constexpr int kDaysInMonth[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month < 1 || month > 12 || day < 1 || day > kDaysInMonth[month - 1] ||
      (month == 2 && day == 29 && !leap) || hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  std::size_t i = 19;
  std::int64_t nanos = 0;
  if (i < t.size() && t[i] == '.') {
    ++i;
    std::size_t n = 0;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
      if (n < 9) nanos = nanos * 10 + (t[i] - '0');
      ++n;
      ++i;
    }
    if (n == 0) return std::nullopt;
    for (std::size_t k = n; k < 9; ++k) nanos *= 10;
  }
  std::int64_t offset_s = 0;
  if (i < t.size() && (t[i] == 'Z' || t[i] == 'z')) {
    ++i;
  } else if (i < t.size() && (t[i] == '+' || t[i] == '-')) {
    int oh, om;
    if (!digits(i + 1, 2, oh) || i + 3 >= t.size() || t[i + 3] != ':' || !digits(i + 4, 2, om) || oh > 23 ||
        om > 59) {
      return std::nullopt;
    }
    offset_s = (t[i] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != t.size()) return std::nullopt;
  // A leap second is the last of a UTC day; taken anywhere else, 12:00:60
  // was 12:01:00 without a word.
  if (second == 60 && ((hour * 60 + minute - offset_s / 60) % 1440 + 1440) % 1440 != 23 * 60 + 59) {
    return std::nullopt;
  }
  const std::int64_t days = days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  const std::int64_t seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_s;
  // int64 nanoseconds reach from 1677 to 2262, both ends exact: before
  // 1970 the fraction counts back from the next whole second, so the
  // product stays in range where the sum does.
  std::int64_t whole = seconds, fraction = nanos, ns = 0;
  if (whole < 0 && fraction > 0) {
    whole += 1;
    fraction -= 1'000'000'000;
  }
  if (__builtin_mul_overflow(whole, std::int64_t{1'000'000'000}, &ns) || __builtin_add_overflow(ns, fraction, &ns)) {
    if (out_of_range != nullptr) *out_of_range = true;
    return std::nullopt;
  }
  return ns;
}

namespace {

constexpr const char* kGregorianRange =
    "outside the times an event holds (seconds since year 0 that fall within 64-bit ns since the epoch: "
    "1677-09-21 to 2262-04-11)";

// The top-level member whose value holds byte `offset` of a line that is
// not JSON from there on (its key as written, without quotes), or empty:
// the error then names the member too, as type errors do. A plain scan:
// strings (with escapes), scalars and nesting, up to `offset`. A fault
// past the end of a member's value (a missing comma) is no member's: it
// was blamed on the member before it, whose value was fine.
std::string_view member_at(std::string_view line, std::size_t offset) {
  std::string_view key, last_string;
  int depth = 0;
  bool after_colon = false;
  std::size_t value_end = std::string_view::npos;  // where the member's value ended, once it has
  const auto value_ends_at = [&](std::size_t at) {
    if (depth == 1 && after_colon && value_end == std::string_view::npos) value_end = at;
  };
  const auto member = [&] {
    return depth >= 1 && after_colon && (value_end == std::string_view::npos || offset < value_end) ? key
                                                                                                     : std::string_view();
  };
  for (std::size_t i = 0; i < line.size() && i < offset; ++i) {
    const char c = line[i];
    if (c == '"') {
      const std::size_t start = ++i;
      while (i < line.size() && i < offset && line[i] != '"') i += line[i] == '\\' ? 2 : 1;
      // Inside a string at the offset: the top-level member whose value
      // holds it, at any depth (a key at depth 1 is no member's value).
      if (i >= line.size() || i >= offset) return member();
      last_string = line.substr(start, i - start);
      value_ends_at(i + 1);
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth < 1) return {};
      value_ends_at(i + 1);
    } else if (c == ':' && depth == 1) {
      key = last_string;
      after_colon = true;
      value_end = std::string_view::npos;
    } else if (c == ',' && depth == 1) {
      after_colon = false;
    } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != ':' && c != ',') {
      // A scalar (number, true, false, null, or bytes no JSON has): it
      // runs to the next delimiter.
      // Stepped over whole: a byte at a time, a long one running to the
      // line's end was found again from each of its bytes (minutes for a
      // line of megabytes).
      const std::size_t scalar_end = std::min(line.find_first_of(" \t\r\n,:[]{}\"", i), line.size());
      value_ends_at(scalar_end);
      i = scalar_end - 1;
    }
  }
  return member();
}

}  // namespace

std::optional<std::string> EventLineParser::parse(std::string_view line, ParsedEvent& out) {
  out = ParsedEvent{};
  out.input.body = "{}";
  // A copy with SIMDJSON_PADDING: on-demand reads past the end.
  if (buffer_.size() < line.size() + simdjson::SIMDJSON_PADDING || buffer_.data() == nullptr) {
    buffer_ = simdjson::padded_string(line.size() * 2 + simdjson::SIMDJSON_PADDING);
  }
  std::memcpy(buffer_.data(), line.data(), line.size());
  // Only the padding after this line: the buffer is as long as the longest
  // line yet, and filling all of it made every short line after one long
  // one pay for the long one.
  std::memset(buffer_.data() + line.size(), ' ', simdjson::SIMDJSON_PADDING);

  // On-demand finds some faults late, without a place, or as the wrong
  // thing (`{"a":`, `{} x`, a bad escape taken for a type error): the whole
  // line is checked first, so a line that is not JSON is refused with the
  // byte where it stops being JSON.
  if (const auto problem = check_json_object(line, JsonText::event_line)) {
    if (problem->valid_json) return std::string("not a JSON object");
    // At the line's end (it stops inside its JSON) no member is at fault.
    const std::string_view member =
        problem->byte_offset < line.size() ? member_at(line, problem->byte_offset) : std::string_view();
    // The body check's advice for a number past 64 bits (send it as a
    // string) does not hold for a timestamp, whose strings are dates, nor
    // for a Gregorian time, which is only ever a number.
    const bool past_64_bits = std::string_view(problem->reason).find("past 64 bits") != std::string_view::npos;
    if ((member == "timestamp" || member == "Timestamp") && past_64_bits) {
      return std::string(member) + ": byte " + std::to_string(problem->byte_offset) +
             ": outside the timestamps an event holds (ns since the epoch in 64 bits)";
    }
    if ((member == "gregorian_time" || member == "Gregorian-Time") && past_64_bits) {
      return std::string(member) + ": byte " + std::to_string(problem->byte_offset) +
             ": " + kGregorianRange;
    }
    return (member.empty() ? std::string() : std::string(member) + ": ") +
           (problem->unsupported ? "byte " : "not JSON: byte ") + std::to_string(problem->byte_offset) + ": " +
           problem->reason;
  }
  simdjson::ondemand::document doc;
  if (auto e = parser_.iterate(buffer_.data(), line.size(), buffer_.size()).get(doc)) {
    return std::string("not JSON: ") + simdjson::error_message(e);
  }
  simdjson::ondemand::object object;
  {
    simdjson::ondemand::json_type type;
    if (auto e = doc.type().get(type)) return std::string("not JSON: ") + simdjson::error_message(e);
    if (type != simdjson::ondemand::json_type::object) return std::string("not a JSON object");
    if (auto e = doc.get_object().get(object)) return std::string("not JSON: ") + simdjson::error_message(e);
  }
  std::array<std::string_view, kMemberCount> seen_as{};
  std::optional<std::int64_t> gregorian;
  for (auto field : object) {
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return std::string("not JSON: ") + simdjson::error_message(e);
    std::size_t index = kMemberCount;
    for (std::size_t m = 0; m < kMemberCount; ++m) {
      if (kMembers[m].normalized == key || kMembers[m].wire == key) {
        index = m;
        break;
      }
    }
    if (index == kMemberCount) {
      // eventd's events (seed 001) carry their payload as `value`: one
      // member here has another name, not a member unknown.
      if (key == "value") return "unknown member \"value\" (eventd's value: give it as \"body\", a JSON object)";
      return "unknown member " + quoted(key);
    }
    const auto member = static_cast<Member>(index);
    if (!seen_as[index].empty()) {
      if (seen_as[index] == key) return "member " + quoted(key) + " given twice";
      return "member " + quoted(kMembers[index].normalized) + " given in both namings (" + quoted(seen_as[index]) +
             " and " + quoted(key) + ")";
    }
    // The key view dies with the next key; keep the static spelling instead.
    seen_as[index] = kMembers[index].normalized == key ? kMembers[index].normalized : kMembers[index].wire;
    // Errors name the member as the line spells it (its JSON path there),
    // in either naming, as the syntax errors do.
    const std::string_view name = seen_as[index];

    simdjson::ondemand::value value;
    if (auto e = field.value().get(value)) return std::string(name) + ": " + simdjson::error_message(e);
    simdjson::ondemand::json_type type;
    if (auto e = value.type().get(type)) return std::string(name) + ": " + simdjson::error_message(e);
    if (type == simdjson::ondemand::json_type::null) {
      if (auto e = value.is_null().error()) return std::string(name) + ": " + simdjson::error_message(e);
      continue;  // null is the same as absent
    }
    if (auto sf = string_field(member)) {
      std::string_view s;
      if (type != simdjson::ondemand::json_type::string || value.get_string().get(s)) {
        return type_error(name, "a string");
      }
      if (s.empty() && (member == Member::account_id || member == Member::app_name || member == Member::id ||
                        member == Member::node)) {
        return std::string(name) + ": empty (leave it out instead)";
      }
      if (s.size() > event::kMaxFieldBytes) return std::string(name) + ": longer than 65535 bytes";
      out.input.set(*sf, s);
      continue;
    }
    switch (member) {
      case Member::severity:
      case Member::verbosity: {
        std::string_view s;
        if (type != simdjson::ondemand::json_type::string || value.get_string().get(s)) {
          return type_error(name, "a string");
        }
        if (member == Member::severity) {
          const auto level = event::parse_severity(s);
          if (!level) return std::string(name) + ": unknown level " + quoted(s) + " (expected ok, warning, critical)";
          out.input.severity = *level;
          out.has_severity = true;
        } else {
          const auto level = event::parse_verbosity(s);
          if (!level) {
            return std::string(name) + ": unknown level " + quoted(s) +
                   " (expected trace, debug, info, warn, error, fatal)";
          }
          out.input.verbosity = *level;
          out.has_verbosity = true;
        }
        break;
      }
      case Member::account_tree: {
        simdjson::ondemand::array array;
        if (type != simdjson::ondemand::json_type::array || value.get_array().get(array)) {
          return type_error(name, "an array of strings");
        }
        std::size_t i = 0;
        for (auto element : array) {
          std::string_view s;
          if (element.get_string().get(s)) {
            return std::string(name) + "[" + std::to_string(i) + "]: expected a string";
          }
          if (s.empty()) return std::string(name) + "[" + std::to_string(i) + "]: empty";
          if (s.size() > event::kMaxFieldBytes) {
            return std::string(name) + "[" + std::to_string(i) + "]: longer than 65535 bytes";
          }
          out.account_tree.push_back(s);
          ++i;
        }
        if (out.account_tree.size() > event::kMaxTreeEntries) return std::string(name) + ": more than 65535 entries";
        out.has_account_tree = true;
        break;
      }
      case Member::body: {
        simdjson::ondemand::object body;
        if (type != simdjson::ondemand::json_type::object || value.get_object().get(body)) {
          return type_error(name, "an object");
        }
        std::string_view raw;
        if (auto e = body.raw_json().get(raw)) return std::string(name) + ": not JSON: " + simdjson::error_message(e);
        // raw_json() only balances brackets (simdjson 3.0): `{"a":tru}`
        // passes it. The whole line was checked above, so the body is JSON,
        // as the producer library would check it.
        // raw_json() runs up to the next token: whitespace after the
        // object is in it.
        out.input.body = without_surrounding_whitespace(raw);
        out.has_body = true;
        break;
      }
      case Member::timestamp: {
        if (type == simdjson::ondemand::json_type::number) {
          std::int64_t ns;
          if (value.get_int64().get(ns)) {
            // An integer that does not fit is said as such, not as "not one".
            std::uint64_t big;
            return std::string(name) + (value.get_uint64().get(big) == simdjson::SUCCESS
                                            ? ": " + std::to_string(big) + " is past the largest timestamp (" +
                                                  std::to_string(std::numeric_limits<std::int64_t>::max()) +
                                                  " ns since the epoch)"
                                            : ": expected an integer (ns since the epoch) or an RFC 3339 string, "
                                              "got a number with a fraction or an exponent");
          }
          out.input.timestamp_ns = ns;
        } else if (type == simdjson::ondemand::json_type::string) {
          std::string_view s;
          if (value.get_string().get(s)) return type_error(name, "a string");
          bool out_of_range = false;
          const auto ns = parse_rfc3339(s, &out_of_range);
          if (out_of_range) {
            return std::string(name) + ": " + quoted(s) +
                   " is outside the timestamps an event holds (ns since the epoch in 64 bits: "
                   "1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z)";
          }
          if (!ns) return std::string(name) + ": " + quoted(s) + " is not an RFC 3339 date-time";
          out.input.timestamp_ns = *ns;
        } else {
          return type_error(name, "an integer (ns since the epoch) or an RFC 3339 string");
        }
        out.has_timestamp = true;
        break;
      }
      case Member::gregorian_time: {
        std::int64_t seconds;
        if (type != simdjson::ondemand::json_type::number) return type_error(name, "an integer (seconds since year 0)");
        if (value.get_int64().get(seconds)) {
          // An integer that does not fit is said as such, not as "not one".
          std::uint64_t big;
          return std::string(name) + (value.get_uint64().get(big) == simdjson::SUCCESS
                                          ? std::string(": ") + kGregorianRange
                                          : std::string(": expected an integer (seconds since year 0)"));
        }
        gregorian = seconds;
        break;
      }
      default: break;
    }
  }
  // Past the object's last token current_location() has nowhere to point;
  // if it still does, something follows the object.
  if (const char* rest = nullptr; doc.current_location().get(rest) == simdjson::SUCCESS) {
    return "not JSON: trailing content at byte " + std::to_string(rest - buffer_.data());
  }
  if (gregorian) {
    const std::string_view name = seen_as[static_cast<std::size_t>(Member::gregorian_time)];
    // Compared before subtracting: INT64_MIN - kGregorianToUnix overflows.
    if (*gregorian < INT64_MIN / 1'000'000'000 + kGregorianToUnix ||
        *gregorian > INT64_MAX / 1'000'000'000 + kGregorianToUnix) {
      return std::string(name) + ": " + kGregorianRange;
    }
    const std::int64_t unix_seconds = *gregorian - kGregorianToUnix;
    if (!out.has_timestamp) {
      out.input.timestamp_ns = unix_seconds * 1'000'000'000;
      out.has_timestamp = true;
    } else if (const std::int64_t second = event::gregorian_seconds(out.input.timestamp_ns); second != *gregorian) {
      // Both say when the event happened, and the record keeps one time:
      // one that disagrees with the other was ignored before, without a word.
      return std::string(name) + ": " + std::to_string(*gregorian) + " is not the timestamp's second (" +
             std::to_string(second) + " since year 0): give one of them, or both alike";
    }
  }
  return std::nullopt;
}

std::optional<std::string> encode_record(const ParsedEvent& event, std::vector<std::byte>& out) {
  const std::size_t size = event::encoded_size(event.input, event.account_tree);
  if (size == 0) {
    return std::string("event too large for a record (a field over ") +
           std::to_string(event::kMaxFieldBytes) + " bytes or more than " +
           std::to_string(event::kMaxTreeEntries) + " account_tree entries)";
  }
  out.resize(size);
  event::encode(event.input, event.account_tree, event.has_account_tree, out.data());
  return std::nullopt;
}

}  // namespace ringroute::ingest
