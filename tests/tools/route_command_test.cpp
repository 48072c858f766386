// `ringroute route` and `ringroute validate` as a user runs them: the real
// binary, config and events in files, stdout and stderr read back.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "ringroute/tools/json_text.hpp"
#include "shell_quote.hpp"

namespace {

struct Result {
  int status;
  std::string out;
  std::string err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class Files {
 public:
  Files() : dir_("/tmp/rr-route-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++)) {
    std::system(("mkdir -p " + dir_).c_str());
  }
  ~Files() { std::system(("rm -rf " + dir_).c_str()); }
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  // Runs `ringroute ARGS < stdin`, stdout into `out_path` (a file of its own
  // when empty, read back as `out`; `out_path` is not read back).
  Result run(const std::string& args, const std::string& input = "", const std::string& out_path = "") {
    const std::string in = write("stdin", input), out = out_path.empty() ? dir_ + "/stdout" : out_path,
                      err = dir_ + "/stderr";
    const int raw = std::system((ringroute::testing::shell_quoted(RINGROUTE_BINARY) + " " + args + " < " + in + " > " + out +
                                 " 2> " + err).c_str());
    return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, out_path.empty() ? slurp(out) : "", slurp(err)};
  }

 private:
  static inline int counter_ = 0;
  std::string dir_;
};

// File paths are under /sys, where nothing can be made: the config check
// stats them (see config_test.cpp).
constexpr const char* kRecipe = R"({
  "backends": [
    {"name": "debug_log", "type": "file", "options": {"path": "/sys/debug.log"},
     "bindings": [{"account_id": "*", "include_descendants": false, "app_name": "*", "severity": "ok",
                   "exact_severity": false, "verbosity": "debug", "exact_verbosity": false}], "enabled": true},
    {"name": "info_log", "type": "file", "options": {"path": "/sys/info.log"},
     "bindings": [{"account_id": "*", "verbosity": "info"}], "enabled": true},
    {"name": "acct", "type": "http", "options": {"url": "http://127.0.0.1:9/x"},
     "bindings": [{"account_id": "a1", "include_descendants": true, "verbosity": "trace"},
                  {"filter": "attrs.type~'call-(attempt|end)' && attrs.duration<5", "verbosity": "trace"}]}
  ]})";

TEST(RouteCommand, PrintsBackendsInConfigOrderPerLine) {
  Files f;
  const std::string config = f.write("edr.json", kRecipe);
  const Result r = f.run("route --config " + config,
                         "{\"verbosity\":\"debug\"}\n"
                         "\n"
                         "   \r\n"
                         "{\"Verbosity\":\"error\",\"Account-ID\":\"a1\"}\r\n"
                         "{\"account_tree\":[\"root\",\"a1\"],\"account_id\":\"kid\",\"verbosity\":\"trace\"}\n"
                         "{\"verbosity\":\"trace\",\"body\":{\"attrs\":{\"type\":\"call-end\",\"duration\":4.5}}}\n");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out,
            "{\"line\":1,\"backends\":[\"debug_log\"]}\n"
            "{\"line\":4,\"backends\":[\"debug_log\",\"info_log\",\"acct\"]}\n"
            "{\"line\":5,\"backends\":[\"acct\"]}\n"
            "{\"line\":6,\"backends\":[\"acct\"]}\n");
}

TEST(RouteCommand, DashReadsStdin) {
  Files f;
  const std::string config = f.write("edr.json", kRecipe);
  const Result r = f.run("route --config " + config + " -", "{\"verbosity\":\"debug\"}\n");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "{\"line\":1,\"backends\":[\"debug_log\"]}\n");
}

// Every event the router sees has a node: the producer library adds this
// host's name where the event gives none. route matched such a line without
// it, so a binding on `node` reached no line the router would route to it.
// An id the producer adds is not known before it emits: none is matched.
TEST(RouteCommand, ALineWithoutANodeIsMatchedWithTheNodeAProducerAdds) {
  Files f;
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  const std::string config = f.write("edr.json", R"({"backends": [
    {"name": "this_host", "type": "file", "options": {"path": "/sys/h.log"},
     "bindings": [{"filter": "node = ')" + std::string(host) + R"('", "verbosity": "trace"}]},
    {"name": "any_id", "type": "file", "options": {"path": "/sys/i.log"},
     "bindings": [{"filter": "id ~ '.'", "verbosity": "trace"}]}]})");
  const Result r = f.run("route --config " + config, "{}\n{\"node\":\"elsewhere\",\"id\":\"x\"}\n");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out,
            "{\"line\":1,\"backends\":[\"this_host\"]}\n"
            "{\"line\":2,\"backends\":[\"any_id\"]}\n");
}

TEST(RouteCommand, BadLinesGetAnErrorAndTheRunGoesOn) {
  Files f;
  const std::string config = f.write("edr.json", kRecipe);
  const std::string events = f.write("events.ndjson",
                                     "{\"severity\":\"sever\"}\n"
                                     "[1]\n"
                                     "{\"verbosity\":\"info\",\"verbosity\":\"warn\"}\n"
                                     "{\"severity\":\"ok\",\"Severity\":\"ok\"}\n"
                                     "{\"timestamp\":\"yesterday\"}\n"
                                     "{\"colour\":\"red\"}\n"
                                     "{}\n");
  const Result r = f.run("route --config " + config + " " + events);
  EXPECT_EQ(r.status, 1);
  std::istringstream lines(r.out);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    ++n;
    EXPECT_EQ(line.rfind("{\"line\":" + std::to_string(n) + ",", 0), 0u) << line;
    if (n < 7) {
      EXPECT_NE(line.find("\"error\":"), std::string::npos) << line;
    }
  }
  EXPECT_EQ(n, 7);
  EXPECT_NE(r.out.find("severity: unknown level \\\"sever\\\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("colour"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("{\"line\":7,\"backends\":[\"debug_log\",\"info_log\"]}"), std::string::npos) << r.out;
}

// What route prints is what the router does: an event too big for its
// ring is refused at emit (RR_TOO_BIG), and reaches no backend; route said
// it matched. Two rings: `--ring` names the one the events go into, and
// by default the first decides, where `emit --config` writes (judged
// against the larger, events that emit then refused were said to reach
// their backends).
TEST(RouteCommand, AnEventItsRingDoesNotTakeIsAnError) {
  Files f;
  const std::string config = f.write(
      "edr.json", R"({"rings": [{"name": "small", "size_bytes": 4096}, {"name": "large", "size_bytes": 65536}],
                      "backends": [{"name": "all", "type": "file", "options": {"path": "/sys/all.log"},
                                    "bindings": [{"verbosity": "trace"}]}]})");
  const auto event = [](std::size_t body_bytes) {
    return R"({"verbosity":"info","body":{"pad":")" + std::string(body_bytes, 'x') + "\"}}\n";
  };
  // 65536 / 8 = 8192 bytes a record, its header and metadata included,
  // and the id and node a producer adds to an event without them (which
  // took 8216 bytes of the ring for an 8150-byte body, refused by emit).
  const Result r =
      f.run("route --ring large --config " + config,
            event(7000) + event(8150) + R"({"id":"e","node":"n","verbosity":"info","body":{"pad":")" +
                std::string(8100, 'x') + "\"}}\n" + event(9000));
  EXPECT_EQ(r.status, 1) << r.err;
  std::istringstream lines(r.out);
  std::string line[4];
  for (auto& l : line) std::getline(lines, l);
  EXPECT_EQ(line[0], "{\"line\":1,\"backends\":[\"all\"]}");
  EXPECT_EQ(line[1].rfind("{\"line\":2,\"error\":\"the event is a record of up to ", 0), 0u) << line[1];
  EXPECT_NE(line[1].find(" bytes (with the id and node a producer adds), past the 8192 a producer may emit into "
                         "ring large"),
            std::string::npos)
      << line[1];
  EXPECT_EQ(line[2], "{\"line\":3,\"backends\":[\"all\"]}");  // its own short id and node: it fits
  EXPECT_EQ(line[3].rfind("{\"line\":4,\"error\":\"the event is a record of ", 0), 0u) << line[3];

  const Result first = f.run("route --config " + config, event(100) + event(1000));
  EXPECT_EQ(first.status, 1) << first.err;
  EXPECT_EQ(first.out.rfind("{\"line\":1,\"backends\":[\"all\"]}\n{\"line\":2,\"error\":", 0), 0u) << first.out;
  EXPECT_NE(first.out.find("past the 512 a producer may emit into ring small"), std::string::npos) << first.out;

  const Result unknown = f.run("route --ring nope --config " + config, event(100));
  EXPECT_EQ(unknown.status, 2);
  EXPECT_NE(unknown.err.find("--ring nope: the config has no such ring (it has small, large)"), std::string::npos)
      << unknown.err;
  const Result empty = f.run("route --ring '' --config " + config, event(100));
  EXPECT_EQ(empty.status, 2);
  EXPECT_NE(empty.err.find("--ring : the config has no such ring"), std::string::npos) << empty.err;
}

TEST(RouteCommand, BadConfigExitsTwoWithPathsOnStderr) {
  Files f;
  const std::string config = f.write(
      "bad.json", R"({"backends": [{"name": "x", "type": "file", "options": {"path": "/sys/x"},
                                    "bindings": [{"severity": "sever"}]}]})");
  const Result r = f.run("route --config " + config, "{}\n");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "backends[0].bindings[0].severity: unknown level \"sever\" (expected ok, "
                   "warning or critical) at line 2, column 63\n");
}

// DESIGN.md: route, validate and run check the whole file the same way.
// route judged a config whose CA file is missing good, and run then failed
// on it naming no JSON path.
TEST(RouteCommand, ATlsFileThatWouldNotLoadIsABadConfig) {
  Files f;
  const std::string config = f.write(
      "tls.json", R"({"backends": [{"name": "b", "type": "http",
                                    "options": {"url": "https://127.0.0.1:1/", "ca_file": "/nonexistent/ca.pem"},
                                    "bindings": [{}]}]})");
  const Result r = f.run("route --config " + config, "{}\n");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("backends[0].options.ca_file: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/ca.pem"), std::string::npos) << r.err;
}

// Lines are read with a bound: one without end (a pipe from /dev/zero) took
// route's and emit's memory until they were killed. A line past it is read
// to its end, said with its number, and the next one is read as before.
TEST(RouteCommand, ALineLongerThanAnyEventIsReadToItsEndAndSaid) {
  std::istringstream in("{\"a\":1}\n" + std::string(200'000, 'x') + "\r\n\n{\"b\":2}\r\n" + std::string(9, 'y') +
                        "\n12345678\n" + std::string(70'000, 'z'));
  std::vector<std::string> lines;
  std::vector<std::pair<std::size_t, std::size_t>> too_long;
  ringroute::tools::for_each_ndjson_line(
      in, [&](std::string_view line, std::size_t number) { lines.push_back(std::to_string(number) + ":" + std::string(line)); },
      [&](std::size_t number, std::size_t length) { too_long.emplace_back(number, length); }, 8);
  EXPECT_EQ(lines, (std::vector<std::string>{"1:{\"a\":1}", "4:{\"b\":2}", "6:12345678"}));
  // The CR counts: the bound is on what was read.
  EXPECT_EQ(too_long, (std::vector<std::pair<std::size_t, std::size_t>>{{2, 200'001}, {5, 9}, {7, 70'000}}));
  EXPECT_NE(ringroute::tools::too_long_line(200'001).find("(200001)"), std::string::npos);
}

// A config path to something without end took memory until the process
// was killed (and a reload, the router's main thread with it).
TEST(ValidateCommand, AConfigWithoutEndIsAnErrorNotMemoryTaken) {
  Files f;
  const Result r = f.run("validate /dev/zero");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "cannot read /dev/zero: longer than 67108864 bytes, the most a config may be\n");
}

TEST(ValidateCommand, GoodConfigExitsZero) {
  Files f;
  const std::string config = f.write("edr.json", kRecipe);
  const Result r = f.run("validate " + config);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("ok"), std::string::npos);
  EXPECT_EQ(f.run("validate --config " + config).status, 0);
}

TEST(ValidateCommand, EveryErrorOneALine) {
  Files f;
  const std::string config = f.write("bad.json", R"({
    "backends": [
      {"name": "a", "type": "file", "bindings": [{"verbosity": "loud", "app_name": ""}]},
      {"name": "a", "type": "http", "options": {"url": "http://h/"}, "bindings": []}
    ]})");
  const Result r = f.run("validate " + config);
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err,
            "backends[0].bindings[0].verbosity: unknown level \"loud\" (expected trace, debug, "
            "info, warn, error or fatal) at line 3, column 64\n"
            "backends[0].bindings[0].app_name: must not be empty at line 3, column 84\n"
            // Left out: said at the backend it is missing from.
            "backends[0].options.path: required for a file backend at line 3, column 7\n"
            "backends[1].name: duplicate backend name \"a\" (also backends[0]) at line 4, column 16\n");
}

TEST(ValidateCommand, NotJsonNamesLineAndColumn) {
  Files f;
  const std::string config = f.write("bad.json", "{\n  \"backends\": [\n    {\"name\": \"a\",, }\n  ]\n}\n");
  const Result r = f.run("validate " + config);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("line 3, column"), std::string::npos) << r.err;
}

// Valid (DESIGN.md), but run would refuse it: validate says so, and still
// exits 0.
TEST(ValidateCommand, AnEnabledBackendWithoutASinkIsNoted) {
  Files f;
  const std::string config = f.write("edr.json", R"({"backends": [
    {"name": "mq", "type": "amqp", "bindings": []},
    {"name": "off", "type": "amqp", "enabled": false, "bindings": []}]})");
  const Result r = f.run("validate " + config);
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find(": ok (2 backends, 1 enabled, 0 bindings, 1 ring)"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "note: backends[0] (mq): backend type \"amqp\" has no sink in this build yet; disable the backend "
                   "(\"enabled\": false) to run\n");
}

// DESIGN.md's admin API is not built yet: a key set for it is valid, and
// validate says nothing listens (it said "ok" and no more, even for
// 0.0.0.0). The key itself is never echoed.
TEST(ValidateCommand, AnAdminKeyIsNotedAsListenedForByNothing) {
  Files f;
  ::unsetenv("AUTH_KEY");
  const std::string backends = R"("backends": [{"name": "mq", "type": "amqp", "enabled": false, "bindings": []}])";
  const std::string keyed =
      f.write("edr.json", R"({"admin": {"listen": "0.0.0.0:5000", "auth_key": "s3cret"}, )" + backends + "}");
  Result r = f.run("validate " + keyed);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.err,
            "note: admin: a key is set (admin.auth_key), but this build has no admin API yet: nothing listens on "
            "0.0.0.0:5000\n");
  const std::string keyless = f.write("keyless.json", "{" + backends + "}");
  EXPECT_EQ(f.run("validate " + keyless).err, "");
  ::setenv("AUTH_KEY", "s3cret", 1);
  r = f.run("validate " + keyless);
  ::unsetenv("AUTH_KEY");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.err,
            "note: admin: a key is set (AUTH_KEY), but this build has no admin API yet: nothing listens on "
            "127.0.0.1:5000\n");
}

// router.workers was accepted and never read: 8 asked for, one worker ran,
// and nothing said so.
TEST(ValidateCommand, WorkersPastOneARingAreNoted) {
  Files f;
  const std::string backends = R"("backends": [{"name": "mq", "type": "amqp", "enabled": false, "bindings": []}])";
  Result r = f.run("validate " + f.write("w.json", R"({"router": {"workers": 8}, )" + backends + "}"));
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.err,
            "note: router.workers is 8, but the router runs one worker per ring (a ring has one consumer): 1 here; "
            "more rings spread the load over more workers\n");
  for (const char* workers : {"2", "1"}) {  // as many as the rings, or fewer: each runs
    r = f.run("validate " + f.write("two.json", R"({"router": {"workers": )" + std::string(workers) +
                                                    R"(}, "rings": [{"name": "a"}, {"name": "b"}], )" + backends + "}"));
    EXPECT_EQ(r.err, "") << workers;
  }
}

TEST(ValidateCommand, MissingFileAndUsage) {
  Files f;
  const Result missing = f.run("validate /nonexistent/edr.json");
  EXPECT_EQ(missing.status, 2);
  EXPECT_EQ(missing.err, "cannot read /nonexistent/edr.json: No such file or directory\n");
  const Result directory = f.run("validate /tmp");
  EXPECT_EQ(directory.status, 2);
  EXPECT_EQ(directory.err, "cannot read /tmp: is a directory\n");
  // Its first read fails (nothing is mapped at offset 0): a read error, not
  // an empty file.
  const Result unreadable = f.run("validate /proc/self/mem");
  EXPECT_EQ(unreadable.status, 2);
  EXPECT_EQ(unreadable.err, "cannot read /proc/self/mem: Input/output error\n");
  EXPECT_EQ(f.run("validate").status, 2);
}

// A misspelt command is named (it used to be "A subcommand is required"),
// and no command at all lists them.
TEST(Cli, AnUnknownCommandIsNamedAndNoneListsThem) {
  Files f;
  const Result misspelt = f.run("valdiate x.json");
  EXPECT_EQ(misspelt.status, 2);
  EXPECT_NE(misspelt.err.find("not expected: "), std::string::npos) << misspelt.err;
  EXPECT_NE(misspelt.err.find("valdiate"), std::string::npos) << misspelt.err;
  const Result none = f.run("");
  EXPECT_EQ(none.status, 2);
  EXPECT_EQ(none.err, "ringroute: give a command: run, validate, route, emit, stat or bench (--help says more)\n");
  // Numbers that are not are named (the range was: a 300-digit one for
  // --wait-ms), and flags that exclude each other say so (stat took the
  // config's instance over --instance without a word).
  for (const char* args : {"emit --wait-ms -5", "stat --interval-ms abc", "run --config x --drain-ms -1"}) {
    const Result bad = f.run(args);
    EXPECT_EQ(bad.status, 2) << args;
    EXPECT_NE(bad.err.find("not a whole number: "), std::string::npos) << args << ": " << bad.err;
  }
  // Out of range, the flag and its range are named: --drain-ms said only
  // "Could not convert", and --ring-bytes named the ring's config key, and
  // after the first run's progress line.
  const Result long_drain = f.run("run --config x --drain-ms 4294967296");
  EXPECT_EQ(long_drain.status, 2);
  EXPECT_NE(long_drain.err.find("--drain-ms: Value 4294967296 not in range 0 to 4294967295"), std::string::npos)
      << long_drain.err;
  for (const char* bytes : {"1000", "512", "2147483648", "18446744073709551616"}) {
    const Result ring_bytes = f.run(std::string("bench ring --ring-bytes ") + bytes);
    EXPECT_EQ(ring_bytes.status, 2) << bytes;
    EXPECT_EQ(ring_bytes.err.rfind(std::string("--ring-bytes: not a power of two from 1024 to 1073741824: ") + bytes, 0),
              0u)
        << ring_bytes.err;
  }
  // A body smaller than its own members was reported at the size asked.
  const Result small_body = f.run("bench --config x --size 18");
  EXPECT_EQ(small_body.status, 2);
  EXPECT_NE(small_body.err.find("--size: Value 18 not in range 19 to 1048576"), std::string::npos) << small_body.err;
  const Result both = f.run("stat --instance a --config b.json");
  EXPECT_EQ(both.status, 2);
  EXPECT_NE(both.err.find("excludes"), std::string::npos) << both.err;
  const Result version = f.run("--version");
  EXPECT_EQ(version.status, 0);
  EXPECT_EQ(version.out.rfind("ringroute ", 0), 0u) << version.out;
  EXPECT_EQ(f.run("--version", "", "/dev/full").status, 2);
  // Standard output closed: /dev/null read-only in its place, so the output
  // still fails to be written (opened for writing, it was thrown away, exit 0).
  const int closed = std::system((ringroute::testing::shell_quoted(RINGROUTE_BINARY) + " --version >&- 2>/dev/null").c_str());
  EXPECT_TRUE(WIFEXITED(closed) && WEXITSTATUS(closed) == 2) << closed;
  EXPECT_EQ(f.run("validate --help", "", "/dev/full").status, 2);
}

// --help gives each option's type plainly, with its range: CLI11 wrote out
// every check's own name ("--interval-ms UINT:WHOLE:UINT in [10 - 3600000]").
// The checks still check.
TEST(Cli, HelpSaysEachOptionsTypeAndRangePlainly) {
  Files f;
  const Result stat = f.run("stat --help");
  EXPECT_EQ(stat.status, 0);
  EXPECT_NE(stat.out.find("--interval-ms UINT [10-3600000]=1000"), std::string::npos) << stat.out;
  EXPECT_NE(stat.out.find("--instance NAME=ringroute"), std::string::npos) << stat.out;
  for (const char* help : {"stat --help", "emit --help", "run --help", "bench --help", "bench ring --help"}) {
    const Result r = f.run(help);
    EXPECT_EQ(r.out.find(":WHOLE"), std::string::npos) << help << ":\n" << r.out;
    EXPECT_EQ(r.out.find(" in ["), std::string::npos) << help << ":\n" << r.out;
  }
  const Result low = f.run("stat --interval-ms 5");
  EXPECT_EQ(low.status, 2);
  EXPECT_NE(low.err.find("--interval-ms: Value 5 not in range 10 to 3600000"), std::string::npos) << low.err;
}

// EVENTS that can't be read is an I/O error (exit 2), not a clean run of
// no lines: an ifstream opens a directory and reads nothing from it.
TEST(RouteCommand, EventsThatCannotBeReadExitTwo) {
  Files f;
  const std::string config = f.write("edr.json", kRecipe);
  const Result directory = f.run("route --config " + config + " /tmp");
  EXPECT_EQ(directory.status, 2);
  EXPECT_EQ(directory.out, "");
  EXPECT_EQ(directory.err, "ringroute route: cannot read /tmp: is a directory\n");
  const Result missing = f.run("route --config " + config + " /nonexistent/events.ndjson");
  EXPECT_EQ(missing.status, 2);
  EXPECT_EQ(missing.err, "ringroute route: cannot read /nonexistent/events.ndjson: No such file or directory\n");
  // stdin that fails to read (here a directory) is not an empty input.
  const int raw = std::system((ringroute::testing::shell_quoted(RINGROUTE_BINARY) + " route --config " + config + " < /tmp 2>/dev/null").c_str());
  EXPECT_EQ(WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, 2);
}

// Output that never arrived is an I/O error (exit 2) whatever the lines
// were: a full disk under `route > results` used to exit 0, silently.
TEST(RouteCommand, OutputThatCannotBeWrittenExitsTwo) {
  Files f;
  const std::string config = f.write("edr.json", kRecipe);
  const Result route = f.run("route --config " + config, "{\"verbosity\":\"debug\"}\n", "/dev/full");
  EXPECT_EQ(route.status, 2);
  EXPECT_EQ(route.err, "ringroute: writing to stdout failed: No space left on device\n");
  const Result validate = f.run("validate " + config, "", "/dev/full");
  EXPECT_EQ(validate.status, 2);
  EXPECT_EQ(validate.err, "ringroute: writing to stdout failed: No space left on device\n");
}

// A FIFO (a shell's process substitution, `<(...)`) is read as it comes: the
// file is opened once, since a second open would wait for a writer gone.
TEST(ValidateCommand, ReadsAConfigFromAFifo) {
  Files f;
  const std::string fifo = f.write("placeholder", "") + ".fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] { std::ofstream(fifo) << kRecipe; });
  const Result r = f.run("validate " + fifo);
  writer.join();
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("ok (3 backends"), std::string::npos) << r.out;
}

TEST(ValidateCommand, BundledDefaultConfigIsValid) {
  Files f;
  const Result r = f.run("validate " + ringroute::testing::shell_quoted(RINGROUTE_DEFAULT_CONFIG));
  EXPECT_EQ(r.status, 0) << r.err;
}

}  // namespace
