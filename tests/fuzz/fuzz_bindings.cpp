// A `bindings` array on any bytes: simdjson's DOM first, then
// parse_bindings (or parse_binding for a lone object), never a crash. What
// parsed is compiled (spread over two backends, and copied into a disabled
// third) and matched against fixed events: a disabled backend never matches.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ringroute/event/event.hpp"
#include "json_event.hpp"
#include "ringroute/ingest/event_json.hpp"
#include "ringroute/matcher/config.hpp"
#include "ringroute/matcher/matcher.hpp"

namespace {

using namespace ringroute;

using FixedEvent = testing::OwnedEvent;  // a bad fixed line throws at start: a bug in the target

const std::vector<std::unique_ptr<FixedEvent>>& events() {
  static const auto* list = [] {
    auto* v = new std::vector<std::unique_ptr<FixedEvent>>();
    v->push_back(std::make_unique<FixedEvent>(
        R"({"id":"e1","severity":"warning","verbosity":"debug","account_id":"acct1",)"
        R"("account_tree":["root","acct0"],"app_name":"cf","body":{"attrs":{"type":"call-end","duration":3}}})"));
    v->push_back(std::make_unique<FixedEvent>(R"({"severity":"critical","verbosity":"fatal","body":{}})"));
    v->push_back(std::make_unique<FixedEvent>(
        R"({"topic":"edr.x.y","account_id":"a.b","app_name":"bh","verbosity":"trace","body":{"n":1}})"));
    return v;
  }();
  return *list;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(reinterpret_cast<const char*>(data), size, true).get(root) != simdjson::SUCCESS) return 0;
  matcher::ConfigErrors errors;
  std::vector<matcher::BindingSpec> bindings;
  if (root.is_object()) {
    if (auto one = matcher::parse_binding(root, "b", errors)) bindings.push_back(std::move(*one));
  } else {
    bindings = matcher::parse_bindings(root, "bindings", errors);
  }
  for (const auto& e : errors.list()) {
    if (e.message.empty()) std::abort();
  }
  std::vector<matcher::BackendSpec> backends(3);
  backends[0].name = "even";
  backends[1].name = "odd";
  backends[2].name = "disabled";
  backends[2].enabled = false;
  for (std::size_t i = 0; i < bindings.size(); ++i) {
    backends[i % 2].bindings.push_back(bindings[i]);
    backends[2].bindings.push_back(bindings[i]);
  }
  const auto m = matcher::Matcher::compile(backends);
  static matcher::MatchScratch scratch;
  matcher::BackendSet out;
  out.resize(m->backend_count());
  for (const auto& e : events()) {
    m->match(e->view, scratch, out);
    if (out.test(2)) std::abort();
    out.clear();
  }
  return 0;
}
