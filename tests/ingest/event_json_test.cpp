// NDJSON event lines, as `emit` and `route` read them (SEMANTICS.md 7).
#include "ringroute/ingest/event_json.hpp"
#include "ringroute/ingest/body_check.hpp"

#include <gtest/gtest.h>

using namespace ringroute;
using ringroute::ingest::EventLineParser;
using ringroute::ingest::ParsedEvent;

namespace {

const std::string kGregorianRange =
    "outside the times an event holds (seconds since year 0 that fall within 64-bit ns since the epoch: "
    "1677-09-21 to 2262-04-11)";

std::string error_of(std::string_view line) {
  EventLineParser parser;
  ParsedEvent e;
  auto why = parser.parse(line, e);
  return why ? *why : "";
}

}  // namespace

TEST(EventLine, AllFieldsInNormalizedNames) {
  EventLineParser parser;
  ParsedEvent e;
  ASSERT_FALSE(parser.parse(R"({"id":"x1","severity":"warning","verbosity":"debug","account_id":"a",
    "account_tree":["r","m"],"app_name":"app","app_version":"1","node":"n","topic":"t.x","stream_name":"s",
    "event_type":"et","tag":"tg","timestamp":1700000000000000001,"body":{"k":[1, 2]}})",
                            e));
  EXPECT_EQ(e.input.severity, event::Severity::warning);
  EXPECT_EQ(e.input.verbosity, event::Verbosity::debug);
  EXPECT_TRUE(e.has_severity && e.has_verbosity && e.has_timestamp && e.has_body && e.has_account_tree);
  EXPECT_EQ(e.input.strings[static_cast<int>(event::StringField::id)], "x1");
  EXPECT_EQ(e.input.strings[static_cast<int>(event::StringField::topic)], "t.x");
  EXPECT_EQ(e.input.strings[static_cast<int>(event::StringField::tag)], "tg");
  EXPECT_EQ(e.input.timestamp_ns, 1700000000000000001);
  EXPECT_EQ(e.input.body, R"({"k":[1, 2]})");
  EXPECT_EQ(e.account_tree, (std::vector<std::string_view>{"r", "m"}));
}

TEST(EventLine, KazooWireNamesAreAccepted) {
  EventLineParser parser;
  ParsedEvent e;
  ASSERT_FALSE(parser.parse(
      R"({"Account-ID":"a","App-Name":"x","Severity":"critical","Timestamp":"2026-11-23T16:55:28.123456Z","Body":{}})",
      e));
  EXPECT_EQ(e.input.strings[static_cast<int>(event::StringField::account_id)], "a");
  EXPECT_EQ(e.input.severity, event::Severity::critical);
  EXPECT_EQ(e.input.timestamp_ns, 1795452928123456000);
}

TEST(EventLine, NullIsAbsent) {
  EventLineParser parser;
  ParsedEvent e;
  ASSERT_FALSE(parser.parse(R"({"account_id":null,"severity":null,"body":null})", e));
  EXPECT_EQ(e.input.present, 0);
  EXPECT_FALSE(e.has_severity);
  EXPECT_FALSE(e.has_body);
}

TEST(EventLine, GregorianTimeGivesTheTimestamp) {
  EventLineParser parser;
  ParsedEvent e;
  ASSERT_FALSE(parser.parse(R"({"gregorian_time":63900000000})", e));
  EXPECT_EQ(e.input.timestamp_ns, (63900000000 - 62167219200) * 1'000'000'000);
}

// An integer past int64 is an out-of-range time, not "not an integer"; and
// given beside a timestamp, a Gregorian time that disagrees with it was
// ignored without a word (the record keeps one time).
TEST(EventLine, AGregorianTimeIsCheckedEvenBesideATimestamp) {
  EXPECT_EQ(error_of(R"({"gregorian_time":10000000000000000000})"), "gregorian_time: " + kGregorianRange);
  EXPECT_EQ(error_of(R"({"gregorian_time":1.5})"), "gregorian_time: expected an integer (seconds since year 0)");
  EXPECT_EQ(error_of(R"({"timestamp":"2026-01-01T00:00:00Z","gregorian_time":-1})"),
            "gregorian_time: " + kGregorianRange);
  EXPECT_EQ(error_of(R"({"timestamp":"2026-01-01T00:00:00.5Z","Gregorian-Time":63934444801})"),
            "Gregorian-Time: 63934444801 is not the timestamp's second (63934444800 since year 0): give one of "
            "them, or both alike");
  EventLineParser parser;
  ParsedEvent e;
  ASSERT_FALSE(parser.parse(R"({"timestamp":"2026-01-01T00:00:00.5Z","gregorian_time":63934444800})", e));
  EXPECT_EQ(e.input.timestamp_ns, 1767225600'500'000'000);
  // Before the epoch the second is floored, as the formatter writes it.
  ASSERT_FALSE(parser.parse(R"({"timestamp":-1,"gregorian_time":62167219199})", e));
  EXPECT_EQ(e.input.timestamp_ns, -1);
}

TEST(EventLine, UnknownLevelNamesTheLevelAndTheChoices) {
  EXPECT_EQ(error_of(R"({"severity":"sever"})"), R"(severity: unknown level "sever" (expected ok, warning, critical))");
  EXPECT_EQ(error_of(R"({"verbosity":"Info"})"),
            R"(verbosity: unknown level "Info" (expected trace, debug, info, warn, error, fatal))");
}

TEST(EventLine, BadLinesNameTheMember) {
  EXPECT_EQ(error_of(R"({"colour":"red"})"), R"(unknown member "colour")");
  // An eventd event (seed 001) as it comes: its payload has another name.
  EXPECT_EQ(error_of(R"({"stream_name":"sessiond","event_type":"session_created","value":{"apn":"x"}})"),
            R"(unknown member "value" (eventd's value: give it as "body", a JSON object))");
  EXPECT_EQ(error_of(R"({"account_id":"a","Account-ID":"b"})"),
            R"(member "account_id" given in both namings ("account_id" and "Account-ID"))");
  EXPECT_EQ(error_of(R"({"tag":"a","tag":"b"})"), R"(member "tag" given twice)");
  EXPECT_EQ(error_of(R"({"account_id":5})"), "account_id: expected a string");
  EXPECT_EQ(error_of(R"({"account_id":""})"), "account_id: empty (leave it out instead)");
  // Quoted in part: a 1 MB value made a 1 MB error line.
  EXPECT_EQ(error_of(R"({"severity":")" + std::string(1'000'000, 'x') + R"("})"),
            "severity: unknown level \"" + std::string(200, 'x') + "\"... (1000000 bytes) (expected ok, warning, critical)");
  // Cut before a UTF-8 sequence, not through it.
  EXPECT_EQ(error_of(R"({"severity":")" + std::string(199, 'x') + "\xC3\xA9" + R"("})"),
            "severity: unknown level \"" + std::string(199, 'x') + "\"... (201 bytes) (expected ok, warning, critical)");
  EXPECT_EQ(error_of(R"({"id":""})"), "id: empty (leave it out instead)");
  EXPECT_EQ(error_of(R"({"node":""})"), "node: empty (leave it out instead)");
  EXPECT_EQ(error_of(R"({"account_tree":["a",1]})"), "account_tree[1]: expected a string");
  EXPECT_EQ(error_of(R"({"body":[1]})"), "body: expected an object");
  EXPECT_EQ(error_of(R"({"timestamp":"yesterday"})"), R"(timestamp: "yesterday" is not an RFC 3339 date-time)");
  // Both forms named, as for any other type (it named the integer alone).
  EXPECT_EQ(error_of(R"({"timestamp":1.5})"),
            "timestamp: expected an integer (ns since the epoch) or an RFC 3339 string, got a number with a fraction "
            "or an exponent");
  EXPECT_EQ(error_of("[1]"), "not a JSON object");
  EXPECT_NE(error_of(R"({"id":)").find("not JSON"), std::string::npos);
  EXPECT_NE(error_of(R"({"id":"a"} x)").find("not JSON"), std::string::npos);
}

// A member in Kazoo's naming is named as the line spells it, its JSON path
// there, as its syntax errors already were ("Body: not JSON ..."); its
// type and value errors gave the other naming.
TEST(EventLine, BadMembersAreNamedAsTheLineSpellsThem) {
  EXPECT_EQ(error_of(R"({"Account-ID":5})"), "Account-ID: expected a string");
  EXPECT_EQ(error_of(R"({"Account-Tree":["a",1]})"), "Account-Tree[1]: expected a string");
  EXPECT_EQ(error_of(R"({"Severity":"sever"})"), R"(Severity: unknown level "sever" (expected ok, warning, critical))");
  EXPECT_EQ(error_of(R"({"Timestamp":"yesterday"})"), R"(Timestamp: "yesterday" is not an RFC 3339 date-time)");
  EXPECT_EQ(error_of(R"({"Gregorian-Time":9223372036854775807})"), "Gregorian-Time: " + kGregorianRange);
  EXPECT_EQ(error_of(R"({"Body":{"a":tru}})").rfind("Body: not JSON: ", 0), 0u);
}

// A timestamp past 64 bits is out of range; the body check's advice for
// such numbers (send it as a string) would not have held: a timestamp's
// strings are dates.
TEST(EventLine, ATimestampPast64BitsIsOutOfRangeNotAStringToSend) {
  EXPECT_EQ(error_of(R"({"timestamp":-9223372036854775809})"),
            "timestamp: byte 13: outside the timestamps an event holds (ns since the epoch in 64 bits)");
  EXPECT_EQ(error_of(R"({"Timestamp":99999999999999999999})"),
            "Timestamp: byte 13: outside the timestamps an event holds (ns since the epoch in 64 bits)");
  // Nor for a Gregorian time, which is only ever a number: it was told to
  // send it as a string, which it then refused.
  EXPECT_EQ(error_of(R"({"gregorian_time":99999999999999999999})"), "gregorian_time: byte 18: " + kGregorianRange);
}

// The member a fault is in is found in one pass: a value that ran to the
// line's end was scanned again from each of its bytes, minutes for a line
// of a few hundred KB (route and emit read lines of any length).
TEST(EventLine, ALongBadLineIsJudgedInOnePass) {
  const std::string line = R"({"a":)" + std::string(200'000, '1') + "\xff" + std::string(200'000, '1');
  EXPECT_EQ(error_of(line).rfind("a: not JSON: byte 200005: ", 0), 0u) << error_of(line).substr(0, 200);
}

// A line holds its body one level down: a body nested as deep as the
// producer library takes one is taken in a line too (it was refused as too
// deep), and one level more is refused in both.
TEST(EventLine, ABodyAsDeepAsTheLibraryTakesIsTakenInALine) {
  auto nested = [](std::size_t levels) {
    std::string body;
    for (std::size_t i = 1; i < levels; ++i) body += "{\"a\":";
    body += "{}";
    body.append(levels - 1, '}');
    return body;
  };
  const std::string deepest = nested(ingest::kMaxBodyDepth);
  ASSERT_FALSE(ingest::check_json_object(deepest));
  EXPECT_EQ(error_of(R"({"id":"x","body":)" + deepest + "}"), "");
  const std::string deeper = nested(ingest::kMaxBodyDepth + 1);
  ASSERT_TRUE(ingest::check_json_object(deeper));
  EXPECT_NE(error_of(R"({"id":"x","body":)" + deeper + "}").find("body: "), std::string::npos)
      << error_of(R"({"id":"x","body":)" + deeper + "}");
}

// A line that is not JSON says at which byte it stops being JSON, what is
// wrong there, and the member it was in; on-demand alone found some of these
// late, without a byte, or as something else (trailing content as "ended
// early", a bad escape as "expected a string").
TEST(EventLine, ALineThatIsNotJsonNamesTheByteAndTheMember) {
  // A missing comma is no member's fault: the member before it, whose
  // value was whole, was named.
  for (const char* line : {R"({"id":"x" "severity":"ok"})", R"({"timestamp":1 "id":"x"})",
                           R"({"body":{"a":1} "id":"x"})", R"({"account_tree":[] "id":"x"})"}) {
    EXPECT_EQ(error_of(line).rfind("not JSON: byte ", 0), 0u) << line << ": " << error_of(line);
  }
  EXPECT_EQ(error_of(R"({"id":"x","timestamp":tru})").rfind("timestamp: not JSON: byte 22: ", 0), 0u)
      << error_of(R"({"id":"x","timestamp":tru})");
  EXPECT_EQ(error_of("{} x"), "not JSON: byte 3: trailing content after the JSON value");
  EXPECT_EQ(error_of(R"({"body":{"a":1}} trailing)"), "not JSON: byte 17: trailing content after the JSON value");
  EXPECT_EQ(error_of(R"({"account_tree":[1})").rfind("account_tree: not JSON: byte 18: ", 0), 0u)
      << error_of(R"({"account_tree":[1})");
  // A string's fault at its own byte: simdjson said a bad escape just past
  // the string, and a control character at the text's end.
  const std::string bad_escape =
      R"(an escape this reader refuses (it takes \" \\ \/ \b \f \n \r \t, or \u and four hex digits, a surrogate with its pair))";
  EXPECT_EQ(error_of(R"({"id":"\ud800"})"), "id: not JSON: byte 7: " + bad_escape);
  EXPECT_EQ(error_of(R"({"id":"a\udc00\ud800"})"), "id: not JSON: byte 8: " + bad_escape);
  EXPECT_EQ(error_of(R"({"id":"\ud800\udc00", "app_name":"\q"})"), "app_name: not JSON: byte 34: " + bad_escape);
  EXPECT_EQ(error_of(R"({"id":"\u12"})"), "id: not JSON: byte 7: " + bad_escape);
  // Nested, the member is still named (the fault inside its string).
  EXPECT_EQ(error_of(R"({"body":{"s":"\q"}})"), "body: not JSON: byte 14: " + bad_escape);
  EXPECT_EQ(error_of(R"({"account_tree":["a\q"]})"), "account_tree: not JSON: byte 19: " + bad_escape);
  // A control character is named as one even after a bad escape (simdjson
  // reports controls first).
  EXPECT_EQ(error_of("{\"id\":\"\\q\",\"app_name\":\"a\tb\"}"),
            R"(app_name: not JSON: byte 24: a control character inside a string (JSON writes it escaped: \n, \t, \u0001))");
  EXPECT_EQ(error_of("{\"app_name\":\"a\tb\",\"severity\":\"ok\"}"),
            R"(app_name: not JSON: byte 14: a control character inside a string (JSON writes it escaped: \n, \t, \u0001))");
  // Even right after a backslash (it was skipped as the escaped character).
  EXPECT_EQ(error_of("{\"id\":\"a\\\x01\",\"severity\":\"ok\"}"),
            R"(id: not JSON: byte 9: a control character inside a string (JSON writes it escaped: \n, \t, \u0001))");
  EXPECT_EQ(error_of(R"({"severity":"ok",})").rfind("not JSON: byte 17: ", 0), 0u) << error_of(R"({"severity":"ok",})");
  // A line that ends inside its JSON is wrong at its end.
  for (const char* line : {R"({"id":"x")", R"({"a":)", "{", R"({"body":[)"}) {
    EXPECT_EQ(error_of(line), "not JSON: byte " + std::to_string(std::string_view(line).size()) +
                                  ": the text ends inside the JSON value (unclosed object, array or string)")
        << line;
  }
  // Cut short after an earlier fault: the fault is named, not the end. A
  // token the end runs into (`tr`, `-`) may be a value cut short, so those
  // lines are still wrong at their end.
  EXPECT_EQ(error_of(R"({"a":tru, "b":)"), "a: not JSON: byte 5: Problem while parsing an atom starting with the letter 't'");
  EXPECT_EQ(error_of(R"({"a":[1,2 "b":)").rfind("a: not JSON: byte 10: ", 0), 0u) << error_of(R"({"a":[1,2 "b":)");
  EXPECT_EQ(error_of(R"({"a":[1,,2)").rfind("a: not JSON: byte 8: ", 0), 0u) << error_of(R"({"a":[1,,2)");
  EXPECT_EQ(error_of(R"({"body":{"k":[1,}, "x":)").rfind("body: not JSON: byte 16: ", 0), 0u);
  for (const char* line : {R"({"a":tr)", R"({"a":-)", R"({"a":[1,)", R"({"a":{"b":)", R"({"a":-1.5e)"}) {
    EXPECT_EQ(error_of(line), "not JSON: byte " + std::to_string(std::string_view(line).size()) +
                                  ": the text ends inside the JSON value (unclosed object, array or string)")
        << line;
  }
  // A token the end runs into that no value or key starts so is the fault,
  // at its first byte: `bad` was said as the text ending at byte 4.
  EXPECT_EQ(error_of(R"({bad)").rfind("not JSON: byte 1: ", 0), 0u) << error_of(R"({bad)");
  EXPECT_EQ(error_of(R"({"a":1,bad)").rfind("not JSON: byte 7: ", 0), 0u) << error_of(R"({"a":1,bad)");
  EXPECT_EQ(error_of(R"({"a":[1,x2)").rfind("a: not JSON: byte 8: ", 0), 0u) << error_of(R"({"a":[1,x2)");
  for (const char* line : {R"({"a":--)", R"({"a":1-)", R"({"a":0123)", R"({"a":1.e)"}) {
    EXPECT_EQ(error_of(line).rfind("a: not JSON: byte 5: ", 0), 0u) << line << ": " << error_of(line);
  }
  // Valid JSON, but past what is read: said as such, not as "not JSON".
  EXPECT_EQ(error_of(R"({"timestamp":99999999999999999999})"),
            "timestamp: byte 13: outside the timestamps an event holds (ns since the epoch in 64 bits)");
  EXPECT_EQ(error_of(R"({"id":"x","body":{"n":-100000000000000000000}})").rfind("body: byte 22: an integer past 64 bits", 0),
            0u);
  EXPECT_EQ(error_of(R"({"body":{"a":1e400}})"), "body: byte 13: a number past what a double holds (about 1.8e308)");
  // Malformed, not too large: a number with a letter after it was said to
  // be an integer past 64 bits, even as the line's first byte.
  EXPECT_EQ(error_of(R"({"body":{"a":1x}})"), "body: not JSON: byte 13: Problem while parsing a number");
  EXPECT_EQ(error_of(R"({"timestamp":7q})"), "timestamp: not JSON: byte 13: Problem while parsing a number");
  EXPECT_EQ(error_of("-31x"), "not JSON: byte 0: Problem while parsing a number");
  EXPECT_EQ(error_of(R"({"body":{"a":12345678901234567890123x}})"),
            "body: not JSON: byte 13: Problem while parsing a number");
}

// A body is taken as its raw text, which simdjson's raw_json() finds by
// balancing brackets only: these passed as events with a body that is not
// JSON. And the seconds of gregorian_time are range-checked before the
// subtraction that would overflow.
TEST(EventLine, ABodyThatIsNotJsonOrATimeOutOfRangeIsABadLine) {
  for (const char* line : {R"({"body":{"a":tru}})", R"({"body":{"a" 1}})", R"({"body":{"a":[1}]}})"}) {
    EXPECT_EQ(error_of(line).rfind("body: not JSON: ", 0), 0u) << line << ": " << error_of(line);
  }
  EXPECT_EQ(error_of(R"({"id":"x","body":{"a":tru}})"),
            "body: not JSON: byte 22: Problem while parsing an atom starting with the letter 't'")
      << "the byte counts from the line's start";
  EXPECT_EQ(error_of(R"({"gregorian_time":-9223372036854775808})"), "gregorian_time: " + kGregorianRange);
  EXPECT_EQ(error_of(R"({"gregorian_time":9223372036854775807})"), "gregorian_time: " + kGregorianRange);
}

TEST(EventLine, Rfc3339Forms) {
  using ingest::parse_rfc3339;
  EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_rfc3339("1970-01-01T01:00:00+01:00"), 0);
  EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:00.000000001Z"), 1);
  EXPECT_EQ(parse_rfc3339("2024-02-29T00:00:00Z"), 1709164800LL * 1'000'000'000);
  EXPECT_EQ(parse_rfc3339("2023-02-29T00:00:00Z"), std::nullopt);
  EXPECT_EQ(parse_rfc3339("2026-11-23T16:55:28"), std::nullopt);
  // A leap second only as the last of a UTC day (12:00:60 was 12:01:00).
  EXPECT_EQ(parse_rfc3339("2016-12-31T23:59:60Z"), 1483228800LL * 1'000'000'000);
  EXPECT_EQ(parse_rfc3339("2017-01-01T00:59:60+01:00"), 1483228800LL * 1'000'000'000);
  EXPECT_EQ(parse_rfc3339("2016-12-31T18:59:60-05:00"), 1483228800LL * 1'000'000'000);
  EXPECT_EQ(parse_rfc3339("2026-01-01T12:00:60Z"), std::nullopt);
  EXPECT_EQ(parse_rfc3339("2016-12-31T23:59:60+01:00"), std::nullopt);
  // Both ends of int64 ns are dates (they were refused a second short),
  // and past them is out of range, said apart from malformed.
  EXPECT_EQ(parse_rfc3339("2262-04-11T23:47:16.854775807Z"), std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(parse_rfc3339("1677-09-21T00:12:43.145224192Z"), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(parse_rfc3339("1969-12-31T23:59:59.5Z"), -500'000'000);
  bool out_of_range = false;
  EXPECT_EQ(parse_rfc3339("2262-04-11T23:47:16.854775808Z", &out_of_range), std::nullopt);
  EXPECT_TRUE(out_of_range);
  out_of_range = false;
  EXPECT_EQ(parse_rfc3339("0000-01-01T00:00:00Z", &out_of_range), std::nullopt);
  EXPECT_TRUE(out_of_range);
  out_of_range = false;
  EXPECT_EQ(parse_rfc3339("1677-09-21T00:12:43.145224191Z", &out_of_range), std::nullopt);
  EXPECT_TRUE(out_of_range);
  out_of_range = false;
  EXPECT_EQ(parse_rfc3339("2026-13-01T00:00:00Z", &out_of_range), std::nullopt);
  EXPECT_FALSE(out_of_range);
  EXPECT_EQ(parse_rfc3339("2026-11-23T16:55:28.Z"), std::nullopt);
  EXPECT_EQ(parse_rfc3339("2026-11-23T16:55:28Zjunk"), std::nullopt);
}

TEST(EventLine, BlankLines) {
  EXPECT_TRUE(ingest::is_blank(""));
  EXPECT_TRUE(ingest::is_blank(" \t\r"));
  EXPECT_FALSE(ingest::is_blank(" {}"));
}

TEST(EventLine, OneParserReadsShortThenLongLines) {
  EventLineParser parser;
  ParsedEvent e;
  ASSERT_FALSE(parser.parse("{}", e));
  const std::string long_line = R"({"id":")" + std::string(300, 'x') + R"(","body":{"k":1}})";
  ASSERT_FALSE(parser.parse(long_line, e));
  EXPECT_EQ(e.input.strings[static_cast<int>(event::StringField::id)].size(), 300u);
  ASSERT_FALSE(parser.parse(R"({"id":"y"})", e));
  EXPECT_EQ(e.input.strings[static_cast<int>(event::StringField::id)], "y");
}
