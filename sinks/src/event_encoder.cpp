#include "ringroute/sinks/event_encoder.hpp"

#include <unistd.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "ringroute/sinks/json_escape.hpp"

namespace ringroute::sinks {
namespace {

using event::StringField;

constexpr std::array<std::string_view, 24> kFacilities{
    "kern",     "user",   "mail",   "daemon", "auth",   "syslog", "lpr",    "news",
    "uucp",     "cron",   "authpriv", "ftp",  "ntp",    "security", "console", "solaris-cron",
    "local0",   "local1", "local2", "local3", "local4", "local5", "local6", "local7"};

// RFC 5424 header fields are PRINTUSASCII (33-126) with a length cap; other
// bytes become '_', an empty field is the NILVALUE "-".
char* put_header_field(char* out, std::string_view value, std::size_t max) noexcept {
  if (value.empty()) {
    *out++ = '-';
    return out;
  }
  const std::size_t n = value.size() < max ? value.size() : max;
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    *out++ = c >= 33 && c <= 126 ? static_cast<char>(c) : '_';
  }
  return out;
}

// PARAM-VALUE: UTF-8 with '"', '\' and ']' escaped by a backslash. Bytes
// that are not valid UTF-8 (strings from the C ABI are bytes) become
// U+FFFD, as in the JSON message: RFC 5424 wants valid UTF-8 here, and a
// stray lead byte before the closing quote is swallowed by lenient
// decoders. Control bytes (CR, LF, NUL, ...) and DEL become spaces: legal
// in a PARAM-VALUE, but with newline framing (and in receivers that split
// on them: syslog-ng ends a record at a NUL too) they would cut the
// message in two, the rest read as a record of the producer's making.
// Writes at most 3 bytes per byte of `value`.
char* put_param_value(char* out, std::string_view value) noexcept {
  for (std::size_t i = 0; i < value.size();) {
    const char c = value[i];
    if (static_cast<unsigned char>(c) >= 0x80) {
      const std::size_t n = utf8_sequence_length(value, i);
      if (n == 0) {
        std::memcpy(out, "\xEF\xBF\xBD", 3);
        out += 3;
        ++i;
      } else {
        std::memcpy(out, value.data() + i, n);
        out += n;
        i += n;
      }
      continue;
    }
    if (c == '"' || c == '\\' || c == ']') *out++ = '\\';
    *out++ = static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? ' ' : c;
    ++i;
  }
  return out;
}

// RFC 3164's TIMESTAMP, "Mmm dd hh:mm:ss" with the day padded by a space,
// in local time as syslog(3) writes it (no year, no zone: the receiver
// reads it in its own, the same on one host). localtime_r only when the
// second changes.
char* put_rfc3164_time(std::int64_t ns, char* out, TimestampCache& cache) noexcept {
  std::int64_t second = ns / 1'000'000'000;
  if (ns % 1'000'000'000 < 0) --second;
  if (second != cache.second) {
    static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const auto t = static_cast<std::time_t>(second);
    std::tm local{};
    if (::localtime_r(&t, &local) == nullptr) local = std::tm{};  // out of time_t's reach: Jan 0
    std::snprintf(cache.text, sizeof cache.text, "%s %2d %02d:%02d:%02d", kMonths[local.tm_mon % 12],
                  local.tm_mday % 100, local.tm_hour % 100, local.tm_min % 100, local.tm_sec % 100);
    cache.second = second;
  }
  std::memcpy(out, cache.text, 15);
  return out + 15;
}

bool ascii_alphanumeric(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// RFC 3164's TAG: at most 32 characters, which readers end at the first
// that is not alphanumeric ('[' for a PID, ':' before MSG, a space); the
// app's name with each other byte but '_', '-', '.' and '/' as '_'
// (syslog(3) programs' names keep those), "-" when there is none.
char* put_rfc3164_tag(char* out, std::string_view app) noexcept {
  if (app.empty()) {
    *out++ = '-';
    return out;
  }
  const std::size_t n = app.size() < 32 ? app.size() : 32;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = app[i];
    const bool kept = ascii_alphanumeric(c) || c == '_' || c == '-' || c == '.' || c == '/';
    *out++ = kept ? c : '_';
  }
  return out;
}

// RFC 3164's HOSTNAME as rsyslog's parser takes one: letters, digits, '.',
// '_' and '-' (each other byte as '_': a Kazoo node "ecallmgr@host", an
// IPv6 address's ':'), ending in a letter or digit (others at the end
// dropped), at most 255 bytes. Another was not taken for a host name: the
// receiver put the sender's address there and read the node as the TAG.
// Empty: nothing is written.
char* put_rfc3164_host(char* out, std::string_view host) noexcept {
  std::size_t n = host.size() < 255 ? host.size() : 255;
  while (n != 0 && !ascii_alphanumeric(host[n - 1])) --n;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = host[i];
    *out++ = ascii_alphanumeric(c) || c == '.' || c == '-' ? c : '_';
  }
  return out;
}

std::string local_host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "-";
  return name;
}

}  // namespace

unsigned syslog_severity(event::Severity severity, event::Verbosity verbosity) noexcept {
  return SyslogSeverityMap{}(severity, verbosity);
}

int syslog_facility(std::string_view name) noexcept {
  for (std::size_t i = 0; i < kFacilities.size(); ++i) {
    if (kFacilities[i] == name) return static_cast<int>(i);
  }
  return -1;
}

EventEncoder::EventEncoder(EncodeOptions options) : options_(options), json_(options.json) {
  if (options_.wrap == Wrap::syslog) host_name_ = local_host_name();
}

void EventEncoder::encode(const event::EventView& event, ByteBuffer& out) {
  if (options_.wrap == Wrap::line) {
    json_.format(event, out);
    return;
  }
  write_syslog(event, out);
}

void EventEncoder::write_syslog(const event::EventView& e, ByteBuffer& out) {
  // The message goes to a scratch buffer first when octet counting needs its
  // length before it; otherwise straight to `out`.
  ByteBuffer& message = options_.framing == Framing::octet_counting ? message_ : out;
  if (&message == &message_) message_.clear();
  if (options_.syslog_format == SyslogFormat::rfc3164) {
    put_rfc3164_header(e, message);
  } else {
    put_rfc5424_header(e, message);
  }
  json_.format(e, message);
  message.resize_down(message.size() - 1);  // the formatter's '\n': MSG has none

  if (options_.framing == Framing::newline) {
    message.push_back('\n');
  } else if (options_.framing == Framing::octet_counting) {
    char count[24];
    char* end = std::to_chars(count, count + sizeof count, message_.size()).ptr;
    *end++ = ' ';
    out.append(std::string_view(count, static_cast<std::size_t>(end - count)));
    out.append(message_.view());
  }
}

void EventEncoder::put_rfc3164_header(const event::EventView& e, ByteBuffer& message) {
  // <191>Mmm dd hh:mm:ss HOST TAG: at most 5+15+1+255+1+32+2 bytes.
  char* p = message.reserve_more(320);
  const unsigned pri = options_.facility * 8u + options_.severity(e.severity, e.verbosity);
  *p++ = '<';
  p = std::to_chars(p, p + 3, pri).ptr;
  *p++ = '>';
  p = put_rfc3164_time(e.timestamp_ns, p, timestamp_);
  *p++ = ' ';
  if (options_.rfc3164_hostname) {
    char* const host_start = p;
    if (e.has(StringField::node)) p = put_rfc3164_host(p, e.get(StringField::node));
    if (p == host_start) p = put_rfc3164_host(p, host_name_);
    if (p == host_start) *p++ = '-';
    *p++ = ' ';
  }
  p = put_rfc3164_tag(p, e.get(StringField::app_name));
  *p++ = ':';
  *p++ = ' ';
  message.commit_to(p);
}

void EventEncoder::put_rfc5424_header(const event::EventView& e, ByteBuffer& message) {
  std::string_view sd_values[4];
  std::size_t sd_bytes = 0;
  static constexpr std::array<StringField, 4> kSdFields{StringField::id, StringField::account_id,
                                                         StringField::topic, StringField::tag};
  if (options_.structured_data) {
    for (std::size_t i = 0; i < kSdFields.size(); ++i) {
      if (e.has(kSdFields[i])) {
        sd_values[i] = e.get(kSdFields[i]);
        sd_bytes += 16 + 3 * sd_values[i].size();
      }
    }
  }
  const std::string_view host = e.has(StringField::node) && !e.get(StringField::node).empty()
                                    ? e.get(StringField::node)
                                    : std::string_view(host_name_);
  // <191>1 TIMESTAMP HOST APP - MSGID SD SP: at most 5+2+27+1+255+1+48+3+32+1 bytes, plus SD.
  char* p = message.reserve_more(400 + sd_bytes);
  const unsigned pri = options_.facility * 8u + options_.severity(e.severity, e.verbosity);
  *p++ = '<';
  p = std::to_chars(p, p + 3, pri).ptr;
  *p++ = '>';
  *p++ = '1';
  *p++ = ' ';
  p = put_rfc3339_micros(e.timestamp_ns, p, timestamp_);
  *p++ = ' ';
  p = put_header_field(p, host, 255);
  *p++ = ' ';
  p = put_header_field(p, e.get(StringField::app_name), 48);
  std::memcpy(p, " - ", 3);
  p += 3;
  p = put_header_field(p, e.get(StringField::event_type), 32);
  *p++ = ' ';
  if (sd_bytes == 0) {
    *p++ = '-';
  } else {
    static constexpr std::string_view kSdId = "[ringroute@32473";
    std::memcpy(p, kSdId.data(), kSdId.size());
    p += kSdId.size();
    for (std::size_t i = 0; i < kSdFields.size(); ++i) {
      if (sd_values[i].data() == nullptr) continue;
      *p++ = ' ';
      const std::string_view name = event::kStringFieldNames[static_cast<std::size_t>(kSdFields[i])];
      std::memcpy(p, name.data(), name.size());
      p += name.size();
      *p++ = '=';
      *p++ = '"';
      p = put_param_value(p, sd_values[i]);
      *p++ = '"';
    }
    *p++ = ']';
  }
  *p++ = ' ';
  message.commit_to(p);
}

}  // namespace ringroute::sinks
