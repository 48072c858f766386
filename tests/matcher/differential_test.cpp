// Differential test: the compiled matcher against the reference plain loop
// (reference.hpp) on random configs and events drawn from small pools, so
// bindings and events collide often enough for every rule to be decided both
// ways. Configs go through the config parser as JSON text; the reference reads
// the generator's own model of each binding, so a config parser that misreads
// a key shows up as a mismatch too.
//
// Repeatable: config i uses std::mt19937_64 seeded with kBaseSeed + i, and a
// mismatch prints that seed, the config and event JSON, and a shrunk
// single-binding repro. RINGROUTE_DIFF_SEED=<seed> reruns one config.
// Soaks are opt-in: RINGROUTE_DIFF_CONFIGS=<n> runs n configs instead of
// kConfigs, from RINGROUTE_DIFF_BASE=<seed> instead of kBaseSeed.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backends.hpp"
#include "json_event.hpp"
#include "reference.hpp"
#include "ringroute/matcher/matcher.hpp"

namespace ringroute::matcher {
namespace {

constexpr std::uint64_t kBaseSeed = 0x5eed'0000'0000ull;
constexpr int kConfigs = 5000;
constexpr int kEventsPerConfig = 20;
constexpr int kMaxReports = 8;

// --- pools -------------------------------------------------------------------
// Small on purpose: bindings and events draw from the same few values.

// Labels past 16 bytes (hashed and compared by another path than short
// ones; one with a dot) and one in upper case (ids compare byte for byte).
const std::vector<std::string> kAccounts{"acct1", "acct2", "root", "a.b", "acct3", "acct-0123456789abcdef", "Acct1"};
const std::vector<std::string> kApps{"cf", "bh", "x.y", "app", "app.0123456789abcdef"};
const std::vector<std::string> kSeverities{"ok", "warning", "critical"};
const std::vector<std::string> kVerbosities{"trace", "debug", "info", "warn", "error", "fatal"};
const std::vector<std::string> kStrings{"a",  "b",     "call-end", "call-attempt", "reg-expired", "5",
                                        "",   "acct1", "cf",       "x.y",          "A",           "\xc3\xa9",
                                        "ok", "warning", "ok.info", "undefined"};
const std::vector<std::string> kKeys{"a", "b", "x", "attrs", "type", "duration", "9", "true", "n"};
// Every one parses as a JSON number for both the event parser and the DOM.
const std::vector<std::string> kBodyNumbers{
    "0",    "-0",     "1",     "5",   "-3",  "10",       "3",   "2.5",
    "5.0",  "1e3",    "1000",  "1.5", "-0.0", "4.999999", "0.0025",
    "9223372036854775807", "9223372036854775808", "18446744073709551615", "-9223372036854775808",
    "9007199254740993", "9007199254740992", "1E2", "100", "-2.5e1"};
// Literals add a few past 64 bits (the parser keeps those as doubles).
const std::vector<std::string> kLiteralNumbers{
    "0",    "-0",     "1",     "5",   "-3",  "10",   "3",    "2.5",  "5.0",
    "1e3",  "1000",   "1.5",   "-0.0", "4.999999", "0.0025", "2.5e-3",
    "9223372036854775807", "9223372036854775808", "18446744073709551615", "18446744073709551616",
    "-9223372036854775808", "-9223372036854775809", "9007199254740993", "9007199254740992", "100",
    "-25", "340282366920938463463374607431768211461", "-340282366920938463463374607431768211461"};
// Integers where exact and double comparison disagree (past 2^53, near the
// 64-bit edges), for key "n" and the comparisons that read it.
const std::vector<std::string> kBigBodyNumbers{
    "9223372036854775807", "9223372036854775806", "9223372036854775808", "18446744073709551615",
    "18446744073709551614", "-9223372036854775808", "-9223372036854775807", "9007199254740993",
    "9007199254740992", "9007199254740992.0", "9223372036854775808.0"};
const std::vector<std::string> kBigLiteralNumbers{
    "9223372036854775807", "9223372036854775806", "9223372036854775808", "18446744073709551615",
    "18446744073709551614", "18446744073709551616", "-9223372036854775808", "-9223372036854775807",
    "-9223372036854775809", "9007199254740993", "9007199254740992", "9007199254740992.0",
    "9223372036854775808.0", "9.007199254740993e15", "1.8446744073709552e19",
    "340282366920938463463374607431768211461", "-340282366920938463463374607431768211457",
    "99999999999999999999999999999999999999999999"};
const std::vector<std::string> kRegexes{"a",    "^call-", "end$", "call-(attempt|end)", "[0-9]", "^$",   "",
                                        ".",    "x|5",    "warn", "^acct",              "\\.",   "b$",   "^ok",
                                        "info", "undefined", "\xc3\xa9", "^.$",         "(?i)A", "^edr\\.ok"};
const std::vector<std::string> kMetaFields{"severity",    "verbosity", "account_id", "app_name",
                                           "topic",       "id",        "app_version", "node",
                                           "stream_name", "event_type", "tag"};

// --- text helpers --------------------------------------------------------------

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string json_array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i != 0) out += ",";
    out += json_string(items[i]);
  }
  return out + "]";
}

std::string join(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out + "]";
}

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : gen_(seed) {}
  int pick(int n) { return static_cast<int>(gen_() % static_cast<std::uint64_t>(n)); }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(gen_) < p; }
  template <class T>
  const T& from(const std::vector<T>& v) {
    return v[static_cast<std::size_t>(pick(static_cast<int>(v.size())))];
  }
  std::mt19937_64& gen() { return gen_; }

 private:
  std::mt19937_64 gen_;
};

// --- configs -------------------------------------------------------------------

// One key of a binding: its JSON text and what it does to the reference's
// model, kept apart so a mismatch can be shrunk key by key.
struct Member {
  std::string json;  // "\"key\": value"
  std::function<void(reference::Binding&)> apply;
};

struct GenBinding {
  std::vector<Member> members;
};

reference::Binding model(const std::vector<Member>& members) {
  reference::Binding b;
  for (const auto& m : members) m.apply(b);
  return b;
}

std::string binding_json(const std::vector<Member>& members) {
  std::string out = "{";
  for (std::size_t i = 0; i < members.size(); ++i) out += (i ? ", " : "") + members[i].json;
  return out + "}";
}

struct GenBackend {
  std::string name;
  std::string enabled_json;  // empty: key absent
  bool enabled = true;
  std::vector<GenBinding> bindings;
};

struct Stats {
  long filters = 0;
  long filter_rejects = 0;
  long pairs = 0;
  long pairs_matching = 0;
  long backend_hits = 0;
};

std::string object_text(const std::vector<std::string>& members) {
  std::string out = "{";
  for (std::size_t i = 0; i < members.size(); ++i) out += (i ? "," : "") + members[i];
  return out + "}";
}

// Stands for the body object among an event's members.
const std::string kBodyPlaceholder = "<body>";

// An event as member texts; `body` holds the body object's members when the
// event has a "body" member that is an object.
struct GenEvent {
  std::vector<std::string> members;
  std::vector<std::string> body;

  [[nodiscard]] std::string json() const {
    std::vector<std::string> out;
    for (const auto& m : members) out.push_back(m == kBodyPlaceholder ? "\"body\":" + object_text(body) : m);
    return object_text(out);
  }
};

class Generator {
 public:
  Generator(Rng& rng, Stats& stats) : rng_(rng), stats_(stats) {}

  std::string ws() {
    static const std::vector<std::string> kSpaces{"", "", "", " ", " ", "  ", "\t", "\n", " \r\n"};
    return rng_.from(kSpaces);
  }

  // Names: a string or an array (maybe empty, maybe with "*").
  void names(std::vector<Member>& out, const std::string& key, const std::vector<std::string>& pool,
             bool accounts) {
    const int r = rng_.pick(10);
    if (r < 3) return;  // absent: the default "*"
    std::vector<std::string> value;
    std::string json;
    if (r == 3) {
      json = "null";
      value = {"*"};
    } else if (r == 4) {
      value = {"*"};
      json = json_string("*");
    } else if (r < 8) {
      value = {rng_.from(pool)};
      json = json_string(value[0]);
    } else {
      const int n = rng_.pick(4);
      for (int i = 0; i < n; ++i) value.push_back(rng_.from(pool));
      if (rng_.chance(0.1)) value.insert(value.begin() + rng_.pick(n + 1), "*");
      json = json_array(value);
    }
    out.push_back({json_string(key) + ":" + ws() + json, [value, accounts](reference::Binding& b) {
                     (accounts ? b.accounts : b.apps) = value;
                   }});
  }

  void levels(std::vector<Member>& out, bool severity) {
    const auto& pool = severity ? kSeverities : kVerbosities;
    const std::string key = severity ? "severity" : "verbosity";
    const int r = rng_.pick(20);
    if (r < 8) {
      // absent
    } else if (r == 8) {
      out.push_back({json_string(key) + ": null", [](reference::Binding&) {}});
    } else if (r < 16) {
      const std::string level = rng_.from(pool);
      out.push_back({json_string(key) + ":" + ws() + json_string(level), [level, severity](reference::Binding& b) {
                       (severity ? b.severity : b.verbosity) = {level};
                       (severity ? b.severity_is_array : b.verbosity_is_array) = false;
                     }});
    } else {
      std::vector<std::string> value;
      const int n = rng_.pick(4);
      for (int i = 0; i < n; ++i) value.push_back(rng_.from(pool));
      out.push_back({json_string(key) + ":" + ws() + json_array(value), [value, severity](reference::Binding& b) {
                       (severity ? b.severity : b.verbosity) = value;
                       (severity ? b.severity_is_array : b.verbosity_is_array) = true;
                     }});
    }
  }

  void flag(std::vector<Member>& out, const std::string& key, std::function<void(reference::Binding&, bool)> set) {
    const int r = rng_.pick(20);
    if (r < 9) return;
    if (r == 9) {
      out.push_back({json_string(key) + ": null", [](reference::Binding&) {}});
      return;
    }
    const bool value = r < 16;
    out.push_back({json_string(key) + ":" + ws() + (value ? "true" : "false"),
                   [set, value](reference::Binding& b) { set(b, value); }});
  }

  // A word for position k of a derived topic (edr.severity.verbosity.account.app),
  // or a wildcard, or something else.
  std::string topic_word(std::size_t position) {
    const int r = rng_.pick(10);
    if (r < 2) return "*";
    if (r < 4) return "#";
    if (r == 4) return rng_.from(std::vector<std::string>{"", "a", "b", "x", "cf"});
    switch (position) {
      case 0: return "edr";
      case 1: return rng_.from(kSeverities);
      case 2: return rng_.from(kVerbosities);
      case 3: return rng_.chance(0.2) ? "undefined" : rng_.from(std::vector<std::string>{"acct1", "acct2", "a", "b"});
      case 4: return rng_.chance(0.2) ? "undefined" : rng_.from(std::vector<std::string>{"cf", "bh", "x", "y"});
      default: return rng_.from(std::vector<std::string>{"x", "y", "a", "b", ""});
    }
  }

  std::string topic_text(bool pattern) {
    const int n = rng_.pick(7);
    std::string out;
    for (int i = 0; i < n; ++i) {
      if (i != 0) out += '.';
      std::string word = topic_word(static_cast<std::size_t>(i));
      if (!pattern && (word == "*" || word == "#")) word = rng_.chance(0.5) ? "edr" : "a";
      out += word;
    }
    return out;
  }

  // A string literal in the filter language, either quote, sometimes with an
  // escape standing for a plain byte.
  std::string filter_string(std::string_view s) {
    const char quote = rng_.chance(0.5) ? '\'' : '"';
    std::string out(1, quote);
    for (char c : s) {
      if (c == '\\') out += "\\\\";
      else if (c == quote) out += std::string("\\") + quote;
      else if (c == 'a' && rng_.chance(0.2)) out += "\\u0061";
      else if (c == '.' && rng_.chance(0.1)) out += "\\u002e";
      else out += c;
    }
    return out + quote;
  }

  std::string comparison() {
    std::string path;
    bool level_field = false;
    const int r = rng_.pick(20);
    if (r == 19) {
      // Big integers: exact against doubles, where a lossy comparison shows.
      static const std::vector<std::string> kBigOps{"=", "!=", "<", "<=", ">", ">="};
      return std::string(rng_.chance(0.3) ? "body.n" : "n") + ws() + rng_.from(kBigOps) + ws() +
             rng_.from(kBigLiteralNumbers);
    }
    if (r < 10) {
      const int n = 1 + rng_.pick(3);
      if (rng_.chance(0.2)) path = "body.";
      for (int i = 0; i < n; ++i) path += (i ? "." : "") + rng_.from(kKeys);
    } else if (r == 10) {
      path = "body";
    } else {
      path = rng_.from(kMetaFields);
      level_field = path == "severity" || path == "verbosity";
    }
    static const std::vector<std::string> kOps{"=", "!=", "<", "<=", ">", ">=", "~", "=", "!=", "~"};
    const std::string op = rng_.from(kOps);
    std::string literal;
    if (op == "~") {
      literal = rng_.chance(0.97) ? filter_string(rng_.from(kRegexes)) : "5";
    } else if (level_field) {
      const auto& pool = path == "severity" ? kSeverities : kVerbosities;
      literal = rng_.chance(0.97) ? filter_string(rng_.from(pool)) : filter_string("loud");
    } else {
      const bool ordering = op != "=" && op != "!=";
      const int k = rng_.pick(20);
      if (k < 9) literal = filter_string(rng_.from(kStrings));
      else if (k < 17) literal = rng_.from(kLiteralNumbers);
      else if (!ordering || rng_.chance(0.05)) literal = rng_.from(std::vector<std::string>{"true", "false", "null"});
      else literal = rng_.from(kLiteralNumbers);
    }
    return path + ws() + op + ws() + literal;
  }

  std::string unary(int depth) {
    const int r = depth >= 3 ? 9 : rng_.pick(10);
    if (r < 2) return "!" + ws() + unary(depth + 1);
    if (r < 4) return "(" + ws() + disjunction(depth + 1) + ws() + ")";
    return comparison();
  }
  std::string conjunction(int depth) {
    std::string out = unary(depth);
    const int n = depth >= 3 ? 0 : rng_.pick(3);
    for (int i = 0; i < n; ++i) out += ws() + "&&" + ws() + unary(depth + 1);
    return out;
  }
  std::string disjunction(int depth) {
    std::string out = conjunction(depth);
    const int n = depth >= 3 ? 0 : rng_.pick(3);
    for (int i = 0; i < n; ++i) out += ws() + "||" + ws() + conjunction(depth + 1);
    return out;
  }

  GenBinding binding() {
    GenBinding g;
    auto& m = g.members;
    names(m, "account_id", kAccounts, true);
    flag(m, "include_descendants", [](reference::Binding& b, bool v) { b.include_descendants = v; });
    names(m, "app_name", kApps, false);
    levels(m, true);
    flag(m, "exact_severity", [](reference::Binding& b, bool v) { b.exact_severity = v; });
    levels(m, false);
    flag(m, "exact_verbosity", [](reference::Binding& b, bool v) { b.exact_verbosity = v; });
    {
      const int r = rng_.pick(20);
      if (r == 0) {
        m.push_back({"\"topic\": null", [](reference::Binding&) {}});
      } else if (r >= 12) {
        const std::string pattern = topic_text(true);
        m.push_back({"\"topic\":" + ws() + json_string(pattern), [pattern](reference::Binding& b) { b.topic = pattern; }});
      }
    }
    {
      const int r = rng_.pick(20);
      if (r == 0) {
        m.push_back({"\"filter\": null", [](reference::Binding&) {}});
      } else if (r >= 11) {
        for (int attempt = 0; attempt < 3; ++attempt) {
          const std::string text = ws() + disjunction(0) + ws();
          auto parsed = filter::parse(text);
          ++stats_.filters;
          if (auto* expr = std::get_if<filter::Expression>(&parsed)) {
            auto shared = std::make_shared<const filter::Expression>(std::move(*expr));
            m.push_back({"\"filter\":" + ws() + json_string(text), [shared](reference::Binding& b) { b.filter = shared; }});
            break;
          }
          ++stats_.filter_rejects;  // e.g. `severity = "loud"`: a config error, not tested here
        }
      }
    }
    std::shuffle(m.begin(), m.end(), rng_.gen());
    return g;
  }

  std::vector<GenBackend> backends() {
    std::vector<GenBackend> out;
    const int n = 1 + rng_.pick(6);
    for (int i = 0; i < n; ++i) {
      GenBackend b;
      b.name = "b" + std::to_string(i);
      const int r = rng_.pick(10);
      if (r < 2) b.enabled_json = "true";
      else if (r < 4) {
        b.enabled_json = "false";
        b.enabled = false;
      }
      const int bindings = rng_.chance(0.1) ? 0 : 1 + rng_.pick(4);
      for (int j = 0; j < bindings; ++j) b.bindings.push_back(binding());
      out.push_back(std::move(b));
    }
    return out;
  }

  // --- events ------------------------------------------------------------------

  std::string body_value(int depth) {
    const int r = rng_.pick(depth >= 3 ? 14 : 20);
    if (r < 4) return json_string(rng_.from(kStrings));
    if (r == 4) return "\"\\u0061\"";  // "a", escaped
    if (r < 9) return rng_.from(kBodyNumbers);
    if (r < 11) return rng_.chance(0.5) ? "true" : "false";
    if (r < 12) return "null";
    if (r < 14) {
      std::string out = "[";
      const int n = rng_.pick(3);
      for (int i = 0; i < n; ++i) out += (i ? "," : "") + body_value(depth + 1);
      return out + "]";
    }
    return body_object(depth + 1);
  }

  std::string body_object(int depth) { return object_text(body_members(depth)); }

  // The object's members as "key: value" texts, kept apart so a mismatch's
  // event can be shrunk member by member.
  std::vector<std::string> body_members(int depth) {
    std::vector<std::string> out;
    std::vector<std::string> used;
    const int n = rng_.pick(5);
    for (int i = 0; i < n; ++i) {
      // Sometimes a key again: the first one counts.
      std::string key = !used.empty() && rng_.chance(0.15) ? rng_.from(used) : rng_.from(kKeys);
      used.push_back(key);
      const std::string value =
          key == "n" && rng_.chance(0.7) ? rng_.from(kBigBodyNumbers) : body_value(depth);
      out.push_back(ws() + json_string(key) + ":" + ws() + value);
    }
    return out;
  }

  GenEvent event() {
    GenEvent ev;
    std::vector<std::string>& members = ev.members;
    auto level = [&](const std::string& key, const std::vector<std::string>& pool) {
      const int r = rng_.pick(20);
      if (r < 7) return;
      if (r == 7) members.push_back(json_string(key) + ":null");
      else members.push_back(json_string(key) + ":" + json_string(rng_.from(pool)));
    };
    level("severity", kSeverities);
    level("verbosity", kVerbosities);
    auto name = [&](const std::string& key, const std::vector<std::string>& pool, int absent) {
      const int r = rng_.pick(20);
      if (r < absent) return;
      if (r == absent) members.push_back(json_string(key) + ":null");
      else members.push_back(json_string(key) + ":" + json_string(rng_.from(pool)));
    };
    name("account_id", kAccounts, 5);
    name("app_name", kApps, 5);
    {
      const int r = rng_.pick(20);
      if (r == 0) members.push_back("\"account_tree\":null");
      else if (r == 1) members.push_back("\"account_tree\":[]");
      else if (r >= 9) {
        std::vector<std::string> tree;
        const int n = 1 + rng_.pick(3);
        for (int i = 0; i < n; ++i) tree.push_back(rng_.from(kAccounts));
        members.push_back("\"account_tree\":" + json_array(tree));
      }
    }
    {
      const int r = rng_.pick(20);
      if (r == 0) members.push_back("\"topic\":null");
      else if (r >= 13) members.push_back("\"topic\":" + json_string(topic_text(false)));
    }
    for (const char* key : {"id", "app_version", "node", "stream_name", "event_type", "tag"}) {
      if (!rng_.chance(0.3)) continue;
      std::string value = rng_.from(kStrings);
      // An empty id or node is refused (it names no event, no host): one of
      // a character, so the draws, and every seed's case, stay as they were.
      if (value.empty() && (std::string_view(key) == "id" || std::string_view(key) == "node")) value = "i";
      members.push_back(json_string(key) + ":" + json_string(value));
    }
    {
      const int r = rng_.pick(20);
      if (r == 0) members.push_back("\"body\":null");
      else if (r >= 3) {
        members.push_back(kBodyPlaceholder);
        ev.body = body_members(0);
      }
    }
    std::shuffle(members.begin(), members.end(), rng_.gen());
    return ev;
  }

 private:
  Rng& rng_;
  Stats& stats_;
};

std::string config_json(const std::vector<GenBackend>& backends) {
  std::string out = "[";
  for (std::size_t i = 0; i < backends.size(); ++i) {
    const auto& b = backends[i];
    out += i ? ",\n " : "\n ";
    out += "{\"name\": " + json_string(b.name);
    if (!b.enabled_json.empty()) out += ", \"enabled\": " + b.enabled_json;
    out += ", \"bindings\": [";
    for (std::size_t j = 0; j < b.bindings.size(); ++j) out += (j ? ", " : "") + binding_json(b.bindings[j].members);
    out += "]}";
  }
  return out + "]";
}

std::vector<std::string> compiled_names(const Matcher& m, const event::EventView& e, MatchScratch& scratch) {
  return testing::matched_names(m, e, scratch);
}

// --- shrinking -----------------------------------------------------------------

// Whether one binding alone disagrees on one event: compiled as a config of
// one backend, against the reference's model of the same keys.
bool single_disagrees(const std::vector<Member>& members, const std::string& event_json) {
  const std::string config = "[{\"name\": \"b\", \"bindings\": [" + binding_json(members) + "]}]";
  auto specs = testing::backends_from_json(config);
  auto compiled = Matcher::compile(specs);
  testing::JsonEvent ev;
  const event::EventView& view = ev(event_json);
  MatchScratch scratch;
  const bool got = !compiled_names(*compiled, view, scratch).empty();
  reference::Reference ref;
  const bool want = ref.binding_matches(model(members), view);
  return got != want;
}

// Greedy: drop binding keys, then event members, while the disagreement stays.
std::string shrink(const std::vector<GenBackend>& backends, const std::vector<std::string>& want,
                   const std::vector<std::string>& got, const GenEvent& event) {
  const std::string event_json = event.json();
  for (const auto& backend : backends) {
    const bool in_want = std::find(want.begin(), want.end(), backend.name) != want.end();
    const bool in_got = std::find(got.begin(), got.end(), backend.name) != got.end();
    if (in_want == in_got) continue;
    if (!backend.enabled) {
      return "backend " + backend.name + " is disabled (enabled: " + backend.enabled_json + ") yet " +
             (in_got ? "the compiled matcher matched it" : "the reference matched it");
    }
    for (const auto& binding : backend.bindings) {
      if (!single_disagrees(binding.members, event_json)) continue;
      std::vector<Member> members = binding.members;
      // Until nothing more can go: a key may only become removable once a
      // later one is gone (include_descendants before account_id).
      for (bool again = true; again;) {
        again = false;
        for (std::size_t i = 0; i < members.size();) {
          std::vector<Member> fewer = members;
          fewer.erase(fewer.begin() + static_cast<std::ptrdiff_t>(i));
          if (single_disagrees(fewer, event_json)) {
            members = std::move(fewer);
            again = true;
          } else {
            ++i;
          }
        }
      }
      GenEvent small = event;
      for (auto* list : {&small.members, &small.body}) {
        for (std::size_t i = 0; i < list->size();) {
          GenEvent fewer = small;
          auto& fewer_list = list == &small.members ? fewer.members : fewer.body;
          fewer_list.erase(fewer_list.begin() + static_cast<std::ptrdiff_t>(i));
          if (single_disagrees(members, fewer.json())) small = std::move(fewer);
          else ++i;
        }
      }
      const std::string small_json = small.json();
      testing::JsonEvent ev;
      reference::Reference ref;
      const bool want_one = ref.binding_matches(model(members), ev(small_json));
      return "minimal: binding " + binding_json(members) + "\n         event   " + small_json +
             "\n         reference says " + (want_one ? "match" : "no match") + ", compiled says " +
             (want_one ? "no match" : "match");
    }
    return "backend " + backend.name + ": no single binding disagrees alone (an interaction between bindings)";
  }
  return "(no backend differs?)";
}

// --- the test ------------------------------------------------------------------

struct RunResult {
  int reports = 0;
};

void run_config(std::uint64_t seed, Stats& stats, RunResult& result, MatchScratch& scratch,
                reference::Reference& ref, testing::JsonEvent& ev) {
  Rng rng(seed);
  Generator gen(rng, stats);
  const std::vector<GenBackend> backends = gen.backends();
  const std::string config = config_json(backends);

  std::vector<BackendSpec> specs;
  try {
    specs = testing::backends_from_json(config);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "seed " << seed << ": the config parser refused a valid config:\n" << e.what() << "\nconfig: " << config;
    ++result.reports;
    return;
  }
  std::vector<reference::Backend> model_backends;
  for (const auto& b : backends) {
    reference::Backend rb{b.name, b.enabled, {}};
    for (const auto& binding : b.bindings) rb.bindings.push_back(model(binding.members));
    model_backends.push_back(std::move(rb));
  }
  const auto compiled = Matcher::compile(specs);
  // The same config with every topic DFA off (leaves keep the backtracking
  // walk) and the any-account read from its results table (the first
  // compile reads it as a slot unless it is heavy).
  const auto walked = Matcher::compile(specs, CompileOptions{.max_topic_states = 0, .any_results_always = true});
  std::vector<testing::OwnedEvent> kept;  // for match_batch over the config's events
  std::vector<std::vector<std::string>> kept_want;
  kept.reserve(kEventsPerConfig);
  if (compiled->backend_count() != backends.size()) {
    ADD_FAILURE() << "seed " << seed << ": backend_count " << compiled->backend_count() << ", config has "
                  << backends.size() << "\nconfig: " << config;
    ++result.reports;
    return;
  }

  for (int k = 0; k < kEventsPerConfig; ++k) {
    const GenEvent event = gen.event();
    const std::string event_json = event.json();
    const event::EventView* view = nullptr;
    try {
      view = &ev(event_json);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "seed " << seed << " event " << k << ": the event parser refused " << event_json << ": "
                    << e.what();
      ++result.reports;
      return;
    }
    const std::vector<std::string> want = ref.match(model_backends, *view);
    if (ref.body_failed()) {
      ADD_FAILURE() << "seed " << seed << " event " << k << ": the DOM parser refused the body of " << event_json;
      ++result.reports;
      return;
    }
    std::vector<std::string> got = compiled_names(*compiled, *view, scratch);
    if (got == want) {
      const std::vector<std::string> got_walk = compiled_names(*walked, *view, scratch);
      if (got_walk != want) {
        ADD_FAILURE() << "mismatch with topic DFAs off: seed " << seed << " (RINGROUTE_DIFF_SEED=" << seed
                      << "), event " << k << "\nconfig: " << config << "\nevent: " << event_json
                      << "\nexpected (reference): " << join(want) << "\ngot (walk):           " << join(got_walk);
        ++result.reports;
        return;
      }
    }
    kept.emplace_back(event_json);
    kept_want.push_back(want);
    ++stats.pairs;
    if (!want.empty()) ++stats.pairs_matching;
    stats.backend_hits += static_cast<long>(want.size());
    if (want != got) {
      ++result.reports;
      const std::string minimal = shrink(backends, want, got, event);
      ADD_FAILURE() << "mismatch: seed " << seed << " (RINGROUTE_DIFF_SEED=" << seed << "), event " << k
                    << "\nconfig: " << config << "\nevent: " << event_json << "\nexpected (reference): "
                    << join(want) << "\ngot (compiled):       " << join(got) << "\n"
                    << minimal;
      if (result.reports >= kMaxReports) return;
      return;  // one report per config is enough
    }
  }
  // The router's way: all of the config's events through one match_batch
  // (groups of MatchScratch::kGroup, the last one partial).
  std::vector<event::EventView> views;
  for (const auto& e : kept) views.push_back(e.view);
  std::vector<BackendSet> outs(views.size());
  for (auto& out : outs) out.resize(compiled->backend_count());
  compiled->match_batch(views, scratch, outs.data());
  for (std::size_t k = 0; k < views.size(); ++k) {
    std::vector<std::string> got;
    outs[k].for_each([&](std::uint32_t i) { got.push_back(compiled->backend_name(i)); });
    if (got != kept_want[k]) {
      ADD_FAILURE() << "match_batch disagrees: seed " << seed << " (RINGROUTE_DIFF_SEED=" << seed << "), event " << k
                    << "\nconfig: " << config << "\nexpected (reference): " << join(kept_want[k])
                    << "\ngot (match_batch):    " << join(got);
      ++result.reports;
      return;
    }
  }
}

TEST(MatcherDifferential, CompiledAgreesWithReference) {
  Stats stats;
  RunResult result;
  MatchScratch scratch;  // one per thread, as the router keeps it across generations
  reference::Reference ref;
  testing::JsonEvent ev;
  const auto start = std::chrono::steady_clock::now();
  if (const char* one = std::getenv("RINGROUTE_DIFF_SEED")) {
    const std::uint64_t seed = std::strtoull(one, nullptr, 0);
    std::printf("running only seed %llu\n", static_cast<unsigned long long>(seed));
    run_config(seed, stats, result, scratch, ref, ev);
    return;
  }
  const char* configs_env = std::getenv("RINGROUTE_DIFF_CONFIGS");
  const char* base_env = std::getenv("RINGROUTE_DIFF_BASE");
  const std::uint64_t configs = configs_env != nullptr ? std::strtoull(configs_env, nullptr, 0) : kConfigs;
  const std::uint64_t base = base_env != nullptr ? std::strtoull(base_env, nullptr, 0) : kBaseSeed;
  for (std::uint64_t i = 0; i < configs && result.reports < kMaxReports; ++i) {
    run_config(base + i, stats, result, scratch, ref, ev);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "seeds %llu..%llu: %ld config-event pairs, %ld with a match (%ld backend hits); %ld filters generated, "
      "%ld refused by the parser; %.2f s\n",
      static_cast<unsigned long long>(base), static_cast<unsigned long long>(base + configs - 1), stats.pairs,
      stats.pairs_matching, stats.backend_hits, stats.filters, stats.filter_rejects, seconds);
  if (result.reports == 0) {
    EXPECT_GE(stats.pairs, static_cast<long>(std::min<std::uint64_t>(configs, kConfigs)) * kEventsPerConfig);
    // A generator that rarely or always matches decides few rules both ways.
    EXPECT_GT(stats.pairs_matching, stats.pairs / 10);
    EXPECT_LT(stats.pairs_matching, stats.pairs * 9 / 10);
    // Only a few generated filters are config errors (`severity = "loud"`,
    // `~ 5`): a parser that began refusing a kind of valid text would drop
    // those filters from the test unseen, so refusals are bounded.
    EXPECT_LT(stats.filter_rejects * 10, stats.filters) << stats.filter_rejects << " of " << stats.filters;
  }
}

// The reference's own rules, checked on the examples SEMANTICS.md gives, so a
// mismatch is not blamed on the compiled matcher for the reference's error.
TEST(MatcherDifferential, ReferenceTopicExamples) {
  using reference::topic_matches;
  EXPECT_TRUE(topic_matches("#", ""));
  EXPECT_TRUE(topic_matches("a.#", "a"));
  EXPECT_TRUE(topic_matches("a.#", "a.b.c"));
  EXPECT_TRUE(topic_matches("#.a", "a"));
  EXPECT_FALSE(topic_matches("a.*", "a"));
  EXPECT_FALSE(topic_matches("*.*", "a"));
  EXPECT_TRUE(topic_matches("", ""));
  EXPECT_FALSE(topic_matches("", "a"));
  EXPECT_TRUE(topic_matches("a..b", "a..b"));
  EXPECT_TRUE(topic_matches("a.*.b", "a..b"));
  EXPECT_TRUE(topic_matches("#.#", "x.y"));
  EXPECT_FALSE(topic_matches("*", ""));
  EXPECT_FALSE(topic_matches("*", "."));  // "." is two empty words
  EXPECT_TRUE(topic_matches("*.*", "."));
}

TEST(MatcherDifferential, ReferenceKazooExamples) {
  auto ref_match = [](std::string_view binding, std::string_view event_json) {
    auto specs = testing::backends_from_json("[{\"name\":\"x\",\"bindings\":[" + std::string(binding) + "]}]");
    auto backends = reference::from_specs(specs);
    testing::JsonEvent ev;
    reference::Reference ref;
    return !ref.match(backends, ev(event_json)).empty();
  };
  EXPECT_FALSE(ref_match("{}", R"j({"verbosity":"debug"})j"));
  EXPECT_TRUE(ref_match("{}", R"j({"verbosity":"fatal","severity":"critical"})j"));
  EXPECT_TRUE(ref_match(R"j({"severity":"warning"})j", R"j({"severity":"critical"})j"));
  EXPECT_FALSE(ref_match(R"j({"severity":"warning","exact_severity":true})j", R"j({"severity":"critical"})j"));
  EXPECT_FALSE(ref_match(R"j({"verbosity":"debug"})j", R"j({"verbosity":"trace"})j"));
  EXPECT_TRUE(ref_match(R"j({"verbosity":"debug"})j", R"j({"verbosity":"warn"})j"));
  EXPECT_FALSE(ref_match(R"j({"severity":[]})j", R"j({})j"));
  EXPECT_TRUE(ref_match(R"j({"account_id":"p","include_descendants":true})j", R"j({"account_id":"p"})j"));
  EXPECT_TRUE(ref_match(R"j({"account_id":"p","include_descendants":true})j", R"j({"account_tree":["p"]})j"));
  EXPECT_FALSE(ref_match(R"j({"account_id":"p"})j", R"j({"account_id":"c","account_tree":["p"]})j"));
  EXPECT_TRUE(ref_match(R"j({"account_id":["q","*"]})j", R"j({})j"));
  EXPECT_FALSE(ref_match(R"j({"app_name":"cf"})j", R"j({})j"));
  EXPECT_TRUE(ref_match(R"j({"topic":"edr.ok.info.undefined.undefined"})j", R"j({})j"));
  EXPECT_TRUE(ref_match(R"j({"filter":"severity>=\"warning\" && n != 5"})j", R"j({"severity":"warning"})j"));
  EXPECT_FALSE(ref_match(R"j({"filter":"n = \"5\""})j", R"j({"body":{"n":5}})j"));
  EXPECT_TRUE(ref_match(R"j({"filter":"n = 5.0 && n = 5 && n < 5.5"})j", R"j({"body":{"n":5}})j"));
  EXPECT_TRUE(ref_match(R"j({"filter":"a.b = 1"})j", R"j({"body":{"a":{"b":1},"a":{"b":2}}})j"));
  EXPECT_FALSE(ref_match(R"j({"filter":"a.b = 1"})j", R"j({"body":{"a":[{"b":1}]}})j"));
  EXPECT_TRUE(ref_match(R"j({"filter":"x = 18446744073709551615 && x > 9223372036854775807"})j",
                        R"j({"body":{"x":18446744073709551615}})j"));
  EXPECT_TRUE(ref_match(R"j({"filter":"body != 1 && !(body = 1)"})j", R"j({})j"));
  EXPECT_TRUE(ref_match(R"j({"filter":"severity ~ 'warn'"})j", R"j({"severity":"warning"})j"));
}

}  // namespace
}  // namespace ringroute::matcher

namespace ringroute::matcher {
namespace {

// The differential test's first find, kept as a small case: a body double
// written with 19 or more integer digits and a fraction
// (9223372036854775808.0) must compare as that double (SEMANTICS.md 5,
// "others as doubles"). simdjson 3.0.1's on-demand get_number() yields 0.0
// for such numbers; the DOM parser and get_double() read them right.
TEST(MatcherDifferential, BodyDoubleWithManyIntegerDigits) {
  const auto specs = testing::backends_from_json(R"j([
    {"name": "gt1", "bindings": [{"filter": "n > 1"}]},
    {"name": "eq0", "bindings": [{"filter": "n = 0"}]},
    {"name": "ge2p63", "bindings": [{"filter": "n >= 9223372036854775808"}]}])j");
  const auto compiled = Matcher::compile(specs);
  const auto backends = reference::from_specs(specs);
  reference::Reference ref;
  MatchScratch scratch;
  testing::JsonEvent ev;
  for (const char* event : {R"j({"body":{"n":9223372036854775808.0}})j", R"j({"body":{"n":1234567890123456789.5}})j",
                            R"j({"body":{"n":9223372036854775808e0}})j", R"j({"body":{"n":9007199254740992.0}})j"}) {
    const event::EventView& view = ev(event);
    EXPECT_EQ(compiled_names(*compiled, view, scratch), ref.match(backends, view)) << "event " << event;
  }
}

}  // namespace
}  // namespace ringroute::matcher
