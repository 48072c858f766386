#pragma once
// The json formatter (SEMANTICS.md section 6): Kazoo's edr_fmt_json options
// `include_metadata`, `normalize`, `pretty`, plus `normalize_body`. One JSON
// document per line.
//
// Cost: without pretty/normalize_body, one pass that escapes the metadata
// strings 16 bytes at a time and copies the body (its raw newlines, which
// valid JSON has only between tokens, become spaces so the document stays
// one line). pretty and normalize_body parse the document (simdjson DOM) and
// write it again.
//
// Thread-safety: one formatter per thread (it caches the last timestamp's
// text and owns a parser).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "ringroute/event/event.hpp"
#include "ringroute/sinks/byte_buffer.hpp"

namespace ringroute::sinks {

// The last second written as text ("2026-11-23T16:55:28", then its
// gregorian seconds' length and digits): most consecutive events share it.
struct TimestampCache {
  std::int64_t second = INT64_MIN;
  char text[44]{};
};

// Writes RFC 3339 UTC with microseconds (27 bytes, no quotes); returns the end.
char* put_rfc3339_micros(std::int64_t ns, char* out, TimestampCache& cache) noexcept;

struct JsonFormatOptions {
  bool include_metadata = true;
  bool normalize = true;
  bool pretty = false;
  bool normalize_body = false;

  friend bool operator==(const JsonFormatOptions&, const JsonFormatOptions&) = default;
};

class JsonFormatter {
 public:
  explicit JsonFormatter(JsonFormatOptions options = {});
  ~JsonFormatter();
  JsonFormatter(JsonFormatter&&) noexcept;
  JsonFormatter& operator=(JsonFormatter&&) noexcept;

  // Appends the event's document and '\n' to `out`. Never throws except
  // std::bad_alloc from growing `out`. A body that does not parse where
  // parsing is needed (pretty, normalize_body) is written as it came.
  void format(const event::EventView& event, ByteBuffer& out);

  [[nodiscard]] const JsonFormatOptions& options() const noexcept { return options_; }

 private:
  // One document on one line: metadata with the body, or the body alone.
  void write_line(const event::EventView& event, ByteBuffer& out, std::string_view body);
  void write_metadata(const event::EventView& event, ByteBuffer& out, std::string_view body);

  JsonFormatOptions options_;
  TimestampCache timestamp_;
  struct Reformatter;  // simdjson DOM work for pretty / normalize_body
  std::unique_ptr<Reformatter> reformatter_;
};

// RFC 3339 UTC with microseconds, truncated: "2026-11-23T16:55:28.123456Z".
[[nodiscard]] std::string format_rfc3339_micros(std::int64_t ns);

}  // namespace ringroute::sinks
