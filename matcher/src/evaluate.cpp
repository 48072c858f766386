// Filter evaluation for the compiled matcher: reads only the fields a filter
// names, the body with simdjson on-demand (no DOM, no allocation after the
// scratch has grown to the largest body seen).

#include <charconv>
#include <cstring>

#include <re2/re2.h>

#include "ringroute/matcher/matcher.hpp"

namespace ringroute::matcher {
namespace {

using event::EventView;
using event::StringField;
using filter::Comparison;
using filter::Literal;
using filter::Op;

// A value read from the event, as a comparison sees it.
struct Value {
  enum class Kind : std::uint8_t { absent, string, integer, unsigned_integer, floating, boolean, null, container };
  Kind kind = Kind::absent;
  std::string_view text;      // a string's bytes, or an integer's digits beyond 64 bits
  std::int64_t integer = 0;
  std::uint64_t unsigned_integer = 0;
  double floating = 0;
  bool boolean = false;
  bool beyond_64_bits = false;  // an integer too big for 64 bits (kind floating; digits in `text`)
};

__extension__ typedef __int128 Int128;  // exact comparison of int64 with uint64

// The order of two integers written in decimal as JSON writes them (a '-'
// or not, no leading zeros), exact whatever their size.
int compare_decimal(std::string_view a, std::string_view b) {
  auto negative = [](std::string_view& digits) {
    const bool minus = digits.starts_with('-');
    if (minus) digits.remove_prefix(1);
    return minus && digits != "0";  // -0 is 0
  };
  const bool a_negative = negative(a), b_negative = negative(b);
  if (a_negative != b_negative) return a_negative ? -1 : 1;
  const int magnitude = a.size() != b.size() ? (a.size() < b.size() ? -1 : 1) : (a < b ? -1 : (a > b ? 1 : 0));
  return a_negative ? -magnitude : magnitude;
}

// -1, 0, 1, or 2 when the two can't be ordered.
int compare_numbers(const Value& v, const Literal& l) {
  const bool value_integral = v.kind != Value::Kind::floating || v.beyond_64_bits;
  const bool literal_integral = l.kind != Literal::Kind::floating || l.beyond_64_bits;
  if (value_integral && literal_integral) {
    if (v.beyond_64_bits || l.beyond_64_bits) [[unlikely]] {
      // SEMANTICS.md 5: integers compare exactly, even past 64 bits (where
      // a double would call 2^64 and 2^64 - 1 equal).
      char digits[24] = {};
      std::string_view value_digits = v.text;
      if (!v.beyond_64_bits) {
        const auto end = v.kind == Value::Kind::integer ? std::to_chars(digits, digits + sizeof digits, v.integer).ptr
                                                        : std::to_chars(digits, digits + sizeof digits, v.unsigned_integer).ptr;
        value_digits = std::string_view(digits, static_cast<std::size_t>(end - digits));
      }
      return compare_decimal(value_digits, l.text);
    }
    const Int128 a = v.kind == Value::Kind::integer ? Int128{v.integer} : Int128{v.unsigned_integer};
    const Int128 b = l.kind == Literal::Kind::integer ? Int128{l.integer} : Int128{l.unsigned_integer};
    return a < b ? -1 : (a > b ? 1 : 0);
  }
  const double a = v.kind == Value::Kind::integer ? static_cast<double>(v.integer)
                   : v.kind == Value::Kind::unsigned_integer ? static_cast<double>(v.unsigned_integer)
                                                             : v.floating;
  const double b = l.floating;
  if (a < b) return -1;
  if (a > b) return 1;
  if (a == b) return 0;
  return 2;
}

bool apply(Op op, int order) {
  switch (op) {
    case Op::eq: return order == 0;
    case Op::ne: return order != 0;
    case Op::lt: return order == -1;
    case Op::le: return order == -1 || order == 0;
    case Op::gt: return order == 1;
    case Op::ge: return order == 1 || order == 0;
    case Op::regex: return false;
  }
  return false;
}

// "=", "~" and the orderings for a value against a literal ("!=" is "not =",
// handled by the caller).
bool compare_value(const Value& value, const Comparison& c, const re2::RE2* regex) {
  if (c.op == Op::regex) {
    return value.kind == Value::Kind::string &&
           RE2::PartialMatch(re2::StringPiece(value.text.data(), value.text.size()), *regex);
  }
  const Literal& l = c.literal;
  switch (value.kind) {
    case Value::Kind::absent:
    case Value::Kind::container: return false;
    case Value::Kind::string: {
      if (l.kind != Literal::Kind::string) return false;
      const int r = value.text.compare(l.text);  // char_traits<char>: bytes as unsigned
      return apply(c.op, r < 0 ? -1 : (r > 0 ? 1 : 0));
    }
    case Value::Kind::integer:
    case Value::Kind::unsigned_integer:
    case Value::Kind::floating: {
      if (l.kind != Literal::Kind::integer && l.kind != Literal::Kind::unsigned_integer &&
          l.kind != Literal::Kind::floating) {
        return false;
      }
      return apply(c.op, compare_numbers(value, l));
    }
    case Value::Kind::boolean:
      return c.op == Op::eq && l.kind == Literal::Kind::boolean && l.boolean == value.boolean;
    case Value::Kind::null: return c.op == Op::eq && l.kind == Literal::Kind::null;
  }
  return false;
}

}  // namespace

// Friend of Matcher and MatchScratch: one evaluation of one filter.
class FilterEvaluator {
 public:
  FilterEvaluator(const Matcher& m, std::uint32_t filter, const EventView& event, MatchScratch& scratch)
      : expression_(*m.filters_[filter]), regexes_(m.filter_regexes_[filter]),
        event_(event), scratch_(scratch) {}

  bool run() { return node(expression_.root()); }

 private:
  bool node(std::uint32_t index) {
    const filter::Node& n = expression_.nodes[index];
    switch (n.kind) {
      case filter::Node::Kind::all_of: return node(n.left) && node(n.right);
      case filter::Node::Kind::any_of: return node(n.left) || node(n.right);
      case filter::Node::Kind::negate: return !node(n.left);
      case filter::Node::Kind::compare: return compare(n.left);
    }
    return false;
  }

  bool compare(std::uint32_t index) {
    const Comparison& c = expression_.comparisons[index];
    const re2::RE2* regex = c.op == Op::regex ? scratch_.regexes_[regexes_[index]].get() : nullptr;
    if (c.field == filter::Field::severity || c.field == filter::Field::verbosity) {
      const std::uint8_t level = c.field == filter::Field::severity
                                     ? static_cast<std::uint8_t>(event_.severity)
                                     : static_cast<std::uint8_t>(event_.verbosity);
      if (c.op == Op::regex) {
        const std::string_view name = c.field == filter::Field::severity ? event::name(event_.severity)
                                                                         : event::name(event_.verbosity);
        return RE2::PartialMatch(re2::StringPiece(name.data(), name.size()), *regex);
      }
      return apply(c.op, level < c.level ? -1 : (level > c.level ? 1 : 0));
    }
    Value value = read(c);
    if (c.op == Op::ne) return !equals(value, c);
    return compare_value(value, c, regex);
  }

  static bool equals(const Value& value, const Comparison& c) {
    const Literal& l = c.literal;
    switch (value.kind) {
      case Value::Kind::absent:
      case Value::Kind::container: return false;
      case Value::Kind::string: return l.kind == Literal::Kind::string && value.text == l.text;
      case Value::Kind::integer:
      case Value::Kind::unsigned_integer:
      case Value::Kind::floating:
        return (l.kind == Literal::Kind::integer || l.kind == Literal::Kind::unsigned_integer ||
                l.kind == Literal::Kind::floating) &&
               compare_numbers(value, l) == 0;
      case Value::Kind::boolean: return l.kind == Literal::Kind::boolean && l.boolean == value.boolean;
      case Value::Kind::null: return l.kind == Literal::Kind::null;
    }
    return false;
  }

  Value read(const Comparison& c) {
    Value v;
    switch (c.field) {
      case filter::Field::string_field:
        if (event_.has(c.string_field)) {
          v.kind = Value::Kind::string;
          v.text = event_.get(c.string_field);
        }
        return v;
      case filter::Field::topic:
        v.kind = Value::Kind::string;
        v.text = topic();
        return v;
      case filter::Field::body: return read_body(c.path);
      default: return v;
    }
  }

  std::string_view topic() {
    if (event_.has(StringField::topic)) return event_.get(StringField::topic);
    if (!scratch_.topic_ready_) {
      std::string& t = scratch_.topic_;
      t.assign("edr.");
      t.append(event::name(event_.severity)).append(".").append(event::name(event_.verbosity)).append(".");
      t.append(event_.has(StringField::account_id) ? event_.get(StringField::account_id) : "undefined");
      t.append(".");
      t.append(event_.has(StringField::app_name) ? event_.get(StringField::app_name) : "undefined");
      scratch_.topic_ready_ = true;
    }
    return scratch_.topic_;
  }

  Value read_body(const std::vector<std::string>& path) {
    Value v;
    if (scratch_.body_state_ == 0) {
      const std::size_t length = event_.body.size();
      if (scratch_.body_.size() < length + simdjson::SIMDJSON_PADDING) {
        scratch_.body_.resize(length + simdjson::SIMDJSON_PADDING);
      }
      std::memcpy(scratch_.body_.data(), event_.body.data(), length);
      auto doc = scratch_.parser_.iterate(scratch_.body_.data(), length, scratch_.body_.size());
      if (doc.error() == simdjson::SUCCESS) {
        scratch_.document_ = std::move(doc).value_unsafe();
        scratch_.body_state_ = 1;
      } else {
        scratch_.body_state_ = -1;
      }
    } else if (scratch_.body_state_ == 1) {
      // A body that is no JSON (a trusted one, which neither the producer
      // library nor the router checks) ends the on-demand iterator at its
      // first fault; rewound, the dead iterator was read through a null
      // parser: the router crashed on the record, and again at each
      // restart. What a read found before the fault counts; once one has
      // met it, the body holds nothing more for this event.
      if (scratch_.document_.is_alive()) {
        scratch_.document_.rewind();
      } else {
        scratch_.body_state_ = -1;
      }
    }
    if (scratch_.body_state_ != 1) return v;
    simdjson::ondemand::object object;
    if (scratch_.document_.get_object().get(object) != simdjson::SUCCESS) return v;
    if (path.empty()) {
      v.kind = Value::Kind::container;  // the body itself equals no literal
      return v;
    }
    simdjson::ondemand::value found;
    for (std::size_t i = 0; i < path.size(); ++i) {
      if (!find_first(object, path[i], found)) return v;
      if (i + 1 < path.size() && found.get_object().get(object) != simdjson::SUCCESS) return v;
    }
    return to_value(found);
  }

  // The first member named `key` (keys compared unescaped, as the reference
  // and any JSON reader sees them).
  static bool find_first(simdjson::ondemand::object& object, std::string_view key,
                         simdjson::ondemand::value& out) {
    for (auto field_result : object) {
      simdjson::ondemand::field field;
      if (std::move(field_result).get(field) != simdjson::SUCCESS) return false;
      std::string_view name;
      if (field.unescaped_key().get(name) != simdjson::SUCCESS) return false;
      const bool same = name == key;
      if (same) {
        out = field.value();
        return true;
      }
    }
    return false;
  }

  static Value to_value(simdjson::ondemand::value& json) {
    Value v;
    simdjson::ondemand::json_type type;
    if (json.type().get(type) != simdjson::SUCCESS) return v;
    switch (type) {
      case simdjson::ondemand::json_type::string:
        if (json.get_string().get(v.text) == simdjson::SUCCESS) v.kind = Value::Kind::string;
        return v;
      case simdjson::ondemand::json_type::number: {
        // Only integers go through get_number(): simdjson 3.0.1's get_number()
        // reads a double with 19 or more integer digits and a fraction
        // (9223372036854775808.0) as 0; get_double() reads it right.
        simdjson::ondemand::number_type kind;
        if (json.get_number_type().get(kind) == simdjson::SUCCESS) {
          if (kind == simdjson::ondemand::number_type::signed_integer &&
              json.get_int64().get(v.integer) == simdjson::SUCCESS) {
            v.kind = Value::Kind::integer;
            return v;
          }
          if (kind == simdjson::ondemand::number_type::unsigned_integer &&
              json.get_uint64().get(v.unsigned_integer) == simdjson::SUCCESS) {
            v.kind = Value::Kind::unsigned_integer;
            return v;
          }
        }
        // Doubles, and integers beyond 64 bits (as JSON readers take them);
        // those keep their digits too, to compare exactly with integers.
        std::string_view token = json.raw_json_token();
        while (!token.empty() && (token.back() == ' ' || token.back() == '\t' || token.back() == '\n' ||
                                  token.back() == '\r')) {
          token.remove_suffix(1);
        }
        if (json.get_double().get(v.floating) == simdjson::SUCCESS) {
          v.kind = Value::Kind::floating;
          if (!token.empty() && token.find_first_of(".eE") == std::string_view::npos) {
            v.beyond_64_bits = true;
            v.text = token;
          }
        }
        return v;
      }
      case simdjson::ondemand::json_type::boolean:
        if (json.get_bool().get(v.boolean) == simdjson::SUCCESS) v.kind = Value::Kind::boolean;
        return v;
      case simdjson::ondemand::json_type::null:
        if (bool is_null = false; json.is_null().get(is_null) == simdjson::SUCCESS && is_null) {
          v.kind = Value::Kind::null;
        }
        return v;
      case simdjson::ondemand::json_type::object:
      case simdjson::ondemand::json_type::array: v.kind = Value::Kind::container; return v;
    }
    return v;
  }

  const filter::Expression& expression_;
  const std::vector<std::uint32_t>& regexes_;
  const EventView& event_;
  MatchScratch& scratch_;
};

bool Matcher::evaluate(std::uint32_t filter, const EventView& event, MatchScratch& scratch) const noexcept {
  if (scratch.regex_generation_ != generation_) {
    // A new generation: this thread's own regex copies (allocates once per generation).
    scratch.regexes_.clear();
    RE2::Options options;
    options.set_log_errors(false);
    for (const std::string& pattern : regex_patterns_) {
      scratch.regexes_.push_back(std::make_unique<re2::RE2>(pattern, options));
    }
    scratch.regex_generation_ = generation_;
  }
  return FilterEvaluator(*this, filter, event, scratch).run();
}

}  // namespace ringroute::matcher
