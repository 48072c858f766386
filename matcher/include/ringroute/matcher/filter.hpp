#pragma once
// Filter expressions (SEMANTICS.md section 5): the parser and the tree it
// builds. Evaluation lives with the compiled matcher; the differential test
// has its own evaluator over the same tree.

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ringroute/event/event.hpp"

namespace ringroute::matcher::filter {

enum class Op : std::uint8_t { eq, ne, lt, le, gt, ge, regex };

// What the left side of a comparison reads.
enum class Field : std::uint8_t {
  body,  // a path inside the body (`path` holds its segments; empty: the body itself)
  severity,
  verbosity,
  topic,
  string_field,  // one of the event's optional strings (`string_field` says which)
};

struct Literal {
  enum class Kind : std::uint8_t { string, integer, unsigned_integer, floating, boolean, null };
  Kind kind = Kind::null;
  std::string text;        // string: unescaped bytes; others: the literal as written
  std::int64_t integer = 0;
  std::uint64_t unsigned_integer = 0;  // only above INT64_MAX
  double floating = 0;     // every number also as a double
  bool boolean = false;
  // An integer too big for 64 bits (kind floating): compared exactly, by
  // its digits in `text`, with other integers.
  bool beyond_64_bits = false;
};

struct Comparison {
  Field field = Field::body;
  event::StringField string_field = event::StringField::id;
  std::vector<std::string> path;  // body segments
  Op op = Op::eq;
  Literal literal;
  std::uint8_t level = 0;  // severity/verbosity literal as a level, for ops other than regex
  std::uint32_t column = 0;  // 1-based column of the comparison, for messages
};

// The tree as a flat array; children precede their parent, root is last.
struct Node {
  enum class Kind : std::uint8_t { all_of, any_of, negate, compare };
  Kind kind = Kind::compare;
  std::uint32_t left = 0;   // and/or: left child; not: the child; compare: index into comparisons
  std::uint32_t right = 0;  // and/or: right child
};

struct Expression {
  std::string source;
  std::vector<Node> nodes;
  std::vector<Comparison> comparisons;
  [[nodiscard]] std::uint32_t root() const noexcept {
    return static_cast<std::uint32_t>(nodes.size() - 1);
  }
};

struct ParseError {
  std::uint32_t column = 0;  // 1-based byte column
  std::string message;
  [[nodiscard]] std::string to_string() const {
    return "column " + std::to_string(column) + ": " + message;
  }
};

// Parses and checks `text` (regex patterns included: a pattern RE2 refuses is
// an error at its column).
[[nodiscard]] std::variant<Expression, ParseError> parse(std::string_view text);

[[nodiscard]] std::string_view op_name(Op op) noexcept;

}  // namespace ringroute::matcher::filter
