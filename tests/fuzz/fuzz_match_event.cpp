// Any event against a fixed config: its body any bytes and trusted (neither
// the producer library nor the router checks it), its account, tree, app
// and topic any strings. The config's filters read the body along several
// paths each, its topics use `*` and `#`, with descendants and app lists:
// the event side of matching, which fuzz_filter and fuzz_bindings (fixed
// events) never vary. Never a crash; match() and match_batch() agree; and
// where the reference matcher reads the body as a JSON object, both agree
// with it.
#include <simdjson.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_event.hpp"
#include "reference.hpp"
#include "ringroute/matcher/config.hpp"
#include "ringroute/matcher/matcher.hpp"

namespace {

using namespace ringroute;

const std::vector<matcher::BackendSpec>& backends() {
  static const auto* specs = [] {
    const std::array<std::pair<const char*, const char*>, 6> config = {{
        {"two_reads", R"j([{"verbosity":"trace","filter":"big > 1 || big < 1"}])j"},
        {"deep", R"j([{"verbosity":"trace","filter":"a.b = 2 && (s ~ '^x' || n >= 3) || !(k.k.k = true)"}])j"},
        {"descendants", R"j([{"account_id":"acct","include_descendants":true,"verbosity":"trace",)j"
                        R"j("filter":"body.list = null || x != 'y' || topic ~ 'edr'"}])j"},
        {"topics", R"j([{"verbosity":"trace","topic":"edr.*.#"},{"app_name":"app","verbosity":"trace","topic":"#.x"}])j"},
        {"plain", R"j([{"account_id":["a","b"],"app_name":["app","*"],"severity":"critical","verbosity":"info"}])j"},
        {"topic_filter", R"j([{"account_id":"*","verbosity":"debug","topic":"*.*.#","filter":"n = 1 && s = 'x'"}])j"},
    }};
    auto* list = new std::vector<matcher::BackendSpec>();
    simdjson::dom::parser parser;
    for (const auto& [name, bindings] : config) {
      simdjson::dom::element root;
      matcher::ConfigErrors errors;
      if (parser.parse(std::string(bindings)).get(root) != simdjson::SUCCESS) std::abort();
      matcher::BackendSpec spec;
      spec.name = name;
      spec.bindings = matcher::parse_bindings(root, "bindings", errors);
      if (!errors.list().empty()) std::abort();  // a bad fixed config: a bug in the target
      list->push_back(std::move(spec));
    }
    return list;
  }();
  return *specs;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzzing::FuzzEvent event;
  if (!event.build(data, size, true)) return 0;
  static const auto compiled = matcher::Matcher::compile(backends());
  static const std::vector<matcher::reference::Backend> model = matcher::reference::from_specs(backends());
  static matcher::MatchScratch scratch;  // kept across inputs, as a worker keeps it
  matcher::BackendSet one;
  one.resize(compiled->backend_count());
  compiled->match(event.view, scratch, one);
  // The same event three times in a group: each gets what match() gave.
  const std::array<event::EventView, 3> group = {event.view, event.view, event.view};
  std::array<matcher::BackendSet, 3> outs;
  for (auto& out : outs) out.resize(compiled->backend_count());
  compiled->match_batch(group, scratch, outs.data());
  for (const auto& out : outs) {
    for (std::uint32_t i = 0; i < compiled->backend_count(); ++i) {
      if (out.test(i) != one.test(i)) std::abort();
    }
  }
  matcher::reference::Reference reference;
  const std::vector<std::string> expected = reference.match(model, event.view);
  if (reference.body_failed()) return 0;  // a body the reference can't read: no rule says what is in it
  std::vector<std::string> got;
  one.for_each([&](std::uint32_t i) { got.push_back(compiled->backend_name(i)); });
  if (got != expected) std::abort();
  return 0;
}
