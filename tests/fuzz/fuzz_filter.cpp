// A filter expression on any bytes: an expression or an error, never a
// crash. What parses is compiled into a one-backend matcher and matched
// against fixed events (a body with every JSON kind, an empty body, an event
// with a topic and no account), so evaluation runs too: regexes, number
// comparisons, paths through arrays and scalars. Each result is checked
// against the differential test's reference matcher (its own evaluator of
// the parsed tree), so a filter evaluated wrongly aborts, not only one
// that crashes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <variant>
#include <vector>

#include "ringroute/event/event.hpp"
#include "json_event.hpp"
#include "ringroute/ingest/event_json.hpp"
#include "ringroute/matcher/filter.hpp"
#include "ringroute/matcher/matcher.hpp"
#include "reference.hpp"

namespace {

using namespace ringroute;

using FixedEvent = testing::OwnedEvent;  // a bad fixed line throws at start: a bug in the target

const std::vector<std::unique_ptr<FixedEvent>>& events() {
  static const auto* list = [] {
    auto* v = new std::vector<std::unique_ptr<FixedEvent>>();
    v->push_back(std::make_unique<FixedEvent>(
        R"({"id":"e1","severity":"warning","verbosity":"debug","account_id":"acct-000042",)"
        R"("account_tree":["org-00","grp-0000"],"app_name":"app007","node":"gw-01","tag":"t",)"
        R"("body":{"attrs":{"type":"call-end","duration":3,"rate":1.5,"ok":true,"none":null,)"
        R"("big":18446744073709551615,"neg":-9223372036854775808,"list":[1,"a",{}],"o":{"k":"v"},)"
        R"("esc":"a\"b\\c\u00e9"},"n":0,"s":"","attrs2":{"x":{"y":{"z":1}}}}})"));
    v->push_back(std::make_unique<FixedEvent>(R"({"severity":"critical","verbosity":"fatal","body":{}})"));
    v->push_back(std::make_unique<FixedEvent>(
        R"({"topic":"a.b..c","app_name":"x","stream_name":"s","event_type":"et",)"
        R"("body":{"attrs":{"type":"reg-expired","duration":"5"},"attrs.type":7}})"));
    return v;
  }();
  return *list;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = matcher::filter::parse(text);
  if (auto* error = std::get_if<matcher::filter::ParseError>(&parsed)) {
    if (error->column == 0 || error->column > size + 1 || error->message.empty()) std::abort();
    return 0;
  }
  auto expression = std::make_shared<const matcher::filter::Expression>(
      std::move(std::get<matcher::filter::Expression>(parsed)));
  if (expression->nodes.empty()) std::abort();
  std::vector<matcher::BackendSpec> backends(1);
  backends[0].name = "fuzz";
  matcher::BindingSpec binding;
  binding.severity = {{event::Severity::ok}, false, false};
  binding.verbosity = {{event::Verbosity::trace}, false, false};
  binding.filter = expression;
  backends[0].bindings.push_back(binding);
  const auto m = matcher::Matcher::compile(backends);
  const std::vector<matcher::reference::Backend> model = matcher::reference::from_specs(backends);
  static matcher::MatchScratch scratch;  // kept across inputs, as a worker keeps it
  matcher::BackendSet out;
  out.resize(m->backend_count());
  for (const auto& e : events()) {
    m->match(e->view, scratch, out);
    if (out.size() > 1) std::abort();
    matcher::reference::Reference reference;
    const bool expected = !reference.match(model, e->view).empty();
    if (!reference.body_failed() && expected != out.test(0)) std::abort();
    out.clear();
  }
  return 0;
}
