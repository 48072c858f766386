// The syslog encoder on arbitrary events (any bytes in every string field
// and the body): each frame must be an RFC 6587 octet-counted (or, for
// receivers that want it, LF-ended, with no LF inside) RFC 5424
// message whose count is exact, whose header fields are PRINTUSASCII tokens
// within their length limits, and whose structured data closes properly;
// or, in RFC 3164's form, a timestamp of syslog(3)'s shape and a TAG of the
// characters its readers take, then ": ".
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "fuzz_event.hpp"
#include "ringroute/sinks/event_encoder.hpp"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

// One header field: 1..max PRINTUSASCII bytes, then a space.
std::string_view field(std::string_view& rest, std::size_t max) {
  const std::size_t space = rest.find(' ');
  check(space != std::string_view::npos && space >= 1 && space <= max);
  const std::string_view value = rest.substr(0, space);
  for (char c : value) check(static_cast<unsigned char>(c) >= 33 && static_cast<unsigned char>(c) <= 126);
  rest.remove_prefix(space + 1);
  return value;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ringroute;
  fuzzing::FuzzEvent fuzz;
  if (!fuzz.build(data, size, false)) return 0;
  const std::uint8_t flags = data[0];
  const event::EventInput& in = fuzz.input;
  const event::EventView& view = fuzz.view;

  sinks::EncodeOptions options;
  options.wrap = sinks::Wrap::syslog;
  const bool rfc3164 = (flags & 4) != 0;
  options.syslog_format = rfc3164 ? sinks::SyslogFormat::rfc3164 : sinks::SyslogFormat::rfc5424;
  options.structured_data = !rfc3164 && (flags & 1) != 0;
  options.rfc3164_hostname = (flags & 1) != 0;
  options.json.pretty = (flags & 2) != 0 && (flags & 0x80) == 0;  // validate refuses pretty with LF framing
  // Bit 7 frames by LF; bits 3-6 and the severity byte's top bit pick
  // the facility (0..31 covers every one and more).
  const bool newline = (flags & 0x80) != 0;
  options.framing = newline ? sinks::Framing::newline : sinks::Framing::octet_counting;
  options.facility = static_cast<std::uint8_t>(((flags >> 3) & 0x0f) | (data[1] & 0x80 ? 16 : 0));
  if (options.facility > 23) options.facility = 23;
  sinks::EventEncoder encoder(options);
  sinks::ByteBuffer out;
  encoder.encode(view, out);
  encoder.encode(view, out);  // twice: the second frame starts where the first ends

  std::string_view frames = out.view();
  for (int frame = 0; frame < 2; ++frame) {
    std::string_view message;
    if (newline) {
      // An LF inside would end the message there for the receiver.
      const std::size_t end = frames.find('\n');
      check(end != std::string_view::npos);
      message = frames.substr(0, end);
      frames.remove_prefix(end + 1);
    } else {
      const std::size_t space = frames.find(' ');
      check(space != std::string_view::npos && space > 0 && space < 12);
      std::size_t length = 0;
      for (char c : frames.substr(0, space)) {
        check(c >= '0' && c <= '9');
        length = length * 10 + static_cast<std::size_t>(c - '0');
      }
      check(frames.size() >= space + 1 + length);
      message = frames.substr(space + 1, length);
      frames.remove_prefix(space + 1 + length);
    }

    check(message.size() > 4 && message[0] == '<');
    const std::size_t close = message.find('>');
    check(close >= 2 && close <= 4);
    unsigned pri = 0;
    for (char c : message.substr(1, close - 1)) pri = pri * 10 + static_cast<unsigned>(c - '0');
    check(pri == options.facility * 8u + sinks::syslog_severity(in.severity, in.verbosity));
    message.remove_prefix(close + 1);
    if (rfc3164) {
      // "Mmm dd hh:mm:ss ": a month's name, the day padded with a space.
      check(message.size() > 16);
      static constexpr std::string_view kMonths = "JanFebMarAprMayJunJulAugSepOctNovDec";
      check(kMonths.find(message.substr(0, 3)) % 3 == 0 && message[3] == ' ');
      check((message[4] == ' ' || (message[4] >= '1' && message[4] <= '3')) && message[5] >= '0' && message[5] <= '9');
      for (std::size_t i : {7u, 8u, 10u, 11u, 13u, 14u}) check(message[i] >= '0' && message[i] <= '9');
      check(message[6] == ' ' && message[9] == ':' && message[12] == ':' && message[15] == ' ');
      message.remove_prefix(16);
      if (options.rfc3164_hostname) field(message, 255);
      const std::size_t colon = message.find(": ");
      check(colon != std::string_view::npos && colon >= 1 && colon <= 32);
      for (char c : message.substr(0, colon)) {
        check((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.' || c == '/');
      }
      message.remove_prefix(colon + 2);
      check(!message.empty());  // MSG: the json document, never empty
      continue;
    }
    check(message.substr(0, 2) == "1 ");
    message.remove_prefix(2);
    check(field(message, 32).size() == 27);  // timestamp with microseconds and Z
    field(message, 255);                      // hostname
    field(message, 48);                       // app-name
    check(field(message, 128) == "-");        // procid
    field(message, 32);                       // msgid
    if (message.substr(0, 2) == "- ") {
      message.remove_prefix(2);
    } else {
      // [id param="value" ...]: inside quotes only \" \\ \] are escapes.
      check(!message.empty() && message[0] == '[');
      bool quoted = false;
      std::size_t i = 1;
      for (; i < message.size(); ++i) {
        const char c = message[i];
        if (quoted && c == '\\') {
          check(i + 1 < message.size());
          const char next = message[i + 1];
          check(next == '"' || next == '\\' || next == ']');
          ++i;
        } else if (c == '"') {
          quoted = !quoted;
        } else if (!quoted && c == ']') {
          break;
        } else {
          check(quoted || c != '[');
        }
      }
      check(i + 1 < message.size() && message[i + 1] == ' ');
      message.remove_prefix(i + 2);
    }
    check(!message.empty());  // MSG: the json document, never empty
  }
  check(frames.empty());
  return 0;
}
