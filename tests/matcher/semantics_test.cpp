// SEMANTICS.md sections 1-5, one test per rule, each named after its rule.
// Configs and events are written as users write them (binding JSON, NDJSON
// event lines) and go through the same config parser, record encoding and
// compiled matcher as the router, so a test passes only if the router would
// behave as the document says.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "backends.hpp"
#include "json_event.hpp"
#include "ringroute/matcher/config.hpp"
#include "ringroute/matcher/filter.hpp"
#include "ringroute/matcher/matcher.hpp"
#include "ringroute/matcher/topic.hpp"

namespace ringroute::matcher {
namespace {

using Names = std::vector<std::string>;

// The backends `event` reaches under `backends` (a JSON array of backends).
Names route(std::string_view backends, std::string_view event) {
  const auto specs = testing::backends_from_json(backends);
  const auto m = Matcher::compile(specs);
  testing::JsonEvent ev;
  MatchScratch scratch;
  return testing::matched_names(*m, ev(event), scratch);
}

// Whether one backend with the one binding `binding` (a JSON object) takes `event`.
bool takes(std::string_view binding, std::string_view event) {
  return !route(R"([{"name":"b","bindings":[)" + std::string(binding) + "]}]", event).empty();
}

// The event severities `binding` takes (verbosity left at the default info),
// space-separated, so a whole level rule reads as one expectation.
std::string severities_taken(std::string_view binding) {
  std::string out;
  for (std::string_view level : event::kSeverityNames) {
    if (takes(binding, R"({"severity":")" + std::string(level) + "\"}")) {
      out += out.empty() ? "" : " ";
      out += level;
    }
  }
  return out;
}

std::string verbosities_taken(std::string_view binding) {
  std::string out;
  for (std::string_view level : event::kVerbosityNames) {
    if (takes(binding, R"({"verbosity":")" + std::string(level) + "\"}")) {
      out += out.empty() ? "" : " ";
      out += level;
    }
  }
  return out;
}

// Whether the pattern matches an event whose topic field is `topic`.
// Verbosity trace so the level defaults never get in the way.
bool topic_matches(std::string_view pattern, std::string_view topic) {
  return takes(R"({"verbosity":"trace","topic":")" + std::string(pattern) + "\"}",
               R"({"topic":")" + std::string(topic) + "\"}");
}

// Whether filter `text` holds for `view`. Built from filter::parse rather
// than binding JSON so filters need no second layer of escaping.
bool holds_for_view(std::string_view text, const event::EventView& view) {
  auto parsed = filter::parse(text);
  if (auto* problem = std::get_if<filter::ParseError>(&parsed)) {
    ADD_FAILURE() << "filter " << text << " did not parse: " << problem->to_string();
    return false;
  }
  BindingSpec binding;
  binding.verbosity = {{event::Verbosity::trace}, false, false};
  binding.filter = std::make_shared<const filter::Expression>(std::move(std::get<filter::Expression>(parsed)));
  std::vector<BackendSpec> specs(1);
  specs[0].name = "f";
  specs[0].bindings.push_back(std::move(binding));
  const auto m = Matcher::compile(specs);
  MatchScratch scratch;
  return !testing::matched_names(*m, view, scratch).empty();
}

// Whether filter `text` holds for the event line `event`.
bool holds(std::string_view text, std::string_view event) {
  testing::JsonEvent ev;
  return holds_for_view(text, ev(event));
}

// The filter's event with `body` as its body.
std::string with_body(std::string_view body) { return R"({"body":)" + std::string(body) + "}"; }

filter::ParseError filter_error(std::string_view text) {
  auto parsed = filter::parse(text);
  if (auto* problem = std::get_if<filter::ParseError>(&parsed)) return *problem;
  ADD_FAILURE() << "filter " << text << " parsed, expected an error";
  return {};
}

// Checks an error's column and that its message says what went wrong.
void expect_filter_error(std::string_view text, std::uint32_t column, std::string_view says) {
  const filter::ParseError e = filter_error(text);
  EXPECT_EQ(e.column, column) << text << " -> " << e.to_string();
  EXPECT_NE(e.message.find(says), std::string::npos) << text << " -> " << e.to_string();
}

bool has_error(const std::vector<std::string>& errors, std::string_view path, std::string_view says) {
  for (const auto& e : errors) {
    if (e.starts_with(std::string(path) + ": ") && e.find(says) != std::string::npos) return true;
  }
  return false;
}

// One of the binding's errors is at `path` and has `says` in its message.
void expect_binding_error(std::string_view binding, std::string_view path, std::string_view says) {
  const auto errors = testing::binding_errors(binding);
  EXPECT_TRUE(has_error(errors, path, says)) << binding << " -> "
                                             << (errors.empty() ? "no errors" : errors.front());
}

// ---------------------------------------------------------------------------
// 1. The event, as matching sees it

TEST(Event, AbsentSeverityIsOk) {
  EXPECT_TRUE(takes(R"({"severity":"ok","exact_severity":true})", "{}"));
  EXPECT_FALSE(takes(R"({"severity":"warning"})", "{}"));
}

TEST(Event, AbsentVerbosityIsInfo) {
  EXPECT_TRUE(takes(R"({"verbosity":"info","exact_verbosity":true})", "{}"));
  EXPECT_FALSE(takes(R"({"verbosity":"warn"})", "{}"));
}

TEST(Event, AbsentBodyIsEmptyObject) {
  // `body` alone is the body object even when the event has none: != holds, = never.
  EXPECT_TRUE(holds("x != 1", "{}"));
  EXPECT_FALSE(holds("body = null", "{}"));
  EXPECT_TRUE(holds("body != null", "{}"));
}

TEST(Event, StringsCompareByteForByteCaseSensitive) {
  EXPECT_FALSE(takes(R"({"account_id":"acct"})", R"({"account_id":"Acct"})"));
  EXPECT_FALSE(takes(R"({"app_name":"cf"})", R"({"app_name":"CF"})"));
  EXPECT_FALSE(takes(R"({"app_name":"cf"})", R"({"app_name":"cf "})"));
  EXPECT_TRUE(takes(R"({"app_name":"caf\u00e9"})", R"({"app_name":"café"})"));
}

TEST(Event, LevelsAreLowerCase) {
  testing::JsonEvent ev;
  EXPECT_THROW(ev(R"({"severity":"Warning"})"), std::invalid_argument);
  EXPECT_THROW(ev(R"({"verbosity":"INFO"})"), std::invalid_argument);
  expect_binding_error(R"({"severity":"Warning"})", "b.severity", "unknown level \"Warning\"");
}

TEST(Event, NullMemberIsSameAsAbsent) {
  const std::string nulls =
      R"({"severity":null,"verbosity":null,"account_id":null,"account_tree":null,"app_name":null,"topic":null,"body":null})";
  EXPECT_TRUE(takes(R"({"severity":"ok","exact_severity":true,"verbosity":"info","exact_verbosity":true})", nulls));
  EXPECT_FALSE(takes(R"({"account_id":"a","include_descendants":true})", nulls));
  EXPECT_FALSE(takes(R"({"app_name":"x"})", nulls));
  EXPECT_TRUE(takes(R"({"topic":"edr.ok.info.undefined.undefined"})", nulls));
  EXPECT_TRUE(holds("x != 1", nulls));
}

TEST(Event, OtherFieldsDoNotTakePartInMatching) {
  const std::string extra =
      R"({"id":"i","timestamp":1,"app_version":"v","node":"n","stream_name":"s","event_type":"e","tag":"t"})";
  EXPECT_TRUE(takes("{}", extra));
  EXPECT_TRUE(takes(R"({"topic":"edr.ok.info.undefined.undefined"})", extra));
  EXPECT_FALSE(takes(R"({"app_name":"v"})", extra));
}

TEST(Event, DotInAccountOrAppIsAllowedAndAddsTopicWords) {
  EXPECT_TRUE(takes(R"({"account_id":"a.b"})", R"({"account_id":"a.b"})"));
  EXPECT_TRUE(takes(R"({"app_name":"x.y"})", R"({"app_name":"x.y"})"));
  EXPECT_TRUE(takes(R"({"topic":"edr.ok.info.a.b.x.y"})", R"({"account_id":"a.b","app_name":"x.y"})"));
}

TEST(Event, TreeWithoutAccountIdStillAppliesDescendantRule) {
  EXPECT_TRUE(takes(R"({"account_id":"root","include_descendants":true})", R"({"account_tree":["root"]})"));
  EXPECT_FALSE(takes(R"({"account_id":"root"})", R"({"account_tree":["root"]})"));
}

// ---------------------------------------------------------------------------
// 2. A binding

TEST(Binding, EmptyBindingMatchesEverySeverity) {
  EXPECT_EQ(severities_taken("{}"), "ok warning critical");
}

TEST(Binding, EmptyBindingDoesNotMatchTraceOrDebug) {
  // Kazoo's defaults; the seed's debug-log/info-log recipe relies on them.
  EXPECT_EQ(verbosities_taken("{}"), "info warn error fatal");
}

TEST(Binding, EmptyBindingMatchesAnyAccountAndApp) {
  EXPECT_TRUE(takes("{}", R"({"account_id":"a","account_tree":["r"],"app_name":"x"})"));
  EXPECT_TRUE(takes("{}", "{}"));
}

TEST(Binding, NullKeyIsSameAsAbsent) {
  const std::string nulls =
      R"({"account_id":null,"include_descendants":null,"app_name":null,"severity":null,"exact_severity":null,)"
      R"("verbosity":null,"exact_verbosity":null,"topic":null,"filter":null})";
  EXPECT_TRUE(testing::binding_errors(nulls).empty());
  EXPECT_EQ(severities_taken(nulls), "ok warning critical");
  EXPECT_EQ(verbosities_taken(nulls), "info warn error fatal");
  EXPECT_TRUE(takes(nulls, R"({"account_id":"a","app_name":"x","topic":"t"})"));
}

TEST(Binding, MatchesOnlyWhenEveryConditionHolds) {
  const std::string b =
      R"({"account_id":"a","app_name":"x","severity":"warning","verbosity":"debug","topic":"edr.#","filter":"n = 1"})";
  const std::string good = R"({"account_id":"a","app_name":"x","severity":"warning","verbosity":"debug","body":{"n":1}})";
  EXPECT_TRUE(takes(b, good));
  EXPECT_FALSE(takes(b, R"({"account_id":"z","app_name":"x","severity":"warning","verbosity":"debug","body":{"n":1}})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"a","app_name":"z","severity":"warning","verbosity":"debug","body":{"n":1}})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"a","app_name":"x","severity":"ok","verbosity":"debug","body":{"n":1}})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"a","app_name":"x","severity":"warning","verbosity":"trace","body":{"n":1}})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"a","app_name":"x","severity":"warning","verbosity":"debug","topic":"t","body":{"n":1}})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"a","app_name":"x","severity":"warning","verbosity":"debug","body":{"n":2}})"));
}

TEST(Severity, OneLevelNotExactMatchesThatLevelOrMoreSevere) {
  EXPECT_EQ(severities_taken(R"({"severity":"ok"})"), "ok warning critical");
  EXPECT_EQ(severities_taken(R"({"severity":"warning"})"), "warning critical");
  EXPECT_EQ(severities_taken(R"({"severity":"critical","exact_severity":false})"), "critical");
}

TEST(Severity, OneLevelExactMatchesOnlyThatLevel) {
  EXPECT_EQ(severities_taken(R"({"severity":"ok","exact_severity":true})"), "ok");
  EXPECT_EQ(severities_taken(R"({"severity":"warning","exact_severity":true})"), "warning");
  EXPECT_EQ(severities_taken(R"({"severity":"critical","exact_severity":true})"), "critical");
}

TEST(Severity, ArrayMatchesExactlyItsLevelsWhateverTheExactFlag) {
  // An array is a set, not a threshold, even with exact_severity false (Kazoo).
  EXPECT_EQ(severities_taken(R"({"severity":["warning"]})"), "warning");
  EXPECT_EQ(severities_taken(R"({"severity":["ok","critical"],"exact_severity":false})"), "ok critical");
  EXPECT_EQ(severities_taken(R"({"severity":["ok","critical"],"exact_severity":true})"), "ok critical");
}

TEST(Severity, EmptyArrayMatchesNothing) {
  EXPECT_EQ(severities_taken(R"({"severity":[]})"), "");
}

TEST(Verbosity, OneLevelNotExactMatchesThatLevelOrLessVerbose) {
  EXPECT_EQ(verbosities_taken(R"({"verbosity":"trace"})"), "trace debug info warn error fatal");
  EXPECT_EQ(verbosities_taken(R"({"verbosity":"debug"})"), "debug info warn error fatal");
  EXPECT_EQ(verbosities_taken(R"({"verbosity":"error","exact_verbosity":false})"), "error fatal");
  EXPECT_EQ(verbosities_taken(R"({"verbosity":"fatal"})"), "fatal");
}

TEST(Verbosity, OneLevelExactMatchesOnlyThatLevel) {
  EXPECT_EQ(verbosities_taken(R"({"verbosity":"trace","exact_verbosity":true})"), "trace");
  EXPECT_EQ(verbosities_taken(R"({"verbosity":"warn","exact_verbosity":true})"), "warn");
}

TEST(Verbosity, ArrayMatchesExactlyItsLevelsWhateverTheExactFlag) {
  EXPECT_EQ(verbosities_taken(R"({"verbosity":["debug"]})"), "debug");
  EXPECT_EQ(verbosities_taken(R"({"verbosity":["trace","error"],"exact_verbosity":true})"), "trace error");
  EXPECT_EQ(verbosities_taken(R"({"verbosity":["fatal","trace"],"exact_verbosity":false})"), "trace fatal");
}

TEST(Verbosity, EmptyArrayMatchesNothing) {
  EXPECT_EQ(verbosities_taken(R"({"verbosity":[]})"), "");
}

TEST(Account, StarMatchesEveryEventWithOrWithoutAccount) {
  EXPECT_TRUE(takes(R"({"account_id":"*"})", "{}"));
  EXPECT_TRUE(takes(R"({"account_id":"*"})", R"({"account_id":"a"})"));
  EXPECT_TRUE(takes(R"({"account_id":"*"})", R"({"account_tree":["r"]})"));
}

TEST(Account, StarAnywhereInArrayMatchesEveryEvent) {
  EXPECT_TRUE(takes(R"({"account_id":["a","*"]})", "{}"));
  EXPECT_TRUE(takes(R"({"account_id":["a","*"]})", R"({"account_id":"z"})"));
  EXPECT_TRUE(takes(R"({"account_id":["*"]})", R"({"account_id":"z"})"));
}

TEST(Account, StarWithIncludeDescendantsMatchesEveryEvent) {
  // Kazoo differs (matches nothing); we keep the schema's promise.
  EXPECT_TRUE(takes(R"({"account_id":"*","include_descendants":true})", "{}"));
  EXPECT_TRUE(takes(R"({"account_id":"*","include_descendants":true})", R"({"account_id":"a"})"));
}

TEST(Account, IdMustEqualOneOfTheBindingsIds) {
  EXPECT_TRUE(takes(R"({"account_id":"a"})", R"({"account_id":"a"})"));
  EXPECT_TRUE(takes(R"({"account_id":["a","b"]})", R"({"account_id":"b"})"));
  EXPECT_FALSE(takes(R"({"account_id":["a","b"]})", R"({"account_id":"c"})"));
  EXPECT_FALSE(takes(R"({"account_id":"a"})", R"({"account_id":"ab"})"));
  EXPECT_FALSE(takes(R"({"account_id":"a"})", "{}"));
}

TEST(Account, WithoutIncludeDescendantsAncestorsDoNotMatch) {
  EXPECT_FALSE(takes(R"({"account_id":"r"})", R"({"account_id":"c","account_tree":["r"]})"));
}

TEST(Account, IncludeDescendantsMatchesTheAccountItselfAndDescendants) {
  // Kazoo differs (descendants only); the schema's text promises both.
  const std::string b = R"({"account_id":"r","include_descendants":true})";
  EXPECT_TRUE(takes(b, R"({"account_id":"r"})"));
  EXPECT_TRUE(takes(b, R"({"account_id":"c","account_tree":["r"]})"));
  EXPECT_TRUE(takes(b, R"({"account_id":"g","account_tree":["r","c"]})"));
  EXPECT_TRUE(takes(b, R"({"account_id":"g","account_tree":["top","r","c"]})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"g","account_tree":["top","c"]})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"x"})"));
  EXPECT_FALSE(takes(b, "{}"));
}

TEST(Account, IncludeDescendantsWithArrayMatchesAnyOfTheIds) {
  const std::string b = R"({"account_id":["p","q"],"include_descendants":true})";
  EXPECT_TRUE(takes(b, R"({"account_id":"q"})"));
  EXPECT_TRUE(takes(b, R"({"account_id":"c","account_tree":["x","p"]})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"c","account_tree":["x","y"]})"));
}

TEST(Account, DescendantRuleAppliesWithTreeButNoAccountId) {
  EXPECT_TRUE(takes(R"({"account_id":"r","include_descendants":true})", R"({"account_tree":["r","c"]})"));
  EXPECT_FALSE(takes(R"({"account_id":"r","include_descendants":true})", R"({"account_tree":["x"]})"));
}

TEST(Account, LongIdsCompareWhole) {
  // Ids past 16 bytes and ids with a NUL byte must compare as whole strings.
  const std::string b = R"({"account_id":"0123456789abcdefX1","include_descendants":true})";
  EXPECT_TRUE(takes(b, R"({"account_id":"0123456789abcdefX1"})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"0123456789abcdefX2"})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"0123456789abcdefX"})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"0123456789abcdef"})"));
  EXPECT_TRUE(takes(b, R"({"account_id":"c","account_tree":["0123456789abcdefX1"]})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"c","account_tree":["0123456789abcdefX10"]})"));
  EXPECT_FALSE(takes(R"({"account_id":"a\u0000"})", R"({"account_id":"a"})"));
  EXPECT_FALSE(takes(R"({"account_id":"a"})", R"({"account_id":"a\u0000"})"));
  EXPECT_TRUE(takes(R"({"account_id":"a\u0000"})", R"({"account_id":"a\u0000"})"));
}

TEST(Account, EmptyArrayMatchesNothing) {
  EXPECT_FALSE(takes(R"({"account_id":[]})", "{}"));
  EXPECT_FALSE(takes(R"({"account_id":[]})", R"({"account_id":"a"})"));
  EXPECT_FALSE(takes(R"({"account_id":[],"include_descendants":true})", R"({"account_id":"a","account_tree":["r"]})"));
}

TEST(App, StarAloneOrInArrayMatchesEveryEvent) {
  EXPECT_TRUE(takes(R"({"app_name":"*"})", R"({"app_name":"x"})"));
  EXPECT_TRUE(takes(R"({"app_name":"*"})", "{}"));
  EXPECT_TRUE(takes(R"({"app_name":["x","*"]})", R"({"app_name":"y"})"));
  EXPECT_TRUE(takes(R"({"app_name":["x","*"]})", "{}"));
}

TEST(App, NameMustEqualOneOfThem) {
  EXPECT_TRUE(takes(R"({"app_name":"cf"})", R"({"app_name":"cf"})"));
  EXPECT_TRUE(takes(R"({"app_name":["cf","bh"]})", R"({"app_name":"bh"})"));
  EXPECT_FALSE(takes(R"({"app_name":["cf","bh"]})", R"({"app_name":"b"})"));
}

TEST(App, EventWithoutAppNameMatchesOnlyStar) {
  EXPECT_FALSE(takes(R"({"app_name":"undefined"})", "{}"));
  EXPECT_FALSE(takes(R"({"app_name":["a","b"]})", "{}"));
  EXPECT_TRUE(takes(R"({"app_name":"*"})", "{}"));
}

TEST(App, LongNamesCompareWhole) {
  EXPECT_TRUE(takes(R"({"app_name":"application-name-1"})", R"({"app_name":"application-name-1"})"));
  EXPECT_FALSE(takes(R"({"app_name":"application-name-1"})", R"({"app_name":"application-name-2"})"));
  EXPECT_FALSE(takes(R"({"app_name":"application-name"})", R"({"app_name":"application-name-1"})"));
  EXPECT_FALSE(takes(R"({"app_name":"x\u0000"})", R"({"app_name":"x"})"));
}

TEST(App, EmptyArrayMatchesNothing) {
  EXPECT_FALSE(takes(R"({"app_name":[]})", "{}"));
  EXPECT_FALSE(takes(R"({"app_name":[]})", R"({"app_name":"x"})"));
}

TEST(Binding, TopicMustMatchWhenSet) {
  EXPECT_TRUE(takes(R"({"topic":"edr.ok.#"})", "{}"));
  EXPECT_FALSE(takes(R"({"topic":"edr.warning.#"})", "{}"));
}

TEST(Binding, FilterMustHoldWhenSet) {
  EXPECT_TRUE(takes(R"({"filter":"n = 1"})", R"({"body":{"n":1}})"));
  EXPECT_FALSE(takes(R"({"filter":"n = 1"})", R"({"body":{"n":2}})"));
}

TEST(ConfigErrors, UnknownLevelIsAnErrorNamingTheLevel) {
  expect_binding_error(R"({"severity":"sever"})", "b.severity", "unknown level \"sever\"");
  expect_binding_error(R"({"verbosity":"loud"})", "b.verbosity", "unknown level \"loud\"");
  // Each array item is named by its index.
  expect_binding_error(R"({"verbosity":["info","Debug"]})", "b.verbosity[1]", "unknown level \"Debug\"");
  expect_binding_error(R"({"severity":["ok","nope"]})", "b.severity[1]", "unknown level \"nope\"");
}

TEST(ConfigErrors, WrongTypeIsAnError) {
  expect_binding_error(R"({"severity":1})", "b.severity", "expected");
  expect_binding_error(R"({"verbosity":{"a":1}})", "b.verbosity", "expected");
  expect_binding_error(R"({"severity":[2]})", "b.severity[0]", "expected");
  expect_binding_error(R"({"account_id":5})", "b.account_id", "expected");
  expect_binding_error(R"({"app_name":["x",true]})", "b.app_name[1]", "expected");
  expect_binding_error(R"({"include_descendants":"true"})", "b.include_descendants", "expected");
  expect_binding_error(R"({"exact_severity":1})", "b.exact_severity", "expected");
  expect_binding_error(R"({"exact_verbosity":"yes"})", "b.exact_verbosity", "expected");
  expect_binding_error(R"({"topic":["a"]})", "b.topic", "expected");
  expect_binding_error(R"({"filter":true})", "b.filter", "expected");
  expect_binding_error("[]", "b", "expected");
}

TEST(ConfigErrors, EmptyAccountOrAppIsAnError) {
  expect_binding_error(R"({"account_id":""})", "b.account_id", "empty");
  expect_binding_error(R"({"account_id":["a",""]})", "b.account_id[1]", "empty");
  expect_binding_error(R"({"app_name":""})", "b.app_name", "empty");
  expect_binding_error(R"({"app_name":["","x"]})", "b.app_name[0]", "empty");
}

TEST(ConfigErrors, UnknownKeyIsAnError) {
  // A typo must not silently widen or narrow a binding.
  expect_binding_error(R"({"severty":"ok"})", "b.severty", "unknown key");
  expect_binding_error(R"({"Account_ID":"a"})", "b.Account_ID", "unknown key");
}

TEST(ConfigErrors, StarOrHashInsideAWordOfTopicIsAnError) {
  expect_binding_error(R"({"topic":"a*"})", "b.topic", "a*");
  expect_binding_error(R"({"topic":"#b"})", "b.topic", "#b");
  expect_binding_error(R"({"topic":"a.b*.c"})", "b.topic", "b*");
  expect_binding_error(R"({"topic":"x.**"})", "b.topic", "**");
  expect_binding_error(R"({"topic":"x.#*"})", "b.topic", "#*");
  for (const char* ok : {"*", "#", "a.*.#", "#.#", "*.*", "", ".", "a..b", "a-b_c"}) {
    EXPECT_EQ(topic::check_pattern(ok), std::nullopt) << ok;
  }
}

TEST(ConfigErrors, BadFilterIsAnErrorWithItsColumn) {
  expect_binding_error(R"({"filter":"a == 1"})", "b.filter", "column 3");
  expect_binding_error(R"({"filter":""})", "b.filter", "column 1");
}

TEST(ConfigErrors, ErrorsNameTheirJsonPath) {
  try {
    (void)testing::backends_from_json(
        R"([{"name":"a","bindings":[{}]},{"name":"b","bindings":[{},{"severity":"sever"}]}])");
    ADD_FAILURE() << "expected a config error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("backends[1].bindings[1].severity: unknown level \"sever\""),
              std::string::npos)
        << e.what();
  }
}

TEST(ConfigErrors, EveryErrorIsReportedAtOnce) {
  const auto errors = testing::binding_errors(R"({"severity":"x","app_name":"","bogus":1})");
  EXPECT_EQ(errors.size(), 3u);
}

// ---------------------------------------------------------------------------
// 3. A backend, and the result of matching

TEST(Backend, MatchesWhenAnyBindingMatches) {
  const std::string b = R"([{"name":"b","bindings":[{"app_name":"x"},{"app_name":"y"}]}])";
  EXPECT_EQ(route(b, R"({"app_name":"y"})"), Names{"b"});
  EXPECT_EQ(route(b, R"({"app_name":"z"})"), Names{});
}

TEST(Backend, ReceivesEventOnceHoweverManyBindingsMatch) {
  const std::string b =
      R"([{"name":"b","bindings":[{},{},{"account_id":"a"},{"account_id":"r","include_descendants":true},)"
      R"({"topic":"#"},{"filter":"x != 1"},{"app_name":["x","*"]}]}])";
  EXPECT_EQ(route(b, R"({"account_id":"a","account_tree":["r"],"app_name":"x"})"), Names{"b"});
}

TEST(Backend, ConditionsDoNotMixAcrossBindings) {
  // Each binding is a conjunction of its own keys: one binding's severity
  // never pairs with another's verbosity, account, app, topic or filter.
  const std::string levels =
      R"([{"name":"b","bindings":[{"severity":"critical","exact_severity":true,"verbosity":"fatal","exact_verbosity":true},)"
      R"({"severity":"ok","exact_severity":true,"verbosity":"trace","exact_verbosity":true}]}])";
  EXPECT_EQ(route(levels, R"({"severity":"critical","verbosity":"fatal"})"), Names{"b"});
  EXPECT_EQ(route(levels, R"({"severity":"ok","verbosity":"trace"})"), Names{"b"});
  EXPECT_EQ(route(levels, R"({"severity":"critical","verbosity":"trace"})"), Names{});
  EXPECT_EQ(route(levels, R"({"severity":"ok","verbosity":"fatal"})"), Names{});

  const std::string keys =
      R"([{"name":"b","bindings":[{"account_id":"a","app_name":"x","topic":"t.#"},)"
      R"({"account_id":"c","app_name":"y","filter":"n = 1"},{"severity":"critical","filter":"n = 2"}]}])";
  EXPECT_EQ(route(keys, R"({"account_id":"a","app_name":"x","topic":"t"})"), Names{"b"});
  EXPECT_EQ(route(keys, R"({"account_id":"a","app_name":"y","topic":"t"})"), Names{});
  EXPECT_EQ(route(keys, R"({"account_id":"a","app_name":"x","topic":"u","body":{"n":1}})"), Names{});
  EXPECT_EQ(route(keys, R"({"account_id":"c","app_name":"y","topic":"u","body":{"n":1}})"), Names{"b"});
  EXPECT_EQ(route(keys, R"({"account_id":"c","app_name":"y","body":{"n":2}})"), Names{});
  EXPECT_EQ(route(keys, R"({"severity":"critical","account_id":"c","app_name":"y","body":{"n":2}})"), Names{"b"});
}

TEST(Backend, DescendantAndExactBindingsOfOneBackendStillReportOnce) {
  const std::string b =
      R"([{"name":"b","bindings":[{"account_id":"r","include_descendants":true},{"account_id":"r"},)"
      R"({"account_id":"c"},{"account_id":"c","include_descendants":true}]}])";
  EXPECT_EQ(route(b, R"({"account_id":"r","account_tree":["r","r"]})"), Names{"b"});
  EXPECT_EQ(route(b, R"({"account_id":"c","account_tree":["r"]})"), Names{"b"});
}

TEST(Backend, DisabledBackendMatchesNothing) {
  const std::string b =
      R"([{"name":"off","enabled":false,"bindings":[{},{"verbosity":"trace","topic":"#"}]},)"
      R"({"name":"on","enabled":true,"bindings":[{}]}])";
  EXPECT_EQ(route(b, "{}"), Names{"on"});
  EXPECT_EQ(route(b, R"({"verbosity":"trace"})"), Names{});
}

TEST(Backend, EnabledAbsentMeansTrue) {
  EXPECT_EQ(route(R"([{"name":"b","bindings":[{}]}])", "{}"), Names{"b"});
}

TEST(Backend, EmptyBindingsMatchesNothing) {
  const std::string b = R"([{"name":"none","bindings":[]},{"name":"all","bindings":[{"verbosity":"trace"}]}])";
  EXPECT_EQ(route(b, "{}"), Names{"all"});
}

TEST(Backend, ResultIsInConfigOrder) {
  // More than 64 backends, matching through different trie paths (exact
  // account, descendants, any, topic, filter), listed out of path order.
  std::string config = "[";
  Names expected;
  for (int i = 0; i < 70; ++i) {
    static const char* const kBindings[] = {
        R"({"topic":"#"})", R"({"account_id":"a"})", R"({"account_id":"r","include_descendants":true})",
        R"({"filter":"n = 1"})", R"({"app_name":"x"})", R"({"app_name":"nope"})"};
    const int kind = (i * 7) % 6;
    const std::string name = "b" + std::to_string(i);
    if (i != 0) config += ",";
    config += R"({"name":")" + name + R"(","bindings":[)" + kBindings[kind] + "]}";
    if (kind != 5) expected.push_back(name);
  }
  config += "]";
  EXPECT_EQ(route(config, R"({"account_id":"a","account_tree":["r"],"app_name":"x","body":{"n":1}})"), expected);
}

// ---------------------------------------------------------------------------
// 4. Topics

TEST(Topic, DerivedTopicIsEdrSeverityVerbosityAccountApp) {
  EXPECT_TRUE(takes(R"({"verbosity":"trace","topic":"edr.warning.debug.acct.cf"})",
                    R"({"severity":"warning","verbosity":"debug","account_id":"acct","app_name":"cf"})"));
  EXPECT_FALSE(takes(R"({"verbosity":"trace","topic":"edr.warning.debug.acct"})",
                     R"({"severity":"warning","verbosity":"debug","account_id":"acct","app_name":"cf"})"));
}

TEST(Topic, AbsentAccountOrAppIsTheWordUndefined) {
  EXPECT_TRUE(takes(R"({"topic":"edr.ok.info.undefined.cf"})", R"({"app_name":"cf"})"));
  EXPECT_TRUE(takes(R"({"topic":"edr.ok.info.a.undefined"})", R"({"account_id":"a"})"));
  // The tree is not part of the topic.
  EXPECT_TRUE(takes(R"({"topic":"edr.ok.info.undefined.undefined"})", R"({"account_tree":["r"]})"));
}

TEST(Topic, DerivedTopicUsesDefaultLevels) {
  EXPECT_TRUE(takes(R"({"topic":"edr.ok.info.undefined.undefined"})", "{}"));
  EXPECT_TRUE(holds("topic = 'edr.ok.info.undefined.undefined'", "{}"));
}

TEST(Topic, DotsInAccountOrAppAddWords) {
  const std::string ev = R"({"account_id":"a.b","app_name":"c.d.e"})";
  EXPECT_TRUE(takes(R"({"topic":"edr.ok.info.a.b.c.d.e"})", ev));
  EXPECT_TRUE(takes(R"({"topic":"edr.*.*.*.*.*.*.*"})", ev));
  EXPECT_FALSE(takes(R"({"topic":"edr.*.*.*.*"})", ev));
}

TEST(Topic, ExplicitTopicFieldIsUsedInsteadOfDerived) {
  const std::string ev = R"({"severity":"critical","account_id":"a","topic":"billing.low"})";
  EXPECT_TRUE(takes(R"({"topic":"billing.*"})", ev));
  EXPECT_FALSE(takes(R"({"topic":"edr.#"})", ev));
  EXPECT_TRUE(holds("topic = 'billing.low'", ev));
  // An explicit empty topic is still the event's topic.
  EXPECT_FALSE(topic_matches("edr.#", ""));
}

TEST(Topic, SplitsOnDotsLikeRabbitMq) {
  auto words = [](std::string_view t) {
    std::vector<std::string> out;
    topic::for_each_word(t, [&](std::string_view w) { out.emplace_back(w); });
    return out;
  };
  EXPECT_EQ(words(""), std::vector<std::string>{});
  EXPECT_EQ(words("a..b"), (std::vector<std::string>{"a", "", "b"}));
  EXPECT_EQ(words("."), (std::vector<std::string>{"", ""}));
  EXPECT_EQ(words("a"), std::vector<std::string>{"a"});
}

TEST(Topic, OtherWordsMatchThemselves) {
  EXPECT_TRUE(topic_matches("a.b", "a.b"));
  EXPECT_FALSE(topic_matches("a.b", "a.B"));
  EXPECT_FALSE(topic_matches("a.b", "a.b.c"));
  EXPECT_FALSE(topic_matches("a.b", "a"));
  EXPECT_FALSE(topic_matches("ab", "a.b"));
}

TEST(Topic, HashMatchesEverythingIncludingEmptyTopic) {
  EXPECT_TRUE(topic_matches("#", ""));
  EXPECT_TRUE(topic_matches("#", "a"));
  EXPECT_TRUE(topic_matches("#", "a.b.c"));
  EXPECT_TRUE(topic_matches("#", "a..b"));
  EXPECT_TRUE(topic_matches("#.#", ""));
}

TEST(Topic, HashMatchesEmptyTopic) {
  EXPECT_TRUE(topic_matches("#", ""));
}

TEST(Topic, WordThenHashMatchesTheWordAloneAndLonger) {
  EXPECT_TRUE(topic_matches("a.#", "a"));
  EXPECT_TRUE(topic_matches("a.#", "a.b"));
  EXPECT_TRUE(topic_matches("a.#", "a.b.c"));
  EXPECT_FALSE(topic_matches("a.#", "b.a"));
  EXPECT_FALSE(topic_matches("a.#", ""));
}

TEST(Topic, HashThenWordMatchesTheWordAlone) {
  EXPECT_TRUE(topic_matches("#.a", "a"));
  EXPECT_TRUE(topic_matches("#.a", "x.y.a"));
  EXPECT_FALSE(topic_matches("#.a", "a.x"));
}

TEST(Topic, HashInTheMiddleMatchesZeroOrMoreWords) {
  EXPECT_TRUE(topic_matches("a.#.b", "a.b"));
  EXPECT_TRUE(topic_matches("a.#.b", "a.x.y.b"));
  EXPECT_TRUE(topic_matches("a.#.b.#.c", "a.b.x.b.c"));  // needs backtracking over `#`
  EXPECT_FALSE(topic_matches("a.#.b", "a.x"));
}

TEST(Topic, StarMatchesExactlyOneWord) {
  EXPECT_FALSE(topic_matches("a.*", "a"));
  EXPECT_TRUE(topic_matches("a.*", "a.b"));
  EXPECT_FALSE(topic_matches("a.*", "a.b.c"));
  EXPECT_TRUE(topic_matches("*", "a"));
  EXPECT_FALSE(topic_matches("*", ""));
  EXPECT_TRUE(topic_matches("*.b", "a.b"));
}

TEST(Topic, StarStarDoesNotMatchOneWord) {
  EXPECT_FALSE(topic_matches("*.*", "a"));
  EXPECT_TRUE(topic_matches("*.*", "a.b"));
  EXPECT_TRUE(topic_matches("*.*", "."));  // two empty words
}

TEST(Topic, HashAndStarCombine) {
  EXPECT_FALSE(topic_matches("#.*", ""));
  EXPECT_TRUE(topic_matches("#.*", "a"));
  EXPECT_TRUE(topic_matches("#.*", "a.b.c"));
  EXPECT_FALSE(topic_matches("*.#", ""));
  EXPECT_TRUE(topic_matches("*.#", "a"));
  EXPECT_TRUE(topic_matches("#.#.a", "a"));
  EXPECT_TRUE(topic_matches("*.#.*", "a.b"));
  EXPECT_FALSE(topic_matches("*.#.*", "a"));
  EXPECT_TRUE(topic_matches("#.a.#", "x.a"));
  EXPECT_FALSE(topic_matches("#.a.#", "x.b"));
}

TEST(Topic, LongWordsCompareWhole) {
  EXPECT_TRUE(topic_matches("edr.0123456789abcdefX1.#", "edr.0123456789abcdefX1.z"));
  EXPECT_FALSE(topic_matches("edr.0123456789abcdefX1.#", "edr.0123456789abcdefX2.z"));
  EXPECT_FALSE(topic_matches("edr.0123456789abcdef.#", "edr.0123456789abcdefX.z"));
}

TEST(Topic, SeveralPatternsInOneBackendReportOnce) {
  const std::string b =
      R"([{"name":"b","bindings":[{"topic":"a.*"},{"topic":"#"},{"topic":"a.b"},{"topic":"#.b"}]},)"
      R"({"name":"c","bindings":[{"topic":"x.#"}]}])";
  EXPECT_EQ(route(b, R"({"topic":"a.b"})"), Names{"b"});
  EXPECT_EQ(route(b, R"({"topic":"x"})"), (Names{"b", "c"}));
}

TEST(Topic, EmptyPatternMatchesOnlyEmptyTopic) {
  EXPECT_TRUE(topic_matches("", ""));
  EXPECT_FALSE(topic_matches("", "a"));
  EXPECT_FALSE(topic_matches("", "."));
  EXPECT_FALSE(takes(R"({"topic":""})", "{}"));
}

TEST(Topic, EmptyWordsInPatternMatchEmptyWords) {
  EXPECT_TRUE(topic_matches("a..b", "a..b"));
  EXPECT_FALSE(topic_matches("a..b", "a.b"));
  EXPECT_TRUE(topic_matches("a.*.b", "a..b"));
  EXPECT_TRUE(topic_matches("a.", "a."));
  EXPECT_FALSE(topic_matches("a.", "a"));
  EXPECT_TRUE(topic_matches(".", "."));
  EXPECT_FALSE(topic_matches(".", ""));
  EXPECT_FALSE(topic_matches("a", "a."));
}

// ---------------------------------------------------------------------------
// 5. Filter expressions: paths

TEST(Filter, SeedExamplesWork) {
  const std::string ev = with_body(R"({"attrs":{"type":"call-end","duration":3}})");
  EXPECT_TRUE(holds("attrs.type~'call-attempt|call-end'", ev));
  EXPECT_TRUE(holds("attrs.duration<5", ev));
  EXPECT_FALSE(holds(R"(attrs.type="reg-expired")", ev));
}

TEST(Filter, MetadataFieldPathsReadTheEvent) {
  const std::string ev =
      R"({"id":"i1","account_id":"a1","app_name":"cf","app_version":"4.3","node":"n@h","stream_name":"s",)"
      R"("event_type":"et","tag":"tg","body":{"id":"body-id","account_id":"body-acct"}})";
  EXPECT_TRUE(holds("id = 'i1'", ev));
  EXPECT_TRUE(holds("account_id = 'a1'", ev));
  EXPECT_TRUE(holds("app_name = 'cf'", ev));
  EXPECT_TRUE(holds("app_version = '4.3'", ev));
  EXPECT_TRUE(holds("node = 'n@h'", ev));
  EXPECT_TRUE(holds("stream_name = 's'", ev));
  EXPECT_TRUE(holds("event_type = 'et'", ev));
  EXPECT_TRUE(holds("tag = 'tg'", ev));
  // The event's field, not the body's member of the same name.
  EXPECT_FALSE(holds("account_id = 'body-acct'", ev));
  EXPECT_TRUE(holds("body.account_id = 'body-acct'", ev));
  EXPECT_TRUE(holds("body.id = 'body-id'", ev));
}

TEST(Filter, AbsentMetadataFieldIsAbsent) {
  EXPECT_FALSE(holds("account_id = 'a'", "{}"));
  EXPECT_TRUE(holds("account_id != 'a'", "{}"));
  EXPECT_FALSE(holds("app_name ~ ''", "{}"));
  EXPECT_FALSE(holds("tag >= ''", "{}"));
}

TEST(Filter, SeverityVerbosityAndTopicAlwaysHaveAValue) {
  EXPECT_TRUE(holds("severity = 'ok'", "{}"));
  EXPECT_TRUE(holds("verbosity = 'info'", "{}"));
  EXPECT_TRUE(holds("topic = 'edr.ok.info.undefined.undefined'", "{}"));
  EXPECT_TRUE(holds("topic = 'edr.critical.trace.a.x'",
                    R"({"severity":"critical","verbosity":"trace","account_id":"a","app_name":"x"})"));
}

TEST(Filter, BodyPrefixReadsInsideTheBody) {
  const std::string ev = with_body(R"({"x":{"y":7},"severity":"body-sev","body":{"z":1}})");
  EXPECT_TRUE(holds("body.x.y = 7", ev));
  // After `body.` even an event field's name or a reserved one reads the body.
  EXPECT_TRUE(holds("body.severity = 'body-sev'", ev));
  EXPECT_FALSE(holds("body.timestamp = 1", ev));
  EXPECT_TRUE(holds("body.body.z = 1", ev));
}

TEST(Filter, BarePathReadsInsideTheBody) {
  const std::string ev = with_body(R"({"attrs":{"type":"reg"},"a-b_C9":1})");
  EXPECT_TRUE(holds("attrs.type = 'reg'", ev));
  EXPECT_TRUE(holds("a-b_C9 = 1", ev));
  EXPECT_FALSE(holds("attrs = 'reg'", ev));
}

TEST(Filter, BodyAloneIsTheBodyObjectEqualToNoLiteral) {
  const std::string ev = with_body(R"({"a":1})");
  for (const char* f : {"body = null", "body = true", "body = 0", "body = ''", "body ~ ''", "body > 0", "body < ''"}) {
    EXPECT_FALSE(holds(f, ev)) << f;
  }
  EXPECT_TRUE(holds("body != null", ev));
  EXPECT_TRUE(holds("body != '{\"a\":1}'", ev));
}

TEST(Filter, PathMeetingAScalarOrArrayBeforeItsEndFindsNothing) {
  const std::string ev = with_body(R"({"s":"str","n":5,"t":true,"z":null,"a":[{"b":1}],"o":{"b":1}})");
  for (const char* f : {"s.b = 1", "n.b = 1", "t.b = 1", "z.b = 1", "a.b = 1", "a.0 = 1", "a.0.b = 1", "nope.b = 1"}) {
    EXPECT_FALSE(holds(f, ev)) << f;
  }
  EXPECT_TRUE(holds("a.0.b != 1", ev));
  EXPECT_TRUE(holds("o.b = 1", ev));
}

TEST(Filter, ArraysAreNotIndexed) {
  const std::string ev = with_body(R"({"a":[10,20],"b":{"0":10}})");
  EXPECT_FALSE(holds("a.0 = 10", ev));
  EXPECT_FALSE(holds("a = 10", ev));
  EXPECT_TRUE(holds("a != 10", ev));
  // Only objects have members: a numeric key works on an object.
  EXPECT_TRUE(holds("b.0 = 10", ev));
}

TEST(Filter, FirstOfDuplicateKeysCounts) {
  EXPECT_TRUE(holds("a = 1", with_body(R"({"a":1,"a":2})")));
  EXPECT_FALSE(holds("a = 2", with_body(R"({"a":1,"a":2})")));
  EXPECT_TRUE(holds("x.a = 1", with_body(R"({"x":{"a":1},"x":{"a":2}})")));
  EXPECT_FALSE(holds("x.a = 2", with_body(R"({"x":{"a":1},"x":{"a":2}})")));
  // The first is used even when it leads nowhere.
  EXPECT_FALSE(holds("x.a = 2", with_body(R"({"x":5,"x":{"a":2}})")));
}

TEST(Filter, BodyKeysCompareByteForByte) {
  EXPECT_FALSE(holds("A = 1", with_body(R"({"a":1})")));
  EXPECT_TRUE(holds("a = 1", with_body(R"({"\u0061":1})")));  // escaped key, same bytes
}

TEST(Filter, NumericOrKeywordPathReadsTheBodyKey) {
  // Anything that fits the path syntax on the left is a path.
  EXPECT_TRUE(holds("9 = 3", with_body(R"({"9":3})")));
  EXPECT_FALSE(holds("9 = 3", with_body("{}")));
  EXPECT_FALSE(holds("9 = 9", with_body("{}")));
  EXPECT_TRUE(holds("true = 1", with_body(R"({"true":1})")));
  EXPECT_TRUE(holds("null = null", with_body(R"({"null":null})")));
  EXPECT_TRUE(holds("1.5 = 2", with_body(R"({"1":{"5":2}})")));
}

// 5. Filter expressions: comparisons

TEST(Filter, AbsentFieldMakesEveryOperatorButNotEqualFalse) {
  for (const char* f : {"x = 1", "x < 1", "x <= 1", "x > 1", "x >= 1", "x ~ ''", "x = null", "x = ''", "x < 'z'"}) {
    EXPECT_FALSE(holds(f, with_body("{}"))) << f;
  }
}

TEST(Filter, NotEqualIsTrueForAbsentField) {
  EXPECT_TRUE(holds("x != 1", with_body("{}")));
  EXPECT_TRUE(holds("x != null", with_body("{}")));
  EXPECT_TRUE(holds("x.y != 'a'", with_body(R"({"x":3})")));
}

TEST(Filter, NotEqualIsExactlyNotEqual) {
  const std::string ev = with_body(R"({"n":1,"s":"a","o":{},"t":true})");
  for (const char* lit : {"1", "2", "'a'", "'b'", "true", "false", "null", "1.0"}) {
    for (const char* path : {"n", "s", "o", "t", "missing"}) {
      const std::string eq = std::string(path) + " = " + lit;
      const std::string ne = std::string(path) + " != " + lit;
      EXPECT_NE(holds(eq, ev), holds(ne, ev)) << eq;
    }
  }
}

TEST(Filter, EveryOperatorOnNumbers) {
  const std::string ev = with_body(R"({"n":5})");
  EXPECT_TRUE(holds("n = 5", ev));
  EXPECT_FALSE(holds("n = 6", ev));
  EXPECT_TRUE(holds("n != 6", ev));
  EXPECT_FALSE(holds("n != 5", ev));
  EXPECT_TRUE(holds("n < 6", ev));
  EXPECT_FALSE(holds("n < 5", ev));
  EXPECT_TRUE(holds("n <= 5", ev));
  EXPECT_FALSE(holds("n <= 4", ev));
  EXPECT_TRUE(holds("n > 4", ev));
  EXPECT_FALSE(holds("n > 5", ev));
  EXPECT_TRUE(holds("n >= 5", ev));
  EXPECT_FALSE(holds("n >= 6", ev));
  EXPECT_TRUE(holds("n > -6", ev));
}

TEST(Filter, EveryOperatorOnStringsIsBytewise) {
  const std::string ev = with_body(R"({"s":"b","u":"é","e":""})");
  EXPECT_TRUE(holds("s = 'b'", ev));
  EXPECT_TRUE(holds("s != 'B'", ev));
  EXPECT_TRUE(holds("s > 'a'", ev));
  EXPECT_TRUE(holds("s > 'B'", ev));  // 'b' (0x62) > 'B' (0x42)
  EXPECT_TRUE(holds("s < 'ba'", ev));  // a prefix sorts first
  EXPECT_TRUE(holds("s >= 'b'", ev));
  EXPECT_TRUE(holds("s <= 'b'", ev));
  EXPECT_FALSE(holds("s < 'b'", ev));
  EXPECT_FALSE(holds("s > 'b'", ev));
  // Bytes are unsigned: UTF-8 lead byte 0xC3 sorts after every ASCII byte.
  EXPECT_TRUE(holds("u > 'z'", ev));
  EXPECT_TRUE(holds("u > '~'", ev));
  EXPECT_TRUE(holds("e < 'a'", ev));
  EXPECT_TRUE(holds("e = ''", ev));
  EXPECT_TRUE(holds("s ~ 'b'", ev));
}

TEST(Filter, IntegersCompareExactly) {
  // 2^53 + 1 and 2^53 are one double; as integers they differ.
  EXPECT_FALSE(holds("n = 9007199254740992", with_body(R"({"n":9007199254740993})")));
  EXPECT_TRUE(holds("n > 9007199254740992", with_body(R"({"n":9007199254740993})")));
  EXPECT_TRUE(holds("n = 9007199254740993", with_body(R"({"n":9007199254740993})")));
}

TEST(Filter, BigIntegersNearTwoToThe63CompareExactly) {
  const std::string max = with_body(R"({"n":9223372036854775807,"m":-9223372036854775808})");
  EXPECT_TRUE(holds("n = 9223372036854775807", max));
  EXPECT_FALSE(holds("n = 9223372036854775806", max));
  EXPECT_TRUE(holds("n > 9223372036854775806", max));
  EXPECT_TRUE(holds("n < 9223372036854775808", max));  // literal above INT64_MAX
  EXPECT_FALSE(holds("n = 9223372036854775808", max));
  EXPECT_TRUE(holds("m = -9223372036854775808", max));
  EXPECT_TRUE(holds("m < -9223372036854775807", max));
  EXPECT_TRUE(holds("m < 9223372036854775808", max));
}

TEST(Filter, BigIntegersNearTwoToThe64CompareExactly) {
  const std::string big = with_body(R"({"u":18446744073709551615,"v":9223372036854775808})");
  EXPECT_TRUE(holds("u = 18446744073709551615", big));
  EXPECT_FALSE(holds("u = 18446744073709551614", big));
  EXPECT_TRUE(holds("u > 18446744073709551614", big));
  EXPECT_TRUE(holds("u >= 18446744073709551615", big));
  EXPECT_FALSE(holds("u < 18446744073709551615", big));
  // Unsigned field against a signed literal, either sign.
  EXPECT_TRUE(holds("v > 9223372036854775807", big));
  EXPECT_TRUE(holds("v > -1", big));
  EXPECT_FALSE(holds("v = -9223372036854775808", big));
  EXPECT_TRUE(holds("v = 9223372036854775808", big));
  // Signed field against an unsigned literal.
  EXPECT_TRUE(holds("n < 18446744073709551615", with_body(R"({"n":-1})")));
  EXPECT_FALSE(holds("n = 18446744073709551615", with_body(R"({"n":-1})")));
}

// Integers past 64 bits are integers too (SEMANTICS.md 5: "integers
// exactly"): as doubles, 2^64 and 2^64 - 1 are one number. A literal past
// 64 bits is beyond every 64-bit value; a body value past 64 bits (from a
// producer that skips the body check: the check's parser refuses them)
// compares by its digits.
TEST(Filter, IntegersBeyond64BitsCompareExactly) {
  const std::string ev = with_body(R"({"u":18446744073709551615,"m":-9223372036854775808})");
  EXPECT_FALSE(holds("u = 18446744073709551616", ev));
  EXPECT_TRUE(holds("u < 18446744073709551616", ev));
  EXPECT_TRUE(holds("u != 18446744073709551616", ev));
  EXPECT_FALSE(holds("m = -9223372036854775809", ev));
  EXPECT_TRUE(holds("m > -9223372036854775809", ev));
  EXPECT_TRUE(holds("m > -100000000000000000000000", ev));
  // The body as a trusting producer sends it, past the event line's check.
  testing::JsonEvent json;
  event::EventView view = json(with_body("{}"));
  view.body = R"({"b":18446744073709551616,"c":-18446744073709551617 ,"d":1e20})";
  auto holds_raw = [&](std::string_view text) { return holds_for_view(text, view); };
  EXPECT_TRUE(holds_raw("b = 18446744073709551616"));
  EXPECT_FALSE(holds_raw("b = 18446744073709551617"));
  EXPECT_TRUE(holds_raw("b > 18446744073709551615"));
  EXPECT_TRUE(holds_raw("b < 18446744073709551617"));
  EXPECT_TRUE(holds_raw("b > -1"));
  EXPECT_TRUE(holds_raw("c < -18446744073709551616"));
  EXPECT_TRUE(holds_raw("c = -18446744073709551617"));
  EXPECT_TRUE(holds_raw("c < -9223372036854775808"));
  // Written with an exponent, a number is a double, whatever its value.
  EXPECT_TRUE(holds_raw("d = 100000000000000000000"));
  EXPECT_TRUE(holds_raw("b = 1.8446744073709552e19"));
}

TEST(Filter, OtherNumbersCompareAsDoubles) {
  const std::string ev = with_body(R"({"d":2.5,"i":3,"e":1e2,"neg":-0.5})");
  EXPECT_TRUE(holds("d = 2.5", ev));
  EXPECT_TRUE(holds("d < 2.6", ev));
  EXPECT_TRUE(holds("d > 2", ev));
  EXPECT_TRUE(holds("i < 3.5", ev));
  EXPECT_TRUE(holds("i = 3.0", ev));
  EXPECT_TRUE(holds("i = 3e0", ev));
  EXPECT_TRUE(holds("e = 100", ev));
  EXPECT_TRUE(holds("e = 1E+2", ev));
  EXPECT_TRUE(holds("neg > -5e-1 || neg = -0.5", ev));
  EXPECT_TRUE(holds("neg >= -0.5", ev));
  EXPECT_TRUE(holds("d < 1.5e300", ev));
}

TEST(Filter, IntegersAndDoublesCompareByValue) {
  const std::string ev = with_body(R"({"one":1.0,"z":-0,"u":18446744073709551615,"tenth":0.1})");
  EXPECT_TRUE(holds("one = 1", ev));
  EXPECT_TRUE(holds("z = 0", ev));
  EXPECT_TRUE(holds("u > 1.8e19", ev));
  EXPECT_TRUE(holds("u < 1.9e19", ev));
  EXPECT_TRUE(holds("tenth = 0.1", ev));
  EXPECT_FALSE(holds("tenth = 0.10000000000000002", ev));
}

TEST(Filter, NoCoercionBetweenStringsAndNumbers) {
  const std::string ev = with_body(R"({"s":"5","n":5})");
  EXPECT_FALSE(holds("s = 5", ev));
  EXPECT_TRUE(holds("s != 5", ev));
  EXPECT_FALSE(holds("s < 6", ev));
  EXPECT_FALSE(holds("s >= 0", ev));
  EXPECT_FALSE(holds("n = '5'", ev));
  EXPECT_TRUE(holds("n != '5'", ev));
  EXPECT_FALSE(holds("n < '6'", ev));
  EXPECT_TRUE(holds("s = '5'", ev));
}

TEST(Filter, OtherTypePairingsAreFalse) {
  const std::string ev = with_body(R"({"t":true,"f":false,"z":null,"o":{},"a":[],"n":0,"s":""})");
  for (const char* f : {"t = 1", "f = 0", "z = 0", "z = ''", "z = false", "n = false", "n = null",
                        "s = null", "s = false", "o = null", "a = null", "t = 'true'", "n < '1'"}) {
    EXPECT_FALSE(holds(f, ev)) << f;
  }
}

TEST(Filter, TrueFalseNullCompareWithEqualAndNotEqual) {
  const std::string ev = with_body(R"({"t":true,"f":false,"z":null})");
  EXPECT_TRUE(holds("t = true", ev));
  EXPECT_FALSE(holds("t = false", ev));
  EXPECT_TRUE(holds("t != false", ev));
  EXPECT_TRUE(holds("f = false", ev));
  EXPECT_TRUE(holds("z = null", ev));
  EXPECT_FALSE(holds("z != null", ev));
  EXPECT_FALSE(holds("t = null", ev));
  // An absent field is not null.
  EXPECT_FALSE(holds("missing = null", ev));
  EXPECT_TRUE(holds("missing != null", ev));
}

TEST(FilterErrors, OrderingAgainstTrueFalseNullIsAnError) {
  expect_filter_error("x < true", 5, "true");
  expect_filter_error("x >= null", 6, "null");
  expect_filter_error("x <= false", 6, "false");
  expect_filter_error("x > null", 5, "null");
}

TEST(Filter, SeverityOrdersByLevelNotAlphabetically) {
  // Alphabetically "critical" < "ok" < "warning"; by level ok < warning < critical.
  EXPECT_TRUE(holds("severity >= 'warning'", R"({"severity":"critical"})"));
  EXPECT_FALSE(holds("severity >= 'warning'", R"({"severity":"ok"})"));
  EXPECT_TRUE(holds("severity > 'ok'", R"({"severity":"critical"})"));
  EXPECT_TRUE(holds("severity < 'critical'", R"({"severity":"warning"})"));
  EXPECT_TRUE(holds("severity <= 'ok'", "{}"));
  EXPECT_TRUE(holds("severity != 'critical'", "{}"));
}

TEST(Filter, VerbosityOrdersByLevelNotAlphabetically) {
  // trace is the lowest level; alphabetically it is the highest.
  EXPECT_TRUE(holds("verbosity < 'info'", R"({"verbosity":"trace"})"));
  EXPECT_TRUE(holds("verbosity < 'debug'", R"({"verbosity":"trace"})"));
  EXPECT_TRUE(holds("verbosity > 'error'", R"({"verbosity":"fatal"})"));
  EXPECT_TRUE(holds("verbosity >= 'warn'", R"({"verbosity":"error"})"));
  EXPECT_FALSE(holds("verbosity >= 'warn'", "{}"));
  EXPECT_TRUE(holds("verbosity = 'info'", "{}"));
}

TEST(Filter, SeverityRegexSearchesTheLevelName) {
  EXPECT_TRUE(holds("severity ~ 'warn'", R"({"severity":"warning"})"));
  EXPECT_TRUE(holds("verbosity ~ '^(warn|error)$'", R"({"verbosity":"error"})"));
  EXPECT_FALSE(holds("verbosity ~ '^(warn|error)$'", R"({"verbosity":"fatal"})"));
  // With ~ the literal need not be a level name.
  EXPECT_TRUE(std::holds_alternative<filter::Expression>(filter::parse("severity ~ 'anything'")));
}

TEST(FilterErrors, LevelLiteralMustNameAValidLevel) {
  expect_filter_error("severity = 5", 12, "level");
  expect_filter_error("verbosity < \"loud\"", 13, "loud");
  expect_filter_error("severity = 'Warning'", 12, "Warning");
  expect_filter_error("severity != null", 13, "level");
  expect_filter_error("verbosity >= true", 14, "true");
}

TEST(Filter, RegexIsAnUnanchoredSearch) {
  const std::string ev = with_body(R"({"s":"call-end"})");
  EXPECT_TRUE(holds("s ~ 'end'", ev));
  EXPECT_TRUE(holds("s ~ 'l-e'", ev));
  EXPECT_TRUE(holds("s ~ ''", ev));
  EXPECT_FALSE(holds("s ~ '^end'", ev));
  EXPECT_TRUE(holds("s ~ '^call-end$'", ev));
  EXPECT_FALSE(holds("s ~ 'End'", ev));
  EXPECT_TRUE(holds("s ~ '(?i)End'", ev));
}

TEST(Filter, RegexUsesRe2SyntaxInLinearTime) {
  EXPECT_TRUE(holds(R"(s ~ '\\d{3}')", with_body(R"({"s":"ab123"})")));
  EXPECT_FALSE(holds(R"(s ~ '\\d{3}')", with_body(R"({"s":"ab12"})")));
  // Catastrophic for a backtracking engine; RE2 answers at once.
  const std::string many_a(5000, 'a');
  EXPECT_FALSE(holds("s ~ '^(a+)+$'", with_body(R"({"s":")" + many_a + "b\"}")));
}

TEST(Filter, RegexSeesUnescapedBytes) {
  const std::string ev = with_body(R"({"s":"a.b","e":"caf\u00e9","nl":"x\ny"})");
  EXPECT_TRUE(holds(R"(s ~ 'a\\.b')", ev));
  EXPECT_FALSE(holds(R"(s ~ 'a\\.c')", ev));
  EXPECT_TRUE(holds(R"(e ~ 'fé$')", ev));
  EXPECT_TRUE(holds(R"(e = 'café')", ev));
  EXPECT_TRUE(holds(R"(nl ~ 'x\ny')", ev));
  EXPECT_TRUE(holds(R"(topic ~ '^edr\\.ok\\.')", "{}"));
}

TEST(Filter, RegexAgainstNonStringIsFalse) {
  const std::string ev = with_body(R"({"n":5,"t":true,"z":null,"o":{"a":"x"},"a":["x"]})");
  for (const char* f : {"n ~ '5'", "n ~ ''", "t ~ 'true'", "z ~ ''", "o ~ ''", "a ~ 'x'", "body ~ ''"}) {
    EXPECT_FALSE(holds(f, ev)) << f;
  }
}

TEST(FilterErrors, RegexPatternMustBeAString) {
  expect_filter_error("a ~ 5", 5, "quoted");
  expect_filter_error("a ~ null", 5, "quoted");
  expect_filter_error("a ~ true", 5, "quoted");
}

TEST(FilterErrors, BadRegexIsAnErrorWithItsColumn) {
  expect_filter_error("a = 1 && s ~ '('", 14, "regular expression");
  expect_filter_error("s ~ '[a-'", 5, "regular expression");
  // Backreferences are not RE2 syntax.
  expect_filter_error(R"(s ~ '(a)\\1')", 5, "regular expression");
}

TEST(Filter, StringEscapesAreUnescaped) {
  const std::string ev = with_body(
      R"({"bs":"a\\b","q":"it's","dq":"say \"hi\"","sl":"a/b","ctl":"\b\f\n\r\t","e":"é","emoji":"😀","nul":"a\u0000b"})");
  EXPECT_TRUE(holds(R"(bs = 'a\\b')", ev));
  EXPECT_TRUE(holds(R"(q = 'it\'s')", ev));
  EXPECT_TRUE(holds(R"(q = "it's")", ev));
  EXPECT_TRUE(holds(R"(dq = "say \"hi\"")", ev));
  EXPECT_TRUE(holds(R"(dq = 'say "hi"')", ev));
  EXPECT_TRUE(holds(R"(sl = 'a\/b')", ev));
  EXPECT_TRUE(holds(R"(ctl = '\b\f\n\r\t')", ev));
  EXPECT_TRUE(holds(R"(e = '\u00e9')", ev));
  EXPECT_TRUE(holds(R"(e = '\u00E9')", ev));
  EXPECT_TRUE(holds(R"(emoji = '\ud83d\ude00')", ev));
  // A NUL inside a string is a byte like any other.
  EXPECT_TRUE(holds(R"(nul = 'a\u0000b')", ev));
  EXPECT_FALSE(holds(R"(nul = 'a')", ev));
}

TEST(FilterErrors, UnknownEscapeIsAnError) {
  expect_filter_error(R"(s = 'a\x')", 7, "escape");
  expect_filter_error(R"(s = '\d')", 6, "escape");
  expect_filter_error(R"(s = '\u00g0')", 6, "\\u");
  expect_filter_error(R"(s = '\ude00')", 6, "surrogate");
  expect_filter_error(R"(s = '\ud83d')", 6, "surrogate");
  // A regex's escape, written once, is the string's escape: said how to
  // write it, where the pattern is a regex's, and only there.
  const filter::ParseError regex = filter_error(R"(topic ~ "^edr\.ok")");
  EXPECT_EQ(regex.column, 14u);
  EXPECT_EQ(regex.message, R"(unknown escape '.' (known: \\ \' \" \/ \b \f \n \r \t \uXXXX); a regex's backslash is )"
                           R"(written \\ in a filter's string (\\\\ inside the config's JSON), or a dot as [.])");
  EXPECT_EQ(filter_error(R"(s = 'a\.')").message.find("regex"), std::string::npos);
}

TEST(FilterErrors, UnterminatedStringIsAnError) {
  expect_filter_error("s = 'abc", 5, "unterminated");
  expect_filter_error(R"(s = "abc\")", 5, "unterminated");
}

TEST(Filter, WhitespaceBetweenTokensIsFree) {
  const std::string ev = with_body(R"({"a":1,"b":2})");
  EXPECT_TRUE(holds("a=1&&b=2", ev));
  EXPECT_TRUE(holds(" \t\r\n a \n= \t1\r\n&&\tb\n!=\n3 ", ev));
  EXPECT_TRUE(holds("!(a=2)||b<=1", ev));
  EXPECT_TRUE(holds("! ( a = 2 ) || b <= 1", ev));
  EXPECT_TRUE(holds("(\na=1\n)", ev));
  // Around a path's '.' too: it is a token of the grammar.
  const std::string nested = with_body(R"({"attrs":{"type":"call-end"}})");
  EXPECT_TRUE(holds("attrs . type = 'call-end'", nested));
  EXPECT_TRUE(holds("body\n.\tattrs.type = 'call-end'", nested));
}

TEST(Filter, NotBindsTightest) {
  // `!a=1 && b=2` is (!(a=1)) && b=2, not !(a=1 && b=2).
  EXPECT_FALSE(holds("!a=1 && b=2", with_body(R"({"a":2,"b":3})")));
  EXPECT_TRUE(holds("!a=1 && b=2", with_body(R"({"a":2,"b":2})")));
  EXPECT_TRUE(holds("!a=1 || b=2", with_body(R"({"a":2,"b":9})")));
  EXPECT_TRUE(holds("!!a=1", with_body(R"({"a":1})")));
  EXPECT_TRUE(holds("!(a=1 && b=2)", with_body(R"({"a":1,"b":3})")));
}

TEST(Filter, NotOfComparisonIsItsNegation) {
  // `!x = 1` is true for an absent x, like `x != 1`.
  EXPECT_TRUE(holds("!x = 1", with_body("{}")));
  EXPECT_TRUE(holds("!x < 1", with_body("{}")));
  EXPECT_FALSE(holds("!x != 1", with_body("{}")));
}

TEST(Filter, AndBindsTighterThanOr) {
  // a=1 || (b=1 && c=1)
  EXPECT_TRUE(holds("a=1 || b=1 && c=1", with_body(R"({"a":1,"b":0,"c":0})")));
  // (a=1 && b=1) || c=1
  EXPECT_TRUE(holds("a=1 && b=1 || c=1", with_body(R"({"a":0,"b":0,"c":1})")));
  EXPECT_FALSE(holds("a=1 && b=1 || c=1", with_body(R"({"a":1,"b":0,"c":0})")));
}

TEST(Filter, ParenthesesGroup) {
  EXPECT_FALSE(holds("(a=1 || b=1) && c=1", with_body(R"({"a":1,"b":0,"c":0})")));
  EXPECT_TRUE(holds("a=1 && (b=1 || c=1)", with_body(R"({"a":1,"b":0,"c":1})")));
  EXPECT_TRUE(holds("((((a=1))))", with_body(R"({"a":1})")));
}

TEST(Filter, OrAndChainsEvaluateAllOperands) {
  const std::string ev = with_body(R"({"a":1,"b":2,"c":3,"d":4})");
  EXPECT_TRUE(holds("a=9 || b=9 || c=9 || d=4", ev));
  EXPECT_FALSE(holds("a=1 && b=2 && c=3 && d=9", ev));
  EXPECT_TRUE(holds("a=1 && b=2 && c=3 && d=4", ev));
}

TEST(Filter, NumberLiteralsFollowJsonSyntax) {
  const std::string ev = with_body(R"({"n":0,"m":-1500,"k":100})");
  EXPECT_TRUE(holds("n = 0", ev));
  EXPECT_TRUE(holds("n = -0", ev));
  EXPECT_TRUE(holds("n = 0.0", ev));
  EXPECT_TRUE(holds("m = -1.5e3", ev));
  EXPECT_TRUE(holds("m = -15E2", ev));
  EXPECT_TRUE(holds("k = 1e+2", ev));
  EXPECT_TRUE(holds("k = 1000e-1", ev));
}

TEST(Filter, BodyWhitespaceAndSkippedValuesDoNotMatter) {
  const std::string ev = with_body(R"( { "skip" : {"deep":[1,{"a":{"b":1}},"}"]}, "s":"{\"a\":1}" , "a" : { "b" : 2 } } )");
  EXPECT_TRUE(holds("a.b = 2", ev));
  EXPECT_FALSE(holds("a.b = 1", ev));
  EXPECT_FALSE(holds("s.a = 1", ev));
}

// A trusted body is checked by neither the producer library nor the
// router. One that is no JSON ended the on-demand reader at its first fault,
// and the next comparison that read the body rewound the dead reader: the
// router crashed on the record, and at each restart. A filter reads what
// comes before the fault, and nothing after it.
TEST(Filter, ABodyThatIsNoJsonIsReadUpToItsFaultAndNeverCrashes) {
  // The record a producer writes for a trusted body: taken as given.
  std::vector<std::byte> record;
  auto with_trusted_body = [&record](std::string_view body) {
    event::EventInput input;
    input.verbosity = event::Verbosity::trace;
    input.body = body;
    const std::vector<std::string_view> tree;
    record.assign(event::encoded_size(input, tree), std::byte{0});
    event::encode(input, tree, false, record.data());
    event::EventView view;
    EXPECT_EQ(event::decode(record, view), event::DecodeError::none);
    return view;
  };
  auto holds_for_body = [&](std::string_view filter, std::string_view body) {
    return holds_for_view(filter, with_trusted_body(body));
  };
  const std::string_view unclosed = R"({"n":1,"k":{"k":{"k":{"k":{"k":2}}}})";  // one } short
  EXPECT_TRUE(holds_for_body("n = 1", unclosed));
  EXPECT_TRUE(holds_for_body("n = 1", R"({"n":1})"));
  for (std::string_view body : {unclosed, std::string_view(R"({"big":)"), std::string_view(R"({"a":1,,"big":2})"),
                                std::string_view("[1,2"), std::string_view("not json"), std::string_view(""),
                                std::string_view("{\"big\":\"\xff\"}")}) {
    EXPECT_FALSE(holds_for_body("big > 1 || big < 1", body)) << body;
    EXPECT_FALSE(holds_for_body("big = 2 || k.k.k.k.k > 2 || k.x = 1 || big ~ 'x'", body)) << body;
  }
  // Two backends each reading the body once: the second read is the one
  // that rewound the dead reader.
  const auto m = Matcher::compile(testing::backends_from_json(
      R"([{"name":"one","bindings":[{"verbosity":"trace","filter":"big = 1"}]},)"
      R"({"name":"two","bindings":[{"verbosity":"trace","filter":"n = 1"}]}])"));
  const event::EventView view = with_trusted_body(unclosed);
  ASSERT_FALSE(HasFailure());  // the record decoded
  MatchScratch scratch;
  EXPECT_TRUE(testing::matched_names(*m, view, scratch).empty());
}

TEST(Filter, ExplicitEmptyTopicIsTheTopic) {
  EXPECT_TRUE(holds("topic = ''", R"({"topic":""})"));
  EXPECT_FALSE(holds("topic ~ 'edr'", R"({"topic":""})"));
}

TEST(Matcher, EveryEventIsMatchedOnItsOwnWithAReusedScratch) {
  // The router reuses one scratch per thread: nothing of one event (body,
  // topic words, derived topic) may leak into the next, nor across matchers.
  const auto specs = testing::backends_from_json(
      R"([{"name":"f","bindings":[{"verbosity":"trace","filter":"n = 1 && topic ~ '^edr[.]ok' && s ~ 'x'"}]},)"
      R"({"name":"t","bindings":[{"verbosity":"trace","topic":"edr.ok.#"}]}])");
  const auto m = Matcher::compile(specs);
  const auto other = Matcher::compile(testing::backends_from_json(
      R"([{"name":"g","bindings":[{"verbosity":"trace","filter":"s ~ 'y'"}]}])"));
  testing::JsonEvent ev;
  MatchScratch scratch;
  EXPECT_EQ(testing::matched_names(*m, ev(R"({"body":{"n":1,"s":"x"}})"), scratch), (Names{"f", "t"}));
  EXPECT_EQ(testing::matched_names(*m, ev(R"({"body":{"n":2,"s":"x"}})"), scratch), Names{"t"});
  EXPECT_EQ(testing::matched_names(*m, ev(R"({"severity":"warning","body":{"n":1,"s":"x"}})"), scratch), Names{});
  EXPECT_EQ(testing::matched_names(*m, ev(R"({"topic":"edr.ok.x","body":{"n":1,"s":"x"}})"), scratch),
            (Names{"f", "t"}));
  EXPECT_EQ(testing::matched_names(*m, ev(R"({"topic":"other","body":{"n":1,"s":"x"}})"), scratch), Names{});
  EXPECT_EQ(testing::matched_names(*other, ev(R"({"body":{"s":"y"}})"), scratch), Names{"g"});
  EXPECT_EQ(testing::matched_names(*other, ev(R"({"body":{"s":"x"}})"), scratch), Names{});
  EXPECT_EQ(testing::matched_names(*m, ev(R"({"body":{"n":1,"s":"x"}})"), scratch), (Names{"f", "t"}));
}

// 5. Filter expressions: parse errors

TEST(FilterErrors, EmptyFilterIsAnError) {
  expect_filter_error("", 1, "empty");
  expect_filter_error(" \t\n", 4, "empty");
}

TEST(FilterErrors, DoubleEqualsIsAnError) {
  expect_filter_error("a == 1", 3, "==");
  expect_filter_error("a=1 && b==2", 9, "==");
}

TEST(FilterErrors, BareWordLiteralIsAnError) {
  expect_filter_error("a = True", 5, "literal");
  expect_filter_error("a = x", 5, "literal");
  expect_filter_error("a = NULL", 5, "literal");
  expect_filter_error("a = 'x' || b = y.z", 16, "literal");
}

TEST(FilterErrors, MissingLiteralIsAnErrorNamingTheOperator) {
  expect_filter_error("attrs.duration<", 16, "expected a literal after '<'");
  expect_filter_error("a >= ", 6, "expected a literal after '>='");
}

TEST(FilterErrors, QuotedStringOnTheLeftIsAnError) {
  expect_filter_error("'a' = 1", 1, "quoted string");
  expect_filter_error("x = 1 || \"a\" = 1", 10, "quoted string");
}

TEST(FilterErrors, ReservedPathsAreErrors) {
  expect_filter_error("account_tree = 'a'", 1, "account_tree");
  expect_filter_error("timestamp > 1", 1, "timestamp");
  expect_filter_error("gregorian_time > 1", 1, "gregorian_time");
  expect_filter_error("a = 1 && account_tree.x = 'r'", 10, "account_tree");
}

TEST(FilterErrors, EventFieldPathMustBeOneSegment) {
  expect_filter_error("severity.x = 'ok'", 1, "severity");
  expect_filter_error("app_name.x = 'a'", 1, "app_name");
  expect_filter_error("a = 1 || topic.y = 'a'", 10, "topic");
}

TEST(FilterErrors, NumberSyntaxErrors) {
  for (const char* f : {"a = +1", "a = 01", "a = .5", "a = 1.", "a = 1e", "a = -", "a = 1.e3", "a = -.5"}) {
    const auto e = filter_error(f);
    EXPECT_GE(e.column, 5u) << f << " -> " << e.to_string();
  }
  expect_filter_error("a = 01", 5, "leading zeros");
}

TEST(FilterErrors, MalformedStructureIsAnError) {
  expect_filter_error("a = 1 b = 2", 7, "expected '&&', '||' or the end");
  expect_filter_error("a = 1 &&", 9, "path");
  expect_filter_error("a = 1 & b = 2", 7, "'&'");
  expect_filter_error("a = 1 | b = 2", 7, "'|'");
  expect_filter_error("(a = 1", 7, "')'");
  expect_filter_error("a = 1)", 6, "')'");
  expect_filter_error("()", 2, "path");
  expect_filter_error("a", 2, "operator");
  expect_filter_error("a = 1 || !", 11, "path");
  expect_filter_error("a..b = 1", 3, "segment");
  expect_filter_error("a. = 1", 4, "segment");  // at the '=': whitespace after '.' is free
  expect_filter_error("a ! 1", 3, "operator");
  expect_filter_error("a =< 1", 4, "literal");
}

// '!' and '(' count a level each, 64 at most, as README says (the
// comparison itself counted one more: 64 were refused).
TEST(FilterErrors, NestingIsBoundedAtSixtyFourLevels) {
  EXPECT_TRUE(std::holds_alternative<filter::Expression>(filter::parse(std::string(64, '!') + "a = 1")));
  EXPECT_TRUE(
      std::holds_alternative<filter::Expression>(filter::parse(std::string(64, '(') + "a = 1" + std::string(64, ')'))));
  expect_filter_error(std::string(65, '!') + "a = 1", 65, "nested more than 64 deep");
  expect_filter_error(std::string(32, '(') + std::string(33, '!') + "a = 1" + std::string(32, ')'), 65,
                      "nested more than 64 deep");
}

// A literal's or a pattern's bytes below 0x20 are escaped in the message:
// each config error is one line, and a newline in a filter made a second
// that read as an error of its own.
TEST(FilterErrors, MessagesKeepControlBytesEscaped) {
  for (const char* text : {R"(severity = "x\nbackends[9].fake: injected")", R"(s ~ "(x\ninjected: line")",
                           R"(verbosity = 'ok\u0000\r')"}) {
    const filter::ParseError e = filter_error(text);
    EXPECT_EQ(e.message.find_first_of(std::string("\n\r\0", 3)), std::string::npos) << text << " -> " << e.message;
  }
  expect_filter_error(R"(severity = "x\ny")", 12, R"(found "x\u000ay")");
  // A path written over lines is named joined.
  const filter::ParseError path = filter_error("a\n.b ?");
  EXPECT_EQ(path.message.find('\n'), std::string::npos) << path.message;
  EXPECT_NE(path.message.find("after 'a.b'"), std::string::npos) << path.message;
}

// Past a double it would be infinity, and `a < 1e400` true for every
// number; a body holding such a number is refused at ingest as well.
TEST(FilterErrors, ANumberPastADoubleIsAnError) {
  expect_filter_error("a < 1e400", 5, "past what a double holds");
  expect_filter_error("a > -1e309", 5, "past what a double holds");
  EXPECT_TRUE(std::holds_alternative<filter::Expression>(filter::parse("a = 1e-400")));  // 0, as simdjson reads it
}

TEST(FilterErrors, ErrorsNameTheColumnInTheConfig) {
  const auto errors = testing::binding_errors(R"({"filter":"attrs.duration<"})");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(errors[0].starts_with("b.filter: column 16: expected a literal after '<'")) << errors[0];
}

}  // namespace
}  // namespace ringroute::matcher
