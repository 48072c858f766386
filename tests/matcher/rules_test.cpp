// Every rule of SEMANTICS.md sections 1-5, one test each, named after the
// rule. Configs and events are written as users write them (JSON), and go
// through the same parser, record encoding and compiled matcher as the router.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backends.hpp"
#include "json_event.hpp"
#include "ringroute/matcher/filter.hpp"
#include "ringroute/matcher/matcher.hpp"

namespace ringroute::matcher {
namespace {

using Names = std::vector<std::string>;

// The backends `event` reaches under `backends` (a JSON array of backends).
Names route(const std::string& backends, const std::string& event) {
  const auto specs = testing::backends_from_json(backends);
  const auto m = Matcher::compile(specs);
  testing::JsonEvent ev;
  MatchScratch scratch;
  return testing::matched_names(*m, ev(event), scratch);
}

// Whether one backend with one binding (JSON object) takes `event`.
bool takes(const std::string& binding, const std::string& event) {
  return !route(R"([{"name":"b","bindings":[)" + binding + "]}]", event).empty();
}

bool filter_takes(const std::string& filter, const std::string& event) {
  std::string quoted;
  for (char c : filter) {
    if (c == '\t') quoted += "\\t";
    else if (c == '\r') quoted += "\\r";
    else if (c == '\n') quoted += "\\n";
    else {
      if (c == '"' || c == '\\') quoted += '\\';
      quoted += c;
    }
  }
  return takes(R"({"verbosity":"trace","filter":")" + quoted + "\"}", event);
}

// The first error a binding gets, as "path: message".
std::string binding_error(const std::string& binding) {
  const auto errors = testing::binding_errors(binding);
  return errors.empty() ? "" : errors.front();
}

filter::ParseError filter_error(const std::string& text) {
  auto parsed = filter::parse(text);
  EXPECT_TRUE(std::holds_alternative<filter::ParseError>(parsed)) << text;
  return std::holds_alternative<filter::ParseError>(parsed) ? std::get<filter::ParseError>(parsed)
                                                            : filter::ParseError{};
}

// --- 1. The event -------------------------------------------------------------

TEST(Event, AbsentSeverityIsOkAndAbsentVerbosityIsInfo) {
  EXPECT_TRUE(takes(R"({"severity":"ok","exact_severity":true,"verbosity":"info","exact_verbosity":true})", "{}"));
}

TEST(Event, NullMemberIsTheSameAsAbsent) {
  EXPECT_TRUE(takes(R"({"account_id":"*","app_name":"*"})", R"({"severity":null,"verbosity":null,"app_name":null})"));
  EXPECT_FALSE(takes(R"({"app_name":"x"})", R"({"app_name":null})"));
}

TEST(Event, LevelsAreLowerCase) {
  testing::JsonEvent ev;
  EXPECT_THROW(ev(R"({"severity":"Warning"})"), std::invalid_argument);
  EXPECT_NE(binding_error(R"({"severity":"Warning"})").find("unknown level \"Warning\""), std::string::npos);
}

TEST(Event, StringsCompareByteForByteCaseSensitive) {
  EXPECT_FALSE(takes(R"({"account_id":"Acct1"})", R"({"account_id":"acct1"})"));
  EXPECT_TRUE(takes(R"({"account_id":"acct1"})", R"({"account_id":"acct1"})"));
}

// --- 2. A binding ---------------------------------------------------------------

TEST(Severity, OneLevelNotExactMatchesThatLevelOrMoreSevere) {
  const std::string b = R"({"severity":"warning"})";
  EXPECT_FALSE(takes(b, R"({"severity":"ok"})"));
  EXPECT_TRUE(takes(b, R"({"severity":"warning"})"));
  EXPECT_TRUE(takes(b, R"({"severity":"critical"})"));
}

TEST(Severity, OneLevelExactMatchesOnlyThatLevel) {
  const std::string b = R"({"severity":"warning","exact_severity":true})";
  EXPECT_FALSE(takes(b, R"({"severity":"ok"})"));
  EXPECT_TRUE(takes(b, R"({"severity":"warning"})"));
  EXPECT_FALSE(takes(b, R"({"severity":"critical"})"));
}

TEST(Severity, ArrayMatchesItsLevelsAndIgnoresTheExactFlag) {
  for (const char* exact : {"true", "false"}) {
    const std::string b = std::string(R"({"severity":["ok","critical"],"exact_severity":)") + exact + "}";
    EXPECT_TRUE(takes(b, R"({"severity":"ok"})"));
    EXPECT_FALSE(takes(b, R"({"severity":"warning"})"));
    EXPECT_TRUE(takes(b, R"({"severity":"critical"})"));
  }
}

TEST(Severity, EmptyArrayMatchesNothing) {
  EXPECT_FALSE(takes(R"({"severity":[]})", R"({"severity":"critical"})"));
}

TEST(Verbosity, OneLevelNotExactMatchesThatLevelOrLessVerbose) {
  const std::string b = R"({"verbosity":"debug"})";
  EXPECT_FALSE(takes(b, R"({"verbosity":"trace"})"));
  for (const char* v : {"debug", "info", "warn", "error", "fatal"}) {
    EXPECT_TRUE(takes(b, std::string(R"({"verbosity":")") + v + "\"}")) << v;
  }
}

TEST(Verbosity, OneLevelExactMatchesOnlyThatLevel) {
  const std::string b = R"({"verbosity":"warn","exact_verbosity":true})";
  EXPECT_FALSE(takes(b, R"({"verbosity":"info"})"));
  EXPECT_TRUE(takes(b, R"({"verbosity":"warn"})"));
  EXPECT_FALSE(takes(b, R"({"verbosity":"error"})"));
}

TEST(Verbosity, ArrayMatchesItsLevelsAndIgnoresTheExactFlag) {
  const std::string b = R"({"verbosity":["trace","error"],"exact_verbosity":false})";
  EXPECT_TRUE(takes(b, R"({"verbosity":"trace"})"));
  EXPECT_FALSE(takes(b, R"({"verbosity":"debug"})"));
  EXPECT_FALSE(takes(b, R"({"verbosity":"fatal"})"));
  EXPECT_TRUE(takes(b, R"({"verbosity":"error"})"));
}

TEST(Verbosity, EmptyArrayMatchesNothing) {
  EXPECT_FALSE(takes(R"({"verbosity":[]})", R"({"verbosity":"info"})"));
}

TEST(Defaults, EmptyBindingTakesEverySeverityAndInfoOrLessVerbose) {
  EXPECT_TRUE(takes("{}", R"({"severity":"ok","verbosity":"info"})"));
  EXPECT_TRUE(takes("{}", R"({"severity":"critical","verbosity":"fatal"})"));
  EXPECT_FALSE(takes("{}", R"({"verbosity":"debug"})"));
  EXPECT_FALSE(takes("{}", R"({"verbosity":"trace"})"));
}

TEST(Defaults, KeySetToNullIsTheDefault) {
  EXPECT_FALSE(takes(R"({"verbosity":null,"severity":null,"account_id":null})", R"({"verbosity":"debug"})"));
  EXPECT_TRUE(takes(R"({"verbosity":null,"severity":null,"account_id":null})", R"({"account_id":"x"})"));
}

TEST(Account, StarMatchesEveryEventWithOrWithoutAnAccount) {
  EXPECT_TRUE(takes(R"({"account_id":"*"})", "{}"));
  EXPECT_TRUE(takes(R"({"account_id":"*"})", R"({"account_id":"a"})"));
  EXPECT_TRUE(takes(R"({"account_id":["x","*"]})", "{}"));
}

TEST(Account, IdMatchesThatAccountOnly) {
  const std::string b = R"({"account_id":["a","b"]})";
  EXPECT_TRUE(takes(b, R"({"account_id":"b"})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"c"})"));
  EXPECT_FALSE(takes(b, "{}"));
  EXPECT_FALSE(takes(b, R"({"account_id":"c","account_tree":["a"]})"));
}

TEST(Account, IncludeDescendantsMatchesTheAccountItselfAndItsDescendants) {
  const std::string b = R"({"account_id":"a","include_descendants":true})";
  EXPECT_TRUE(takes(b, R"({"account_id":"a"})"));
  EXPECT_TRUE(takes(b, R"({"account_id":"c","account_tree":["root","a"]})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"c","account_tree":["root","b"]})"));
}

TEST(Account, IncludeDescendantsAppliesToATreeWithoutAnAccount) {
  EXPECT_TRUE(takes(R"({"account_id":"a","include_descendants":true})", R"({"account_tree":["a"]})"));
}

TEST(Account, StarWithDescendantsStillMatchesEverything) {
  EXPECT_TRUE(takes(R"({"account_id":"*","include_descendants":true})", "{}"));
}

TEST(Account, EmptyArrayMatchesNothing) { EXPECT_FALSE(takes(R"({"account_id":[]})", R"({"account_id":"a"})")); }

TEST(App, StarMatchesEveryEventAndAnIdMatchesThatApp) {
  EXPECT_TRUE(takes(R"({"app_name":"*"})", "{}"));
  EXPECT_TRUE(takes(R"({"app_name":["x","*"]})", R"({"app_name":"y"})"));
  EXPECT_TRUE(takes(R"({"app_name":["cf","bh"]})", R"({"app_name":"bh"})"));
  EXPECT_FALSE(takes(R"({"app_name":"cf"})", R"({"app_name":"bh"})"));
}

TEST(App, EventWithoutAppMatchesOnlyStar) {
  EXPECT_FALSE(takes(R"({"app_name":"cf"})", "{}"));
  EXPECT_TRUE(takes(R"({"app_name":"*"})", "{}"));
}

TEST(App, EmptyArrayMatchesNothing) { EXPECT_FALSE(takes(R"({"app_name":[]})", R"({"app_name":"cf"})")); }

TEST(Binding, EveryKeyMustHold) {
  const std::string b = R"({"account_id":"a","app_name":"cf","severity":"warning","topic":"edr.#","filter":"k=1"})";
  EXPECT_TRUE(takes(b, R"({"account_id":"a","app_name":"cf","severity":"warning","body":{"k":1}})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"a","app_name":"cf","severity":"warning","body":{"k":2}})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"a","app_name":"cf","severity":"warning","topic":"x","body":{"k":1}})"));
  EXPECT_FALSE(takes(b, R"({"account_id":"a","app_name":"cf","severity":"ok","body":{"k":1}})"));
}

TEST(BindingErrors, InvalidValuesAreConfigErrorsWithTheirPath) {
  EXPECT_EQ(binding_error(R"({"severity":"sever"})"),
            "b.severity: unknown level \"sever\" (expected ok, warning or critical)");
  EXPECT_EQ(binding_error(R"({"verbosity":["info","loud"]})"),
            "b.verbosity[1]: unknown level \"loud\" (expected trace, debug, info, warn, error or fatal)");
  EXPECT_EQ(binding_error(R"({"account_id":5})"), "b.account_id: expected a string or an array of strings, got a number");
  EXPECT_EQ(binding_error(R"({"app_name":""})"), "b.app_name: must not be empty");
  EXPECT_EQ(binding_error(R"({"account_id":["a",""]})"), "b.account_id[1]: must not be empty");
  EXPECT_EQ(binding_error(R"({"include_descendants":"yes"})"), "b.include_descendants: expected true or false, got a string");
  EXPECT_NE(binding_error(R"({"acount_id":"a"})").find("b.acount_id: unknown key"), std::string::npos);
  EXPECT_EQ(binding_error(R"({"severity":"ok","severity":"ok"})"), "b.severity: duplicate key");
  EXPECT_EQ(binding_error(R"([])"), "b: expected an object, got an array");
}

// --- 3. A backend and the result ------------------------------------------------

TEST(Backend, MatchesWhenAnyBindingMatchesAndReceivesTheEventOnce) {
  const auto specs = testing::backends_from_json(
      R"([{"name":"b","bindings":[{"verbosity":"trace"},{"severity":"ok","verbosity":"trace"},{"account_id":"*","verbosity":"trace"}]}])");
  const auto m = Matcher::compile(specs);
  testing::JsonEvent ev;
  MatchScratch scratch;
  BackendSet set;
  set.resize(m->backend_count());
  m->match(ev("{}"), scratch, set);
  EXPECT_EQ(set.size(), 1u);
}

TEST(Backend, DisabledBackendMatchesNothing) {
  EXPECT_EQ(route(R"([{"name":"off","enabled":false,"bindings":[{}]},{"name":"on","bindings":[{}]}])", "{}"),
            Names{"on"});
}

TEST(Backend, EmptyBindingsMatchNothing) {
  EXPECT_EQ(route(R"([{"name":"none","bindings":[]},{"name":"all","bindings":[{}]}])", "{}"), Names{"all"});
}

TEST(Backend, ResultIsInConfigOrder) {
  EXPECT_EQ(route(R"([{"name":"z","bindings":[{"app_name":"x"}]},{"name":"a","bindings":[{}]},
                      {"name":"m","bindings":[{"severity":["ok"]}]}])",
                  R"({"app_name":"x"})"),
            (Names{"z", "a", "m"}));
}

// --- 4. Topics ---------------------------------------------------------------------

bool topic_takes(const std::string& pattern, const std::string& event) {
  return takes(R"({"verbosity":"trace","topic":")" + pattern + "\"}", event);
}
std::string with_topic(const std::string& topic) { return R"({"topic":")" + topic + "\"}"; }

TEST(Topic, DerivedTopicIsEdrSeverityVerbosityAccountApp) {
  EXPECT_TRUE(topic_takes("edr.warning.debug.acct1.cf",
                          R"({"severity":"warning","verbosity":"debug","account_id":"acct1","app_name":"cf"})"));
}

TEST(Topic, AbsentAccountOrAppIsTheWordUndefined) {
  EXPECT_TRUE(topic_takes("edr.ok.info.undefined.undefined", "{}"));
  EXPECT_TRUE(topic_takes("edr.ok.info.a.undefined", R"({"account_id":"a"})"));
}

TEST(Topic, DotsInAccountOrAppAddWords) {
  EXPECT_TRUE(topic_takes("edr.ok.info.a.b.c", R"({"account_id":"a.b","app_name":"c"})"));
  EXPECT_FALSE(topic_takes("edr.ok.info.*.c", R"({"account_id":"a.b","app_name":"c"})"));
}

TEST(Topic, TheEventsTopicFieldReplacesTheDerivedOne) {
  EXPECT_TRUE(topic_takes("x.y", R"({"topic":"x.y","account_id":"a"})"));
  EXPECT_FALSE(topic_takes("edr.#", R"({"topic":"x.y"})"));
}

TEST(Topic, StarMatchesExactlyOneWord) {
  EXPECT_TRUE(topic_takes("a.*", with_topic("a.b")));
  EXPECT_FALSE(topic_takes("a.*", with_topic("a")));
  EXPECT_FALSE(topic_takes("a.*", with_topic("a.b.c")));
  EXPECT_FALSE(topic_takes("*.*", with_topic("a")));
}

TEST(Topic, HashMatchesZeroOrMoreWords) {
  EXPECT_TRUE(topic_takes("#", with_topic("")));
  EXPECT_TRUE(topic_takes("#", with_topic("a.b")));
  EXPECT_TRUE(topic_takes("a.#", with_topic("a")));
  EXPECT_TRUE(topic_takes("a.#", with_topic("a.b.c")));
  EXPECT_TRUE(topic_takes("#.a", with_topic("a")));
  EXPECT_TRUE(topic_takes("a.#.z", with_topic("a.b.c.z")));
  EXPECT_FALSE(topic_takes("a.#.z", with_topic("a.b.c")));
}

TEST(Topic, EmptyPatternMatchesOnlyTheEmptyTopic) {
  EXPECT_TRUE(topic_takes("", with_topic("")));
  EXPECT_FALSE(topic_takes("", with_topic("a")));
}

TEST(Topic, EmptyWordsMatchEmptyWords) {
  EXPECT_TRUE(topic_takes("a..b", with_topic("a..b")));
  EXPECT_TRUE(topic_takes("a.*.b", with_topic("a..b")));
  EXPECT_FALSE(topic_takes("a.b", with_topic("a..b")));
}

TEST(Topic, WildcardInsideAWordIsAConfigError) {
  EXPECT_NE(binding_error(R"({"topic":"a.b*"})").find("b.topic: word 2 \"b*\""), std::string::npos);
  EXPECT_NE(binding_error(R"({"topic":"#x"})").find("b.topic: word 1"), std::string::npos);
}

// --- 5. Filters ----------------------------------------------------------------------

const std::string kAttrs = R"({"body":{"attrs":{"type":"call-end","duration":3,"name":"x"}}})";

TEST(Filter, SeedSyntaxWorks) {
  EXPECT_TRUE(filter_takes("attrs.type~'call-attempt|call-end'", kAttrs));
  EXPECT_TRUE(filter_takes("attrs.duration<5", kAttrs));
  EXPECT_FALSE(filter_takes("attrs.type=\"reg-expired\"", kAttrs));
}

TEST(Filter, AndOrNotAndParentheses) {
  EXPECT_TRUE(filter_takes("attrs.duration<5 && attrs.type='call-end'", kAttrs));
  EXPECT_TRUE(filter_takes("attrs.duration>5 || attrs.type='call-end'", kAttrs));
  EXPECT_FALSE(filter_takes("!(attrs.duration<5)", kAttrs));
  EXPECT_TRUE(filter_takes("!attrs.duration>5", kAttrs));
}

TEST(Filter, NotBindsTightestThenComparisonsThenAndThenOr) {
  // a || b && c is a || (b && c)
  EXPECT_TRUE(filter_takes("attrs.duration=3 || attrs.duration=4 && attrs.duration=5", kAttrs));
  // !a && b is (!a) && b
  EXPECT_FALSE(filter_takes("!attrs.duration=3 && attrs.duration=3", kAttrs));
}

TEST(Filter, WhitespaceBetweenTokensIsFree) {
  EXPECT_TRUE(filter_takes(" \t( attrs.duration \r\n < 5 )&&attrs.type = 'call-end' ", kAttrs));
}

TEST(Filter, MetadataFieldsAreReadByName) {
  const std::string event = R"({"id":"i1","account_id":"a","app_name":"cf","app_version":"4","node":"n",)"
                            R"("stream_name":"s","event_type":"e","tag":"t","topic":"x.y"})";
  for (const char* f : {"id='i1'", "account_id='a'", "app_name='cf'", "app_version='4'", "node='n'",
                        "stream_name='s'", "event_type='e'", "tag='t'", "topic='x.y'"}) {
    EXPECT_TRUE(filter_takes(f, event)) << f;
  }
}

TEST(Filter, SeverityVerbosityAndTopicAlwaysHaveAValue) {
  EXPECT_TRUE(filter_takes("severity='ok' && verbosity='info'", "{}"));
  EXPECT_TRUE(filter_takes("topic='edr.ok.info.undefined.undefined'", "{}"));
}

TEST(Filter, SeverityAndVerbosityOrderByLevel) {
  EXPECT_TRUE(filter_takes("severity>='warning'", R"({"severity":"critical"})"));
  EXPECT_FALSE(filter_takes("severity>='warning'", R"({"severity":"ok"})"));
  EXPECT_TRUE(filter_takes("verbosity<'info'", R"({"verbosity":"trace"})"));
  EXPECT_TRUE(filter_takes("severity~'^crit'", R"({"severity":"critical"})"));
}

TEST(Filter, BodyPrefixAndBarePathsReadTheBody) {
  EXPECT_TRUE(filter_takes("body.attrs.name='x'", kAttrs));
  EXPECT_TRUE(filter_takes("attrs.name='x'", kAttrs));
  EXPECT_TRUE(filter_takes("body.body=1", R"({"body":{"body":1}})"));
}

TEST(Filter, BodyAloneEqualsNoLiteral) {
  EXPECT_FALSE(filter_takes("body=null", "{}"));
  EXPECT_TRUE(filter_takes("body!=null", "{}"));
}

TEST(Filter, AnythingOnTheLeftThatFitsThePathSyntaxIsAPath) {
  EXPECT_TRUE(filter_takes("9 = 3", R"({"body":{"9":3}})"));
  EXPECT_TRUE(filter_takes("true = 1", R"({"body":{"true":1}})"));
}

TEST(Filter, ArraysAreNotIndexedAndScalarsEndAPath) {
  EXPECT_FALSE(filter_takes("list.0=1", R"({"body":{"list":[1]}})"));
  EXPECT_FALSE(filter_takes("s.x='a'", R"({"body":{"s":"a"}})"));
  EXPECT_TRUE(filter_takes("s.x!='a'", R"({"body":{"s":"a"}})"));
}

TEST(Filter, TheFirstOfDuplicateKeysCounts) {
  EXPECT_TRUE(filter_takes("k=1", R"({"body":{"k":1,"k":2}})"));
  EXPECT_FALSE(filter_takes("k=2", R"({"body":{"k":1,"k":2}})"));
}

TEST(Filter, AbsentFieldMakesEveryOperatorFalseButNotEqual) {
  for (const char* f : {"nope=1", "nope<1", "nope<=1", "nope>1", "nope>=1", "nope~'.'"}) {
    EXPECT_FALSE(filter_takes(f, kAttrs)) << f;
  }
  EXPECT_TRUE(filter_takes("nope!=1", kAttrs));
  EXPECT_TRUE(filter_takes("tag!='t'", "{}"));
}

TEST(Filter, NumbersCompareNumericallyIntegersExactly) {
  EXPECT_TRUE(filter_takes("n=9007199254740993", R"({"body":{"n":9007199254740993}})"));
  EXPECT_FALSE(filter_takes("n=9007199254740992", R"({"body":{"n":9007199254740993}})"));
  EXPECT_TRUE(filter_takes("n>9223372036854775807", R"({"body":{"n":18446744073709551615}})"));
  EXPECT_TRUE(filter_takes("n<-9223372036854775807", R"({"body":{"n":-9223372036854775808}})"));
  EXPECT_TRUE(filter_takes("n=2.5", R"({"body":{"n":2.5}})"));
  EXPECT_TRUE(filter_takes("n<3", R"({"body":{"n":2.5}})"));
  EXPECT_TRUE(filter_takes("n=1e2", R"({"body":{"n":100}})"));
}

TEST(Filter, StringsCompareByteWise) {
  EXPECT_TRUE(filter_takes("s<'b'", R"({"body":{"s":"abc"}})"));
  EXPECT_TRUE(filter_takes("s>'Z'", R"({"body":{"s":"a"}})"));
  EXPECT_TRUE(filter_takes("s>'z'", R"({"body":{"s":"\u00e9"}})"));  // 0xC3 > 'z' as unsigned bytes
}

TEST(Filter, NoCoercionBetweenTypes) {
  EXPECT_FALSE(filter_takes("n='5'", R"({"body":{"n":5}})"));
  EXPECT_TRUE(filter_takes("n!='5'", R"({"body":{"n":5}})"));
  EXPECT_FALSE(filter_takes("s=5", R"({"body":{"s":"5"}})"));
  EXPECT_FALSE(filter_takes("b=1", R"({"body":{"b":true}})"));
}

TEST(Filter, TrueFalseAndNullCompareWithEqualsOnly) {
  EXPECT_TRUE(filter_takes("b=true", R"({"body":{"b":true}})"));
  EXPECT_TRUE(filter_takes("b!=false", R"({"body":{"b":true}})"));
  EXPECT_TRUE(filter_takes("z=null", R"({"body":{"z":null}})"));
  EXPECT_FALSE(filter_takes("z=null", "{}"));
  EXPECT_NE(filter_error("b<true").message.find("can't order against true"), std::string::npos);
  EXPECT_NE(filter_error("z>=null").message.find("can't order against null"), std::string::npos);
}

TEST(Filter, RegexIsAnUnanchoredSearchOnStrings) {
  EXPECT_TRUE(filter_takes("attrs.type~'end'", kAttrs));
  EXPECT_FALSE(filter_takes("attrs.type~'^end'", kAttrs));
  EXPECT_FALSE(filter_takes("attrs.duration~'3'", kAttrs));
}

TEST(Filter, StringEscapesAndBothQuoteKinds) {
  EXPECT_TRUE(filter_takes(R"(s="a\"b")", R"({"body":{"s":"a\"b"}})"));
  EXPECT_TRUE(filter_takes(R"(s='a\'b\\c\/\u00e9\n')", R"({"body":{"s":"a'b\\c/\u00e9\n"}})"));
  EXPECT_NE(filter_error(R"(s='\x')").message.find("unknown escape"), std::string::npos);
}

TEST(FilterErrors, EmptyFilter) { EXPECT_EQ(filter_error("  ").message, "empty filter"); }

TEST(FilterErrors, DoubleEqualsIsAnError) {
  const auto e = filter_error("attrs.x == 1");
  EXPECT_EQ(e.column, 9u);
  EXPECT_NE(e.message.find("'==' is not an operator"), std::string::npos);
}

TEST(FilterErrors, BareWordWhereALiteralBelongs) {
  EXPECT_NE(filter_error("a = True").message.find("expected a literal after '='"), std::string::npos);
  EXPECT_EQ(filter_error("a = x").column, 5u);
}

TEST(FilterErrors, QuotedStringOnTheLeft) {
  EXPECT_NE(filter_error("'a' = 1").message.find("quoted string can't be on the left"), std::string::npos);
}

TEST(FilterErrors, ReservedPathsAndFieldsWithMembers) {
  EXPECT_NE(filter_error("account_tree = 'a'").message.find("reserved"), std::string::npos);
  EXPECT_NE(filter_error("timestamp > 1").message.find("reserved"), std::string::npos);
  EXPECT_NE(filter_error("gregorian_time > 1").message.find("reserved"), std::string::npos);
  EXPECT_NE(filter_error("severity.x = 'a'").message.find("has no members"), std::string::npos);
}

TEST(FilterErrors, LevelComparisonsNeedALevelName) {
  EXPECT_NE(filter_error("severity = 5").message.find("level name"), std::string::npos);
  EXPECT_NE(filter_error("verbosity < 'loud'").message.find("level name"), std::string::npos);
}

TEST(FilterErrors, RegexNeedsAStringAndAValidPattern) {
  EXPECT_NE(filter_error("a ~ 5").message.find("needs a quoted regular expression"), std::string::npos);
  const auto e = filter_error("a ~ '(unclosed'");
  EXPECT_EQ(e.column, 5u);
  EXPECT_NE(e.message.find("bad regular expression"), std::string::npos);
}

TEST(FilterErrors, NumbersFollowJsonSyntax) {
  for (const char* f : {"a = +1", "a = 01", "a = .5", "a = 1.", "a = 1e"}) {
    filter_error(f);
  }
}

TEST(FilterErrors, ErrorsNameTheColumnInTheConfig) {
  EXPECT_EQ(binding_error(R"({"filter":"attrs.duration < "})"),
            "b.filter: column 18: expected a literal after '<' (a quoted string, a number, true, false or null), "
            "found end of filter");
}

}  // namespace
}  // namespace ringroute::matcher
