// The json formatter on arbitrary events: the input is split into the
// event's strings, tree and body (any bytes: invalid UTF-8, control
// characters, a body that is not JSON as a trusted producer may send); every
// option combination must write one document that ends in '\n', and one that
// parses whenever the body itself is a JSON object.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "ringroute/event/event.hpp"
#include "ringroute/sinks/json_formatter.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ringroute;
  if (size < 4) return 0;
  const std::uint8_t flags = data[0];
  event::EventInput in;
  in.severity = static_cast<event::Severity>(data[1] % 3);
  in.verbosity = static_cast<event::Verbosity>(data[2] % 6);
  in.timestamp_ns = static_cast<std::int64_t>(data[3]) * 7'919'000'000'123LL - 1'000'000'000'000'000'000LL;
  std::string_view rest(reinterpret_cast<const char*>(data + 4), size - 4);
  // Fields are separated by 0xff bytes: strings in record order, tree entries, then the body.
  std::vector<std::string_view> parts;
  for (std::size_t at; (at = rest.find('\xff')) != std::string_view::npos && parts.size() < 12;) {
    parts.push_back(rest.substr(0, at));
    rest.remove_prefix(at + 1);
  }
  in.body = rest;
  std::vector<std::string_view> tree;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i < event::kStringFieldCount) {
      if (!parts[i].empty()) in.set(static_cast<event::StringField>(i), parts[i]);
    } else {
      tree.push_back(parts[i]);
    }
  }
  const std::size_t bytes = event::encoded_size(in, tree);
  if (bytes == 0) return 0;
  std::vector<std::byte> record(bytes);
  event::encode(in, tree, !tree.empty(), record.data());
  event::EventView view;
  if (event::decode(record, view) != event::DecodeError::none) std::abort();

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
  if (body_is_object) {
    simdjson::dom::element doc;
    if (parser.parse(out.data(), out.size()).get(doc) != simdjson::SUCCESS || !doc.is_object()) std::abort();
  }
  return 0;
}
