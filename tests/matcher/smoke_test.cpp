// End-to-end checks of compile + match through the public API: config JSON
// in, backends out, in config order.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <unordered_map>

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

// "#.a" followed by n "*" needs 2^(n+1) DFA states (the DFA must remember
// which of the last n+1 words were "a"): past CompileOptions'
// max_topic_states that leaf keeps the backtracking walk, and both agree.
TEST(MatcherSmoke, ATopicDfaPastItsBoundFallsBackToTheWalk) {
  auto specs = testing::backends_from_json(R"([
    {"name": "deep", "bindings": [{"topic": "#.a.*.*.*.*.*.*.*.*.*.*.*.*"}]},
    {"name": "plain", "bindings": [{"topic": "x.#"}]}])");
  auto small = Matcher::compile(specs);
  EXPECT_EQ(small->topic_walk_count(), 1u);  // over 2^13 states > 4096
  EXPECT_EQ(small->topic_dfa_count(), 0u);   // both patterns hang off one leaf (any account, any app)
  auto big = Matcher::compile(specs, CompileOptions{.max_topic_states = 1 << 16});
  EXPECT_EQ(big->topic_walk_count(), 0u);
  EXPECT_EQ(big->topic_dfa_count(), 1u);
  testing::JsonEvent ev;
  const std::string hit = R"({"topic":"x.a.1.2.3.4.5.6.7.8.9.10.11.12"})";
  const std::string miss = R"({"topic":"x.a.1.2.3.4.5.6.7.8.9.10.11"})";
  const std::string late = R"({"topic":"a.a.b.a.1.2.3.4.5.6.7.8.9.10.11.12"})";
  for (const Matcher* m : {small.get(), big.get()}) {
    EXPECT_EQ(matched(*m, ev(hit)), (std::vector<std::string>{"deep", "plain"}));
    EXPECT_EQ(matched(*m, ev(miss)), std::vector<std::string>{"plain"});
    EXPECT_EQ(matched(*m, ev(late)), std::vector<std::string>{"deep"});
  }
}

// The budget over all leaves: once it is spent, further leaves walk.
TEST(MatcherSmoke, TopicDfasShareOneStateBudget) {
  auto specs = testing::backends_from_json(R"([
    {"name": "one", "bindings": [{"account_id": "a1", "topic": "#.a.*.*"}]},
    {"name": "two", "bindings": [{"account_id": "a2", "topic": "#.a.*.*"}]},
    {"name": "three", "bindings": [{"account_id": "a3", "topic": "#.a.*.*"}]}])");
  auto m = Matcher::compile(specs, CompileOptions{.max_topic_states = 4096, .max_total_topic_states = 20});
  EXPECT_GE(m->topic_dfa_count(), 1u);
  EXPECT_GE(m->topic_walk_count(), 1u);
  EXPECT_EQ(m->topic_dfa_count() + m->topic_walk_count(), 3u);
  testing::JsonEvent ev;
  for (const char* account : {"a1", "a2", "a3"}) {
    const std::string hit = std::string(R"({"account_id":")") + account + R"(","topic":"x.a.b.c"})";
    const std::string miss = std::string(R"({"account_id":")") + account + R"(","topic":"x.a.b"})";
    const std::string name = account == std::string("a1") ? "one" : account == std::string("a2") ? "two" : "three";
    EXPECT_EQ(matched(*m, ev(hit)), std::vector<std::string>{name}) << account;
    EXPECT_TRUE(matched(*m, ev(miss)).empty()) << account;
  }
}

// `specs` compiled under `bounded`, where their one leaf walks, and with
// the defaults, where it has a DFA.
std::pair<std::unique_ptr<const Matcher>, std::unique_ptr<const Matcher>> walked_and_built(
    const std::vector<BackendSpec>& specs, const CompileOptions& bounded) {
  auto walked = Matcher::compile(specs, bounded);
  EXPECT_EQ(walked->topic_dfa_count(), 0u);
  EXPECT_EQ(walked->topic_walk_count(), 1u);
  auto built = Matcher::compile(specs);
  EXPECT_EQ(built->topic_dfa_count(), 1u);
  return {std::move(walked), std::move(built)};
}

// A DFA's states do not bound its build: patterns "#.w<i>" on one leaf make
// as many states as patterns, each with a transition on every w<i>. The
// build's work is bounded too; past it the leaf walks, and matches alike.
TEST(MatcherSmoke, TheWorkOfBuildingTopicDfasIsBounded) {
  std::string bindings;
  for (int i = 0; i < 300; ++i) bindings += std::string(i ? "," : "") + R"({"topic": "#.w)" + std::to_string(i) + R"("})";
  auto specs = testing::backends_from_json(R"([{"name": "many", "bindings": [)" + bindings + "]}]");
  const auto [bounded, built] = walked_and_built(specs, CompileOptions{.max_total_topic_work = 10'000});
  testing::JsonEvent ev;
  for (const Matcher* m : {bounded.get(), built.get()}) {
    EXPECT_EQ(matched(*m, ev(R"({"topic":"x.w7.y.w299"})")), std::vector<std::string>{"many"});
    EXPECT_TRUE(matched(*m, ev(R"({"topic":"x.w7.y"})")).empty());
  }
  // One leaf's share is bounded too: a huge one walks without spending the
  // budget of the leaves after it.
  specs.push_back(testing::backends_from_json(R"([{"name": "small", "bindings": [
    {"account_id": "a1", "topic": "#.x"}]}])")[0]);
  auto shared = Matcher::compile(specs, CompileOptions{.max_total_topic_work = 100'000, .max_topic_work = 10'000});
  EXPECT_EQ(shared->topic_dfa_count(), 1u);
  EXPECT_EQ(shared->topic_walk_count(), 1u);
  EXPECT_EQ(matched(*shared, ev(R"({"account_id":"a1","topic":"a.x"})")), std::vector<std::string>{"small"});
}

// A DFA state keeps its own copy of its nodes' entries, and a node under a
// "#" is in every state: a 120-word pattern beside 300 filtered "#"
// bindings made 121 states of 300 entries each, which the work budget (a
// unit a node stepped) did not count. Charged now: past the budget the
// leaf walks, and matches alike.
TEST(MatcherSmoke, TheEntriesOfTopicDfaStatesAreChargedToTheBuild) {
  std::string bindings, chain = "a";
  for (int i = 0; i < 300; ++i) {
    bindings += std::string(i ? "," : "") + R"({"topic": "#", "filter": "x = )" + std::to_string(i) + R"("})";
  }
  for (int i = 1; i < 120; ++i) chain += ".a";
  bindings += R"(, {"topic": ")" + chain + R"("})";
  const auto specs = testing::backends_from_json(R"([{"name": "many", "bindings": [)" + bindings + "]}]");
  const auto [bounded, built] = walked_and_built(specs, CompileOptions{.max_topic_work = 10'000});
  testing::JsonEvent ev;
  for (const Matcher* m : {bounded.get(), built.get()}) {
    EXPECT_EQ(matched(*m, ev(R"({"topic":"b","body":{"x":299}})")), std::vector<std::string>{"many"});
    EXPECT_TRUE(matched(*m, ev(R"({"topic":"b","body":{"x":300}})")).empty());
    EXPECT_EQ(matched(*m, ev(R"({"topic":")" + chain + R"("})")), std::vector<std::string>{"many"});
  }
}

// A leaf that walks its patterns runs them as an NFA over the topic's
// words: backtracking through three "#" cost the cube of the topic's length
// (a producer's to pick), minutes for a 3,000-word topic.
TEST(MatcherSmoke, AWalkedLeafCostsTheTopicsLengthNotAPowerOfIt) {
  auto specs = testing::backends_from_json(R"([
    {"name": "hashes", "bindings": [{"topic": "#.*.#.*.#.end"}]}])");
  auto m = Matcher::compile(specs, CompileOptions{.max_topic_states = 0});
  ASSERT_EQ(m->topic_walk_count(), 1u);
  std::string topic = "x";
  for (int i = 0; i < 3000; ++i) topic += ".x";
  testing::JsonEvent ev;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(matched(*m, ev(R"({"topic":")" + topic + R"("})")).empty());
  EXPECT_EQ(matched(*m, ev(R"({"topic":")" + topic + R"(.end"})")), std::vector<std::string>{"hashes"});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

// An event reaches a leaf once for each ancestor naming its account, and a
// producer may repeat one thousands of times: a filter there runs once an
// event, not once a visit (each run may scan the whole body).
TEST(MatcherSmoke, AFilterRunsOnceAnEventHoweverManyVisitsReachIt) {
  auto specs = testing::backends_from_json(R"([
    {"name": "k", "bindings": [{"account_id": "p", "include_descendants": true, "filter": "body.k = 1"}]},
    {"name": "other", "bindings": [{"account_id": "q", "include_descendants": true, "filter": "body.k = 1"}]}])");
  auto m = Matcher::compile(specs);
  std::string tree = R"("p")";
  for (int i = 0; i < 999; ++i) tree += R"(,"p")";
  testing::JsonEvent ev;
  MatchScratch scratch;
  EXPECT_TRUE(testing::matched_names(*m, ev(R"({"account_tree":[)" + tree + R"(],"body":{"j":2}})"), scratch).empty());
  EXPECT_EQ(scratch.filter_evaluations(), 1u);
  EXPECT_EQ(testing::matched_names(*m, ev(R"({"account_tree":[)" + tree + R"(],"body":{"k":1}})"), scratch),
            std::vector<std::string>{"k"});
  EXPECT_EQ(scratch.filter_evaluations(), 2u);
}

// An empty account id is one empty word of the derived topic
// ("edr.ok.info..cf"), for the DFA and the walk alike. Producers can't send
// one (the library refuses it), but a record can hold one.
TEST(MatcherSmoke, AnEmptyAccountIsOneEmptyTopicWord) {
  auto specs = testing::backends_from_json(R"([
    {"name": "five", "bindings": [{"topic": "edr.*.*.*.cf"}]},
    {"name": "four", "bindings": [{"topic": "edr.*.*.cf"}]}])");
  event::EventView view;
  view.present = event::bit(event::StringField::account_id) | event::bit(event::StringField::app_name);
  view.strings[static_cast<std::size_t>(event::StringField::account_id)] = "";
  view.strings[static_cast<std::size_t>(event::StringField::app_name)] = "cf";
  for (std::size_t states : {std::size_t{4096}, std::size_t{0}}) {
    auto m = Matcher::compile(specs, CompileOptions{.max_topic_states = states});
    EXPECT_EQ(matched(*m, view), std::vector<std::string>{"five"}) << "max_topic_states " << states;
  }
}

// A `*` app leaf with more entries than its account's slot holds inline is
// read out of line, beside the app leaf.
TEST(MatcherSmoke, AManyBackendStarAppLeafIsReadBesideTheAppLeaf) {
  std::string config = "[";
  for (int i = 0; i < 12; ++i) {
    config += R"({"name": "star)" + std::to_string(i) + R"(", "bindings": [{"account_id": "a1"}]},)";
  }
  config += R"({"name": "app", "bindings": [{"account_id": "a1", "app_name": "cf"}]}])";
  auto m = Matcher::compile(testing::backends_from_json(config));
  testing::JsonEvent ev;
  EXPECT_EQ(matched(*m, ev(R"({"account_id":"a1","app_name":"cf"})")).size(), 13u);
  EXPECT_EQ(matched(*m, ev(R"({"account_id":"a1","app_name":"bh"})")).size(), 12u);
  EXPECT_EQ(matched(*m, ev(R"({"account_id":"a1"})")).size(), 12u);
}

// The any-account's bindings are worked out per (app, pair) at compile time
// when that table is small; past max_any_result_bytes (or with 0) they are
// read as any other account's. Both must give the same backends: with sets
// of three words (150 backends), apps with and without their own leaf, long
// app names, and leaves with filters and topics read beside the table.
TEST(MatcherSmoke, TheAnyAccountsResultsPerAppAndPairAgreeWithItsSlot) {
  static const char* kSeverities[] = {"ok", "warning", "critical"};
  static const char* kVerbosities[] = {"trace", "debug", "info", "warn", "error", "fatal"};
  std::vector<std::string> apps;
  for (int i = 0; i < 20; ++i) apps.push_back("app" + std::to_string(i));
  apps.push_back("an-application-name-longer-than-sixteen");
  std::string config = "[";
  for (int b = 0; b < 150; ++b) {
    std::string binding = R"({"account_id": "*")";
    if (b % 11 == 3) {
      binding += R"(, "app_name": [")" + apps[2] + R"(", ")" + apps.back() + "\"]";
    } else if (b % 5 != 0) {
      binding += R"(, "app_name": ")" + apps[static_cast<std::size_t>(b * 5) % apps.size()] + "\"";
    }
    binding += R"(, "severity": ")" + std::string(kSeverities[b % 3]) + "\"";
    binding += R"(, "verbosity": ")" + std::string(kVerbosities[(b / 3) % 6]) + "\"";
    if (b % 37 == 1) binding += R"(, "filter": "attrs.n > 3")";
    if (b % 41 == 2) binding += R"(, "topic": "edr.*.info.#")";
    binding += "}";
    if (b % 13 == 4) binding += R"(, {"account_id": "a1", "app_name": ")" + apps[1] + "\"}";
    config += (b == 0 ? "" : ",") + (R"({"name": "b)" + std::to_string(b) + R"(", "bindings": [)" + binding + "]}");
  }
  config += "]";
  const auto specs = testing::backends_from_json(config);
  const auto table = Matcher::compile(specs);
  const auto slot = Matcher::compile(specs, CompileOptions{.max_any_result_bytes = 0});
  // 22 rows (21 apps, and every other app) of 18 pairs of 3 words: 9,504 bytes.
  const auto over = Matcher::compile(specs, CompileOptions{.max_any_result_bytes = 9503});
  const auto at = Matcher::compile(specs, CompileOptions{.max_any_result_bytes = 9504});
  ASSERT_TRUE(table->any_account_precomputed());
  ASSERT_FALSE(slot->any_account_precomputed());
  ASSERT_FALSE(over->any_account_precomputed());
  ASSERT_TRUE(at->any_account_precomputed());
  // A light any-account (its `*` entries inline, its apps among its tags) is
  // read as a slot unless asked; none at all, never.
  const auto light = testing::backends_from_json(
      R"([{"name": "x", "bindings": [{"app_name": ["app1", "app2"]}, {"severity": "critical"}]}])");
  EXPECT_FALSE(Matcher::compile(light)->any_account_precomputed());
  EXPECT_TRUE(Matcher::compile(light, CompileOptions{.any_results_always = true})->any_account_precomputed());
  const auto none = testing::backends_from_json(R"([{"name": "x", "bindings": [{"account_id": "a1"}]}])");
  EXPECT_FALSE(Matcher::compile(none, CompileOptions{.any_results_always = true})->any_account_precomputed());

  std::vector<std::string> lines;
  std::vector<std::string> app_fields;
  for (const std::string& app : apps) app_fields.push_back(R"("app_name":")" + app + "\",");
  app_fields.push_back(R"("app_name":"unbound",)");
  app_fields.push_back("");
  for (const std::string& app : app_fields) {
    for (const char* severity : kSeverities) {
      for (const char* verbosity : kVerbosities) {
        for (const char* account : {"a1", "a2"}) {
          lines.push_back("{" + app + R"("account_id":")" + account + R"(","severity":")" + severity +
                          R"(","verbosity":")" + verbosity + R"(","body":{"attrs":{"n":)" +
                          std::to_string(lines.size() % 7) + "}}}");
        }
      }
    }
  }
  std::vector<testing::OwnedEvent> events(lines.begin(), lines.end());
  std::vector<event::EventView> views;
  for (const auto& e : events) views.push_back(e.view);
  std::size_t matched_any = 0;
  for (const Matcher* m : {table.get(), over.get(), at.get()}) {
    std::vector<BackendSet> outs(views.size()), want(views.size());
    for (auto& out : outs) out.resize(m->backend_count());
    for (auto& out : want) out.resize(slot->backend_count());
    MatchScratch scratch;
    m->match_batch(views, scratch, outs.data());
    slot->match_batch(views, scratch, want.data());
    for (std::size_t k = 0; k < views.size(); ++k) {
      std::vector<std::uint32_t> got, expected;
      outs[k].for_each([&](std::uint32_t i) { got.push_back(i); });
      want[k].for_each([&](std::uint32_t i) { expected.push_back(i); });
      EXPECT_EQ(got, expected) << "event " << lines[k];
      matched_any += got.size();
    }
  }
  EXPECT_GT(matched_any, 3 * views.size());  // the events do reach backends, in every word
}

// An account's slot holds the tags of a few of its apps; past that, every
// app is looked for, and each must still find its own leaf and no other.
TEST(MatcherSmoke, AnAccountWithMoreAppsThanItsSlotHoldsFindsEachOfThem) {
  for (const std::string account : {"a1", "4b8c6fec4b2597882c0390202d195419"}) {
    for (int apps : {3, 8, 9, 20}) {
      std::string config = "[";
      for (int i = 0; i < apps; ++i) {
        config += R"({"name": "b)" + std::to_string(i) + R"(", "bindings": [{"account_id": ")" + account +
                  R"(", "app_name": "app)" + std::to_string(i) + R"("}]},)";
      }
      config += R"({"name": "star", "bindings": [{"account_id": ")" + account + R"("}]}])";
      auto m = Matcher::compile(testing::backends_from_json(config));
      testing::JsonEvent ev;
      for (int i = 0; i < apps; ++i) {
        EXPECT_EQ(matched(*m, ev(R"({"account_id":")" + account + R"(","app_name":"app)" + std::to_string(i) + "\"}")),
                  (std::vector<std::string>{"b" + std::to_string(i), "star"}))
            << account << ", " << apps << " apps, app" << i;
      }
      EXPECT_EQ(matched(*m, ev(R"({"account_id":")" + account + R"(","app_name":"other"})")),
                std::vector<std::string>{"star"});
    }
  }
}

// A slot's app tags are 16 bits of the app's hash: an app whose tag is
// another's is looked for, and not found.
TEST(MatcherSmoke, AnAppWithAnotherAppsTagIsNotTakenForIt) {
  std::unordered_map<std::uint16_t, std::string> seen;
  std::string first, second;
  for (int i = 0; second.empty(); ++i) {
    const std::string name = "app" + std::to_string(i);
    const auto [it, inserted] = seen.try_emplace(Matcher::app_tag(make_label_key(name).hash), name);
    if (!inserted) {
      first = it->second;
      second = name;
    }
  }
  auto m = Matcher::compile(testing::backends_from_json(
      R"([{"name": "first", "bindings": [{"account_id": "a1", "app_name": ")" + first + R"("}]}])"));
  testing::JsonEvent ev;
  EXPECT_EQ(matched(*m, ev(R"({"account_id":"a1","app_name":")" + first + "\"}")), std::vector<std::string>{"first"});
  EXPECT_TRUE(matched(*m, ev(R"({"account_id":"a1","app_name":")" + second + "\"}")).empty()) << first << " " << second;
}

// Kazoo account ids are 32 characters, past the 16 a slot holds inline:
// such ids are stored apart and still found, exactly and as ancestors. (An
// id differing from a bound one is almost always turned away by the slot's
// hash tag before its bytes are compared; the next test makes one that is
// not.)
TEST(MatcherSmoke, ALongAccountIdMatchesOnlyItself) {
  const std::string id = "4b8c6fec4b2597882c0390202d195419";
  const std::string near = "4b8c6fec4b2597882c0390202d19541a";
  auto m = Matcher::compile(testing::backends_from_json(R"([
    {"name": "exact", "bindings": [{"account_id": ")" + id + R"("}]},
    {"name": "tree", "bindings": [{"account_id": ")" + id + R"(", "include_descendants": true, "app_name": "cf"}]}])"));
  testing::JsonEvent ev;
  EXPECT_EQ(matched(*m, ev(R"({"account_id":")" + id + R"("})")), std::vector<std::string>{"exact"});
  EXPECT_EQ(matched(*m, ev(R"({"account_id":")" + id + R"(","app_name":"cf"})")),
            (std::vector<std::string>{"exact", "tree"}));
  EXPECT_TRUE(matched(*m, ev(R"({"account_id":")" + near + R"(","app_name":"cf"})")).empty());
  EXPECT_EQ(matched(*m, ev(R"({"account_id":"c","account_tree":[")" + near + R"(",")" + id + R"("],"app_name":"cf"})")),
            std::vector<std::string>{"tree"});
  EXPECT_TRUE(matched(*m, ev(R"({"account_id":"c","account_tree":[")" + near + R"("],"app_name":"cf"})")).empty());
}

// The bytes of a long id are compared when everything else about its slot
// agrees: an id sharing the bound one's first 16 bytes, length, slot tag
// and first slot (of the 16 a one-account table has) must not match.
TEST(MatcherSmoke, ALongAccountIdThatCollidesInItsSlotIsComparedWhole) {
  const std::string id = "4b8c6fec4b2597882c0390202d195419";
  const std::uint64_t want = Matcher::account_probe_hash(id);
  std::string other;
  for (unsigned long long n = 0; other.empty(); ++n) {
    char suffix[17];
    std::snprintf(suffix, sizeof suffix, "%016llx", n);
    const std::string candidate = id.substr(0, 16) + suffix;
    const std::uint64_t hash = Matcher::account_probe_hash(candidate);
    if (candidate != id && (hash >> 48) == (want >> 48) && (hash & 15) == (want & 15)) other = candidate;
  }
  auto m = Matcher::compile(testing::backends_from_json(R"([{"name": "a", "bindings": [{"account_id": ")" + id +
                                                        R"("}]}])"));
  testing::JsonEvent ev;
  EXPECT_EQ(matched(*m, ev(R"({"account_id":")" + id + R"("})")), std::vector<std::string>{"a"});
  EXPECT_TRUE(matched(*m, ev(R"({"account_id":")" + other + R"("})")).empty()) << other;
}

// An account's `*` leaf rides in its slot up to two entries; a third
// sends it out of line. Both sides of that line, beside an app leaf.
TEST(MatcherSmoke, AStarLeafOfTwoOrThreeEntriesIsReadBesideTheAppLeaf) {
  for (int stars : {1, 2, 3}) {
    std::string config = "[";
    for (int i = 0; i < stars; ++i) {
      config += R"({"name": "star)" + std::to_string(i) + R"(", "bindings": [{"account_id": "a1"}]},)";
    }
    config += R"({"name": "app", "bindings": [{"account_id": "a1", "app_name": "cf", "severity": "critical"}]}])";
    auto m = Matcher::compile(testing::backends_from_json(config));
    testing::JsonEvent ev;
    const auto size = static_cast<std::size_t>(stars);
    EXPECT_EQ(matched(*m, ev(R"({"account_id":"a1","app_name":"cf","severity":"critical"})")).size(), size + 1)
        << stars;
    EXPECT_EQ(matched(*m, ev(R"({"account_id":"a1","app_name":"cf"})")).size(), size) << stars;
    EXPECT_EQ(matched(*m, ev(R"({"account_id":"a1","app_name":"bh","severity":"critical"})")).size(), size) << stars;
    EXPECT_EQ(matched(*m, ev(R"({"account_id":"a1"})")).size(), size) << stars;
    EXPECT_TRUE(matched(*m, ev(R"({"account_id":"a2","app_name":"cf","severity":"critical"})")).empty()) << stars;
  }
}

// Events without a `topic` field start their leaf's DFA after the derived
// topic's first three words, from a table worked out per (severity,
// verbosity): patterns naming those words, patterns whose first word is
// not `edr` (so `edr` is in no pattern's alphabet), and both DFA and walk.
TEST(MatcherSmoke, ADerivedTopicStartsWhereItsSeverityAndVerbosityLead) {
  const auto specs = testing::backends_from_json(R"([
    {"name": "warning", "bindings": [{"topic": "*.warning.*.#", "severity": "ok", "verbosity": "trace"}]},
    {"name": "debug", "bindings": [{"topic": "edr.*.debug.#", "severity": "ok", "verbosity": "trace"}]},
    {"name": "cf", "bindings": [{"topic": "#.cf", "severity": "ok", "verbosity": "trace"}]},
    {"name": "a1", "bindings": [{"topic": "*.*.*.a1.#", "severity": "ok", "verbosity": "trace"}]},
    {"name": "not_edr", "bindings": [{"topic": "x.#", "severity": "ok", "verbosity": "trace"}]}])");
  for (std::size_t states : {std::size_t{4096}, std::size_t{0}}) {
    auto m = Matcher::compile(specs, CompileOptions{.max_topic_states = states});
    testing::JsonEvent ev;
    EXPECT_EQ(matched(*m, ev(R"({"severity":"warning"})")), std::vector<std::string>{"warning"}) << states;
    EXPECT_TRUE(matched(*m, ev(R"({})")).empty()) << states;
    EXPECT_EQ(matched(*m, ev(R"({"severity":"warning","verbosity":"debug","app_name":"cf"})")),
              (std::vector<std::string>{"warning", "debug", "cf"}))
        << states;
    EXPECT_EQ(matched(*m, ev(R"({"verbosity":"debug","account_id":"a1"})")),
              (std::vector<std::string>{"debug", "a1"}))
        << states;
    EXPECT_EQ(matched(*m, ev(R"({"severity":"critical","account_id":"a1","app_name":"cf"})")),
              (std::vector<std::string>{"cf", "a1"}))
        << states;
    // An explicit topic is matched from its first word.
    EXPECT_EQ(matched(*m, ev(R"({"severity":"warning","topic":"x.warning.y"})")),
              (std::vector<std::string>{"warning", "not_edr"}))
        << states;
    EXPECT_TRUE(matched(*m, ev(R"({"severity":"warning","topic":""})")).empty()) << states;
  }
}

// A DFA state with more than a few transitions finds its word by binary
// search; every word, and a word between them, must go where the walk says.
TEST(MatcherSmoke, ATopicStateWithManyWordsFindsEachOfThem) {
  std::string config = "[";
  for (int i = 0; i < 20; ++i) {
    config += R"({"name": "w)" + std::to_string(i) + R"(", "bindings": [{"topic": "x.w)" + std::to_string(i) +
              R"(.#"}]},)";
  }
  config += R"({"name": "none", "bindings": []}])";
  const auto specs = testing::backends_from_json(config);
  auto dfa = Matcher::compile(specs);
  auto walk = Matcher::compile(specs, CompileOptions{.max_topic_states = 0});
  EXPECT_EQ(dfa->topic_dfa_count(), 1u);
  testing::JsonEvent ev;
  for (int i = 0; i < 20; ++i) {
    const std::string line = R"({"topic":"x.w)" + std::to_string(i) + R"(.y"})";
    EXPECT_EQ(matched(*dfa, ev(line)), std::vector<std::string>{"w" + std::to_string(i)}) << line;
    EXPECT_EQ(matched(*walk, ev(line)), std::vector<std::string>{"w" + std::to_string(i)}) << line;
  }
  EXPECT_TRUE(matched(*dfa, ev(R"({"topic":"x.w100.y"})")).empty());
  EXPECT_TRUE(matched(*dfa, ev(R"({"topic":"x"})")).empty());
}

}  // namespace
}  // namespace ringroute::matcher
