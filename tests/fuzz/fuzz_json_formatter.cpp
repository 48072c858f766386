// The json formatter on arbitrary events: the input is split into the
// event's strings, tree and body (any bytes: invalid UTF-8, control
// characters, a body that is not JSON as a trusted producer may send); every
// option combination must write one document that ends in '\n', and one that
// parses whenever the body itself is a JSON object, holding the body's
// values when it is written alone.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "fuzz_event.hpp"
#include "ringroute/sinks/json_formatter.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ringroute;
  fuzzing::FuzzEvent fuzz;
  if (!fuzz.build(data, size, true)) return 0;
  const std::uint8_t flags = data[0];
  const event::EventInput& in = fuzz.input;
  const event::EventView& view = fuzz.view;

  simdjson::dom::parser parser;
  simdjson::dom::element body;
  const bool body_is_object = parser.parse(std::string(in.body)).get(body) == simdjson::SUCCESS && body.is_object();
  sinks::JsonFormatOptions options;
  options.include_metadata = flags & 1;
  options.normalize = flags & 2;
  options.pretty = flags & 4;
  options.normalize_body = flags & 8;
  sinks::JsonFormatter formatter(options);
  sinks::ByteBuffer out;
  formatter.format(view, out);
  if (out.empty() || out.data()[out.size() - 1] != '\n') std::abort();
  // The body alone, not normalized: the same values as the body's, in
  // the same order (pretty output writes each number's own token, found
  // apart from the DOM: a token taken for the wrong number shows here).
  const std::string expected =
      body_is_object && !options.include_metadata && !options.normalize_body ? simdjson::minify(body) : "";
  if (body_is_object) {
    simdjson::dom::element doc;
    if (parser.parse(out.data(), out.size()).get(doc) != simdjson::SUCCESS || !doc.is_object()) std::abort();
    if (!expected.empty() && simdjson::minify(doc) != expected) std::abort();
  }
  return 0;
}
