// Body validation on any bytes: an offset within the text, and agreement
// with simdjson's DOM parser on what is an object.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "ringroute/ingest/body_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto problem = ringroute::ingest::check_json_object(text);
  if (problem && problem->byte_offset > size) std::abort();
  static simdjson::dom::parser parser;
  simdjson::dom::element root;
  const bool is_object = !parser.parse(text.data(), text.size(), true).get(root) && root.is_object();
  if (is_object == problem.has_value()) std::abort();
  return 0;
}
