// `ringroute emit` as a user runs it: the real binary, a real ring.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

#include "read_events.hpp"
#include "ringroute/perf/block.hpp"
#include "shell_quote.hpp"
#include "test_ring.hpp"

using namespace ringroute;
using ringroute::testing::drain;
using ringroute::testing::TestRing;

namespace {

struct Result {
  int status;
  std::string err;
};

// Runs `ringroute emit --ring R ARGS`, with `input` on stdin.
Result emit(const std::string& ring, const std::string& args, const std::string& input = "") {
  const std::string in_path = "/tmp/rr-emit-in-" + ring;
  const std::string err_path = "/tmp/rr-emit-err-" + ring;
  std::ofstream(in_path) << input;
  const std::string cmd = ringroute::testing::shell_quoted(RINGROUTE_BINARY) + " emit --ring " + ring + " " + args + " < " + in_path +
                          " 2> " + err_path;
  const int raw = std::system(cmd.c_str());
  std::ifstream err_file(err_path);
  std::string err((std::istreambuf_iterator<char>(err_file)), std::istreambuf_iterator<char>());
  std::remove(in_path.c_str());
  std::remove(err_path.c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, err};
}

// `flag value` (beside an id) is a usage error, said as `says`, whatever the
// ring (none exists here).
void expect_flag_refused(const std::string& ring, const std::string& flag, const std::string& value,
                         const std::string& says) {
  const auto res = emit(ring, "--id x " + flag + " '" + value + "'");
  EXPECT_EQ(res.status, 2) << flag << " " << value;
  EXPECT_EQ(res.err, "ringroute emit: " + flag + ": " + says + "\n") << flag << " " << value;
}

}  // namespace

TEST(EmitCommand, OneEventFromFlags) {
  TestRing r(1 << 16, "emit");
  ring::Consumer c(r.segment);
  const auto res = emit(r.name,
                        "--severity warning --verbosity debug --account-id acct-1 --account-tree org-0,grp-00 "
                        "--app-name app001 --topic a.b --id ev-1 --body '{\"k\":\"v\"}'");
  ASSERT_EQ(res.status, 0) << res.err;
  const auto got = drain(c);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, "ev-1");
  EXPECT_EQ(got[0].severity, event::Severity::warning);
  EXPECT_EQ(got[0].verbosity, event::Verbosity::debug);
  EXPECT_EQ(got[0].account_tree, (std::vector<std::string>{"org-0", "grp-00"}));
  EXPECT_EQ(got[0].topic, "a.b");
  EXPECT_EQ(got[0].body, R"({"k":"v"})");
}

// A name with a '/' got shm_open's "Invalid argument", and one with a
// terminal escape was echoed raw: both are held to the config's rule for
// names, said with the name quoted.
TEST(EmitCommand, ARingOrInstanceNameIsHeldToTheConfigsRule) {
  const std::string err_path = "/tmp/rr-emit-names-" + std::to_string(::getpid());
  const auto run = [&](const std::string& args) {
    const int raw = std::system((ringroute::testing::shell_quoted(RINGROUTE_BINARY) + " " + args + " 2> " + err_path).c_str());
    std::ifstream err_file(err_path);
    std::string err((std::istreambuf_iterator<char>(err_file)), std::istreambuf_iterator<char>());
    std::remove(err_path.c_str());
    return Result{WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, err};
  };
  Result r = run("emit --ring a/b --body '{}'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find(R"(--ring: "a/b" is not a valid name (1 to 128 characters)"), std::string::npos) << r.err;
  r = run("emit --ring .. --body '{}'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find(R"(--ring: ".." is not a valid name)"), std::string::npos) << r.err;
  r = run("emit --instance $(printf 'x\\033[31m') --body '{}'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find(R"(--instance: "x\u001b[31m" is not a valid name (1 to 200 characters)"), std::string::npos)
      << r.err;
  r = run("stat --json --instance a/b");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find(R"(--instance: "a/b" is not a valid name)"), std::string::npos) << r.err;
}

TEST(EmitCommand, BadFlagIsAUsageError) {
  TestRing r(1 << 16, "emit");
  const auto res = emit(r.name, "--severity sever");
  EXPECT_EQ(res.status, 2);
  // Named by the flag given, not the member of the line made from it.
  EXPECT_NE(res.err.find(R"(ringroute emit: --severity: unknown level "sever")"), std::string::npos) << res.err;
  const auto verbosity = emit(r.name, "--verbosity loud");
  EXPECT_NE(verbosity.err.find(R"(ringroute emit: --verbosity: unknown level "loud")"), std::string::npos)
      << verbosity.err;
  const auto empty = emit(r.name, "--account-id ''");
  EXPECT_NE(empty.err.find("ringroute emit: --account-id: empty"), std::string::npos) << empty.err;
}

// --body is judged on its own, with bytes counted in what was typed, and
// before any ring is opened (no router runs here). Pasted unchecked into
// the event line, `{},"id":"x"` set the id, and a fault's byte counted in
// a line the user never wrote.
TEST(EmitCommand, BodyFlagIsCheckedOnItsOwnBeforeAnyRingIsOpened) {
  const std::string ring = ringroute::testing::unique_ring_name("absent");
  expect_flag_refused(ring, "--body", R"({"a":tru})", "byte 5: Problem while parsing an atom starting with the letter 't'");
  expect_flag_refused(ring, "--body", R"({},"id":"y")", "byte 2: trailing content after the JSON value");
  expect_flag_refused(ring, "--body", "null", "expected a JSON object");
  expect_flag_refused(ring, "--body", "[1]", "expected a JSON object");
  const auto flag = emit(ring, "--severity sever");
  EXPECT_EQ(flag.status, 2);
  EXPECT_EQ(flag.err.find("does not exist"), std::string::npos) << flag.err;
}

// --account-tree names its empty ids, and the flag: "a,b," used to become
// ["a","b"] while ",a" was refused as account_tree[0], and "" sent an
// empty tree.
TEST(EmitCommand, AccountTreeFlagNamesAnEmptyId) {
  const std::string ring = ringroute::testing::unique_ring_name("absent");
  auto bad = [&](const std::string& tree, const std::string& says) {
    expect_flag_refused(ring, "--account-tree", tree, says);
  };
  bad("a,b,", R"(id 3 of 3 in "a,b," is empty (ids are separated by single commas, root first))");
  bad(",a", R"(id 1 of 2 in ",a" is empty (ids are separated by single commas, root first))");
  bad("a,,b", R"(id 2 of 3 in "a,,b" is empty (ids are separated by single commas, root first))");
  bad("", "empty (leave it out for an account without ancestors)");
}

// A flag's value is UTF-8 text, as a line's strings are: quoted into the
// event line as it was, a bad byte became U+FFFD and the changed value went
// out (a binding could match it that no event's own value would).
TEST(EmitCommand, AFlagThatIsNotUtf8IsRefusedNotChanged) {
  const std::string ring = ringroute::testing::unique_ring_name("absent");
  expect_flag_refused(ring, "--app-name", "a\xff", "byte 1: not valid UTF-8 (a field is UTF-8 text)");
  expect_flag_refused(ring, "--account-tree", "org,\xc3", "byte 4: not valid UTF-8 (a field is UTF-8 text)");
  expect_flag_refused(ring, "--topic", "a.\xed\xa0\x80", "byte 2: not valid UTF-8 (a field is UTF-8 text)");
}

// The producer library takes a timestamp of 0 as "stamp it now": a line
// that gives the epoch itself is refused, not sent with another time.
TEST(EmitCommand, ATimestampOfTheEpochItselfIsRefusedNotRestamped) {
  TestRing r(1 << 16, "emit");
  ring::Consumer c(r.segment);
  const auto res = emit(r.name, "",
                        "{\"id\":\"zero\",\"timestamp\":0}\n"
                        "{\"id\":\"date\",\"timestamp\":\"1970-01-01T00:00:00Z\"}\n"
                        "{\"id\":\"one\",\"timestamp\":1}\n"
                        "{\"id\":\"kazoo\",\"Gregorian-Time\":62167219200}\n");
  EXPECT_EQ(res.status, 1);
  const std::string says =
      R"(the event's time is 1970-01-01T00:00:00Z (0 ns since the epoch), which can't be sent: the producer library takes 0 as \"stamp it at emit\")";
  EXPECT_NE(res.err.find(R"({"line":1,"error":")" + says), std::string::npos) << res.err;
  EXPECT_NE(res.err.find(R"({"line":2,"error":")" + says), std::string::npos) << res.err;
  EXPECT_NE(res.err.find(R"({"line":4,"error":")" + says), std::string::npos) << res.err;
  const auto got = drain(c);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, "one");
  EXPECT_EQ(got[0].timestamp_ns, 1);
}

TEST(EmitCommand, NdjsonBadLinesAreNamedAndTheRestGoOn) {
  TestRing r(1 << 16, "emit");
  ring::Consumer c(r.segment);
  const std::string input =
      "{\"id\":\"one\"}\n"
      "\n"
      "{\"id\":\"two\",\"severity\":\"sever\"}\n"
      "not json\n"
      "{\"id\":\"three\",\"body\":{\"a\":1}}\r\n";
  const auto res = emit(r.name, "", input);
  EXPECT_EQ(res.status, 1);
  EXPECT_NE(res.err.find(R"x({"line":3,"error":"severity: unknown level \"sever\" (expected ok, warning, critical)"})x"),
            std::string::npos)
      << res.err;
  EXPECT_NE(res.err.find(R"({"line":4,"error":"not JSON)"), std::string::npos) << res.err;
  const auto got = drain(c);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].id, "one");
  EXPECT_EQ(got[1].id, "three");
  EXPECT_EQ(got[1].body, R"({"a":1})");
}

TEST(EmitCommand, MissingRingIsAnIoError) {
  const auto res = emit(ringroute::testing::unique_ring_name("absent"), "--id x");
  EXPECT_EQ(res.status, 2);
  EXPECT_NE(res.err.find("does not exist"), std::string::npos) << res.err;
}

// DESIGN.md's shared --config: the ring is the config's first, as the
// router makes it.
TEST(EmitCommand, TheRingCanComeFromAConfig) {
  TestRing r(1 << 16, "emit");
  ring::Consumer c(r.segment);
  const std::string config = "/tmp/rr-emit-config-" + r.name + ".json";
  std::ofstream(config) << R"({"rings": [{"name": ")" << r.name << R"("}, {"name": "other"}]})";
  const int raw = std::system((ringroute::testing::shell_quoted(RINGROUTE_BINARY) + " emit --config " + config + " --id from-config").c_str());
  std::remove(config.c_str());
  ASSERT_EQ(WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, 0);
  const auto got = drain(c);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, "from-config");
}

// DESIGN.md's shared --instance: the ring is the first one the instance's
// router consumes, of those it named in its perf block (as `stat` and
// `bench --attach` find them); the block also keeps the slots of rings an
// earlier config named, which nobody reads now.
TEST(EmitCommand, TheRingCanComeFromAnInstance) {
  TestRing stale(1 << 16, "emitstale");  // an earlier config's: there, unread
  TestRing r(1 << 16, "emitinst");
  ring::Consumer c(r.segment);  // this process is the "router"
  const std::string instance = r.name + "-instance";
  {
    perf::BlockMapping block = perf::BlockMapping::create_or_open(instance, 0600);
    ASSERT_EQ(block.ring_slot("a-ring-gone"), 0);
    ASSERT_EQ(block.ring_slot(stale.name), 1);
    ASSERT_EQ(block.ring_slot(r.name), 2);
    block.block().header.router_pid.store(::getpid());
  }
  const std::string binary = ringroute::testing::shell_quoted(RINGROUTE_BINARY);
  const int raw = std::system((binary + " emit --instance " + instance + " --id from-instance").c_str());
  const int absent = std::system((binary + " emit --instance " + instance + "-absent --id x 2>/dev/null").c_str());
  // The router stopped: the first ring still there that its config named,
  // not the stale one before it in the block, which only an earlier
  // config named (its router marked it so at its start).
  {
    perf::BlockMapping block = perf::BlockMapping::create_or_open(instance, 0600);
    block.block().header.router_pid.store(0);
    block.block().rings[1].not_in_config.store(1);
  }
  const int stopped = std::system((binary + " emit --instance " + instance + " --id while-stopped").c_str());
  perf::BlockMapping::remove(instance);
  ASSERT_EQ(WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, 0);
  ASSERT_EQ(WIFEXITED(stopped) ? WEXITSTATUS(stopped) : -1, 0);
  const auto got = drain(c);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].id, "from-instance");
  EXPECT_EQ(got[1].id, "while-stopped");
  EXPECT_EQ(stale.segment.header().tail.load(), 0u) << "written to a ring nobody reads";
  EXPECT_EQ(WIFEXITED(absent) ? WEXITSTATUS(absent) : -1, 2);
}
