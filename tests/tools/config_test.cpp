// The config file as a whole: every level refuses unknown keys, each backend
// type checks its own options, and every error is reported with its path.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <string>
#include <vector>

#include "peers.hpp"
#include "ringroute/tools/config.hpp"

#include <simdjson.h>

namespace ringroute::tools {
namespace {

// File paths in these configs are under /sys, where nothing can be made:
// the checker stats them, and /tmp ones failed the tests once someone made
// /tmp/x a directory. (/sys/ has /tmp/'s length, so columns stay.)

std::vector<std::string> errors_of(const std::string& text) {
  std::vector<std::string> out;
  for (const auto& e : parse_config(text).errors) out.push_back(e.to_string());
  return out;
}

bool has_error(const std::vector<std::string>& errors, const std::string& text) {
  for (const auto& e : errors) {
    if (e == text) return true;
  }
  return false;
}
bool has_error_starting(const std::vector<std::string>& errors, const std::string& start) {
  return std::any_of(errors.begin(), errors.end(), [&](const std::string& e) { return e.starts_with(start); });
}

TEST(Config, EmptyObjectGivesTheDefaults) {
  const ConfigResult r = parse_config("{}");
  ASSERT_TRUE(r.config) << r.errors.size();
  EXPECT_EQ(r.config->instance, "ringroute");
  ASSERT_EQ(r.config->rings.size(), 1u);
  EXPECT_EQ(r.config->rings[0].name, "ringroute");
  EXPECT_EQ(r.config->rings[0].size_bytes, 64u << 20);
  EXPECT_EQ(r.config->rings[0].mode, 0660u);
  EXPECT_EQ(r.config->workers, 1u);
  EXPECT_EQ(r.config->removed_backend_drain_ms, 5000u);
  EXPECT_TRUE(r.config->backends.empty());
}

TEST(Config, ReadsEverySection) {
  const ConfigResult r = parse_config(R"({
    "instance": "gw1", "rings": [{"name": "a", "size_bytes": 1048576, "mode": "0600", "dead_claim_timeout_ms": 50},
                                 {"name": "b"}],
    "router": {"workers": 4, "removed_backend_drain_ms": 0}, "admin": {"listen": "127.0.0.1:6000", "auth_key": null},
    "backends": [{"name": "f", "type": "file", "enabled": false,
                  "options": {"path": "/sys/f", "fsync": "interval", "fsync_interval_ms": 100,
                              "queue": {"when_full": "drop"}}, "bindings": [{}]}]})");
  ASSERT_TRUE(r.config) << (r.errors.empty() ? "" : r.errors[0].to_string());
  EXPECT_EQ(r.config->instance, "gw1");
  EXPECT_EQ(r.config->rings[0].size_bytes, 1u << 20);
  EXPECT_EQ(r.config->rings[0].mode, 0600u);
  EXPECT_EQ(r.config->rings[0].dead_claim_timeout.count(), 50);
  EXPECT_EQ(r.config->rings[1].size_bytes, 64u << 20);
  EXPECT_EQ(r.config->workers, 4u);
  EXPECT_EQ(r.config->removed_backend_drain_ms, 0u);
  EXPECT_EQ(r.config->admin_listen, "127.0.0.1:6000");
  EXPECT_FALSE(r.config->admin_auth_key);
  ASSERT_EQ(r.config->backends.size(), 1u);
  EXPECT_FALSE(r.config->backends[0].enabled);
  EXPECT_FALSE(r.config->matching[0].enabled);
  EXPECT_EQ(r.config->matching[0].name, "f");
  EXPECT_NE(r.config->backends[0].options_json.find("\"fsync\":\"interval\""), std::string::npos);
}

TEST(Config, UnknownKeysAreErrorsAtEveryLevel) {
  const auto e = errors_of(R"({"instanse": "x", "router": {"worker": 2}, "rings": [{"nam": "r"}],
    "backends": [{"name": "f", "type": "file", "option": {}, "options": {"path": "/p", "rotate": 5,
                  "formatter": {"type": "json", "options": {"normalise": true}}}, "bindings": [{"app": "x"}]}]})");
  for (const char* path : {"instanse", "router.worker", "rings[0].nam", "backends[0].option",
                           "backends[0].options.rotate", "backends[0].options.formatter.options.normalise",
                           "backends[0].bindings[0].app"}) {
    bool found = false;
    for (const auto& m : e) found = found || m.rfind(std::string(path) + ": unknown key", 0) == 0;
    EXPECT_TRUE(found) << path;
  }
}

// A key with a newline, a NUL or a quote is named escaped in brackets:
// printed raw it split the error over two lines (or cut it at the NUL).
TEST(Config, AnOddKeyIsNamedEscapedInItsPath) {
  const auto e = errors_of(std::string(R"({"backends": [{"name": "f", "type": "file", "options": {"path": "/p"},
    "bindings": [{"a\nb": 1}]}], "x\u0000y": 2, "plain_key-2": 3})"));
  auto starts = [&](const std::string& prefix) {
    for (const auto& m : e) {
      if (m.rfind(prefix, 0) == 0) return true;
    }
    return false;
  };
  EXPECT_TRUE(starts(R"(backends[0].bindings[0]["a\u000ab"]: unknown key)")) << (e.empty() ? "" : e.front());
  EXPECT_TRUE(starts(R"(["x\u0000y"]: unknown key)")) << (e.empty() ? "" : e.front());
  EXPECT_TRUE(starts("plain_key-2: unknown key"));
  for (const auto& m : e) EXPECT_EQ(m.find('\n'), std::string::npos) << m;
}

TEST(Config, PrettyJsonOverNewlineFramedSyslogIsRefused) {
  const auto e = errors_of(R"({"backends": [{"name": "s", "type": "socket", "options": {"url": "syslog+tcp://127.0.0.1:514",
    "framing": "newline", "formatter": {"type": "json", "options": {"pretty": true}}}, "bindings": []}]})");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].rfind("backends[0].options.formatter.options.pretty: pretty output spans lines", 0), 0u) << e[0];
  EXPECT_TRUE(errors_of(R"({"backends": [{"name": "s", "type": "socket", "options": {"url": "syslog+tcp://127.0.0.1:514",
    "formatter": {"type": "json", "options": {"pretty": true}}}, "bindings": []}]})").empty());
}

// RFC 5425 frames syslog over TLS by octet counting only; newline framing
// there was taken without a word.
TEST(Config, NewlineFramingOverSyslogTlsIsRefused) {
  const auto e = errors_of(R"({"backends": [{"name": "s", "type": "socket", "options": {"url": "SYSLOG+TLS://h:6514",
    "framing": "newline"}, "bindings": []}]})");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends[0].options.framing: syslog over TLS is framed by octet counting only (RFC 5425 section "
                  "4.3); leave framing out");
  EXPECT_TRUE(errors_of(R"({"backends": [{"name": "s", "type": "socket", "options": {"url": "syslog+tcp://h:514",
    "framing": "newline"}, "bindings": []}]})").empty());
}

// Wherever the receiver takes a line as an event, pretty's documents
// (which span lines) would arrive cut into pieces; where a document has a
// frame of its own (a datagram, an octet count, a JSON array, one HTTP
// request each) pretty is fine.
TEST(Config, PrettyJsonIsRefusedWhereTheReceiverTakesEachLineAsAnEvent) {
  auto with = [](const std::string& type, const std::string& options) {
    return errors_of(R"({"backends": [{"name": "b", "type": ")" + type + R"(", "options": {)" + options +
                     R"(, "formatter": {"type": "json", "options": {"pretty": true}}}, "bindings": []}]})");
  };
  const std::string refused = "backends[0].options.formatter.options.pretty: pretty output spans lines";
  for (const char* options :
       {R"("url": "syslog+tcp://127.0.0.1:514", "format": "ndjson")", R"("url": "unix:///run/x.sock", "format": "ndjson")",
        R"("url": "syslog+tls://127.0.0.1:6514", "format": "ndjson")"}) {
    const auto e = with("socket", options);
    ASSERT_EQ(e.size(), 1u) << options;
    EXPECT_EQ(e[0].rfind(refused, 0), 0u) << e[0];
    EXPECT_NE(e[0].find("\"format\": \"ndjson\""), std::string::npos) << e[0];
  }
  for (const char* options : {R"("url": "http://127.0.0.1/x", "batch": {})",
                                     R"("url": "http://127.0.0.1/x", "batch": {"format": "ndjson"})"}) {
    const auto e = with("http", options);
    ASSERT_EQ(e.size(), 1u) << options;
    EXPECT_EQ(e[0].rfind(refused, 0), 0u) << e[0];
  }
  for (const char* options :
       {R"("url": "syslog+udp://127.0.0.1:514", "format": "ndjson")", R"("url": "unixgram:///run/x.sock", "format": "ndjson")",
        // A datagram carries its message whole (framing is refused on one, as never read).
        R"("url": "syslog+udp://127.0.0.1:514")"}) {
    EXPECT_TRUE(with("socket", options).empty()) << options;
  }
  EXPECT_TRUE(with("http", R"("url": "http://127.0.0.1/x")").empty());
  EXPECT_TRUE(with("http", R"("url": "http://127.0.0.1/x", "batch": {"format": "array"})").empty());
  EXPECT_TRUE(with("file", R"("path": "/sys/x.ndjson")").empty());
}

// DESIGN.md's batch object, "format": "ndjson" included, is a file
// backend's as it is; "array" is http's alone, and a socket's framing is
// its own format option.
TEST(Config, AFileBackendTakesDesignsBatchObjectAsItIs) {
  auto backend = [](const std::string& type, const std::string& options) {
    return errors_of(R"({"backends": [{"name": "b", "type": ")" + type + R"(", "options": {)" + options +
                     R"(}, "bindings": []}]})");
  };
  EXPECT_TRUE(backend("file", R"("path": "/sys/x.ndjson", "batch": {"max_events": 1000, "max_bytes": 1048576,
                                "linger_ms": 5, "format": "ndjson"})")
                  .empty());
  EXPECT_EQ(backend("file", R"("path": "/sys/x.ndjson", "batch": {"format": "array"})"),
            (std::vector<std::string>{"backends[0].options.batch.format: unknown value \"array\" (expected ndjson)"}));
  const auto socket = backend("socket", R"("url": "syslog://127.0.0.1:514", "batch": {"format": "ndjson"})");
  ASSERT_EQ(socket.size(), 1u);
  EXPECT_EQ(socket[0].rfind("backends[0].options.batch.format: unknown key", 0), 0u) << socket[0];
}

TEST(Config, RequiredBackendMembers) {
  const auto e = errors_of(R"({"backends": [{"options": {}}, {"name": "h", "type": "http", "bindings": []},
                                             {"name": "s", "type": "socket", "options": {}, "bindings": []}]})");
  EXPECT_TRUE(has_error(e, "backends[0].name: required"));
  EXPECT_TRUE(has_error(e, "backends[0].type: required"));
  EXPECT_TRUE(has_error(e, "backends[0].bindings: required"));
  EXPECT_TRUE(has_error(e, "backends[1].options.url: required for a http backend"));
  EXPECT_TRUE(has_error(e, "backends[2].options.url: required"));
}

// SEMANTICS.md section 3: `type` is one of file, http, socket and amqp,
// written so (a type is not a URL scheme, whose case is free).
TEST(Config, TypeIsOneOfFileHttpSocketAndAmqp) {
  const auto e = errors_of(R"({"backends": [
    {"name": "a", "type": "ftp", "bindings": []}, {"name": "b", "type": "File", "bindings": []},
    {"name": "c", "type": "", "bindings": []}, {"name": "d", "type": 1, "bindings": []},
    {"name": "f", "type": "file", "options": {"path": "/sys/f"}, "bindings": []},
    {"name": "h", "type": "http", "options": {"url": "http://127.0.0.1:8080/"}, "bindings": []},
    {"name": "s", "type": "socket", "options": {"url": "syslog://127.0.0.1"}, "bindings": []},
    {"name": "q", "type": "amqp", "enabled": false, "options": {"url": "amqp://127.0.0.1"}, "bindings": []}]})");
  const std::string expected = " (expected file, http, socket or amqp)";
  EXPECT_EQ(e, (std::vector<std::string>{"backends[0].type: unknown value \"ftp\"" + expected,
                                         "backends[1].type: unknown value \"File\"" + expected,
                                         "backends[2].type: unknown value \"\"" + expected,
                                         "backends[3].type: expected one of file, http, socket or amqp, got a number"}));
}

// A path, or a rotated name, longer than the file system takes: the sink
// retried its open for good (the events held in the ring), or failed every
// rotation, where validate had said the config was good.
TEST(Config, AFileNameLongerThanTheFileSystemTakesIsAnError) {
  // In a directory of the test's own on tmpfs, which holds names to 255
  // bytes (sysfs does not say a name is too long: it has none such).
  const testing::TempDir dir("config-long-names");
  const std::string name(256, 'n'), fits(248, 'f');  // fits with .99999 (254 bytes), not x.100000 (256)
  const auto file = [](const std::string& path, const std::string& more) {
    return R"({"name": "b", "type": "file", "options": {"path": ")" + path + "\"" + more + R"(}, "bindings": []})";
  };
  const std::string in = dir.path() + "/";
  const auto e = errors_of(R"({"backends": [)" + file(in + name, "") + "," +
                           file(in + std::string(5000, 'p'), "").replace(10, 1, "c") + "," +
                           file(in + fits, R"(, "rotate_bytes": 1000, "keep": 99999)").replace(10, 1, "d") + "," +
                           file(in + fits + "x", R"(, "rotate_bytes": 1000, "keep": 100000)").replace(10, 1, "e") + "]}");
  ASSERT_EQ(e.size(), 3u) << ::testing::PrintToString(e);
  EXPECT_TRUE(e[0].starts_with("backends[0].options.path: ")) << e[0];
  EXPECT_TRUE(e[1].starts_with("backends[1].options.path: ")) << e[1];
  EXPECT_TRUE(e[2].starts_with("backends[3].options.path: ")) << e[2];
  for (const std::string& error : e) {
    EXPECT_NE(error.find("is longer than the file system takes"), std::string::npos) << error;
  }
  EXPECT_NE(e[2].find(" rotates to names up to its own and \".100000\", a name that is longer"), std::string::npos)
      << e[2];
}

TEST(Config, BackendNamesAreUniqueValidAndCaseSensitive) {
  auto backend = [](const std::string& name, bool enabled) {
    return R"({"name": ")" + name + R"(", "type": "amqp", "enabled": )" + (enabled ? "true" : "false") +
           R"(, "bindings": []})";
  };
  auto e = errors_of(R"({"backends": [)" + backend("x", true) + "," + backend("x", false) + "," +
                     backend("X", true) + "," + backend("bad name", true) + "]}");
  EXPECT_TRUE(has_error(e, "backends[1].name: duplicate backend name \"x\" (also backends[0])"));
  EXPECT_EQ(e.size(), 2u);
  EXPECT_TRUE(has_error(e, "backends[3].name: \"bad name\" is not a valid name (1 to 128 characters of A-Z a-z 0-9 _ - .)"));
  // Only a ring's name is a file's: a backend may be called "..".
  EXPECT_TRUE(errors_of(R"({"backends": [)" + backend("..", true) + "]}").empty());
  // A name is a key of the perf block's slots, which hold 128 bytes
  // (SEMANTICS.md: 1 to 128 characters): two names alike in those would
  // share one slot (counters, batches, ring position), so a longer one is
  // refused.
  EXPECT_TRUE(errors_of(R"({"backends": [)" + backend(std::string(128, 'n'), true) + "]}").empty());
  e = errors_of(R"({"backends": [)" + backend(std::string(128, 'n') + "1", true) + "," +
                backend(std::string(128, 'n') + "2", true) + "]}");
  EXPECT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].rfind("backends[0].name: ", 0), 0u) << e[0];
}

// Nor may a backend write a file another backend's rotation renames (its
// path.1 .. path.keep) or drops (the numbers past keep): B on a.log.1
// beside A on a.log had its file moved to a.log.2 at A's rotation and went
// on in A's archive.
TEST(Config, AFileBackendMayNotWriteAnotherOnesRotatedFile) {
  auto backend = [](const std::string& name, const std::string& path, const std::string& rotation) {
    return R"({"name": ")" + name + R"(", "type": "file", "options": {"path": ")" + path + "\"" + rotation +
           R"(}, "bindings": []})";
  };
  auto e = errors_of(R"({"backends": [)" + backend("a", "out/a.log", R"(, "rotate_bytes": 1000, "keep": 2)") + "," +
                     backend("b", "out/a.log.1", "") + "," + backend("c", "out/a.log.2", "") + "," +
                     backend("d", "out/a.log.3", "") + "," + backend("e", "out/a.log.01", "") + "]}");
  ASSERT_EQ(e.size(), 3u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0], "backends[1].options.path: \"out/a.log.1\" is a rotated file of backends[0] (\"out/a.log\" keeps .1 "
                  "to .2 and drops the numbers past it): its rotations would rename or remove this backend's file");
  EXPECT_EQ(e[1].rfind("backends[2].options.path: ", 0), 0u) << e[1];
  // Past keep: a rotation drops it as a file a larger keep left.
  EXPECT_EQ(e[2].rfind("backends[3].options.path: ", 0), 0u) << e[2];
  // Rotated by age too, and either way round; without rotation there is
  // nothing to rename.
  e = errors_of(R"({"backends": [)" + backend("a", "out/a.log.1", "") + "," +
                backend("b", "out/a.log", R"(, "rotate_seconds": 3600)") + "]}");
  ASSERT_EQ(e.size(), 1u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0].rfind("backends[0].options.path: ", 0), 0u) << e[0];
  EXPECT_TRUE(errors_of(R"({"backends": [)" + backend("a", "out/a.log", "") + "," + backend("b", "out/a.log.1", "") +
                        "]}")
                  .empty());
  // A rotation renames the path's own name, a symbolic link there too, not
  // the file it points to.
  const testing::TempDir dir("config-rotated-link");
  std::ofstream(dir / "real.log") << "";
  std::filesystem::create_symlink(dir / "real.log", dir / "link.log");
  e = errors_of(R"({"backends": [)" + backend("a", dir / "link.log", R"(, "rotate_bytes": 1000)") + "," +
                backend("b", dir / "link.log.3", "") + "]}");
  ASSERT_EQ(e.size(), 1u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0].rfind("backends[1].options.path: ", 0), 0u) << e[0];
}

// Two backends writing one file would interleave their batches, and each
// would cut back and rotate the file under the other: one file, one
// backend. Disabled backends write nothing and may share a path.
TEST(Config, TwoEnabledFileBackendsMayNotShareAFile) {
  auto backend = [](const std::string& name, const std::string& path, bool enabled) {
    return R"({"name": ")" + name + R"(", "type": "file", "enabled": )" + (enabled ? "true" : "false") +
           R"(, "options": {"path": ")" + path + R"("}, "bindings": []})";
  };
  auto e = errors_of(R"({"backends": [)" + backend("a", "out/x.ndjson", true) + "," +
                     backend("b", "out/y.ndjson", true) + "," + backend("c", "out/./x.ndjson", true) + "," +
                     backend("d", "out/y.ndjson", false) + "]}");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends[2].options.path: \"out/./x.ndjson\" is also the file of backends[0] (one file, one backend)");

  // The same file by a relative and an absolute path, and through a
  // symbolic link to its directory.
  const testing::TempDir dir("config-same-file");
  std::filesystem::create_directory(dir / "real");
  std::filesystem::create_directory_symlink(dir / "real", dir / "link");
  const std::string relative = std::filesystem::relative(dir / "real/x.ndjson").string();
  e = errors_of(R"({"backends": [)" + backend("a", dir / "real/x.ndjson", true) + "," +
                backend("b", relative, true) + "," + backend("c", dir / "link/x.ndjson", true) + "," +
                backend("d", dir / "link/../real/y.ndjson", true) + "]}");
  ASSERT_EQ(e.size(), 2u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0].rfind("backends[1].options.path: ", 0), 0u) << e[0];
  EXPECT_NE(e[0].find("is also the file of backends[0]"), std::string::npos) << e[0];
  EXPECT_EQ(e[1].rfind("backends[2].options.path: ", 0), 0u) << e[1];

  // Through a symbolic link whose file (or directory) is not made yet:
  // resolution stopped at the first part that did not exist, and two
  // backends opened one file through the link.
  std::filesystem::create_symlink(dir / "real/later.ndjson", dir / "real/dangling.ndjson");
  std::filesystem::create_directory_symlink("not-made", dir / "dangling-dir");  // relative to the link's directory
  e = errors_of(R"({"backends": [)" + backend("a", dir / "real/dangling.ndjson", true) + "," +
                backend("b", dir / "real/later.ndjson", true) + "," + backend("c", dir / "dangling-dir/w.ndjson", true) +
                "," + backend("d", dir / "not-made/w.ndjson", true) + "]}");
  ASSERT_EQ(e.size(), 2u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0].rfind("backends[1].options.path: ", 0), 0u) << e[0];
  EXPECT_EQ(e[1].rfind("backends[3].options.path: ", 0), 0u) << e[1];

  // Two names of one file (a hard link), where it exists: the paths
  // differ, and were not told apart.
  std::ofstream(dir / "real/z.ndjson") << "";
  std::filesystem::create_hard_link(dir / "real/z.ndjson", dir / "real/hard.ndjson");
  e = errors_of(R"({"backends": [)" + backend("a", dir / "real/z.ndjson", true) + "," +
                backend("b", dir / "real/hard.ndjson", true) + "]}");
  ASSERT_EQ(e.size(), 1u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0], "backends[1].options.path: \"" + std::string(dir / "real/hard.ndjson") +
                      "\" is another name (a hard link) of the file of backends[0] (one file, one backend)");

  // Files and directories not made yet, as at a first start.
  const std::string cwd = std::filesystem::current_path().string();
  e = errors_of(R"({"backends": [)" + backend("a", "rr-not-made/x.ndjson", true) + "," +
                backend("b", "./rr-not-made/x.ndjson", true) + "," + backend("c", cwd + "/rr-not-made/x.ndjson", true) +
                "]}");
  ASSERT_EQ(e.size(), 2u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0].rfind("backends[1].options.path: ", 0), 0u) << e[0];
  EXPECT_EQ(e[1].rfind("backends[2].options.path: ", 0), 0u) << e[1];
}

// A URL's credentials never appear in its error: errors go to logs and
// terminals. A password with a '/' splits the URL where it should not, and
// its first piece was quoted as a bad port.
TEST(Config, AUrlsCredentialsAreNotInItsError) {
  const auto e = errors_of(R"({"backends": [
    {"name": "a", "type": "http", "options": {"url": "https:/admin:hunter2@h/x"}, "bindings": []},
    {"name": "b", "type": "http", "options": {"url": "https://admin:hun/ter2@h/x"}, "bindings": []},
    {"name": "c", "type": "http", "options": {"url": "https://edr:Secr3t?xyz@h/in"}, "bindings": []},
    {"name": "d", "type": "http", "options": {"url": "https://edr:Secr3t#xyz@h/in"}, "bindings": []}]})");
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0], R"(backends[0].options.url: "https:/***@h/x" is not a URL (scheme://...))");
  EXPECT_EQ(e[1], R"(backends[1].options.url: bad port "***" in the URL)");
  // A URL parser ends the authority at '?' and '#' too (RFC 3986): the
  // password's first piece was quoted as the port.
  EXPECT_EQ(e[2], R"(backends[2].options.url: bad port "***" in the URL)");
  EXPECT_EQ(e[3].find("Secr3t"), std::string::npos) << e[3];
}

// Headers the HTTP sink would refuse at start are refused by validate, with
// what is wrong and where: a name that is not a token, a control character
// in a value (CR and LF were the only ones checked, and only at start).
TEST(Config, HttpHeadersTheSinkWouldRefuseAreRefused) {
  const auto e = errors_of(R"({"backends": [{"name": "h", "type": "http", "options": {"url": "https://h/",
    "headers": {"X-Ok": "a value\twith a tab", "Bad Name": "x", "X-Nul": "a\u0000b", "X-Esc": "\u001b[31m",
                "Host": "other", "content-encoding": "gzip", "Upgrade": "h2c"}}, "bindings": []}]})");
  ASSERT_EQ(e.size(), 6u);
  EXPECT_EQ(e[0], "backends[0].options.headers[\"Bad Name\"]: header name \"Bad Name\" is not a token (letters, digits, "
                  "!#$%&'*+-.^_`|~)");
  EXPECT_EQ(e[1], "backends[0].options.headers.X-Nul: header X-Nul has a control character (0x00) at byte 1 of its value");
  EXPECT_EQ(e[2], "backends[0].options.headers.X-Esc: header X-Esc has a control character (0x1b) at byte 0 of its value");
  EXPECT_EQ(e[3], "backends[0].options.headers.Host: header Host is set by the sink itself");
  EXPECT_EQ(e[4], "backends[0].options.headers.content-encoding: header content-encoding is set by the sink itself "
                  "(use \"gzip\": true)");
  EXPECT_EQ(e[5], "backends[0].options.headers.Upgrade: header Upgrade is about the connection, which the sink keeps "
                  "itself");
}

// TLS options on a URL that is not TLS: the operator meant encryption and
// would have got plaintext (Basic credentials included).
TEST(Config, TlsOptionsOnAPlaintextUrlAreRefused) {
  const auto e = errors_of(R"({"backends": [
    {"name": "s", "type": "socket", "options": {"url": "syslog://h:6514", "ca_file": "/ca.pem"}, "bindings": []},
    {"name": "h", "type": "http", "options": {"url": "http://u:p@h/", "cert_file": "/c.pem"}, "bindings": []},
    {"name": "t", "type": "http", "options": {"url": "https://h/", "ca_file": "/ca.pem"}, "bindings": []}]})");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0], "backends[0].options.ca_file: a TLS option, but the url is not syslog+tls://: events would go in the clear");
  EXPECT_EQ(e[1], "backends[1].options.cert_file: a TLS option, but the url is not https://: events would go in the clear");
}

// The perf block has a slot for each ring and each enabled backend: a file
// with more passed validate and then the router refused to start.
TEST(Config, MoreRingsOrEnabledBackendsThanThePerfBlockHoldsAreRefused) {
  auto backends = [](int enabled, int disabled) {
    std::string out;
    for (int i = 0; i < enabled + disabled; ++i) {
      out += std::string(i ? "," : "") + R"({"name": "b)" + std::to_string(i) + R"(", "type": "amqp", "enabled": )" +
             (i < enabled ? "true" : "false") + R"(, "bindings": []})";
    }
    return out;
  };
  auto rings = [](int count) {
    std::string out;
    for (int i = 0; i < count; ++i) out += std::string(i ? "," : "") + R"({"name": "r)" + std::to_string(i) + R"("})";
    return out;
  };
  EXPECT_TRUE(errors_of(R"({"rings": [)" + rings(16) + R"(], "backends": [)" + backends(256, 10) + "]}").empty());
  auto e = errors_of(R"({"rings": [)" + rings(17) + R"(], "backends": [)" + backends(257, 0) + "]}");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0], "rings: 17 rings; at most 16 (the perf block's slots)");
  EXPECT_EQ(e[1], "backends: 257 enabled backends; at most 256 (the perf block's slots)");
}

// Each (account, app) pair of a binding is compiled on its own: a binding
// of thousands of each, or many of them, is refused before it is compiled
// into gigabytes.
TEST(Config, BindingsThatWouldCompileToGigabytesAreRefused) {
  auto names = [](const char* prefix, int count) {
    std::string out;
    for (int i = 0; i < count; ++i) out += std::string(i ? "," : "") + "\"" + prefix + std::to_string(i) + "\"";
    return out;
  };
  auto binding = [&](int accounts, int apps) {
    return R"({"account_id": [)" + names("a", accounts) + R"(], "app_name": [)" + names("p", apps) + "]}";
  };
  auto e = errors_of(R"({"backends": [{"name": "x", "type": "amqp", "bindings": [)" + binding(1001, 1000) + "]}]}");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends[0].bindings[0]: 1001 account ids and 1000 app names compile to 1001000 leaves (an "
                  "(account, app) pair each, twice with include_descendants, each with a node for every word of the "
                  "topic); at most 1000000 a binding (split it, or use \"*\")");
  // Each leaf has its own copy of the topic, a node a word: 100 accounts,
  // 100 apps and a 100-word topic passed, and took 387 MB to compile.
  std::string words = "w";
  for (int i = 1; i < 100; ++i) words += ".w";
  e = errors_of(R"({"backends": [{"name": "x", "type": "amqp", "bindings": [{"account_id": [)" + names("a", 100) +
                R"(], "app_name": [)" + names("p", 100) + R"(], "topic": ")" + words + "\"}]}]}");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].rfind("backends[0].bindings[0]: 100 account ids and 100 app names with a topic compile to 1010000 "
                       "leaves", 0), 0u) << e[0];
  // A "*" among the names is one any-node, whatever else the list holds.
  EXPECT_TRUE(errors_of(R"({"backends": [{"name": "x", "type": "amqp", "bindings": [{"account_id": ["*",)" +
                        names("a", 2000) + R"(], "app_name": [)" + names("p", 1000) + "]}]}]}")
                  .empty());
  std::string many;
  for (int i = 0; i < 17; ++i) many += (i ? "," : "") + binding(1000, 1000);
  e = errors_of(R"({"backends": [{"name": "x", "type": "amqp", "bindings": [)" + many + "]}]}");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends: the bindings compile to 17000000 leaves in all (an (account, app) pair each, with a "
                  "node for every word of its topic); at most 16000000 (use \"*\" or fewer names)");
}

// A topic pattern is at most an AMQP binding key's 255 bytes: each word is
// a node under every leaf, and a pattern of thousands compiled to
// gigabytes, or to a walk that cost each event seconds.
TEST(Config, ATopicPatternLongerThanAnAmqpBindingKeyIsAnError) {
  std::string words = "a";
  while (words.size() < 255) words += ".a";
  ASSERT_EQ(words.size(), 255u);
  EXPECT_TRUE(errors_of(R"({"backends": [{"name": "x", "type": "amqp", "bindings": [{"topic": ")" + words +
                        R"("}]}]})").empty());
  const auto e = errors_of(R"({"backends": [{"name": "x", "type": "amqp", "bindings": [{"topic": ")" + words +
                           R"(.b"}]}]})");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends[0].bindings[0].topic: 257 bytes; a topic pattern holds at most 255, as an AMQP binding "
                  "key does");
}

// A name longer than any event field matches nothing: said, not compiled
// into a binding that silently never matches.
TEST(Config, ANameLongerThanAnyEventFieldIsAnError) {
  const std::string long_name(65536, 'x');
  auto e = errors_of(R"({"backends": [{"name": "x", "type": "amqp", "bindings": [{"app_name": ["ok", ")" +
                     long_name + R"("]}]}]})");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].rfind("backends[0].bindings[0].app_name[1]: 65536 bytes; no event field holds more than 65535", 0),
            0u)
      << e[0].substr(0, 200);
  EXPECT_TRUE(errors_of(R"({"backends": [{"name": "x", "type": "amqp", "bindings": [{"account_id": ")" +
                        std::string(65535, 'a') + R"("}]}]})")
                  .empty());
}

// Names are checked with a table, not pair by pair (a config of 40,000
// backends took 4 s to validate that way): the one duplicate among many is
// named with its first occurrence.
TEST(Config, TheDuplicateAmongManyBackendNamesIsNamedWithItsFirst) {
  std::string backends;
  constexpr int kBackends = 20'000;
  for (int i = 0; i < kBackends; ++i) {
    backends += (i ? "," : "") + std::string(R"({"name": "b)") + std::to_string(i % (kBackends - 1)) +
                R"(", "type": "amqp", "enabled": false, "bindings": []})";  // disabled: past the perf block's slots
  }
  const auto e = errors_of(R"({"backends": [)" + backends + "]}");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends[" + std::to_string(kBackends - 1) + "].name: duplicate backend name \"b0\" (also backends[0])");
}

TEST(Config, OptionValuesAreChecked) {
  const auto e = errors_of(R"({"backends": [
    {"name": "h", "type": "http", "options": {"url": "http://u:p@h/x?q=1", "method": "get", "async": true,
      "headers": {"X-A": 1}, "batch": {"format": "xml"}}, "bindings": []},
    {"name": "s", "type": "socket", "options": {"url": "syslog+tls://h:6514", "framing": "lf",
      "facility": "local9"}, "bindings": []},
    {"name": "f", "type": "file", "options": {"path": "", "io": "aio", "keep": -1}, "bindings": []}]})");
  EXPECT_TRUE(has_error(e, "backends[0].options.method: unknown value \"get\" (expected post, put or patch)"));
  EXPECT_TRUE(has_error(e, "backends[0].options.headers.X-A: expected a string, got a number"));
  EXPECT_TRUE(has_error(e, "backends[0].options.batch.format: unknown value \"xml\" (expected ndjson or array)"));
  EXPECT_TRUE(has_error(e, "backends[1].options.framing: unknown value \"lf\" (expected octet-counting or newline)"));
  EXPECT_TRUE(has_error(e, "backends[2].options.path: must not be empty"));
  EXPECT_TRUE(has_error(e, "backends[2].options.io: unknown value \"aio\" (expected uring or write)"));
  bool async_refused = false, keep_refused = false, facility_refused = false;
  for (const auto& m : e) {
    async_refused = async_refused || m.rfind("backends[0].options.async: only false", 0) == 0;
    keep_refused = keep_refused || m.rfind("backends[2].options.keep: expected a whole number", 0) == 0;
    facility_refused = facility_refused || m.rfind("backends[1].options.facility: unknown value \"local9\"", 0) == 0;
  }
  EXPECT_TRUE(async_refused);
  EXPECT_TRUE(keep_refused);
  EXPECT_TRUE(facility_refused);
  EXPECT_EQ(e.size(), 9u);
}

// Options read only on streams or only on datagrams were accepted on the
// other and never used; and every facility the encoder knows is taken.
TEST(Config, StreamOptionsOnDatagramsAndDatagramOptionsOnStreamsAreRefused) {
  const auto e = errors_of(R"({"backends": [
    {"name": "a", "type": "socket", "options": {"url": "syslog+udp://h:514", "framing": "newline"}, "bindings": []},
    {"name": "b", "type": "socket", "options": {"url": "unixgram:///dev/log", "framing": "octet-counting"}, "bindings": []},
    {"name": "c", "type": "socket", "options": {"url": "syslog://h", "max_datagram_bytes": 100}, "bindings": []},
    {"name": "d", "type": "socket", "options": {"url": "syslog+udp://h:514", "max_datagram_bytes": 100}, "bindings": []},
    {"name": "e", "type": "socket", "options": {"url": "unix:///run/x.sock", "framing": "newline"}, "bindings": []}]})");
  EXPECT_TRUE(has_error(e, "backends[0].options.framing: a datagram carries one message whole, unframed (syslog+udp): "
                           "leave framing out"));
  EXPECT_TRUE(has_error(e, "backends[1].options.framing: a datagram carries one message whole, unframed (unixgram): "
                           "leave framing out"));
  EXPECT_TRUE(has_error(e, "backends[2].options.max_datagram_bytes: read only for datagrams (syslog+udp, unixgram), "
                           "and syslog is a stream: leave it out"));
  EXPECT_EQ(e.size(), 3u);
  for (const char* facility : {"ntp", "security", "console", "solaris-cron", "local7", "kern"}) {
    EXPECT_TRUE(errors_of(R"({"backends": [{"name": "a", "type": "socket", "options": {"url": "syslog://h", )"
                          R"("facility": ")" + std::string(facility) + R"("}, "bindings": []}]})")
                    .empty())
        << facility;
  }
}

// A URL the sink would refuse when the router starts is refused by the
// config already (the same parser), with the reason.
TEST(Config, UrlsTheSinksWouldRefuseAtStartAreRefused) {
  const auto e = errors_of(R"({"backends": [
    {"name": "a", "type": "http", "options": {"url": "http://host:99999/x"}, "bindings": []},
    {"name": "b", "type": "socket", "options": {"url": "syslog://:514"}, "bindings": []},
    {"name": "c", "type": "socket", "options": {"url": "unix://relative.sock"}, "bindings": []},
    {"name": "d", "type": "socket", "options": {"url": "syslog+tcp://[::1:514"}, "bindings": []},
    {"name": "e", "type": "http", "options": {"url": "https://[::1]:8443/ok"}, "bindings": []},
    {"name": "f", "type": "http", "options": {"url": "http://host/a b"}, "bindings": []},
    {"name": "g", "type": "http", "options": {"url": "http://host/hook\r\nX-Evil: 1"}, "bindings": []},
    {"name": "h", "type": "http", "options": {"url": "http://host/hook#part"}, "bindings": []},
    {"name": "i", "type": "socket", "options": {"url": "syslog://::1"}, "bindings": []},
    {"name": "j", "type": "socket", "options": {"url": "syslog://u:p@host:514"}, "bindings": []},
    {"name": "k", "type": "socket", "options": {"url": "syslog+tls://host:6514/drain?x=1"}, "bindings": []},
    {"name": "l", "type": "socket", "options": {"url": "syslog+udp://host:514/"}, "bindings": []},
    {"name": "m", "type": "http", "options": {"url": "http://host/caf\u00e9"}, "bindings": []},
    {"name": "n", "type": "http", "options": {"url": "http://[fe80::1%25eth0]:8080/"}, "bindings": []},
    {"name": "o", "type": "http", "options": {"url": "http://u:p\u00e4ss@host/"}, "bindings": []},
    {"name": "p", "type": "http", "options": {"url": "http://us%3Aer:pw@host/"}, "bindings": []},
    {"name": "q", "type": "http", "options": {"url": "http://host/a%zz"}, "bindings": []},
    {"name": "r", "type": "http", "options": {"url": "http://host/a%2?b=%2"}, "bindings": []},
    {"name": "s", "type": "http", "options": {"url": "http://host/a{b}?tags=a|b&q=50%"}, "bindings": []},
    {"name": "t", "type": "http", "options": {"url": "http://u%7B:p%25{@host/a%20b?c=%7C"}, "bindings": []},
    {"name": "u", "type": "http", "options": {"url": "http://host?x=/%zz"}, "bindings": []}]})");
  EXPECT_TRUE(has_error(e, "backends[0].options.url: bad port \"99999\" in the URL"));
  EXPECT_TRUE(has_error(e, "backends[1].options.url: the URL has no host"));
  EXPECT_TRUE(has_error(e, "backends[2].options.url: a unix socket URL needs an absolute path (unix:///run/receiver.sock)"));
  EXPECT_TRUE(has_error(e, "backends[3].options.url: unclosed '[' in the URL's host"));
  EXPECT_TRUE(has_error(e, "backends[5].options.url: the URL holds a space or control character at byte 13 (percent-encode it: %20)"));
  EXPECT_TRUE(has_error(e, "backends[6].options.url: the URL holds a space or control character at byte 16 (percent-encode it: %20)"));
  EXPECT_TRUE(has_error(e, "backends[7].options.url: the URL holds a fragment (#...), which is never sent to a server: remove it"));
  EXPECT_TRUE(has_error(e, "backends[8].options.url: an IPv6 address in a URL goes in brackets ([::1]:514)"));
  // A syslog destination is a host and a port: the rest was dropped silently.
  EXPECT_TRUE(has_error(e, "backends[9].options.url: a syslog URL names a host and port only: its user information "
                           "would go nowhere"));
  EXPECT_TRUE(has_error(e, "backends[10].options.url: a syslog URL names a host and port only: its path or query "
                           "would go nowhere"));
  // Raw bytes outside ASCII went into the request line; a zone was
  // neither resolved nor kept out of the Host header.
  EXPECT_TRUE(has_error(e, "backends[12].options.url: the URL holds a byte outside ASCII at byte 15 (percent-encode "
                           "it in the path or query; a host name goes in its xn-- form)"));
  EXPECT_TRUE(has_error(e, "backends[13].options.url: an IPv6 zone (%25...) in the URL's host is not supported: use "
                           "the address of an interface that needs none"));
  // Basic authentication can't carry a ':' in the user name: sent, the
  // server read "us" and the password "er:pw" (the wire review).
  EXPECT_TRUE(has_error(e, "backends[15].options.url: the URL's user name holds a ':' (%3A), which HTTP Basic "
                           "authentication can't carry (RFC 7617): the server would read what follows it as the "
                           "password"));
  // A path nginx answers 400 to, every event then rejected; a query is
  // the application's to read, and raw characters nginx takes pass.
  EXPECT_TRUE(has_error(e, "backends[16].options.url: the URL's path holds a '%' at byte 13 that two hex digits do "
                           "not follow (a '%' itself is %25)"));
  EXPECT_TRUE(has_error(e, "backends[17].options.url: the URL's path holds a '%' at byte 13 that two hex digits do "
                           "not follow (a '%' itself is %25)"));
  // The user information is decoded and sent in base64: any byte may be there.
  EXPECT_EQ(e.size(), 15u);
}

TEST(Config, RingsAreChecked) {
  const auto e = errors_of(R"({"rings": [{"name": "r", "size_bytes": 3000, "mode": "rw"}, {"name": "r"}]})");
  EXPECT_TRUE(has_error(e, "rings[0].size_bytes: 3000 is not a power of two"));
  EXPECT_TRUE(has_error(e, "rings[0].mode: \"rw\" is not an octal mode such as \"0660\""));
  EXPECT_TRUE(has_error(e, "rings[1].name: duplicate ring name \"r\" (also rings[0])"));
  // Two without a name share the default one: said at the second ring,
  // not at a "name" the file does not have.
  EXPECT_EQ(errors_of(R"({"rings": [{}, {"size_bytes": 4096}]})"),
            std::vector<std::string>{"rings[1]: no name, so the default name \"ringroute\" (also rings[0])"});
  // A name that is not a string is said as such, not as a duplicate too.
  EXPECT_EQ(errors_of(R"({"rings": [{}, {"name": 5}]})").size(), 1u);
  EXPECT_EQ(errors_of(R"({"rings": [{"name": ")" + std::string(129, 'r') + R"("}]})").size(), 1u);
  EXPECT_TRUE(errors_of(R"({"rings": [{"name": ")" + std::string(128, 'r') + R"("}]})").empty());
  // They name no file of their own under /dev/shm: validate passed them,
  // and the router could not make the ring.
  const auto dots = errors_of(R"({"rings": [{"name": "."}, {"name": ".."}]})");
  ASSERT_EQ(dots.size(), 2u);
  EXPECT_EQ(dots[0], "rings[0].name: \".\" is not a valid name (1 to 128 characters of A-Z a-z 0-9 _ - ., not . or ..)");
  // Entries that are not rings are errors of their own, not duplicates of
  // the default name.
  const auto not_rings = errors_of(R"({"rings": [1, 2]})");
  EXPECT_EQ(not_rings.size(), 2u);
  for (const auto& m : not_rings) EXPECT_EQ(m.find("duplicate"), std::string::npos) << m;
}

// A mode with setuid, setgid or sticky bits, or one that keeps the owner
// (the router) from reading and writing its ring, passed validate.
TEST(Config, ARingsModeIsOneARingCanUse) {
  const auto e = errors_of(R"({"rings": [{"name": "a", "mode": "7777"}, {"name": "b", "mode": "000"},
                                          {"name": "c", "mode": "0460"}]})");
  ASSERT_EQ(e.size(), 3u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0], "rings[0].mode: \"7777\" sets setuid, setgid or sticky bits, which a ring has no use for (at most "
                  "\"0777\")");
  EXPECT_EQ(e[1], "rings[1].mode: \"000\" does not let the owner (the router) read and write the ring");
  EXPECT_EQ(e[2], "rings[2].mode: \"0460\" does not let the owner (the router) read and write the ring");
  EXPECT_TRUE(errors_of(R"({"rings": [{"name": "a", "mode": "600"}, {"name": "b", "mode": "0777"}]})").empty());
}

// server_name is a host name or an address: a NUL cut the name checked,
// and SNI carries 253 bytes at most.
TEST(Config, ServerNameIsAHostNameOrAnAddress) {
  const auto with = [](const std::string& name) {
    return errors_of(R"({"backends": [{"name": "h", "type": "http", "bindings": [], "options": {"url": )"
                     R"("https://10.0.0.5/", "server_name": ")" + name + R"("}}]})");
  };
  for (const char* good : {"logs.example", "logs.example.", "LOGS-1.example", "10.0.0.5", "::1", "under_score.example"}) {
    EXPECT_TRUE(with(good).empty()) << good;
  }
  for (const std::string& bad : {std::string(R"(logs\u0000.example)"), std::string(R"(10.0.0.5\u0000x)"),
                                 std::string("[::1]"), std::string("a b"),
                                 std::string(".example"), std::string("a..b"), std::string(254, 'a'), std::string()}) {
    const auto e = with(bad);
    ASSERT_EQ(e.size(), 1u) << bad;
    EXPECT_NE(e[0].find("backends[0].options.server_name: "), std::string::npos) << e[0];
  }
}

// syslog_format is rfc5424 or rfc3164; RFC 3164 has no STRUCTURED-DATA to
// put the ids asked for in.
TEST(Config, SyslogFormatIsCheckedAndRfc3164TakesNoStructuredData) {
  const std::string head = R"({"backends": [{"name": "s", "type": "socket", "bindings": [], "options": {"url": )"
                           R"("unixgram:///dev/log", )";
  EXPECT_TRUE(errors_of(head + R"("syslog_format": "rfc3164"}}]})").empty());
  EXPECT_TRUE(errors_of(head + R"("syslog_format": "rfc5424", "structured_data": true}}]})").empty());
  const auto bad = errors_of(head + R"("syslog_format": "bsd"}}]})");
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_EQ(bad[0].rfind("backends[0].options.syslog_format: ", 0), 0u) << bad[0];
  EXPECT_EQ(errors_of(head + R"("syslog_format": "rfc3164", "structured_data": true}}]})"),
            std::vector<std::string>{"backends[0].options.structured_data: RFC 3164 (syslog_format) has no "
                                     "STRUCTURED-DATA; leave structured_data out, or use rfc5424"});
}

// A ring named as a perf block is that file under /dev/shm: validate passed
// it, and the two wiped each other. Another instance's block too: a router
// of the default instance cut a ring "ringroute.perf" that gw1's producers
// had mapped.
TEST(Config, ARingMayNotBeNamedAsAPerfBlock) {
  EXPECT_EQ(errors_of(R"({"rings": [{"name": "ringroute.perf"}]})"),
            std::vector<std::string>{"rings[0].name: \"ringroute.perf\" is the file of instance \"ringroute\"'s perf "
                                     "block (/dev/shm/ringroute.perf): a ring's name may not end in \".perf\""});
  EXPECT_EQ(errors_of(R"({"instance": "gw1", "rings": [{"name": "r"}, {"name": "gw1.perf"}]})").size(), 1u);
  EXPECT_EQ(errors_of(R"({"instance": "gw1", "rings": [{"name": "ringroute.perf"}]})").size(), 1u);
  EXPECT_TRUE(errors_of(R"({"rings": [{"name": "perf"}, {"name": "ringroute.perf2"}]})").empty());
}

// admin.listen took any string ("not an address" was noted as listened on).
TEST(Config, AdminListenIsHostAndPort) {
  for (const char* good : {"127.0.0.1:5000", "[::1]:5000", "localhost:1", "0.0.0.0:65535"}) {
    EXPECT_TRUE(errors_of(R"({"admin": {"listen": ")" + std::string(good) + R"("}})").empty()) << good;
  }
  for (const char* bad : {"not an address", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", ":5000", "::1:5000",
                          "host:50x0", "[]:5000", "/run/x.sock"}) {
    const auto e = errors_of(R"({"admin": {"listen": ")" + std::string(bad) + R"("}})");
    ASSERT_EQ(e.size(), 1u) << bad;
    EXPECT_EQ(e[0], "admin.listen: \"" + std::string(bad) +
                        "\" is not HOST:PORT (\"127.0.0.1:5000\", \"[::1]:5000\"; port 1 to 65535)");
  }
}

TEST(Config, NullIsTheSameAsAbsent) {
  const ConfigResult r = parse_config(R"({"instance": null, "rings": null, "backends": [
    {"name": "f", "type": "file", "enabled": null, "options": {"path": "/p", "fsync": null},
     "bindings": [{"severity": null, "account_id": null}]}]})");
  ASSERT_TRUE(r.config) << r.errors[0].to_string();
  EXPECT_TRUE(r.config->backends[0].enabled);
}

// ... to the sinks too: `"batch": null` validated as unbatched (so pretty
// output passed), and the http sink, which read the options' text, took it
// as batched. A TLS option set to null is no TLS option.
TEST(Config, NullOptionsAreAbsentToTheSinksToo) {
  const ConfigResult r = parse_config(R"({"backends": [
    {"name": "h", "type": "http", "options": {"url": "http://127.0.0.1:9/x", "batch": null, "ca_file": null,
     "formatter": {"options": {"pretty": true, "normalize": null}}}, "bindings": []}]})");
  ASSERT_TRUE(r.config) << r.errors[0].to_string();
  EXPECT_EQ(r.config->backends[0].options_json,
            R"({"url":"http://127.0.0.1:9/x","formatter":{"options":{"pretty":true}}})");
}

// The sink refused half a client certificate at start; validate passed it.
TEST(Config, HalfAClientCertificateIsRefused) {
  const auto e = errors_of(R"({"backends": [
    {"name": "s", "type": "socket", "options": {"url": "syslog+tls://h:6514", "cert_file": "/c.pem"}, "bindings": []},
    {"name": "h", "type": "http", "options": {"url": "https://h/", "key_file": "/k.pem"}, "bindings": []},
    {"name": "t", "type": "http", "options": {"url": "https://h/", "cert_file": "/c.pem", "key_file": "/k.pem"}, "bindings": []}]})");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0], "backends[0].options.key_file: required with cert_file (a client certificate needs both)");
  EXPECT_EQ(e[1], "backends[1].options.cert_file: required with key_file (a client certificate needs both)");
}

// `validate` loads TLS files as the sink loads them at start: a config that
// validated, with a CA file that is not one, was refused by `run` (and a
// reload) with no JSON path. Devices and FIFOs are refused before they are
// read (OpenSSL read /dev/zero for good), and an encrypted key is said to
// be one (OpenSSL asked for its passphrase on the terminal). Only enabled
// backends: `run` makes no sink for the others.
TEST(Config, TlsFilesThatDoNotLoadAreRefusedByValidate) {
  const testing::TempDir dir("config-tls");
  const auto tls_errors = [](const std::string& options, bool enabled = true) {
    const tools::ConfigResult parsed =
        tools::parse_config(R"({"backends": [{"name": "t", "type": "http", "enabled": )" +
                            std::string(enabled ? "true" : "false") + R"(, "options": {"url": "https://h/", )" +
                            options + R"(}, "bindings": []}]})");
    std::vector<std::string> out;
    if (!parsed.config) return std::vector<std::string>{"did not parse"};
    for (const auto& error : tools::tls_file_errors(parsed)) out.push_back(error.to_string());
    return out;
  };
  std::ofstream(dir / "junk.pem") << "not a certificate\n";
  auto e = tls_errors(R"("ca_file": ")" + (dir / "junk.pem") + "\"");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].rfind("backends[0].options.ca_file: TLS: can't load CA certificates from " + (dir / "junk.pem"), 0), 0u)
      << e[0];
  e = tls_errors(R"("ca_file": "/dev/zero")");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends[0].options.ca_file: TLS: ca_file /dev/zero: not a regular file");
  e = tls_errors(R"("cert_file": "/nonexistent/c.pem", "key_file": "/nonexistent/k.pem")");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends[0].options.cert_file: TLS: cert_file /nonexistent/c.pem: No such file or directory");
  EXPECT_TRUE(tls_errors(R"("ca_file": "/nonexistent/ca.pem")", false).empty());  // disabled

  const testing::TestPki pki = testing::make_test_pki(dir);
  if (!pki.ok()) GTEST_SKIP() << "no openssl command to make certificates with";
  EXPECT_TRUE(tls_errors(R"("ca_file": ")" + pki.ca + R"(", "cert_file": ")" + pki.client_cert + R"(", "key_file": ")" +
                         pki.client_key + "\"")
                  .empty());
  const std::string encrypted = dir / "encrypted.key";
  ASSERT_EQ(std::system(("openssl pkey -in " + pki.client_key + " -aes256 -passout pass:secret -out " + encrypted +
                         " 2>/dev/null")
                            .c_str()),
            0);
  e = tls_errors(R"("cert_file": ")" + pki.client_cert + R"(", "key_file": ")" + encrypted + "\"");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends[0].options.key_file: TLS: key_file " + encrypted +
                      " is encrypted: give its passphrase with key_passphrase (from the environment: \"${NAME}\")");
  const std::string pair = R"("cert_file": ")" + pki.client_cert + R"(", "key_file": ")" + encrypted + "\"";
  e = tls_errors(pair + R"(, "key_passphrase": "wrong")");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends[0].options.key_passphrase: TLS: key_passphrase does not decrypt key_file " + encrypted);
  EXPECT_TRUE(tls_errors(pair + R"(, "key_passphrase": "secret")").empty());
  e = tls_errors(pair + R"(, "key_passphrase": ")" + std::string(1100, 'x') + "\"");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends[0].options.key_passphrase: TLS: key_passphrase is longer than OpenSSL takes (1024 bytes)");
  // A key that is not one is the key's fault, not the certificate's.
  e = tls_errors(R"("cert_file": ")" + pki.client_cert + R"(", "key_file": ")" + (dir / "junk.pem") + "\"");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].rfind("backends[0].options.key_file: TLS: client certificate ", 0), 0u) << e[0];

  // A CA directory: one that is not there, or not a directory, would only
  // show as every handshake failing to verify.
  e = tls_errors(R"("ca_path": "/nonexistent/certs")");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends[0].options.ca_path: TLS: ca_path /nonexistent/certs: No such file or directory");
  e = tls_errors(R"("ca_path": ")" + pki.ca + "\"");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends[0].options.ca_path: TLS: ca_path " + pki.ca + ": not a directory");
  EXPECT_TRUE(tls_errors(R"("ca_path": ")" + dir.path() + "\"").empty());

  // Every file at fault, not the first: a bad CA file hid a bad CA
  // directory and a certificate that is not there.
  e = tls_errors(R"("ca_file": "/nonexistent/ca.pem", "ca_path": "/nonexistent/certs", "cert_file": "/nonexistent/c.pem", "key_file": ")" +
                 pki.client_key + "\"");
  ASSERT_EQ(e.size(), 3u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0].rfind("backends[0].options.ca_file: ", 0), 0u) << e[0];
  EXPECT_EQ(e[1].rfind("backends[0].options.ca_path: ", 0), 0u) << e[1];
  EXPECT_EQ(e[2].rfind("backends[0].options.cert_file: ", 0), 0u) << e[2];
}

// A removed backend's drain is bounded: ten minutes is already longer than
// any supervisor waits for a reload.
TEST(Config, TheRemovedBackendsDrainIsHeldToItsRange) {
  const auto past = errors_of(R"({"router": {"removed_backend_drain_ms": 600001}})");
  ASSERT_EQ(past.size(), 1u);
  EXPECT_TRUE(has_error_starting(past, "router.removed_backend_drain_ms: 600001 is out of range (0 to 600000)"))
      << past[0];
  const auto text = errors_of(R"({"router": {"removed_backend_drain_ms": "5s"}})");
  ASSERT_EQ(text.size(), 1u);
  EXPECT_TRUE(has_error_starting(text, "router.removed_backend_drain_ms: ")) << text[0];
  const ConfigResult r = parse_config(R"({"router": {"removed_backend_drain_ms": 600000}})");
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->removed_backend_drain_ms, 600000u);
}

// validate says every error at once: TLS files beside the config's other
// errors, and the rest of the config beside a variable that is not set
// (whose string is not judged, nor what reads it).
TEST(Config, ValidateSaysEveryErrorAtOnce) {
  const testing::TempDir dir("config-all");
  const std::string config = dir / "edr.json";
  ::unsetenv("RR_TEST_NOT_SET");
  std::ofstream(config) << R"({"instance": "${RR_TEST_NOT_SET}", "router": {"workers": 0}, "zz": 1, "backends": [
    {"name": "t", "type": "http", "options": {"url": "https://h/", "ca_file": "/nonexistent/ca.pem"}, "bindings": []},
    {"name": "u", "type": "http", "options": {"url": "${RR_TEST_NOT_SET}", "ca_file": "/etc/hosts"}, "bindings": []},
    {"name": "f", "type": "file", "options": {"path": "/sys/x/${RR_TEST_NOT_SET}"}, "bindings": []},
    {"name": "g", "type": "file", "options": {"path": "/sys/x/"}, "bindings": []}]})";
  const tools::ConfigResult parsed = tools::load_config_file(config);
  std::vector<std::string> all;
  for (const auto& error : parsed.errors) all.push_back(error.to_string());
  for (const auto& error : tools::tls_file_errors(parsed)) all.push_back(error.to_string());
  const std::string listed = ::testing::PrintToString(all);
  EXPECT_TRUE(has_error_starting(all, "instance: environment variable RR_TEST_NOT_SET is not set")) << listed;
  EXPECT_TRUE(has_error_starting(all, "backends[1].options.url: environment variable RR_TEST_NOT_SET is not set")) << listed;
  EXPECT_TRUE(has_error_starting(all, "backends[2].options.path: environment variable RR_TEST_NOT_SET is not set")) << listed;
  EXPECT_TRUE(has_error_starting(all, "router.workers: ")) << listed;
  EXPECT_TRUE(has_error_starting(all, "zz: unknown key")) << listed;
  EXPECT_TRUE(has_error_starting(all, "backends[3].options.path: ")) << listed;  // a directory
  EXPECT_TRUE(has_error_starting(all, "backends[0].options.ca_file: TLS: ")) << listed;
  // Nothing judged the unexpanded strings ("${...}" is no URL, and no name).
  EXPECT_EQ(all.size(), 7u) << listed;

  // Nor a check across members that reads one (fsync for its interval, the
  // url for pretty output); but one above them that does not read them (how
  // many rings) is still said.
  std::string rings;
  for (int i = 0; i < 17; ++i) {
    rings += std::string(i ? "," : "") + R"({"name": ")" + (i ? "r" + std::to_string(i) : "${RR_TEST_NOT_SET}") + "\"}";
  }
  const auto across = errors_of(R"({"rings": [)" + rings + R"(], "backends": [
    {"name": "f", "type": "file", "options": {"path": "/sys/f", "fsync": "${RR_TEST_NOT_SET}", "fsync_interval_ms": 100},
     "bindings": []},
    {"name": "s", "type": "socket", "options": {"url": "${RR_TEST_NOT_SET}", "format": "ndjson",
     "formatter": {"type": "json", "options": {"pretty": true}}}, "bindings": []},
    {"name": "g", "type": "file", "options": {"path": "/sys/g", "fsync": 5, "fsync_interval_ms": 100}, "bindings": []}]})");
  const std::string across_listed = ::testing::PrintToString(across);
  ASSERT_EQ(across.size(), 5u) << across_listed;
  EXPECT_TRUE(has_error_starting(across, "rings[0].name: environment variable")) << across_listed;
  EXPECT_TRUE(has_error_starting(across, "backends[0].options.fsync: environment variable")) << across_listed;
  EXPECT_TRUE(has_error_starting(across, "backends[1].options.url: environment variable")) << across_listed;
  EXPECT_TRUE(has_error_starting(across, "backends[2].options.fsync: expected one of")) << across_listed;
  EXPECT_TRUE(has_error(across, "rings: 17 rings; at most 16 (the perf block's slots)")) << across_listed;

  // What an error says of a key or of the members beside it holds whatever
  // the value: an unknown key, a TLS option on a url in the clear, a TLS
  // file of another option; and a disabled backend with an error is still
  // not counted as enabled.
  std::string backends;
  for (int i = 0; i < 256; ++i) {
    backends += R"({"name": "b)" + std::to_string(i) + R"(", "type": "file", "options": {"path": "/sys/b)" +
                std::to_string(i) + R"("}, "bindings": []},)";
  }
  const tools::ConfigResult keys = tools::parse_config(R"({"backends": [)" + backends + R"(
    {"name": "off", "type": "file", "enabled": false, "options": {"path": "/sys/off", "fsync": "${RR_TEST_NOT_SET}"},
     "bindings": []},
    {"name": "h", "type": "http", "enabled": false, "options": {"url": "http://h/", "ca_file": "${RR_TEST_NOT_SET}",
     "typo": "${RR_TEST_NOT_SET}"}, "bindings": []}]})");
  std::vector<std::string> key_errors;
  for (const auto& error : keys.errors) key_errors.push_back(error.to_string());
  const std::string keys_listed = ::testing::PrintToString(key_errors);
  ASSERT_EQ(key_errors.size(), 5u) << keys_listed;
  EXPECT_TRUE(has_error_starting(key_errors, "backends[257].options.typo: unknown key")) << keys_listed;
  EXPECT_TRUE(has_error_starting(key_errors, "backends[257].options.ca_file: a TLS option, but the url is not"))
      << keys_listed;
  const tools::ConfigResult files = tools::parse_config(R"({"backends": [
    {"name": "t", "type": "http", "options": {"url": "https://h/", "ca_file": "/nonexistent/ca.pem",
     "cert_file": "${RR_TEST_NOT_SET}", "key_file": "/nonexistent/k.pem", "headers": {"Authorization": "${RR_TEST_NOT_SET}"}},
     "bindings": []}]})");
  std::vector<std::string> file_errors;
  for (const auto& error : files.errors) file_errors.push_back(error.to_string());
  for (const auto& error : tools::tls_file_errors(files)) file_errors.push_back(error.to_string());
  const std::string files_listed = ::testing::PrintToString(file_errors);
  ASSERT_EQ(file_errors.size(), 3u) << files_listed;
  EXPECT_TRUE(has_error_starting(file_errors, "backends[0].options.ca_file: TLS: ")) << files_listed;
}

// The new TLS options are TLS options: refused in the clear, and a
// passphrase needs its key.
TEST(Config, CaPathAndKeyPassphraseAreTlsOptions) {
  const auto e = errors_of(R"({"backends": [
    {"name": "a", "type": "http", "options": {"url": "http://h/", "ca_path": "/etc/ssl/certs"}, "bindings": []},
    {"name": "b", "type": "socket", "options": {"url": "syslog+tls://h", "key_passphrase": "x"}, "bindings": []}]})");
  ASSERT_EQ(e.size(), 2u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0], "backends[0].options.ca_path: a TLS option, but the url is not https://: events would go in the clear");
  EXPECT_EQ(e[1], "backends[1].options.key_passphrase: the passphrase of key_file, which is not given");
}

// Each of these was taken without a word, and did something else than the
// operator meant: an empty ring list ran the default ring, an interval of
// syncs that are not interval syncs was never used, a Kazoo document as
// CouchDB keeps it got an unknown key each, and 1e400 was "not JSON".
TEST(Config, WhatWouldBeTakenWithoutAWordIsSaid) {
  EXPECT_EQ(errors_of(R"({"rings": []})"),
            std::vector<std::string>{
                "rings: empty: leave \"rings\" out for the one default ring (\"ringroute\"), or name a ring"});
  EXPECT_EQ(errors_of(R"({"backends": [{"name": "f", "type": "file", "options": {"path": "/sys/f", "fsync": "batch",
      "fsync_interval_ms": 100}, "bindings": []}]})"),
            std::vector<std::string>{
                "backends[0].options.fsync_interval_ms: read only with \"fsync\": \"interval\" (fsync is \"batch\")"});
  EXPECT_TRUE(has_error(errors_of(R"({"backends": [{"name": "f", "type": "file", "options": {"path": "/sys/f",
      "fsync_interval_ms": 100}, "bindings": []}]})"),
                        "backends[0].options.fsync_interval_ms: read only with \"fsync\": \"interval\" (fsync is "
                        "\"never\")"));
  // Said once, first: the document's own keys were each an unknown key
  // before it, four errors for one mistake.
  const auto couch = errors_of(R"({"_id": "edr", "_rev": "3-a", "pvt_type": "config", "default": {"backends": []},
      "instanse": "x"})");
  EXPECT_EQ(couch, (std::vector<std::string>{
                       "default: this looks like Kazoo's system_config/edr document: the config is the object under "
                       "\"default\" (without _id, _rev and the pvt_ keys)",
                       "instanse: unknown key (expected one of instance, rings, router, admin, backends)"}))
      << ::testing::PrintToString(couch);
  EXPECT_EQ(errors_of(R"({"router": {"workers": 1e400}})"),
            std::vector<std::string>{"router.workers: a number past what a double holds (about 1.8e308)"});
}

// JSON, but a number no parser here holds: it was said with a line and no
// path, and every other error in the file went unsaid until it was fixed.
// It is said at its path, as a value that isn't there (no second error
// judging it), and everything else is checked.
TEST(Config, ANumberTooLargeToReadIsSaidAtItsPathBesideEveryOtherError) {
  const ConfigResult result = parse_config(R"({"rings": [{"name": "r", "size_bytes": -1e999}],
    "backends": [{"name": "x", "type": "file", "options": {"path": "/sys/x", "keep": 1e999,
      "rotate_bytes": 18446744073709551616}, "bindings": [{"severity": "sever", "zz": 1e400}]},
      123456789012345678901234567890]})");
  std::vector<std::string> said;
  for (const auto& e : result.errors) said.push_back(e.located());
  EXPECT_EQ(said, (std::vector<std::string>{
                      "rings[0].size_bytes: a number past what a double holds (about 1.8e308) at line 1, column 40",
                      "backends[0].options.keep: a number past what a double holds (about 1.8e308) at line 2, "
                      "column 86",
                      "backends[0].options.rotate_bytes: an integer past 64 bits, and no number in a config goes "
                      "that far at line 3, column 23",
                      "backends[0].bindings[0].zz: a number past what a double holds (about 1.8e308) at line 3, "
                      "column 87",
                      "backends[1]: an integer past 64 bits, and no number in a config goes that far at line 4, "
                      "column 7",
                      "backends[0].bindings[0].severity: unknown level \"sever\" (expected ok, warning or critical) "
                      "at line 3, column 72",
                      "backends[0].bindings[0].zz: unknown key (expected one of account_id, include_descendants, "
                      "app_name, severity, exact_severity, verbosity, exact_verbosity, topic or filter) at line 3, "
                      "column 81"}))
      << ::testing::PrintToString(said);
}

// The edges of the above: as the whole document, said once with its
// place; past the 64 looked for, those found are said with their paths
// (not thrown away for the 65th alone); and no check across members reads
// the 0 that stands in for one (`keep` read as "keeps none").
TEST(Config, NumbersTooLargeToReadAtTheRootInNumbersAndBesideOtherBackends) {
  const auto root = parse_config("  1e400");
  ASSERT_EQ(root.errors.size(), 1u);
  EXPECT_EQ(root.errors[0].located(), "a number past what a double holds (about 1.8e308) at line 1, column 3");
  std::string many = R"({"router": {"workers": [)";
  for (int i = 0; i < 65; ++i) many += (i == 0 ? "" : ",") + std::string("1e999");
  many += "]}}";
  const auto lots = parse_config(many);
  ASSERT_EQ(lots.errors.size(), 65u);
  EXPECT_EQ(lots.errors[0].located(),
            "router.workers[0]: a number past what a double holds (about 1.8e308) at line 1, column 25");
  EXPECT_EQ(lots.errors[63].path, "router.workers[63]");
  EXPECT_NE(lots.errors[64].located().find("past 64 numbers too large to read, the rest of the file is checked once "
                                           "these are fixed"),
            std::string::npos)
      << lots.errors[64].located();
  EXPECT_EQ(errors_of(R"({"backends": [
      {"name": "a", "type": "file", "options": {"path": "/sys/rr-a.log", "rotate_bytes": 1000, "keep": 1e999},
       "bindings": []},
      {"name": "b", "type": "file", "options": {"path": "/sys/rr-a.log.7"}, "bindings": []}]})"),
            std::vector<std::string>{"backends[0].options.keep: a number past what a double holds (about 1.8e308)"});
}

// URL schemes are case-insensitive (RFC 3986 3.1), in the config's checks
// as in the sinks: "HTTPS://" was an unsupported scheme.
TEST(Config, UrlSchemesAreCaseInsensitive) {
  const auto good = errors_of(R"({"backends": [
    {"name": "a", "type": "http", "options": {"url": "HTTPS://h/", "ca_path": "/etc/ssl/certs"}, "bindings": []},
    {"name": "b", "type": "socket", "options": {"url": "Syslog+TLS://h:6514"}, "bindings": []},
    {"name": "c", "type": "socket", "options": {"url": "UNIX:///dev/log"}, "bindings": []}]})");
  EXPECT_TRUE(good.empty()) << ::testing::PrintToString(good);
  const auto clear = errors_of(R"({"backends": [
    {"name": "a", "type": "http", "options": {"url": "HTTP://h/", "ca_path": "/etc/ssl/certs"}, "bindings": []},
    {"name": "b", "type": "http", "options": {"url": "Gopher://h/"}, "bindings": []}]})");
  ASSERT_EQ(clear.size(), 2u) << ::testing::PrintToString(clear);
  EXPECT_EQ(clear[0].rfind("backends[1].options.url: unsupported scheme \"Gopher\"", 0), 0u) << clear[0];
  EXPECT_EQ(clear[1], "backends[0].options.ca_path: a TLS option, but the url is not https://: events would go in the clear");
}

// The sink sent every copy (two Content-Types, which servers may refuse).
TEST(Config, AnHttpHeaderGivenTwiceIsRefused) {
  const auto e = errors_of(R"({"backends": [{"name": "h", "type": "http", "options": {"url": "http://h/",
    "headers": {"X-A": "1", "x-a": "2"}}, "bindings": []}]})");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends[0].options.headers.x-a: header x-a is given twice (names are case-insensitive)");
}

// A path ending in "/" passed, and the sink retried opening a directory
// for ever (under `block` the ring filled).
TEST(Config, AFilePathNamingADirectoryIsRefused) {
  for (const char* path : {"/var/log/d/", "/var/log/.", "/var/log/.."}) {
    const auto e = errors_of(R"({"backends": [{"name": "f", "type": "file", "options": {"path": ")" +
                             std::string(path) + R"("}, "bindings": []}]})");
    ASSERT_EQ(e.size(), 1u) << path;
    EXPECT_EQ(e[0], "backends[0].options.path: \"" + std::string(path) + "\" names a directory, not a file");
  }
}

// Options that shape a syslog header were read and never used beside
// "format": "ndjson" (as structured_data is refused beside rfc3164).
TEST(Config, SyslogOnlyOptionsBesideNdjsonAreRefused) {
  const auto e = errors_of(R"({"backends": [{"name": "s", "type": "socket", "options": {"url": "syslog://h:514",
    "format": "ndjson", "structured_data": true, "facility": "local3", "syslog_format": "rfc5424",
    "framing": "newline", "syslog_severity": {"info": 5}}, "bindings": []}]})");
  const std::string says = ": read only with \"format\": \"syslog\" (NDJSON lines carry no syslog header or "
                           "framing): leave it out";
  EXPECT_EQ(e, (std::vector<std::string>{"backends[0].options.framing" + says,
                                         "backends[0].options.syslog_format" + says,
                                         "backends[0].options.facility" + says,
                                         "backends[0].options.structured_data" + says,
                                         "backends[0].options.syslog_severity" + says}));
  EXPECT_TRUE(errors_of(R"({"backends": [{"name": "s", "type": "socket", "options": {"url": "syslog://h:514",
    "format": "ndjson", "max_connections": 2}, "bindings": []}]})").empty());
}

// A NUL in a file's name cut it where the sink and OpenSSL open it: another
// file than the one validate compared with the other backends' paths (two
// backends, "a.log\u0000x" and "a.log", wrote one file).
TEST(Config, AFileNameWithAControlCharacterIsRefused) {
  auto e = errors_of(R"({"backends": [{"name": "f", "type": "file", "options": {"path": "a.log\u0000x"},
    "bindings": []}]})");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends[0].options.path: a control character (0x00) at byte 5 of a file's name");
  e = errors_of(R"({"backends": [{"name": "s", "type": "socket", "options": {"url": "syslog+tls://h:6514",
    "ca_file": "ca\u0001.pem", "key_file": "k.pem", "cert_file": "c.pem", "key_passphrase": "any\u0001thing"},
    "bindings": []}]})");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "backends[0].options.ca_file: a control character (0x01) at byte 2 of a file's name");
}

// 1e3 is whole, and was told only "expected a whole number from 0 to
// 100000"; an integer past 64 bits was told to be sent as a string, which
// no option takes.
TEST(Config, NumbersWrittenAsFloatsOrPast64BitsAreExplained) {
  auto keep = [](const std::string& value) {
    return errors_of(R"({"backends": [{"name": "f", "type": "file", "options": {"path": "/x", "keep": )" + value +
                     R"(}, "bindings": []}]})");
  };
  EXPECT_EQ(keep("1e3"), std::vector<std::string>{"backends[0].options.keep: expected a whole number from 0 to 100000 "
                                                  "written without a fraction or exponent (1000)"});
  EXPECT_EQ(keep("1.5"), std::vector<std::string>{"backends[0].options.keep: expected a whole number from 0 to 100000"});
  // Whole but out of range: the range is what to say.
  EXPECT_EQ(keep("1e9"), std::vector<std::string>{"backends[0].options.keep: expected a whole number from 0 to 100000"});
  EXPECT_EQ(keep("99999999999999999999"),
            std::vector<std::string>{
                "backends[0].options.keep: an integer past 64 bits, and no number in a config goes that far"});
  // A letter after the digits is a malformed number, not a large one.
  const auto typo = keep("12x");
  ASSERT_EQ(typo.size(), 1u);
  EXPECT_NE(typo[0].find("Problem while parsing a number"), std::string::npos) << typo[0];
}

// A key or value is quoted back in its error in part: whole, a 10 MB key
// made a 10 MB line (and a 500 KB level's name, half a megabyte).
TEST(Config, ErrorsQuoteLongKeysAndValuesInPart) {
  const std::string key(1'000'000, 'k'), level(500'000, 's');
  const std::string text = R"({"backends": [{"name": "b", "type": "file", "options": {"path": "/sys/x"},
      "bindings": [{")" + key + R"(": 1, "severity": ")" + level + R"("}]}]})";
  const auto e = errors_of(text);
  ASSERT_EQ(e.size(), 2u);
  for (const std::string& error : e) EXPECT_LT(error.size(), 1000u) << error.substr(0, 1000);
  EXPECT_EQ(e[0].rfind("backends[0].bindings[0]." + std::string(200 - 24, 'k') + "...", 0), 0u) << e[0].substr(0, 300);
  EXPECT_NE(e[0].find(" (a path of 1000024 bytes): unknown key"), std::string::npos) << e[0].substr(0, 600);
  EXPECT_NE(e[1].find("unknown level \"" + std::string(200, 's') + "\"... (500000 bytes) (expected ok, warning or critical)"),
            std::string::npos)
      << e[1].substr(0, 600);
  // A filter's word, literal and regular expression too.
  for (const std::string& filter : {"body.x = " + std::string(1'000'000, 'a'), "severity = '" + std::string(500'000, 'z') + "'",
                                   "x ~ '(" + std::string(300'000, 'b') + "'",
                                   "body." + std::string(400'000, 'p') + " true"}) {
    const auto f = errors_of(R"({"backends": [{"name": "b", "type": "file", "options": {"path": "/sys/x"},
        "bindings": [{"filter": ")" + filter + R"("}]}]})");
    ASSERT_EQ(f.size(), 1u) << f.front().substr(0, 300);
    EXPECT_LT(f[0].size(), 1000u) << f[0].substr(0, 1000);
    EXPECT_NE(f[0].find(" bytes)"), std::string::npos) << f[0].substr(0, 1000);
  }
  // Still placed: the path that finds it in the text holds the key whole.
  const ConfigResult result = parse_config(text);
  ASSERT_EQ(result.errors.size(), 2u);
  EXPECT_EQ(result.errors[0].line, 2u);
  EXPECT_EQ(result.errors[0].column, 21u);
}

// A file backend appending to the router's own ring wrecked it (the next
// start refused it as no ring), and to a perf block, the block.
TEST(Config, AFileBackendMayNotWriteTheRoutersOwnFiles) {
  const auto path_errors = [](const std::string& rings, const std::string& path) {
    return errors_of(R"({)" + rings + R"("backends": [{"name": "f", "type": "file", "options": {"path": ")" + path +
                     R"("}, "bindings": []}]})");
  };
  EXPECT_EQ(path_errors("", "/dev/shm/ringroute"),
            std::vector<std::string>{"backends[0].options.path: \"/dev/shm/ringroute\" is the file of the default "
                                     "ring, which the router itself writes"});
  EXPECT_EQ(path_errors(R"("rings": [{"name": "a"}, {"name": "b"}], )", "/dev/shm/../shm/b"),
            std::vector<std::string>{"backends[0].options.path: \"/dev/shm/../shm/b\" is the file of rings[1], which "
                                     "the router itself writes"});
  EXPECT_EQ(path_errors("", "/dev/shm/other.perf"),
            std::vector<std::string>{"backends[0].options.path: \"/dev/shm/other.perf\" is a perf block's file, which "
                                     "the router itself writes"});
  EXPECT_TRUE(path_errors("", "/dev/shm/other").empty());
}

// A path no write will ever open, as the file system stands, was a sink
// that retried for good, its events held in the ring.
TEST(Config, AFilePathThatCanNeverBeAFileIsAnError) {
  const auto path_errors = [](const std::string& path) {
    return errors_of(R"({"backends": [{"name": "f", "type": "file", "options": {"path": ")" + path +
                     R"("}, "bindings": []}]})");
  };
  const testing::TempDir dir("config-never-a-file");
  const std::string file = dir.path() + "/plain";
  std::ofstream(file) << "x";
  EXPECT_EQ(path_errors(dir.path()), std::vector<std::string>{"backends[0].options.path: \"" + dir.path() +
                                                              "\" is a directory, not a file"});
  EXPECT_EQ(path_errors(file + "/a/b.log"),
            std::vector<std::string>{"backends[0].options.path: \"" + file + "/a/b.log\" goes through \"" + file +
                                     "\", which is not a directory"});
  // A socket no open can write (a FIFO is written while something reads it).
  const std::string socket_path = dir.path() + "/socket";
  const int socket_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof address.sun_path, "%s", socket_path.c_str());
  ASSERT_EQ(::bind(socket_fd, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  EXPECT_EQ(path_errors(socket_path),
            std::vector<std::string>{"backends[0].options.path: \"" + socket_path +
                                     "\" is a socket, not a file a file backend can append to"});
  ::close(socket_fd);
  const std::string fifo = dir.path() + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_TRUE(path_errors(fifo).empty());
  // A character device is written as a file: /dev/null for a trial run.
  EXPECT_TRUE(path_errors("/dev/null").empty());
  // What the sink makes on the way is no error: directories, the file.
  EXPECT_TRUE(path_errors(dir.path() + "/new/dir/x.log").empty());
  EXPECT_TRUE(path_errors(file).empty());
}

TEST(Config, NotAnObjectOrNotJson) {
  EXPECT_EQ(errors_of("[]"), std::vector<std::string>{"the config must be a JSON object, got an array"});
  const auto e = errors_of("{\"backends\": [\n}");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("line 2, column 1"), std::string::npos) << e[0];
  // A string's fault is where it is, not at the text's end (control
  // characters) or past its string (escapes).
  const auto tab = errors_of("{\n \"backends\": [\n  {\"name\": \"a\tb\", \"type\": \"file\"}]}\n\n\n");
  ASSERT_EQ(tab.size(), 1u);
  EXPECT_NE(tab[0].find("line 3, column 14 (byte 30): a control character inside a string"), std::string::npos)
      << tab[0];
  const auto escape = errors_of("{\"instance\": \"a\\qb\", \"x\": 1}");
  ASSERT_EQ(escape.size(), 1u);
  EXPECT_NE(escape[0].find("line 1, column 16 (byte 15): an escape this reader refuses"), std::string::npos) << escape[0];
}

TEST(Config, DuplicateKeysAreErrors) {
  const auto e = errors_of(R"({"router": {"workers": 1, "workers": 2}})");
  EXPECT_TRUE(has_error(e, "router.workers: duplicate key"));
}

TEST(Config, SocketAndHttpOptionsAreChecked) {
  const auto e = errors_of(R"({"backends": [
    {"name": "s", "type": "socket", "bindings": [{}], "options": {"url": "syslog+tls://h", "framing": "lf",
      "syslog_severity": {"info": 9, "notice": 5}, "facility": "local9", "max_datagram_bytes": 10, "timeout": 0}},
    {"name": "h", "type": "http", "bindings": [{}], "options": {"url": "ftp://h", "method": "get",
      "batch": {"format": "xml"}, "headers": {"X": 1}, "async": true, "connect_timeout": 0}}]})");
  for (const char* path :
       {"backends[0].options.framing: unknown value \"lf\"", "backends[0].options.syslog_severity.info: 9 is out of range",
        "backends[0].options.syslog_severity.notice: unknown key", "backends[0].options.facility: unknown value",
        "backends[0].options.max_datagram_bytes: 10 is out of range", "backends[1].options.url: unsupported scheme",
        "backends[1].options.method: unknown value", "backends[1].options.batch.format: unknown value",
        "backends[1].options.headers.X: expected a string", "backends[1].options.async: only false",
        "backends[0].options.timeout: 0 is out of range (1 to 3600000)",
        "backends[1].options.connect_timeout: 0 is out of range (1 to 3600000)"}) {
    EXPECT_TRUE(std::any_of(e.begin(), e.end(), [&](const std::string& error) { return error.starts_with(path); }))
        << path;
  }
}

// Secrets and per-host values come from the environment, as Vector and
// Fluent Bit users write them; values go in escaped, whatever they hold.
// A header's name is at fault whatever its value: said beside a value that
// could not be expanded. Whether an error was of the key was told by its
// text, and the newer refusals (Content-Encoding, Upgrade), worded
// otherwise, were hidden with the value's.
TEST(Config, AHeaderNameAtFaultIsSaidBesideAValueThatCouldNotBeExpanded) {
  ::unsetenv("RR_TEST_NOT_SET");
  const auto e = errors_of(R"({"backends": [{"name": "h", "type": "http", "options": {"url": "https://h/",
    "headers": {"Content-Encoding": "${RR_TEST_NOT_SET}", "Upgrade": "${RR_TEST_NOT_SET}",
                "Bad Name": "${RR_TEST_NOT_SET}", "X-Fine": "${RR_TEST_NOT_SET}"}}, "bindings": []}]})");
  const std::string listed = ::testing::PrintToString(e);
  EXPECT_EQ(e.size(), 7u) << listed;
  EXPECT_TRUE(has_error_starting(e, "backends[0].options.headers.Content-Encoding: header Content-Encoding is set"))
      << listed;
  EXPECT_TRUE(has_error_starting(e, "backends[0].options.headers.Upgrade: header Upgrade is about the connection"))
      << listed;
  EXPECT_TRUE(has_error_starting(e, "backends[0].options.headers[\"Bad Name\"]: header name")) << listed;
  EXPECT_TRUE(has_error_starting(e, "backends[0].options.headers.X-Fine: environment variable RR_TEST_NOT_SET"))
      << listed;
}

TEST(Config, EnvironmentVariablesAreExpandedInStringValues) {
  ::setenv("RR_TEST_HOST", "127.0.0.1", 1);
  ::setenv("RR_TEST_TOKEN", "Bearer a\"b\\c", 1);
  ::setenv("RR_TEST_EMPTY", "", 1);
  ::unsetenv("RR_TEST_UNSET");
  const ConfigResult r = parse_config(R"({"backends": [
    {"name": "h", "type": "http", "options": {"url": "http://${RR_TEST_HOST}:8080/in",
       "headers": {"Authorization": "${RR_TEST_TOKEN}", "X-Literal": "$${RR_TEST_HOST} costs $5",
                   "X-Default": "${RR_TEST_UNSET:-fallback \"q\"}", "X-Empty-Default": "${RR_TEST_EMPTY:-d}",
                   "X-Empty-Kept": "<${RR_TEST_EMPTY-d}>", "X-Escaped": "\\${RR_TEST_HOST}"}}, "bindings": [{}]},
    {"name": "f", "type": "file", "options": {"path": "${RR_TEST_UNSET-/sys}/rr-${RR_TEST_HOST}.log"},
     "bindings": [{"account_id": "$5-account"}]}]})");
  ASSERT_TRUE(r.config) << (r.errors.empty() ? "" : r.errors[0].to_string());
  simdjson::dom::parser parser;
  simdjson::dom::element http = parser.parse(r.config->backends[0].options_json).value();
  EXPECT_EQ(std::string_view(http["url"]), "http://127.0.0.1:8080/in");
  EXPECT_EQ(std::string_view(http["headers"]["Authorization"]), "Bearer a\"b\\c");
  EXPECT_EQ(std::string_view(http["headers"]["X-Literal"]), "${RR_TEST_HOST} costs $5");
  EXPECT_EQ(std::string_view(http["headers"]["X-Default"]), "fallback \"q\"");
  EXPECT_EQ(std::string_view(http["headers"]["X-Empty-Default"]), "d");
  EXPECT_EQ(std::string_view(http["headers"]["X-Empty-Kept"]), "<>");
  EXPECT_EQ(std::string_view(http["headers"]["X-Escaped"]), "\\127.0.0.1");
  simdjson::dom::parser file_parser;
  EXPECT_EQ(std::string_view(file_parser.parse(r.config->backends[1].options_json)["path"]), "/sys/rr-127.0.0.1.log");
  ASSERT_EQ(r.config->matching[1].bindings.size(), 1u);
  EXPECT_EQ(r.config->matching[1].bindings[0].accounts, std::vector<std::string>{"$5-account"});
}

// What can't be expanded is named at its value's path, every one of them,
// and no value from the environment is echoed.
TEST(Config, EnvironmentReferencesThatCannotBeExpandedAreErrorsAtTheirPaths) {
  ::unsetenv("RR_TEST_UNSET");
  ::unsetenv("RR_TEST_UNSET_TOO");
  ::setenv("RR_TEST_SECRET", "hunter2", 1);
  ::setenv("RR_TEST_NOT_UTF8", "\xff\xfe", 1);
  const auto e = errors_of(R"({"backends": [
    {"name": "h", "type": "http", "options": {"url": "http://${RR_TEST_UNSET}${RR_TEST_NOT_UTF8}/${RR_TEST_UNSET_TOO}", "headers": {
       "X-A": "${RR_TEST_SECRET", "X B": "${9LIVES}", "X-C": "${RR_TEST_NOT_UTF8}", "X-D": "${}",
       "X-E": "${RR_TEST_UNSET:-${RR_TEST_SECRET}}"}}, "bindings": []},
    {"name": "${RR_TEST_SECRET}x", "type": "file", "options": {"path": "/sys/${RR_TEST_SECRET}"}, "bindings": []}]})");
  ASSERT_EQ(e.size(), 7u) << ::testing::PrintToString(e);
  // Each variable that can't be expanded is said, not only the first.
  EXPECT_EQ(e[0], "backends[0].options.url: environment variable RR_TEST_UNSET is not set (give a default with "
                  "${RR_TEST_UNSET:-default}, or write $${ for a literal ${); environment variable RR_TEST_NOT_UTF8 "
                  "is not valid UTF-8; environment variable RR_TEST_UNSET_TOO is not set (give a default with "
                  "${RR_TEST_UNSET_TOO:-default}, or write $${ for a literal ${)");
  EXPECT_EQ(e[1], "backends[0].options.headers.X-A: \"${RR_TEST_SECRET\" is not closed by \"}\"");
  const std::string not_a_name =
      ": \"${\" must start a variable name (a letter or _, then letters, digits or _); write \"$${\" for a literal \"${\"";
  EXPECT_EQ(e[2], "backends[0].options.headers[\"X B\"]" + not_a_name);
  EXPECT_EQ(e[3], "backends[0].options.headers.X-C: environment variable RR_TEST_NOT_UTF8 is not valid UTF-8");
  EXPECT_EQ(e[4], "backends[0].options.headers.X-D" + not_a_name);
  EXPECT_EQ(e[5], "backends[0].options.headers.X-E: the default of ${RR_TEST_UNSET} holds \"${\": a default is taken "
                  "as written, not expanded");
  // A header's name is wrong whatever its value: said beside the value's error.
  EXPECT_EQ(e[6].rfind("backends[0].options.headers[\"X B\"]: header name \"X B\" is not a token", 0), 0u) << e[6];
  // No value from the environment is echoed; the name and path expanded
  // (to a valid name) are no errors.
  for (const auto& error : e) EXPECT_EQ(error.find("hunter2"), std::string::npos) << error;
}

// A key is never expanded (a reference there is an unknown key), and a
// syntax error keeps the file's own line and column.
TEST(Config, EnvironmentReferencesAreNotExpandedInKeysOrBeforeTheSyntaxIsChecked) {
  ::setenv("RR_TEST_HOST", "127.0.0.1", 1);
  const auto keys = errors_of(R"({"${RR_TEST_HOST}": 1})");
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].rfind("[\"${RR_TEST_HOST}\"]: unknown key", 0), 0u) << keys[0];
  ::setenv("RR_TEST_LONG", std::string(100, 'x').c_str(), 1);
  const auto syntax = errors_of("{\n\"instance\": \"${RR_TEST_LONG}\", \"rings\": [}");
  ASSERT_EQ(syntax.size(), 1u);
  EXPECT_NE(syntax[0].find("line 2, column 42 (byte 43)"), std::string::npos) << syntax[0];
}

// A reference written bare, outside any string, goes in as its value is,
// as Vector reads an unquoted ${X}: a number or a switch can come from the
// environment too. Its value must be a JSON number, true, false or null
// (never echoed), and the syntax elsewhere keeps the file's positions.
TEST(Config, EnvironmentReferencesWrittenBareGiveNumbersAndSwitches) {
  ::setenv("RR_TEST_QUEUE", "500", 1);
  ::setenv("RR_TEST_OFF", "false", 1);
  ::setenv("RR_TEST_WORDS", "hunter2", 1);
  ::unsetenv("RR_TEST_UNSET");
  auto config = [](const std::string& enabled, const std::string& max_events) {
    return R"({"backends": [{"name": "f", "type": "file", "enabled": )" + enabled +
           R"(, "options": {"path": "/sys/rr-bare.log", "queue": {"max_events": )" + max_events +
           R"(, "max_bytes": ${RR_TEST_UNSET:-1048576}}}, "bindings": [{}]}]})";
  };
  const ConfigResult r = parse_config(config("${RR_TEST_OFF}", "${RR_TEST_QUEUE}"));
  ASSERT_TRUE(r.config) << (r.errors.empty() ? "" : r.errors[0].to_string());
  EXPECT_FALSE(r.config->backends[0].enabled);
  simdjson::dom::parser parser;
  const simdjson::dom::element options = parser.parse(r.config->backends[0].options_json).value();
  EXPECT_EQ(uint64_t(options["queue"]["max_events"]), 500u);
  EXPECT_EQ(uint64_t(options["queue"]["max_bytes"]), 1048576u);

  const auto e = errors_of(config("${RR_TEST_UNSET}", "${RR_TEST_WORDS}"));
  ASSERT_EQ(e.size(), 2u) << ::testing::PrintToString(e);
  EXPECT_EQ(e[0].rfind("backends[0].enabled: environment variable RR_TEST_UNSET is not set", 0), 0u) << e[0];
  EXPECT_EQ(e[1], "backends[0].options.queue.max_events: ${RR_TEST_WORDS} is written bare, so its value must be a "
                  "number, true, false or null, and it is not (quote it for a string)");
  // A number all the same, too large: said as the number written in the
  // file is (it was "it is not" a number).
  ::setenv("RR_TEST_HUGE", "-99999999999999999999999", 1);
  const auto huge = errors_of(config("true", "${RR_TEST_HUGE}"));
  ASSERT_EQ(huge.size(), 1u) << ::testing::PrintToString(huge);
  EXPECT_EQ(huge[0], "backends[0].options.queue.max_events: ${RR_TEST_HUGE} is an integer past 64 bits, and no number "
                     "in a config goes that far");
  // Leading zeros are no JSON number, whatever the size (a mode, 0600).
  ::setenv("RR_TEST_HUGE", "0600", 1);
  const auto zeros = errors_of(config("true", "${RR_TEST_HUGE}"));
  ASSERT_EQ(zeros.size(), 1u) << ::testing::PrintToString(zeros);
  EXPECT_NE(zeros[0].find("is written bare, so its value must be a number"), std::string::npos) << zeros[0];
  const auto syntax = errors_of("{\n\"instance\": \"x\", \"router\": {\"workers\": ${RR_TEST_QUEUE}}, \"rings\": [}");
  ASSERT_EQ(syntax.size(), 1u);
  EXPECT_NE(syntax[0].find("line 2, column 69"), std::string::npos) << syntax[0];  // the "}", as written
  // A bare reference joined to more is no whole value: blanked, "1${N}"
  // was a number, expanded it did not parse, and the one error said
  // neither where nor which, and hid every other (an unset N among them).
  const auto both = errors_of(R"({"router": {"workers": 1${RR_TEST_QUEUE}}, "rings": [{"name": "r", "size_bytes": -${RR_TEST_QUEUE}}]})");
  ASSERT_EQ(both.size(), 2u) << "each is said";
  for (const char* joined : {"1${RR_TEST_QUEUE}", "-${RR_TEST_QUEUE}", "${RR_TEST_QUEUE}0", "${RR_TEST_UNSET}x"}) {
    const auto misplaced = errors_of("{\"router\": {\"workers\": " + std::string(joined) + "}}");
    ASSERT_EQ(misplaced.size(), 1u) << joined;
    EXPECT_NE(misplaced[0].find("is written bare, so it stands for a whole value"), std::string::npos) << misplaced[0];
    EXPECT_NE(misplaced[0].find("at line 1, column 2"), std::string::npos) << misplaced[0];
  }
  // A stray quote before a quoted reference: the text is not JSON for
  // that, and was said to hold the reference written bare (the scan for
  // bare ones counts quotes, and the stray one put it outside a string).
  const auto stray = errors_of(R"({"instance": x", "rings": "${RR_TEST_QUEUE}"})");
  ASSERT_EQ(stray.size(), 1u);
  EXPECT_EQ(stray[0], "not valid JSON at line 1, column 46 (byte 45): A string is opened, but never closed.");
  // A fault before a reference joined to more is said first, where it is.
  const auto before = errors_of(R"({"instance": x, "rings": 1${RR_TEST_QUEUE}})");
  ASSERT_EQ(before.size(), 1u);
  EXPECT_EQ(before[0].find("not valid JSON at line 1, column 14 (byte 13): "), 0u) << before[0];
}


// Placing an error in the text spelled out every path of it, each whole:
// memory of its depth squared times its keys' length (here 500 levels of
// 16 KiB keys under one unknown key, about 2 GiB). Only the paths the
// errors name, and those above them, are placed now.
TEST(Config, PlacingAnErrorDoesNotSpellOutEveryPathOfADeepText) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "an address-space limit and a sanitizer's shadow memory do not mix";
#endif
  const std::string key(16 * 1024, 'k');
  std::string text = R"({"instance": "x", "deep": )";
  for (int i = 0; i < 500; ++i) text += "{\"" + key + "\": ";
  text += "1";
  text += std::string(500, '}') + "}";
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const rlimit limit{1ull << 30, 1ull << 30};
    ::setrlimit(RLIMIT_AS, &limit);
    const ConfigResult result = parse_config(text);
    ::_exit(result.errors.size() == 1 && result.errors[0].path == "deep" && result.errors[0].line == 1 ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

// Errors found after parsing name the line and column of what they are
// about, as a syntax error does: a key's error at its key, a value's at its
// value, a second occurrence at the second, a member left out at the object
// it is missing from; columns count characters, not bytes.
TEST(Config, ErrorsFoundAfterParsingNameTheirLineAndColumn) {
  const std::string text = "{\n"
                           "  \"instance\": \"gw1\",\n"
                           "  \"bogus\": 1,\n"
                           "  \"backends\": [\n"
                           "    {\"name\": \"f\", \"type\": \"file\", \"options\": {\"path\": \"/sys/x\", \"fsync\": \"often\"},\n"
                           "     \"bindings\": [{\"app_name\": \"\xc3\xa9t\xc3\xa9\", \"severity\": \"sever\"}]},\n"
                           "    {\"name\": \"f\", \"type\": \"file\", \"options\": {}},\n"
                           "    {\"name\": \"g\", \"type\": \"file\", \"options\": {\"p\\u0061th\": 7}}\n"
                           "  ],\n"
                           "  \"instance\": \"again\"\n"
                           "}\n";
  const ConfigResult r = parse_config(text);
  std::vector<std::string> printed;
  for (const auto& e : r.errors) printed.push_back(e.located());
  auto at = [&](const std::string& path, const std::string& message_start) -> std::string {
    for (const auto& e : r.errors) {
      if (e.path == path && e.message.starts_with(message_start)) {
        return std::to_string(e.line) + ":" + std::to_string(e.column);
      }
    }
    return "not found";
  };
  EXPECT_EQ(at("bogus", "unknown key"), "3:3") << ::testing::PrintToString(printed);
  EXPECT_EQ(at("backends[0].options.fsync", ""), "5:74") << ::testing::PrintToString(printed);
  // "été" is three characters of five bytes before the severity.
  EXPECT_EQ(at("backends[0].bindings[0].severity", ""), "6:51") << ::testing::PrintToString(printed);
  EXPECT_EQ(at("backends[1].name", "duplicate backend name"), "7:14") << ::testing::PrintToString(printed);
  // options.path is left out: said at the options object.
  EXPECT_EQ(at("backends[1].options.path", ""), "7:46") << ::testing::PrintToString(printed);
  // A key written with an escape is found by what it says.
  EXPECT_EQ(at("backends[2].options.path", ""), "8:60") << ::testing::PrintToString(printed);
  EXPECT_EQ(at("instance", "duplicate key"), "10:3") << ::testing::PrintToString(printed);
  // As printed: the path, the reason, then where.
  EXPECT_NE(std::find(printed.begin(), printed.end(),
                      "bogus: unknown key (expected one of instance, rings, router, admin, "
                      "backends) at line 3, column 3"),
            printed.end())
      << ::testing::PrintToString(printed);
}

// A key given more than once: its errors take its last occurrences, in
// order (a known key's first is read, an unknown key has an error at each,
// a header's repeat is the second).
TEST(Config, ErrorsOfAKeyGivenMoreThanOnceAreAtEachOccurrence) {
  const ConfigResult r = parse_config("{\"bogus\": 1,\n \"bogus\": 2,\n \"instance\": \"a\",\n \"instance\": \"b\",\n"
                                      " \"instance\": \"c\",\n \"backends\": [{\"name\": \"h\", \"type\": \"http\",\n"
                                      "  \"options\": {\"url\": \"http://h/\", \"headers\": {\"X-A\": \"1\",\n"
                                      "   \"X-A\": \"2\"}}, \"bindings\": []}]}");
  std::vector<std::string> placed;
  for (const auto& e : r.errors) {
    placed.push_back(e.path + " " + std::to_string(e.line) + ":" + std::to_string(e.column) + " " +
                     e.message.substr(0, e.message.find(' ')));
  }
  EXPECT_EQ(placed, (std::vector<std::string>{"bogus 1:2 unknown", "bogus 2:2 unknown", "instance 4:2 duplicate",
                                              "instance 5:2 duplicate", "backends[0].options.headers.X-A 8:4 header"}))
      << ::testing::PrintToString(placed);
}

// validate's TLS file errors are placed too, from the text parse_config read.
TEST(Config, TlsFileErrorsNameTheirLineAndColumn) {
  const ConfigResult r = parse_config("{\"backends\": [{\"name\": \"h\", \"type\": \"http\",\n"
                                      "  \"options\": {\"url\": \"https://127.0.0.1:1/\",\n"
                                      "               \"ca_file\": \"/nonexistent/ca.pem\"}, \"bindings\": [{}]}]}");
  ASSERT_TRUE(r.config) << (r.errors.empty() ? "" : r.errors[0].located());
  const std::vector<matcher::ConfigError> errors = tls_file_errors(r);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].path, "backends[0].options.ca_file");
  EXPECT_EQ(errors[0].line, 3u);
  EXPECT_EQ(errors[0].column, 27u);
  EXPECT_TRUE(errors[0].located().starts_with("backends[0].options.ca_file: ")) << errors[0].located();
  EXPECT_TRUE(errors[0].located().ends_with(" at line 3, column 27")) << errors[0].located();
}

}  // namespace
}  // namespace ringroute::tools
