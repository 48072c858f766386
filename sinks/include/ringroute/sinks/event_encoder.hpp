#pragma once
// How an event becomes a backend's bytes: the json formatter's document,
// wrapped as the backend's transport wants it (DESIGN.md "Sinks"):
// - `line`: the document and '\n' (files, ndjson sockets, HTTP bodies);
// - `syslog`: an RFC 5424 message (or RFC 3164's older form, as syslog(3)
//   writes it) with the document as MSG, framed by RFC 6587 octet counting
//   ("LEN SP MSG"), a trailing newline, or nothing (a datagram is its own
//   frame).
//
// Router workers encode each event once per distinct EncodeOptions and copy
// the bytes into every matched backend's batch that shares them.
//
// Thread-safety: one encoder per thread (formatter caches, scratch buffer).

#include <array>
#include <cstdint>
#include <string>

#include "ringroute/event/event.hpp"
#include "ringroute/sinks/byte_buffer.hpp"
#include "ringroute/sinks/json_formatter.hpp"

namespace ringroute::sinks {

enum class Wrap : std::uint8_t { line, syslog };
enum class Framing : std::uint8_t { octet_counting, newline, none };
// RFC 5424; or RFC 3164's "<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MSG", for
// receivers that read nothing else (journald's and syslog(3)'s /dev/log).
enum class SyslogFormat : std::uint8_t { rfc5424, rfc3164 };

// The syslog severity (0-7) for an event: a value per verbosity, then capped
// by a value per severity (`ok` caps nothing). The defaults are DESIGN.md's:
// trace/debug 7, info 6, warn 4, error 3, fatal 2; warning caps at 4,
// critical at 2. The socket sink's `syslog_severity` option overrides any.
struct SyslogSeverityMap {
  std::array<std::uint8_t, event::kVerbosityCount> by_verbosity{7, 7, 6, 4, 3, 2};
  std::array<std::uint8_t, event::kSeverityCount> cap{7, 4, 2};

  [[nodiscard]] unsigned operator()(event::Severity severity, event::Verbosity verbosity) const noexcept {
    const unsigned base = by_verbosity[static_cast<std::size_t>(verbosity)];
    const unsigned cap_at = cap[static_cast<std::size_t>(severity)];
    return base < cap_at ? base : cap_at;
  }
  friend bool operator==(const SyslogSeverityMap&, const SyslogSeverityMap&) = default;
};

struct EncodeOptions {
  JsonFormatOptions json;
  Wrap wrap = Wrap::line;
  Framing framing = Framing::octet_counting;  // syslog only
  std::uint8_t facility = 16;                  // local0
  bool structured_data = false;                // syslog: [ringroute@32473 ...] with the event's ids
  SyslogSeverityMap severity;                  // syslog: PRI's severity
  SyslogFormat syslog_format = SyslogFormat::rfc5424;
  // RFC 3164: whether HOSTNAME is written. syslog(3) leaves it out on the
  // local socket, and the readers there take a first word for the TAG.
  bool rfc3164_hostname = true;

  friend bool operator==(const EncodeOptions&, const EncodeOptions&) = default;
};

// The default map's syslog severity for an event.
[[nodiscard]] unsigned syslog_severity(event::Severity severity, event::Verbosity verbosity) noexcept;

// "kern" .. "local7" to its number; -1 when unknown.
[[nodiscard]] int syslog_facility(std::string_view name) noexcept;

class EventEncoder {
 public:
  explicit EventEncoder(EncodeOptions options = {});
  EventEncoder(EventEncoder&&) noexcept = default;
  EventEncoder& operator=(EventEncoder&&) noexcept = default;

  // Appends the event's bytes (one frame) to `out`.
  void encode(const event::EventView& event, ByteBuffer& out);

  [[nodiscard]] const EncodeOptions& options() const noexcept { return options_; }

 private:
  void write_syslog(const event::EventView& event, ByteBuffer& out);
  // The header up to MSG, in `message`.
  void put_rfc5424_header(const event::EventView& event, ByteBuffer& message);
  void put_rfc3164_header(const event::EventView& event, ByteBuffer& message);

  EncodeOptions options_;
  JsonFormatter json_;
  ByteBuffer message_;  // syslog: the message before its octet count is known
  TimestampCache timestamp_;
  std::string host_name_;  // HOSTNAME when the event has no node
};

}  // namespace ringroute::sinks
