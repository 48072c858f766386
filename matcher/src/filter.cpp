#include "ringroute/matcher/filter.hpp"

#include "ringroute/event/excerpt.hpp"
#include "ringroute/matcher/config.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>

#include <re2/re2.h>

namespace ringroute::matcher::filter {
namespace {

// Input repeated in a message, bounded as matcher::quoted() bounds it: a
// 1 MB word or literal made a 1 MB error line.
std::string clipped(std::string_view text) {
  return std::string(event::quoted_excerpt(text)) + event::excerpt_tail(text);
}

bool is_segment_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

struct Failure {
  ParseError error;
};

// A field name the left side can take, and what it reads.
struct NamedField {
  std::string_view name;
  Field field;
  event::StringField string_field;
};
constexpr NamedField kNamedFields[] = {
    {"severity", Field::severity, event::StringField::id},
    {"verbosity", Field::verbosity, event::StringField::id},
    {"topic", Field::topic, event::StringField::topic},
    {"account_id", Field::string_field, event::StringField::account_id},
    {"app_name", Field::string_field, event::StringField::app_name},
    {"id", Field::string_field, event::StringField::id},
    {"app_version", Field::string_field, event::StringField::app_version},
    {"node", Field::string_field, event::StringField::node},
    {"stream_name", Field::string_field, event::StringField::stream_name},
    {"event_type", Field::string_field, event::StringField::event_type},
    {"tag", Field::string_field, event::StringField::tag},
};
constexpr std::string_view kReserved[] = {"account_tree", "timestamp", "gregorian_time"};

void append_utf8(std::string& out, std::uint32_t code) {
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else if (code < 0x800) {
    out += static_cast<char>(0xC0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else if (code < 0x10000) {
    out += static_cast<char>(0xE0 | (code >> 12));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code >> 18));
    out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  }
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Expression run() {
    expression_.source = std::string(text_);
    skip_space();
    if (at_end()) fail(pos_, "empty filter");
    parse_or();
    skip_space();
    if (peek() == ')') fail(pos_, "')' without a matching '('");
    if (!at_end()) fail(pos_, "unexpected " + describe(pos_) + "; expected '&&', '||' or the end");
    return std::move(expression_);
  }

 private:
  [[noreturn]] void fail(std::size_t at, std::string message) {
    throw Failure{{static_cast<std::uint32_t>(at + 1), std::move(message)}};
  }
  bool at_end() const { return pos_ >= text_.size(); }
  char peek(std::size_t ahead = 0) const {
    return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0';
  }
  void skip_space() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\r' || peek() == '\n')) ++pos_;
  }
  std::string describe(std::size_t at) const {
    if (at >= text_.size()) return "end of filter";
    const char c = text_[at];
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      char buffer[16];
      std::snprintf(buffer, sizeof buffer, "byte 0x%02x", static_cast<unsigned char>(c));
      return buffer;
    }
    return std::string("'") + c + "'";
  }
  std::uint32_t add(Node node) {
    expression_.nodes.push_back(node);
    return static_cast<std::uint32_t>(expression_.nodes.size() - 1);
  }

  std::uint32_t parse_or() {
    std::uint32_t left = parse_and();
    for (;;) {
      skip_space();
      if (peek() == '|' && peek(1) == '|') {
        pos_ += 2;
        const std::uint32_t right = parse_and();
        left = add({Node::Kind::any_of, left, right});
      } else if (peek() == '|') {
        fail(pos_, "'|' is not an operator; use '||'");
      } else {
        return left;
      }
    }
  }

  std::uint32_t parse_and() {
    std::uint32_t left = parse_unary();
    for (;;) {
      skip_space();
      if (peek() == '&' && peek(1) == '&') {
        pos_ += 2;
        const std::uint32_t right = parse_unary();
        left = add({Node::Kind::all_of, left, right});
      } else if (peek() == '&') {
        fail(pos_, "'&' is not an operator; use '&&'");
      } else {
        return left;
      }
    }
  }

  std::uint32_t parse_unary() {
    skip_space();
    if (peek() != '!' && peek() != '(') return parse_comparison();
    // Bounds the parser's and the evaluators' recursion, whatever the
    // input: each '!' and '(' is a level.
    if (++nesting_ > kMaxNesting) fail(pos_, "nested more than " + std::to_string(kMaxNesting) + " deep");
    struct Unnest {
      int& n;
      ~Unnest() { --n; }
    } unnest{nesting_};
    if (peek() == '!') {
      ++pos_;
      const std::uint32_t child = parse_unary();
      return add({Node::Kind::negate, child, 0});
    }
    const std::size_t open = pos_;  // a '('
    ++pos_;
    const std::uint32_t inner = parse_or();
    skip_space();
    if (peek() != ')') {
      fail(pos_, "expected ')' to close the '(' at column " + std::to_string(open + 1) + ", found " + describe(pos_));
    }
    ++pos_;
    return inner;
  }

  std::uint32_t parse_comparison() {
    skip_space();
    Comparison comparison;
    const std::size_t start = pos_;
    comparison.column = static_cast<std::uint32_t>(start + 1);
    if (peek() == '"' || peek() == '\'') {
      fail(pos_, "a quoted string can't be on the left of a comparison; expected a path");
    }
    std::vector<std::string> segments;
    for (;;) {
      const std::size_t segment_start = pos_;
      while (!at_end() && is_segment_char(peek())) ++pos_;
      if (pos_ == segment_start) {
        if (segments.empty()) fail(pos_, "expected a path, '!' or '(', found " + describe(pos_));
        fail(pos_, "expected a path segment after '.', found " + describe(pos_));
      }
      segments.emplace_back(text_.substr(segment_start, pos_ - segment_start));
      // '.' is a token of its own (SEMANTICS.md's grammar): whitespace
      // around it is free, as between any two tokens.
      const std::size_t segment_end = pos_;
      skip_space();
      if (peek() != '.') {
        pos_ = segment_end;
        break;
      }
      ++pos_;
      skip_space();
    }
    // As messages name it: the segments joined by '.', without the
    // whitespace that may stand around a '.' (a newline would break the
    // error's line).
    std::string path_text;
    for (const std::string& segment : segments) path_text += (path_text.empty() ? "" : ".") + segment;
    resolve_path(std::move(segments), start, comparison);

    skip_space();
    const std::size_t op_at = pos_;
    switch (peek()) {
      case '=':
        if (peek(1) == '=') fail(pos_, "'==' is not an operator; use '='");
        comparison.op = Op::eq, pos_ += 1;
        break;
      case '!':
        if (peek(1) != '=') fail(pos_, "expected an operator after '" + clipped(path_text) + "', found '!'");
        comparison.op = Op::ne, pos_ += 2;
        break;
      case '<':
        if (peek(1) == '=') comparison.op = Op::le, pos_ += 2;
        else comparison.op = Op::lt, pos_ += 1;
        break;
      case '>':
        if (peek(1) == '=') comparison.op = Op::ge, pos_ += 2;
        else comparison.op = Op::gt, pos_ += 1;
        break;
      case '~': comparison.op = Op::regex, pos_ += 1; break;
      default:
        fail(pos_, "expected an operator (=, !=, <, <=, >, >=, ~) after '" + clipped(path_text) +
                       "', found " + describe(pos_));
    }
    const std::string op_text(text_.substr(op_at, pos_ - op_at));
    skip_space();
    const std::size_t literal_at = pos_;
    comparison.literal = parse_literal(op_text);
    check(comparison, op_text, literal_at);
    if (expression_.comparisons.size() == kMaxComparisons) {
      fail(start, "more than " + std::to_string(kMaxComparisons) + " comparisons in one filter");
    }
    expression_.comparisons.push_back(std::move(comparison));
    return add({Node::Kind::compare, static_cast<std::uint32_t>(expression_.comparisons.size() - 1), 0});
  }

  void resolve_path(std::vector<std::string> segments, std::size_t start, Comparison& out) {
    for (std::string_view reserved : kReserved) {
      if (segments[0] == reserved) {
        fail(start, "'" + std::string(reserved) + "' is reserved and can't be filtered on");
      }
    }
    for (const NamedField& named : kNamedFields) {
      if (segments[0] == named.name) {
        if (segments.size() != 1) {
          fail(start, "'" + std::string(named.name) + "' is an event field and has no members");
        }
        out.field = named.field;
        out.string_field = named.string_field;
        return;
      }
    }
    out.field = Field::body;
    if (segments[0] == "body") segments.erase(segments.begin());
    out.path = std::move(segments);
  }

  Literal parse_literal(const std::string& op_text) {
    Literal literal;
    const char c = peek();
    if (c == '"' || c == '\'') {
      literal.kind = Literal::Kind::string;
      literal.text = parse_string(op_text == "~");
      return literal;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
    const std::size_t word_start = pos_;
    while (!at_end() && is_segment_char(peek())) ++pos_;
    const std::string_view word = text_.substr(word_start, pos_ - word_start);
    if (word == "true" || word == "false") {
      literal.kind = Literal::Kind::boolean;
      literal.boolean = word == "true";
      literal.text = std::string(word);
      return literal;
    }
    if (word == "null") {
      literal.kind = Literal::Kind::null;
      literal.text = "null";
      return literal;
    }
    std::string found = word.empty() ? describe(word_start) : "'" + clipped(word) + "'";
    fail(word_start, "expected a literal after '" + op_text +
                         "' (a quoted string, a number, true, false or null), found " + found);
  }

  // `regex`: the string is a `~`'s pattern, whose escapes are the
  // regex's own only once the string's have been undone.
  std::string parse_string(bool regex = false) {
    const char quote = peek();
    const std::size_t open = pos_;
    ++pos_;
    std::string out;
    for (;;) {
      if (at_end()) fail(open, "unterminated string");
      const char c = text_[pos_];
      if (c == quote) {
        ++pos_;
        return out;
      }
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      const std::size_t escape_at = pos_;
      ++pos_;
      if (at_end()) fail(open, "unterminated string");
      const char e = text_[pos_++];
      switch (e) {
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t code = read_hex4(escape_at);
          if (code >= 0xD800 && code <= 0xDBFF) {
            if (peek() != '\\' || peek(1) != 'u') fail(escape_at, "a high surrogate must be followed by a low one");
            const std::size_t low_at = pos_;
            pos_ += 2;
            const std::uint32_t low = read_hex4(low_at);
            if (low < 0xDC00 || low > 0xDFFF) fail(low_at, "expected a low surrogate");
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
          } else if (code >= 0xDC00 && code <= 0xDFFF) {
            fail(escape_at, "a low surrogate without a high one");
          }
          append_utf8(out, code);
          break;
        }
        default:
          fail(escape_at, "unknown escape " + describe(escape_at + 1) +
                              " (known: \\\\ \\' \\\" \\/ \\b \\f \\n \\r \\t \\uXXXX)" +
                              (regex ? "; a regex's backslash is written \\\\ in a filter's string (\\\\\\\\ inside the "
                                       "config's JSON), or a dot as [.]"
                                     : ""));
      }
    }
  }

  std::uint32_t read_hex4(std::size_t escape_at) {
    std::uint32_t code = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = peek();
      std::uint32_t digit;
      if (h >= '0' && h <= '9') digit = static_cast<std::uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f') digit = static_cast<std::uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') digit = static_cast<std::uint32_t>(h - 'A' + 10);
      else fail(escape_at, "\\u needs four hex digits");
      code = code * 16 + digit;
      ++pos_;
    }
    return code;
  }

  Literal parse_number() {
    const std::size_t start = pos_;
    auto digits = [&] {
      const std::size_t from = pos_;
      while (!at_end() && peek() >= '0' && peek() <= '9') ++pos_;
      return pos_ - from;
    };
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
      if (peek() >= '0' && peek() <= '9') fail(start, "a number can't have leading zeros");
    } else if (digits() == 0) {
      fail(start, "expected digits in the number");
    }
    bool integral = true;
    if (peek() == '.') {
      integral = false;
      ++pos_;
      if (digits() == 0) fail(pos_, "expected digits after the decimal point");
    }
    if (peek() == 'e' || peek() == 'E') {
      integral = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (digits() == 0) fail(pos_, "expected digits in the exponent");
    }
    if (is_segment_char(peek()) || peek() == '.') {
      fail(start, "malformed number (JSON number syntax: no leading '+', no leading zeros, no '.5' or '1.')");
    }
    Literal literal;
    const std::string_view text = text_.substr(start, pos_ - start);
    literal.text = std::string(text);
    literal.floating = std::strtod(literal.text.c_str(), nullptr);
    // As a body's number past a double is refused at ingest: taken as
    // infinity, `a < 1e400` would hold for every number.
    if (std::isinf(literal.floating)) fail(start, "a number past what a double holds");
    literal.kind = Literal::Kind::floating;
    if (integral) {
      std::int64_t value = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (ec == std::errc() && end == text.data() + text.size()) {
        literal.kind = Literal::Kind::integer;
        literal.integer = value;
      } else if (text[0] != '-') {
        std::uint64_t big = 0;
        auto [end2, ec2] = std::from_chars(text.data(), text.data() + text.size(), big);
        if (ec2 == std::errc() && end2 == text.data() + text.size()) {
          literal.kind = Literal::Kind::unsigned_integer;
          literal.unsigned_integer = big;
        }
      }
      literal.beyond_64_bits = literal.kind == Literal::Kind::floating;
    }
    return literal;
  }

  void check(Comparison& comparison, const std::string& op_text, std::size_t literal_at) {
    const Literal& literal = comparison.literal;
    const bool ordering = comparison.op == Op::lt || comparison.op == Op::le ||
                          comparison.op == Op::gt || comparison.op == Op::ge;
    if (comparison.op == Op::regex) {
      if (literal.kind != Literal::Kind::string) {
        fail(literal_at, "'~' needs a quoted regular expression, found " + clipped(literal.text));
      }
      RE2::Options options;
      options.set_log_errors(false);
      RE2 compiled(literal.text, options);
      // RE2's message quotes the pattern's bytes as they are: a newline in
      // it would split the error over two lines.
      if (!compiled.ok()) {
        fail(literal_at, "bad regular expression: " + matcher::control_escaped(clipped(compiled.error())));
      }
      return;
    }
    if (ordering && (literal.kind == Literal::Kind::boolean || literal.kind == Literal::Kind::null)) {
      fail(literal_at, "'" + op_text + "' can't order against " + clipped(literal.text) +
                           " (only = and != compare with true, false and null)");
    }
    if (comparison.field == Field::severity || comparison.field == Field::verbosity) {
      const bool is_severity = comparison.field == Field::severity;
      std::optional<std::uint8_t> level;
      if (literal.kind == Literal::Kind::string) {
        if (is_severity) {
          if (auto s = event::parse_severity(literal.text)) level = static_cast<std::uint8_t>(*s);
        } else if (auto v = event::parse_verbosity(literal.text)) {
          level = static_cast<std::uint8_t>(*v);
        }
      }
      if (!level) {
        fail(literal_at, std::string(is_severity ? "severity" : "verbosity") +
                             " compares with a level name (" +
                             (is_severity ? "ok, warning, critical"
                                          : "trace, debug, info, warn, error, fatal") +
                             "), found " + (literal.kind == Literal::Kind::string
                                                ? matcher::quoted(literal.text)  // escaped: an error stays on its line
                                                : clipped(literal.text)));
      }
      comparison.level = *level;
    }
  }

  // Chains of && and || nest one level per operator in the tree, so the
  // comparison count bounds the evaluators' depth as nesting_ bounds ours.
  static constexpr int kMaxNesting = 64;
  static constexpr std::size_t kMaxComparisons = 256;

  std::string_view text_;
  std::size_t pos_ = 0;
  int nesting_ = 0;
  Expression expression_;
};

}  // namespace

std::variant<Expression, ParseError> parse(std::string_view text) {
  try {
    Parser parser(text);
    return parser.run();
  } catch (Failure& failure) {
    return std::move(failure.error);
  }
}

std::string_view op_name(Op op) noexcept {
  switch (op) {
    case Op::eq: return "=";
    case Op::ne: return "!=";
    case Op::lt: return "<";
    case Op::le: return "<=";
    case Op::gt: return ">";
    case Op::ge: return ">=";
    case Op::regex: return "~";
  }
  return "?";
}

}  // namespace ringroute::matcher::filter
