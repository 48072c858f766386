#include "ringroute/ingest/body_check.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

using ringroute::ingest::check_json_object;
using ringroute::ingest::JsonText;
using ringroute::ingest::kMaxBodyDepth;

TEST(BodyCheck, ObjectsPass) {
  EXPECT_FALSE(check_json_object("{}"));
  EXPECT_FALSE(check_json_object(" {\"a\":[1,{\"b\":null}],\"c\":\"\\u00e9\"} \n"));
}

TEST(BodyCheck, NonObjectsFailAtTheirFirstByte) {
  for (const char* text : {"[]", "1", "\"s\"", "null", "true"}) {
    const auto p = check_json_object(text);
    ASSERT_TRUE(p) << text;
    EXPECT_EQ(p->byte_offset, 0u) << text;
    EXPECT_STREQ(p->reason, "not a JSON object");
  }
}

TEST(BodyCheck, InvalidUtf8IsFoundAtItsByte) {
  const auto p = check_json_object("{\"key\":\"ab\xc3\x28\"}");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->byte_offset, 10u);
}

TEST(BodyCheck, SyntaxErrorsHaveAnOffsetInsideTheText) {
  for (const char* text : {"{", "{\"a\"", "{\"a\":1,}", "{\"a\" 1}", "{\"a\":tru}", "{} {}", "{\"a\":\"x}"}) {
    const auto p = check_json_object(text);
    ASSERT_TRUE(p) << text;
    EXPECT_LE(p->byte_offset, std::string_view(text).size()) << text;
  }
}

// A first byte no JSON value starts with is the fault, at that byte; these
// were said to "end inside the JSON value (unclosed object...)" at the end.
TEST(BodyCheck, ABadFirstByteIsTheFaultNotAnUnfinishedValue) {
  for (const char* text : {"x", "hello world", "  }", "\x01{}"}) {
    const auto p = check_json_object(text);
    ASSERT_TRUE(p) << text;
    EXPECT_EQ(p->byte_offset, std::string_view(text).find_first_not_of(' ')) << text;
    EXPECT_STREQ(p->reason, "expected a JSON value, and no JSON value starts with this byte") << text;
  }
  const auto bom = check_json_object("\xEF\xBB\xBF{}");
  ASSERT_TRUE(bom);
  EXPECT_EQ(bom->byte_offset, 0u);
  EXPECT_STREQ(bom->reason, "a UTF-8 byte order mark, which JSON text does not start with");
  // Still unfinished where something was opened.
  for (const char* text : {"{\"a\":", "[1", "{"}) {
    const auto p = check_json_object(text);
    ASSERT_TRUE(p) << text;
    EXPECT_EQ(p->byte_offset, std::string_view(text).size()) << text;
  }
}

// Nesting past the parser's depth inside an object: the error's location
// was looked for by a walk recursing once per level, without a bound, and a
// 2 MB body overflowed the stack (in a producer's rr_emit, in `validate`).
TEST(BodyCheck, NestingDeeperThanTheParserGoesIsAnErrorNotACrash) {
  constexpr std::size_t kLevels = 1'000'000;
  std::string text = "{\"a\":";
  text.append(kLevels, '[');
  text.append(kLevels, ']');
  text.append("}");
  const auto p = check_json_object(text);
  ASSERT_TRUE(p);
  // The bracket that goes one level past kMaxBodyDepth (the body is 1).
  EXPECT_EQ(p->byte_offset, 5 + kMaxBodyDepth - 1);
  EXPECT_NE(std::string_view(p->reason).find("too deep"), std::string_view::npos) << p->reason;
}

// Too deep at the top, where there is no member to walk into: it was said
// at byte 0 whatever the depth. Brackets inside strings don't count.
TEST(BodyCheck, TooDeepIsSaidAtTheBracketPastTheDepth) {
  std::string text = R"({"s": "[[[{{{", "a": )";
  text.append(kMaxBodyDepth, '[');
  text.append(kMaxBodyDepth, ']');
  text.append("}");
  const auto p = check_json_object(text);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->byte_offset, 21 + kMaxBodyDepth - 1);
  const std::string arrays = std::string(kMaxBodyDepth + 5, '[') + std::string(kMaxBodyDepth + 5, ']');
  const auto top = check_json_object(arrays);
  ASSERT_TRUE(top);
  EXPECT_EQ(top->byte_offset, kMaxBodyDepth);
  // An event line is one level deeper (its body may nest kMaxBodyDepth).
  const auto line = check_json_object(arrays, JsonText::event_line);
  ASSERT_TRUE(line);
  EXPECT_EQ(line->byte_offset, kMaxBodyDepth + 1);
}
