#pragma once
// The reference matcher: SEMANTICS.md sections 2-5 as a plain loop over
// backends and bindings, written from the text and nothing else, so the
// differential test compares two independent readings of the rules. It shares
// no code with the compiled matcher: its own level order (from the names), its
// own topic splitting and word matcher, its own filter evaluator over
// filter::parse's tree (the only shared piece), reading the body with
// simdjson's DOM parser where the compiled matcher uses on-demand. Slow and
// obvious on purpose.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <re2/re2.h>
#include <simdjson.h>

#include "ringroute/event/event.hpp"
#include "ringroute/matcher/config.hpp"
#include "ringroute/matcher/filter.hpp"

namespace ringroute::matcher::reference {

// 128 bits hold every int64 and uint64, so integers compare exactly.
__extension__ using Int128 = __int128;

// A binding as plain data, levels kept as the names the config wrote, so the
// reference ranks them itself. The differential test fills these from its own
// generator (which also checks the config parser); from_spec() reads a parsed
// BindingSpec for other uses.
struct Binding {
  std::vector<std::string> accounts{"*"};
  bool include_descendants = false;
  std::vector<std::string> apps{"*"};
  std::vector<std::string> severity{"ok"};
  bool severity_is_array = false;
  bool exact_severity = false;
  std::vector<std::string> verbosity{"info"};
  bool verbosity_is_array = false;
  bool exact_verbosity = false;
  std::optional<std::string> topic;
  std::shared_ptr<const filter::Expression> filter;
};

struct Backend {
  std::string name;
  bool enabled = true;
  std::vector<Binding> bindings;
};

// Level names in the order SEMANTICS.md 1 lists them; the rank is the
// position. Spelled out here rather than taken from event.hpp's tables, which
// the compiled matcher may use.
inline int severity_rank(std::string_view name) {
  static constexpr std::string_view kOrder[] = {"ok", "warning", "critical"};
  for (int i = 0; i < 3; ++i) {
    if (kOrder[i] == name) return i;
  }
  return -1;
}
inline int verbosity_rank(std::string_view name) {
  static constexpr std::string_view kOrder[] = {"trace", "debug", "info", "warn", "error", "fatal"};
  for (int i = 0; i < 6; ++i) {
    if (kOrder[i] == name) return i;
  }
  return -1;
}
// The enum only carries the level across the record; its numeric value is not
// trusted for ordering, only mapped back to the name.
inline std::string_view level_name(event::Severity s) {
  switch (s) {
    case event::Severity::ok: return "ok";
    case event::Severity::warning: return "warning";
    case event::Severity::critical: return "critical";
  }
  return "?";
}
inline std::string_view level_name(event::Verbosity v) {
  switch (v) {
    case event::Verbosity::trace: return "trace";
    case event::Verbosity::debug: return "debug";
    case event::Verbosity::info: return "info";
    case event::Verbosity::warn: return "warn";
    case event::Verbosity::error: return "error";
    case event::Verbosity::fatal: return "fatal";
  }
  return "?";
}

inline Binding from_spec(const BindingSpec& spec) {
  Binding b;
  b.accounts = spec.accounts;
  b.include_descendants = spec.include_descendants;
  b.apps = spec.apps;
  b.severity.clear();
  for (auto s : spec.severity.levels) b.severity.emplace_back(level_name(s));
  b.severity_is_array = spec.severity.is_array;
  b.exact_severity = spec.severity.exact;
  b.verbosity.clear();
  for (auto v : spec.verbosity.levels) b.verbosity.emplace_back(level_name(v));
  b.verbosity_is_array = spec.verbosity.is_array;
  b.exact_verbosity = spec.verbosity.exact;
  b.topic = spec.topic;
  b.filter = spec.filter;
  return b;
}

inline std::vector<Backend> from_specs(std::span<const BackendSpec> specs) {
  std::vector<Backend> out;
  for (const auto& spec : specs) {
    Backend b{spec.name, spec.enabled, {}};
    for (const auto& binding : spec.bindings) b.bindings.push_back(from_spec(binding));
    out.push_back(std::move(b));
  }
  return out;
}

// Splits on '.': "" has no words, "a..b" three (SEMANTICS.md 4).
inline std::vector<std::string> split_words(std::string_view text) {
  std::vector<std::string> words;
  if (text.empty()) return words;
  std::string word;
  for (char c : text) {
    if (c == '.') {
      words.push_back(word);
      word.clear();
    } else {
      word += c;
    }
  }
  words.push_back(word);
  return words;
}

// RabbitMQ topic matching as a DP table: can[i][j] says whether pattern
// words i.. match topic words j.. ; filled from the back.
inline bool topic_matches(std::string_view pattern_text, std::string_view topic_text) {
  const std::vector<std::string> p = split_words(pattern_text);
  const std::vector<std::string> t = split_words(topic_text);
  const std::size_t np = p.size(), nt = t.size();
  std::vector<std::vector<char>> can(np + 1, std::vector<char>(nt + 1, 0));
  can[np][nt] = 1;
  for (std::size_t i = np; i-- > 0;) {
    for (std::size_t j = nt + 1; j-- > 0;) {
      bool ok = false;
      if (p[i] == "#") {
        ok = can[i + 1][j] || (j < nt && can[i][j + 1]);
      } else if (p[i] == "*") {
        ok = j < nt && can[i + 1][j + 1];
      } else {
        ok = j < nt && p[i] == t[j] && can[i + 1][j + 1];
      }
      can[i][j] = ok ? 1 : 0;
    }
  }
  return can[0][0] != 0;
}

class Reference {
 public:
  // The names of the matching backends, in config order.
  std::vector<std::string> match(std::span<const Backend> backends, const event::EventView& event) {
    event_ = &event;
    body_state_ = 0;
    std::vector<std::string> out;
    for (const Backend& backend : backends) {
      if (!backend.enabled) continue;
      for (const Binding& binding : backend.bindings) {
        if (binding_matches(binding)) {
          out.push_back(backend.name);
          break;
        }
      }
    }
    return out;
  }

  // Whether one binding matches `event` (for shrinking a mismatch).
  bool binding_matches(const Binding& binding, const event::EventView& event) {
    event_ = &event;
    body_state_ = 0;
    return binding_matches(binding);
  }

  // True when the last event's body did not parse as a JSON object with the
  // DOM parser (the test treats that as its own failure).
  [[nodiscard]] bool body_failed() const { return body_state_ < 0; }

  [[nodiscard]] std::string derived_topic(const event::EventView& e) const {
    std::string t = "edr.";
    t += level_name(e.severity);
    t += '.';
    t += level_name(e.verbosity);
    t += '.';
    t += e.has(event::StringField::account_id) ? std::string(e.get(event::StringField::account_id))
                                               : std::string("undefined");
    t += '.';
    t += e.has(event::StringField::app_name) ? std::string(e.get(event::StringField::app_name))
                                             : std::string("undefined");
    return t;
  }

  [[nodiscard]] std::string event_topic(const event::EventView& e) const {
    if (e.has(event::StringField::topic)) return std::string(e.get(event::StringField::topic));
    return derived_topic(e);
  }

 private:
  static bool contains(const std::vector<std::string>& list, std::string_view value) {
    for (const auto& item : list) {
      if (item == value) return true;
    }
    return false;
  }

  bool binding_matches(const Binding& b) {
    const event::EventView& e = *event_;
    // severity: array = membership (exact plays no part); one level = equal or
    // more severe unless exact.
    const std::string_view sev = level_name(e.severity);
    if (b.severity_is_array) {
      if (!contains(b.severity, sev)) return false;
    } else {
      const int want = severity_rank(b.severity.at(0));
      const int got = severity_rank(sev);
      if (b.exact_severity ? got != want : got < want) return false;
    }
    // verbosity: one level = that level or less verbose (later in the list).
    const std::string_view verb = level_name(e.verbosity);
    if (b.verbosity_is_array) {
      if (!contains(b.verbosity, verb)) return false;
    } else {
      const int want = verbosity_rank(b.verbosity.at(0));
      const int got = verbosity_rank(verb);
      if (b.exact_verbosity ? got != want : got < want) return false;
    }
    // account: "*" anywhere matches all; else the id itself, or with
    // include_descendants an id among the event's ancestors.
    if (!contains(b.accounts, "*")) {
      bool ok = e.has(event::StringField::account_id) &&
                contains(b.accounts, e.get(event::StringField::account_id));
      if (!ok && b.include_descendants) {
        for (std::string_view ancestor : e.account_tree) {
          if (contains(b.accounts, ancestor)) {
            ok = true;
            break;
          }
        }
      }
      if (!ok) return false;
    }
    if (!contains(b.apps, "*")) {
      if (!e.has(event::StringField::app_name) || !contains(b.apps, e.get(event::StringField::app_name))) {
        return false;
      }
    }
    if (b.topic && !topic_matches(*b.topic, event_topic(e))) return false;
    if (b.filter && !eval(*b.filter, b.filter->root())) return false;
    return true;
  }

  // --- filters -----------------------------------------------------------

  // What a comparison's left side found.
  struct Value {
    enum class Kind { absent, string, level, int64, uint64, floating, boolean, null, composite };
    Kind kind = Kind::absent;
    std::string text;  // string; level: its name
    int rank = 0;      // level
    std::int64_t i = 0;
    std::uint64_t u = 0;
    double d = 0;
    bool b = false;
  };

  bool eval(const filter::Expression& expr, std::uint32_t index) {
    const filter::Node& node = expr.nodes.at(index);
    switch (node.kind) {
      case filter::Node::Kind::all_of: return eval(expr, node.left) && eval(expr, node.right);
      case filter::Node::Kind::any_of: return eval(expr, node.left) || eval(expr, node.right);
      case filter::Node::Kind::negate: return !eval(expr, node.left);
      case filter::Node::Kind::compare: return compare(expr.comparisons.at(node.left));
    }
    return false;
  }

  static Value string_value(std::string_view s) {
    Value v;
    v.kind = Value::Kind::string;
    v.text = std::string(s);
    return v;
  }

  Value read(const filter::Comparison& c) {
    const event::EventView& e = *event_;
    Value v;
    switch (c.field) {
      case filter::Field::severity:
        v.kind = Value::Kind::level;
        v.text = std::string(level_name(e.severity));
        v.rank = severity_rank(v.text);
        return v;
      case filter::Field::verbosity:
        v.kind = Value::Kind::level;
        v.text = std::string(level_name(e.verbosity));
        v.rank = verbosity_rank(v.text);
        return v;
      case filter::Field::topic: return string_value(event_topic(e));
      case filter::Field::string_field:
        if (c.string_field == event::StringField::topic) return string_value(event_topic(e));
        if (!e.has(c.string_field)) return v;
        return string_value(e.get(c.string_field));
      case filter::Field::body: return read_body(c.path);
    }
    return v;
  }

  Value read_body(const std::vector<std::string>& path) {
    Value v;
    if (body_state_ == 0) {
      std::string_view raw = event_->body.empty() ? std::string_view("{}") : event_->body;
      body_text_ = simdjson::padded_string(raw);
      simdjson::dom::element root;
      if (parser_.parse(body_text_).get(root) != simdjson::SUCCESS || !root.is_object()) {
        body_state_ = -1;
      } else {
        body_ = root;
        body_state_ = 1;
      }
    }
    if (body_state_ < 0) return v;
    simdjson::dom::element at = body_;
    for (const std::string& segment : path) {
      if (!at.is_object()) return v;  // an array or scalar before the end: nothing
      bool found = false;
      // The first of duplicate keys counts: walk in order, stop at the first.
      // A named object, not the temporary result: the loop must not outlive it.
      const simdjson::dom::object object = at.get_object().value_unsafe();
      for (auto field : object) {
        if (field.key == segment) {
          at = field.value;
          found = true;
          break;
        }
      }
      if (!found) return v;
    }
    switch (at.type()) {
      case simdjson::dom::element_type::STRING: return string_value(at.get_string().value_unsafe());
      case simdjson::dom::element_type::INT64:
        v.kind = Value::Kind::int64;
        v.i = at.get_int64().value_unsafe();
        return v;
      case simdjson::dom::element_type::UINT64:
        v.kind = Value::Kind::uint64;
        v.u = at.get_uint64().value_unsafe();
        return v;
      case simdjson::dom::element_type::DOUBLE:
        v.kind = Value::Kind::floating;
        v.d = at.get_double().value_unsafe();
        return v;
      case simdjson::dom::element_type::BOOL:
        v.kind = Value::Kind::boolean;
        v.b = at.get_bool().value_unsafe();
        return v;
      case simdjson::dom::element_type::NULL_VALUE: v.kind = Value::Kind::null; return v;
      case simdjson::dom::element_type::ARRAY:
      case simdjson::dom::element_type::OBJECT: v.kind = Value::Kind::composite; return v;
    }
    return v;
  }

  // Byte-wise lexicographic, bytes as unsigned.
  static int compare_bytes(std::string_view a, std::string_view b) {
    const std::size_t n = a.size() < b.size() ? a.size() : b.size();
    for (std::size_t i = 0; i < n; ++i) {
      const auto x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
      if (x != y) return x < y ? -1 : 1;
    }
    if (a.size() == b.size()) return 0;
    return a.size() < b.size() ? -1 : 1;
  }

  template <class T>
  static int three_way(T a, T b) {
    return a < b ? -1 : (b < a ? 1 : 0);
  }

  // -1/0/1, or nullopt where the types don't compare (then `=` is false,
  // `!=` true and orderings false).
  static std::optional<int> order(const Value& v, const filter::Literal& lit, const filter::Comparison& c) {
    using K = filter::Literal::Kind;
    switch (v.kind) {
      case Value::Kind::absent:
      case Value::Kind::composite: return std::nullopt;
      case Value::Kind::level: {
        // The literal names a level (the parser refuses anything else).
        const int want = c.field == filter::Field::severity ? severity_rank(lit.text) : verbosity_rank(lit.text);
        if (lit.kind != K::string || want < 0) return std::nullopt;
        return three_way(v.rank, want);
      }
      case Value::Kind::string:
        if (lit.kind != K::string) return std::nullopt;
        return compare_bytes(v.text, lit.text);
      case Value::Kind::boolean:
        if (lit.kind != K::boolean) return std::nullopt;
        return v.b == (lit.text == "true") ? std::optional<int>(0) : std::optional<int>(v.b ? 1 : -1);
      case Value::Kind::null:
        if (lit.kind != K::null) return std::nullopt;
        return 0;
      case Value::Kind::int64:
      case Value::Kind::uint64:
      case Value::Kind::floating: break;
    }
    // Numbers: both integers compare exactly (as 128-bit), else as doubles.
    // Whether the literal is an integer is read from its text (written
    // without '.', 'e' or 'E'), not from the parser's kind, so an integer
    // past 64 bits is one too.
    const bool lit_num = lit.kind == K::integer || lit.kind == K::unsigned_integer || lit.kind == K::floating;
    const bool lit_int = lit_num && lit.text.find_first_of(".eE") == std::string::npos;
    if (!lit_num) return std::nullopt;
    if (v.kind != Value::Kind::floating && lit_int) {
      const Int128 a = v.kind == Value::Kind::int64 ? Int128{v.i} : Int128{v.u};
      // Read the literal's text ourselves rather than trust its parsed fields.
      // Past 10^30 it stops growing: still beyond every 64-bit value, which
      // is all the order needs, where 39 digits overflowed 128 bits.
      constexpr Int128 kBeyond64Bits = Int128{1'000'000'000'000'000} * 1'000'000'000'000'000;
      Int128 b = 0;
      bool negative = false;
      for (char ch : lit.text) {
        if (ch == '-') negative = true;
        else if (b < kBeyond64Bits) b = b * 10 + (ch - '0');
      }
      if (negative) b = -b;
      return three_way(a, b);
    }
    double a = 0;
    if (v.kind == Value::Kind::int64) a = static_cast<double>(v.i);
    else if (v.kind == Value::Kind::uint64) a = static_cast<double>(v.u);
    else a = v.d;
    const double b = std::strtod(lit.text.c_str(), nullptr);
    return three_way(a, b);
  }

  bool compare(const filter::Comparison& c) {
    const Value v = read(c);
    if (c.op == filter::Op::regex) {
      if (v.kind != Value::Kind::string && v.kind != Value::Kind::level) return false;
      return RE2::PartialMatch(v.text, regex(c.literal.text));
    }
    const std::optional<int> o = order(v, c.literal, c);
    switch (c.op) {
      case filter::Op::eq: return o && *o == 0;
      case filter::Op::ne: return !(o && *o == 0);
      case filter::Op::lt: return o && *o < 0;
      case filter::Op::le: return o && *o <= 0;
      case filter::Op::gt: return o && *o > 0;
      case filter::Op::ge: return o && *o >= 0;
      case filter::Op::regex: break;
    }
    return false;
  }

  const RE2& regex(const std::string& pattern) {
    auto it = regexes_.find(pattern);
    if (it == regexes_.end()) {
      RE2::Options options;
      options.set_log_errors(false);
      it = regexes_.emplace(pattern, std::make_unique<RE2>(pattern, options)).first;
    }
    return *it->second;
  }

  const event::EventView* event_ = nullptr;
  simdjson::dom::parser parser_;
  simdjson::padded_string body_text_;
  simdjson::dom::element body_;
  int body_state_ = 0;  // 0 not parsed for this event, 1 parsed, -1 not an object
  std::map<std::string, std::unique_ptr<RE2>, std::less<>> regexes_;
};

}  // namespace ringroute::matcher::reference
