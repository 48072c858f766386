// The json formatter against SEMANTICS.md section 6, rule by rule, and on
// random events: every line it writes must parse.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "json_event.hpp"
#include "ringroute/sinks/json_escape.hpp"
#include "ringroute/sinks/json_formatter.hpp"

namespace ringroute::sinks {
namespace {

std::string format(const event::EventView& e, JsonFormatOptions options = {}) {
  JsonFormatter formatter(options);
  ByteBuffer out;
  formatter.format(e, out);
  return std::string(out.view());
}

// An event of only `body`, which reaches the formatter as it is (the
// library's body check skipped).
event::EventInput body_only(std::string_view body) {
  event::EventInput in;
  in.body = body;
  return in;
}

// 2026-11-23T16:55:28.123456789Z
constexpr const char* kFull = R"({"id":"p-1","timestamp":1795452928123456789,"severity":"warning",
  "verbosity":"debug","account_id":"a1","account_tree":["root","mid"],"app_name":"cf","app_version":"4.3",
  "node":"gw1","topic":"t.x","stream_name":"s","event_type":"e","tag":"g","body":{"k":[1,2.5,"x"],"n":null}})";

TEST(JsonFormatter, MetadataMembersInOrderNormalized) {
  testing::JsonEvent ev;
  EXPECT_EQ(format(ev(kFull)),
            R"({"account_id":"a1","account_tree":["root","mid"],"app_name":"cf","app_version":"4.3",)"
            R"("body":{"k":[1,2.5,"x"],"n":null},"id":"p-1","node":"gw1","severity":"warning",)"
            R"("timestamp":"2026-11-23T16:55:28.123456Z","gregorian_time":63962672128,"verbosity":"debug",)"
            R"("topic":"t.x","stream_name":"s","event_type":"e","tag":"g"})"
            "\n");
}

// Kazoo's normalize also rewrites the body's keys; `normalize` here renames
// the metadata members only (normalize_body is the body's).
TEST(JsonFormatter, NormalizeRenamesTheMetadataMembersOnly) {
  testing::JsonEvent ev;
  const std::string line =
      format(ev(R"({"account_id":"A-1","app_name":"Cf","body":{"Call-ID":"x","K-Y":{"Inner-Key":null},"n":null}})"),
             {.normalize = true});
  EXPECT_EQ(line.rfind(R"({"account_id":"A-1","app_name":"Cf","body":{"Call-ID":"x","K-Y":{"Inner-Key":null},"n":null},)"
                       R"("severity":"ok",)",
                       0),
            0u)
      << line;
}

TEST(JsonFormatter, NormalizeFalseWritesKazooWireNames) {
  testing::JsonEvent ev;
  EXPECT_EQ(format(ev(kFull), {.normalize = false}),
            R"({"Account-ID":"a1","Account-Tree":["root","mid"],"App-Name":"cf","App-Version":"4.3",)"
            R"("Body":{"k":[1,2.5,"x"],"n":null},"ID":"p-1","Node":"gw1","Severity":"warning",)"
            R"("Timestamp":"2026-11-23T16:55:28.123456Z","Gregorian-Time":63962672128,"Verbosity":"debug",)"
            R"("Topic":"t.x","Stream-Name":"s","Event-Type":"e","Tag":"g"})"
            "\n");
}

TEST(JsonFormatter, AbsentMembersAreOmittedAndTopicOnlyWhenCarried) {
  testing::JsonEvent ev;
  EXPECT_EQ(format(ev(R"({"timestamp":0})")),
            R"({"body":{},"severity":"ok","timestamp":"1970-01-01T00:00:00.000000Z",)"
            R"("gregorian_time":62167219200,"verbosity":"info"})"
            "\n");
}

TEST(JsonFormatter, IncludeMetadataFalseIsTheBodyByteForByte) {
  testing::JsonEvent ev;
  EXPECT_EQ(format(ev(R"({"body": { "a" : [ 1 , 2 ] , "b":"\u00e9\n" }})"), {.include_metadata = false}),
            "{ \"a\" : [ 1 , 2 ] , \"b\":\"\\u00e9\\n\" }\n");
}

// simdjson's raw_json() runs up to the next token: the whitespace after
// the body's object was taken as the body's, and written into the line.
TEST(JsonFormatter, WhitespaceAfterTheBodyInTheLineIsNotTheBodys) {
  testing::JsonEvent ev;
  EXPECT_EQ(format(ev("{\"body\":  {\"a\":1} \t\r ,\"id\":\"x\"}"), {.include_metadata = false}), "{\"a\":1}\n");
  EXPECT_EQ(format(ev("{\"id\":\"x\",\"body\":{\"a\":1}  }"), {.include_metadata = false}), "{\"a\":1}\n");
}

TEST(JsonFormatter, TimestampIsTruncatedToMicrosecondsNotRounded) {
  EXPECT_EQ(format_rfc3339_micros(1'000'999'999), "1970-01-01T00:00:01.000999Z");
  EXPECT_EQ(format_rfc3339_micros(-1), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(format_rfc3339_micros(951'782'400'000'000'000), "2000-02-29T00:00:00.000000Z");
}

TEST(JsonFormatter, GregorianTimeFloorsUnixSeconds) {
  EXPECT_EQ(event::gregorian_seconds(0), 62167219200);
  EXPECT_EQ(event::gregorian_seconds(999'999'999), 62167219200);
  EXPECT_EQ(event::gregorian_seconds(-1), 62167219199);
}

TEST(JsonFormatter, StringsAreEscapedAndInvalidUtf8Replaced) {
  event::EventInput in;
  static constexpr char kId[] = "q\"b\\s\x01\n\t\x7f\xc3\xa9|\xff|\xe2\x82|end";
  in.set(event::StringField::id, std::string_view(kId, sizeof kId - 1));
  in.body = "{}";
  const std::string line = format(testing::EncodedEvent(in).view);
  EXPECT_NE(line.find(R"("id":"q\"b\\s\u0001\n\t)" "\x7f\xc3\xa9|\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|end\""),
            std::string::npos)
      << line;
  simdjson::dom::parser parser;
  EXPECT_EQ(parser.parse(line).error(), simdjson::SUCCESS);
}

TEST(JsonFormatter, BodyNewlinesDoNotSplitTheLine) {
  testing::JsonEvent ev;
  const std::string line = format(ev("{\"body\":{\"a\":1}}"));
  ASSERT_EQ(std::count(line.begin(), line.end(), '\n'), 1);
  // A trusted producer may send a body with raw newlines between tokens.
  const testing::EncodedEvent e(body_only("{\n  \"a\": 1\r\n}"));
  for (bool meta : {true, false}) {
    const std::string out = format(e.view, {.include_metadata = meta});
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
    simdjson::dom::parser parser;
    EXPECT_EQ(parser.parse(out).error(), simdjson::SUCCESS) << out;
  }
}

// A TAB between a body's tokens is whitespace as valid as a space, and
// the one control byte a valid body could still carry into a line:
// rsyslog wrote it as "#011" and the syslog MSG no longer parsed.
TEST(JsonFormatter, ABodysTabsBetweenTokensAreWrittenAsSpaces) {
  testing::JsonEvent ev;
  for (const std::string body : {"{\"a\":\t1}", "{\"a\":1,\t\"long-enough\":\"to take the wide path\"}"}) {
    for (bool meta : {true, false}) {
      const std::string out = format(ev("{\"body\":" + body + "}"), {.include_metadata = meta});
      EXPECT_EQ(out.find('\t'), std::string::npos) << out;
    }
  }
}

// A body the producer marked trusted without checking it reaches the
// formatter as it is: a raw NUL or ESC went into the line, and a NUL ends
// a record for receivers such as syslog-ng (the rest read as a record of
// its own). Every control byte is written as a space.
TEST(JsonFormatter, AnUncheckedBodysControlBytesAreWrittenAsSpaces) {
  static constexpr char kShort[] = "{\"a\":\"x\0<0>y\x1b\"}";
  static constexpr char kLong[] = "{\"a\":\"long enough for the wide path \0<0>forged\x01\"}";
  for (const std::string& body : {std::string(kShort, sizeof kShort - 1), std::string(kLong, sizeof kLong - 1)}) {
    const testing::EncodedEvent e(body_only(body));
    for (bool meta : {true, false}) {
      const std::string out = format(e.view, {.include_metadata = meta});
      ASSERT_EQ(out.back(), '\n');
      EXPECT_TRUE(std::none_of(out.begin(), out.end() - 1, [](char c) { return static_cast<unsigned char>(c) < 0x20; }))
          << out;
    }
  }
}

// A trusted body of only whitespace and control bytes is no body: copied
// (its control bytes as spaces), it made `"body":    }`.
TEST(JsonFormatter, ABlankUncheckedBodyIsWrittenAsAnEmptyOne) {
  static constexpr char kBlank[] = " \t\r\n\0\x1b  ";
  for (const std::string& body : {std::string(kBlank, sizeof kBlank - 1), std::string(40, ' '), std::string("\n")}) {
    const testing::EncodedEvent e(body_only(body));
    EXPECT_EQ(format(e.view, {.include_metadata = false}), "{}\n");
    for (bool pretty : {false, true}) {
      const std::string out = format(e.view, {.include_metadata = true, .pretty = pretty});
      simdjson::dom::parser parser;
      simdjson::dom::element root;
      ASSERT_EQ(parser.parse(out).get(root), simdjson::SUCCESS) << out;
      EXPECT_EQ(simdjson::to_string(root["body"]), "{}") << out;
    }
  }
  // A body that starts with whitespace is still copied as it is.
  const testing::EncodedEvent padded(body_only(" {\"a\":1}"));
  EXPECT_EQ(format(padded.view, {.include_metadata = false}), " {\"a\":1}\n");
}

TEST(JsonFormatter, PrettyIndentsTwoSpacesWithOrWithoutMetadata) {
  testing::JsonEvent ev;
  EXPECT_EQ(format(ev(R"({"body":{"a":[1,{}],"b":{"c":"d"},"e":[]}})"), {.include_metadata = false, .pretty = true}),
            "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": {\n    \"c\": \"d\"\n  },\n  \"e\": []\n}\n");
  const std::string with_meta = format(ev(R"({"timestamp":0,"body":{"a":1}})"), {.pretty = true});
  EXPECT_EQ(with_meta,
            "{\n  \"body\": {\n    \"a\": 1\n  },\n  \"severity\": \"ok\",\n"
            "  \"timestamp\": \"1970-01-01T00:00:00.000000Z\",\n  \"gregorian_time\": 62167219200,\n"
            "  \"verbosity\": \"info\"\n}\n");
}

// Past 32 levels pretty output is compact: a body nested 1,000 deep was
// indented all the way (up to 2,000 spaces a line), 2 MB from 2 KB.
TEST(JsonFormatter, PrettyIndentsAtMost32LevelsAndWritesDeeperOnesCompactly) {
  testing::JsonEvent ev;
  const std::string deep = std::string(1000, '[') + std::string(1000, ']');
  const std::string line = format(ev(R"({"body":{"a":)" + deep + "}}"), {.include_metadata = false, .pretty = true});
  EXPECT_LT(line.size(), 10'000u);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  EXPECT_EQ(parser.parse(line).get(doc), simdjson::SUCCESS);
  // Level 32 is still indented (64 spaces), and what is inside it is not.
  EXPECT_NE(line.find("\n" + std::string(64, ' ') + std::string(969, '[') + std::string(969, ']') + "\n"),
            std::string::npos);
}

// A body as deep as ingest takes one (simdjson's default depth) is one
// level deeper inside the metadata: pretty with metadata wrote it compact.
TEST(JsonFormatter, PrettyWithMetadataIndentsABodyAsDeepAsIngestTakes) {
  testing::JsonEvent ev;
  const std::size_t arrays = simdjson::DEFAULT_MAX_DEPTH - 1;  // inside the body's object
  const std::string body = R"({"a":)" + std::string(arrays, '[') + std::string(arrays, ']') + "}";
  const std::string line = format(ev(R"({"body":)" + body + "}"), {.pretty = true});
  EXPECT_EQ(line.rfind("{\n  \"body\": {\n    \"a\": [\n", 0), 0u) << line.substr(0, 80);
  simdjson::dom::parser parser(simdjson::SIMDJSON_MAXSIZE_BYTES);
  ASSERT_EQ(parser.allocate(line.size(), simdjson::DEFAULT_MAX_DEPTH + 1), simdjson::SUCCESS);
  simdjson::dom::element doc;
  EXPECT_EQ(parser.parse(line).get(doc), simdjson::SUCCESS);
}

TEST(JsonFormatter, NormalizeBodyLowercasesKeysMapsDashesAndDropsNulls) {
  testing::JsonEvent ev;
  EXPECT_EQ(format(ev(R"({"body":{"Call-ID":"x","Nested":{"Inner-Key":null,"Keep-Me":[{"A-B":1,"z":null}]},"n":null}})"),
                   {.include_metadata = false, .normalize_body = true}),
            R"({"call_id":"x","nested":{"keep_me":[{"a_b":1}]}})"
            "\n");
  // Metadata names are not touched by normalize_body.
  const std::string line = format(ev(R"({"account_id":"A-1","body":{"X-Y":1}})"), {.normalize = false, .normalize_body = true});
  EXPECT_NE(line.find(R"("Account-ID":"A-1","Body":{"x_y":1})"), std::string::npos) << line;
}

// Numbers are written as the producer wrote them: from the DOM's values,
// -0 lost its sign, 1.0 became the integer 1 and 1E2 became 100, only
// when pretty or normalize_body was on.
TEST(JsonFormatter, PrettyAndNormalizeBodyWriteNumbersAsTheyCame) {
  testing::JsonEvent ev;
  const std::string numbers =
      R"({"a":-0,"b":1.0,"c":1E2,"d":0.1000000000000000055511151231257827,"e":[1.50,-2e-3,18446744073709551615],)"
      R"("k\"1":"2.5","n":null,"f":-9223372036854775808})";
  EXPECT_EQ(format(ev(R"({"body":)" + numbers + "}"), {.include_metadata = false, .normalize_body = true}),
            R"({"a":-0,"b":1.0,"c":1E2,"d":0.1000000000000000055511151231257827,"e":[1.50,-2e-3,18446744073709551615],)"
            R"("k\"1":"2.5","f":-9223372036854775808})"
            "\n");
  EXPECT_EQ(format(ev(R"({"body":{"x":[-0,1.0]}})"), {.include_metadata = false, .pretty = true}),
            "{\n  \"x\": [\n    -0,\n    1.0\n  ]\n}\n");
}

// Every byte value at every position of strings of every length up to 40,
// against a plain byte-at-a-time escaper: the word and 16-byte fast paths
// must never miss a byte that needs escaping.
TEST(JsonEscape, FastPathsAgreeWithAPlainEscaperForEveryByteAndPosition) {
  auto plain = [](std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c >= 0x80) {
        const std::size_t n = utf8_sequence_length(s, i);
        out += n == 0 ? std::string("\xEF\xBF\xBD") : std::string(s.substr(i, n));
        i += n == 0 ? 1 : n;
        continue;
      }
      if (c == '"') out += "\\\"";
      else if (c == '\\') out += "\\\\";
      else if (c == '\n') out += "\\n";
      else if (c == '\r') out += "\\r";
      else if (c == '\t') out += "\\t";
      else if (c == '\b') out += "\\b";
      else if (c == '\f') out += "\\f";
      else if (c < 0x20) {
        char buffer[8];
        std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
        out += buffer;
      } else {
        out += static_cast<char>(c);
      }
      ++i;
    }
    return out;
  };
  std::vector<char> buffer(escaped_bound(64));
  for (std::size_t length = 1; length <= 40; ++length) {
    for (std::size_t at = 0; at < length; ++at) {
      for (int b = 0; b < 256; ++b) {
        std::string s(length, 'a');
        s[at] = static_cast<char>(b);
        char* end = escape_json(s, buffer.data());
        ASSERT_EQ(std::string(buffer.data(), end), plain(s)) << "length " << length << " byte " << b << " at " << at;
      }
    }
  }
}

// Random events, any bytes in the strings, random bodies: every option
// combination writes one line that parses, and strings survive when valid.
TEST(JsonFormatter, EveryLineParsesOnRandomEvents) {
  std::mt19937_64 rng(20261123);
  simdjson::dom::parser parser;
  std::vector<std::string> strings(event::kStringFieldCount);
  std::vector<std::string> tree_storage;
  const char* bodies[] = {"{}", R"({"a":"\u0000\"","b":[true,false,null,-1.5e3]})", "{\"deep\":{\"x\":{\"y\":[]}}}",
                          "{\"Up-Case\":null}", "{ \"sp\" :\n 1 }"};
  for (int round = 0; round < 3000; ++round) {
    event::EventInput in;
    for (std::size_t f = 0; f < event::kStringFieldCount; ++f) {
      if (rng() % 2) continue;
      strings[f].clear();
      const std::size_t n = rng() % 40;
      for (std::size_t i = 0; i < n; ++i) strings[f] += static_cast<char>(rng() % 4 == 0 ? rng() % 256 : 'a' + rng() % 26);
      in.set(static_cast<event::StringField>(f), strings[f]);
    }
    in.severity = static_cast<event::Severity>(rng() % 3);
    in.verbosity = static_cast<event::Verbosity>(rng() % 6);
    in.timestamp_ns = static_cast<std::int64_t>(rng());
    in.body = bodies[rng() % std::size(bodies)];
    tree_storage.assign(rng() % 3, std::string(1, static_cast<char>(rng() % 256)));
    std::vector<std::string_view> tree(tree_storage.begin(), tree_storage.end());
    const testing::EncodedEvent e(in, tree);
    const JsonFormatOptions options{rng() % 2 == 0, rng() % 2 == 0, rng() % 2 == 0, rng() % 2 == 0};
    const std::string line = format(e.view, options);
    ASSERT_FALSE(line.empty());
    ASSERT_EQ(line.back(), '\n');
    if (!options.pretty) {
      ASSERT_EQ(std::count(line.begin(), line.end(), '\n'), 1) << line;
    }
    simdjson::dom::element root;
    ASSERT_EQ(parser.parse(line).get(root), simdjson::SUCCESS) << "round " << round << ": " << line;
    ASSERT_TRUE(root.is_object());
  }
}

}  // namespace
}  // namespace ringroute::sinks
