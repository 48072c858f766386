// The event record: round trips, and every malformed record is refused by
// decode() with a reason, never read out of bounds (ASan checks the latter).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ringroute/event/event.hpp"

using namespace ringroute::event;

namespace {

struct Tree {
  std::vector<std::string> entries;
  std::size_t size() const { return entries.size(); }
  std::string_view operator[](std::size_t i) const { return entries[i]; }
};

std::vector<std::byte> encode_vec(const EventInput& in, const Tree& tree, bool tree_present) {
  const std::size_t n = encoded_size(in, tree);
  EXPECT_NE(n, 0u);
  std::vector<std::byte> out(n);
  encode(in, tree, tree_present, out.data());
  return out;
}

EventInput full_input() {
  EventInput in;
  in.set(StringField::id, "p1-7");
  in.set(StringField::account_id, "acct-1");
  in.set(StringField::app_name, "app.x");
  in.set(StringField::app_version, "1.2");
  in.set(StringField::node, "gw");
  in.set(StringField::topic, "");
  in.set(StringField::stream_name, "s");
  in.set(StringField::event_type, "t");
  in.set(StringField::tag, "g");
  in.severity = Severity::critical;
  in.verbosity = Verbosity::trace;
  in.timestamp_ns = -5;
  in.body = R"({"a":[1,2]})";
  return in;
}

}  // namespace

TEST(EventRecord, LevelsHaveTheirOrderAndLowerCaseNames) {
  EXPECT_LT(Severity::ok, Severity::warning);
  EXPECT_LT(Severity::warning, Severity::critical);
  EXPECT_LT(Verbosity::trace, Verbosity::debug);
  EXPECT_LT(Verbosity::error, Verbosity::fatal);
  EXPECT_EQ(parse_severity("warning"), Severity::warning);
  EXPECT_EQ(parse_severity("Warning"), std::nullopt);
  EXPECT_EQ(parse_verbosity("warn"), Verbosity::warn);
  EXPECT_EQ(parse_verbosity("warning"), std::nullopt);
  EXPECT_EQ(name(Verbosity::fatal), "fatal");
}

TEST(EventRecord, EveryFieldRoundTrips) {
  const auto bytes = encode_vec(full_input(), Tree{{"root", "mid"}}, true);
  EventView v;
  ASSERT_EQ(decode(bytes, v), DecodeError::none);
  EXPECT_EQ(v.get(StringField::id), "p1-7");
  EXPECT_EQ(v.get(StringField::app_name), "app.x");
  EXPECT_TRUE(v.has(StringField::topic));
  EXPECT_EQ(v.get(StringField::topic), "");  // present and empty is not absent
  EXPECT_EQ(v.get(StringField::tag), "g");
  EXPECT_EQ(v.severity, Severity::critical);
  EXPECT_EQ(v.verbosity, Verbosity::trace);
  EXPECT_EQ(v.timestamp_ns, -5);
  EXPECT_EQ(v.body, R"({"a":[1,2]})");
  ASSERT_TRUE(v.has_account_tree());
  std::vector<std::string> tree(v.account_tree.begin(), v.account_tree.end());
  EXPECT_EQ(tree, (std::vector<std::string>{"root", "mid"}));
}

TEST(EventRecord, AbsentFieldsStayAbsent) {
  EventInput in;
  const auto bytes = encode_vec(in, Tree{}, false);
  EXPECT_EQ(bytes.size(), kFixedBytes + 2);
  EventView v;
  ASSERT_EQ(decode(bytes, v), DecodeError::none);
  for (std::size_t f = 0; f < kStringFieldCount; ++f) EXPECT_FALSE(v.has(static_cast<StringField>(f)));
  EXPECT_FALSE(v.has_account_tree());
  EXPECT_EQ(v.severity, Severity::ok);
  EXPECT_EQ(v.verbosity, Verbosity::info);
  EXPECT_EQ(v.body, "{}");
}

TEST(EventRecord, EmptyTreeCanBePresent) {
  const auto bytes = encode_vec(EventInput{}, Tree{}, true);
  EventView v;
  ASSERT_EQ(decode(bytes, v), DecodeError::none);
  EXPECT_TRUE(v.has_account_tree());
  EXPECT_TRUE(v.account_tree.empty());
}

TEST(EventRecord, EveryTruncationIsRefused) {
  const auto bytes = encode_vec(full_input(), Tree{{"root", "mid"}}, true);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    // A copy of exactly n bytes, so ASan catches any read past it.
    std::vector<std::byte> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    EventView v;
    EXPECT_NE(decode(cut, v), DecodeError::none) << "accepted a record cut to " << n << " bytes";
  }
}

TEST(EventRecord, TrailingBytesAreRefused) {
  auto bytes = encode_vec(full_input(), Tree{}, false);
  bytes.push_back(std::byte{0});
  EventView v;
  EXPECT_EQ(decode(bytes, v), DecodeError::trailing_bytes);
}

TEST(EventRecord, BadVersionLevelsAndBitsAreRefused) {
  const auto good = encode_vec(full_input(), Tree{}, false);
  EventView v;
  auto bad = good;
  bad[0] = std::byte{2};
  EXPECT_EQ(decode(bad, v), DecodeError::bad_version);
  bad = good;
  bad[1] = std::byte{3};
  EXPECT_EQ(decode(bad, v), DecodeError::bad_level);
  bad = good;
  bad[2] = std::byte{6};
  EXPECT_EQ(decode(bad, v), DecodeError::bad_level);
  bad = good;
  bad[3] = std::byte{1};
  EXPECT_EQ(decode(bad, v), DecodeError::unknown_bits);
  bad = good;
  bad[5] = std::byte{0x80};
  EXPECT_EQ(decode(bad, v), DecodeError::unknown_bits);
}

TEST(EventRecord, LengthsPointingPastTheEndAreRefused) {
  auto bytes = encode_vec(full_input(), Tree{{"root"}}, true);
  EventView v;
  // Each u16 length in the table, set to its maximum.
  for (std::size_t at = kFixedBytes; at < kFixedBytes + 2 * 10; at += 2) {
    auto bad = bytes;
    bad[at] = std::byte{0xff};
    bad[at + 1] = std::byte{0xff};
    EXPECT_NE(decode(bad, v), DecodeError::none) << "length at " << at;
  }
  auto bad = bytes;
  bad[16] = std::byte{0xff};  // body length
  bad[19] = std::byte{0x7f};
  EXPECT_EQ(decode(bad, v), DecodeError::truncated);
}

// The tree's lengths are read again as it is walked, from memory producers
// share: rewritten after decode() checked them, they cut entries short but
// never reach past the tree's bytes.
TEST(EventRecord, TreeLengthsRewrittenAfterDecodeStayInsideTheTree) {
  auto bytes = encode_vec(full_input(), Tree{{"root", "mid"}}, true);
  EventView v;
  ASSERT_EQ(decode(bytes, v), DecodeError::none);
  // Nine string lengths come first, then the tree's two.
  const std::size_t first_tree_length = kFixedBytes + 2 * 9;
  bytes[first_tree_length] = std::byte{0xff};
  bytes[first_tree_length + 1] = std::byte{0xff};
  std::size_t total = 0;
  for (std::string_view entry : v.account_tree) total += entry.size();
  EXPECT_EQ(total, std::string_view("rootmid").size());
}

TEST(EventRecord, OversizedFieldsCannotBeEncoded) {
  EventInput in;
  const std::string big(kMaxFieldBytes + 1, 'x');
  in.set(StringField::app_name, big);
  EXPECT_EQ(encoded_size(in, Tree{}), 0u);
}
