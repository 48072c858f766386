#pragma once
// Backends for matcher tests, from JSON text: an array of
// {"name": ..., "enabled": ..., "bindings": [...]} objects (the matcher's part
// of a backend; the whole config file is the tools' business).

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "ringroute/matcher/config.hpp"
#include "ringroute/matcher/matcher.hpp"

namespace ringroute::testing {

// Throws std::invalid_argument with every config error, one a line.
inline std::vector<matcher::BackendSpec> backends_from_json(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::padded_string text(json);
  simdjson::dom::element root;
  if (parser.parse(text).get(root) != simdjson::SUCCESS || !root.is_array()) {
    throw std::invalid_argument("test backends must be a JSON array");
  }
  matcher::ConfigErrors errors;
  std::vector<matcher::BackendSpec> out;
  std::size_t index = 0;
  const simdjson::dom::array items = root.get_array().value_unsafe();
  for (simdjson::dom::element backend : items) {
    matcher::BackendSpec spec;
    const std::string path = "backends[" + std::to_string(index++) + "]";
    std::string_view name;
    if (backend["name"].get(name) == simdjson::SUCCESS) spec.name = std::string(name);
    bool enabled = true;
    if (backend["enabled"].get(enabled) == simdjson::SUCCESS) spec.enabled = enabled;
    simdjson::dom::element bindings;
    if (backend["bindings"].get(bindings) == simdjson::SUCCESS) {
      spec.bindings = matcher::parse_bindings(bindings, path + ".bindings", errors);
    }
    out.push_back(std::move(spec));
  }
  if (!errors.empty()) {
    std::string all;
    for (const auto& e : errors.list()) all += e.to_string() + "\n";
    throw std::invalid_argument(all);
  }
  return out;
}

// The errors one binding object gets, each as "path: message" with the
// binding at path "b".
inline std::vector<std::string> binding_errors(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::padded_string text(json);
  simdjson::dom::element root;
  if (parser.parse(text).get(root) != simdjson::SUCCESS) throw std::invalid_argument("not JSON");
  matcher::ConfigErrors errors;
  (void)matcher::parse_binding(root, "b", errors);
  std::vector<std::string> out;
  for (const auto& e : errors.list()) out.push_back(e.to_string());
  return out;
}

// The names of the backends `e` reaches through the compiled matcher, in
// config order.
inline std::vector<std::string> matched_names(const matcher::Matcher& m, const event::EventView& e,
                                              matcher::MatchScratch& scratch) {
  matcher::BackendSet set;
  set.resize(m.backend_count());
  m.match(e, scratch, set);
  std::vector<std::string> names;
  set.for_each([&](std::uint32_t i) { names.push_back(m.backend_name(i)); });
  return names;
}

}  // namespace ringroute::testing
