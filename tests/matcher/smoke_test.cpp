// End-to-end checks of compile + match through the public API: config JSON
// in, backends out, in config order.

#include <gtest/gtest.h>

#include "backends.hpp"
#include "json_event.hpp"
#include "ringroute/matcher/matcher.hpp"

namespace ringroute::matcher {
namespace {

std::vector<std::string> matched(const Matcher& m, const event::EventView& e) {
  MatchScratch scratch;
  return testing::matched_names(m, e, scratch);
}

TEST(MatcherSmoke, KazooRecipeDebugAndInfoLogs) {
  auto specs = testing::backends_from_json(R"([
    {"name": "debug_log", "bindings": [{"account_id": "*", "verbosity": "debug"}]},
    {"name": "info_log", "bindings": [{}]}])");
  auto m = Matcher::compile(specs);
  testing::JsonEvent ev;
  EXPECT_EQ(matched(*m, ev(R"({"verbosity":"debug"})")), std::vector<std::string>{"debug_log"});
  EXPECT_EQ(matched(*m, ev(R"({"verbosity":"error"})")), (std::vector<std::string>{"debug_log", "info_log"}));
  EXPECT_TRUE(matched(*m, ev(R"({"verbosity":"trace"})")).empty());
}

TEST(MatcherSmoke, AccountsAppsTopicsAndFilters) {
  auto specs = testing::backends_from_json(R"([
    {"name": "a", "bindings": [{"account_id": "acct1", "include_descendants": true, "app_name": ["cf", "bh"]}]},
    {"name": "b", "bindings": [{"topic": "edr.*.info.#"}]},
    {"name": "c", "bindings": [{"filter": "attrs.type~'call-attempt|call-end' && attrs.duration<5"}]},
    {"name": "d", "enabled": false, "bindings": [{}]}])");
  auto m = Matcher::compile(specs);
  testing::JsonEvent ev;
  EXPECT_EQ(matched(*m, ev(R"({"account_id":"acct1","app_name":"cf","verbosity":"warn"})")),
            std::vector<std::string>{"a"});
  EXPECT_EQ(matched(*m, ev(R"({"account_id":"child","account_tree":["root","acct1"],"app_name":"bh"})")),
            (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(matched(*m, ev(R"({"body":{"attrs":{"type":"call-end","duration":3}}})")),
            (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(matched(*m, ev(R"({"verbosity":"error","body":{"attrs":{"type":"call-end","duration":5}}})")),
            std::vector<std::string>{});
}

}  // namespace
}  // namespace ringroute::matcher
