// The socket sink against a real rsyslog started by the test: TCP with octet
// counting and with newlines, UDP, unix stream (imptcp) and unix datagram
// (imuxsock) sockets. rsyslog's own parse of each message is checked, so a
// message only passes if a real receiver reads the RFC 5424 fields we meant.
#include <gtest/gtest.h>

#include <openssl/ssl.h>
#include <simdjson.h>

#include <net/if.h>
#include <netdb.h>
#include <sys/ioctl.h>
#include <sys/un.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>

#include "json_event.hpp"
#include "peers.hpp"
#include "ringroute/perf/block.hpp"
#include "ringroute/sinks/backend.hpp"
#include "ringroute/sinks/event_encoder.hpp"
#include "ringroute/sinks/socket_sink.hpp"

namespace ringroute::sinks {
namespace {

using testing::Rsyslog;
using testing::TempDir;

std::string event_line(std::size_t i) {
  // Severity and verbosity cycle so PRI takes several values.
  static constexpr const char* kVerbosity[] = {"trace", "debug", "info", "warn", "error", "fatal"};
  static constexpr const char* kSeverity[] = {"ok", "warning", "critical"};
  return R"({"id":"e-)" + std::to_string(i) + R"(","timestamp":1795452928123456789,"severity":")" +
         kSeverity[i % 3] + R"(","verbosity":")" + kVerbosity[i % 6] +
         R"(","account_id":"acct-1","app_name":"billing app","event_type":"charge","node":"gw-1",)"
         R"("body":{"n":)" + std::to_string(i) + R"(,"text":"quote \" and ] and \\ back"}})";
}

// A batch of events [first, first + count) encoded as the router would.
void fill(Batch& batch, const EncodeOptions& options, std::size_t first, std::size_t count) {
  batch.reset();
  batch.end = first + count;  // identity of the batch for the sink's retry state
  batch.first_start = first;
  EventEncoder encoder(options);
  testing::JsonEvent ev;
  for (std::size_t i = first; i < first + count; ++i) {
    encoder.encode(ev(event_line(i)), batch.bytes);
    batch.event_ends.push_back(static_cast<std::uint32_t>(batch.bytes.size()));
    ++batch.events;
  }
}

Outcome write_until_ok(SocketSink& sink, const Batch& batch, int attempts = 100) {
  std::string why;
  Outcome outcome = Outcome::retry;
  for (int i = 0; i < attempts && outcome == Outcome::retry; ++i) {
    outcome = sink.write(batch, why);
    if (outcome == Outcome::retry) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return outcome;
}

// What rsyslog understood of one message.
struct Received {
  std::string pri, version, timestamp, hostname, app, procid, msgid, sd, msg;
};

Received parse(const std::string& line) {
  simdjson::dom::parser parser;
  simdjson::dom::element e = parser.parse(line);
  auto get = [&](const char* key) { return std::string(std::string_view(e[key])); };
  return {get("pri"), get("version"), get("timestamp"), get("hostname"), get("app"),
          get("procid"), get("msgid"), get("sd"), get("msg")};
}

// The json formatter's document for event i, as MSG carries it.
std::string expected_msg(std::size_t i) {
  JsonFormatter formatter;
  testing::JsonEvent ev;
  ByteBuffer out;
  formatter.format(ev(event_line(i)), out);
  return std::string(out.view().substr(0, out.size() - 1));
}

std::string expected_pri(std::size_t i, unsigned facility = 16) {
  static constexpr event::Verbosity kVerbosity[] = {event::Verbosity::trace, event::Verbosity::debug,
                                                   event::Verbosity::info,  event::Verbosity::warn,
                                                   event::Verbosity::error, event::Verbosity::fatal};
  static constexpr event::Severity kSeverity[] = {event::Severity::ok, event::Severity::warning,
                                                 event::Severity::critical};
  return std::to_string(facility * 8 + syslog_severity(kSeverity[i % 3], kVerbosity[i % 6]));
}

void expect_event(const Received& r, std::size_t i) {
  EXPECT_EQ(r.pri, expected_pri(i)) << i;
  EXPECT_EQ(r.version, "1");
  EXPECT_EQ(r.timestamp, "2026-11-23T16:55:28.123456Z");
  EXPECT_EQ(r.hostname, "gw-1");
  EXPECT_EQ(r.app, "billing_app");  // the space is outside PRINTUSASCII
  EXPECT_EQ(r.procid, "-");
  EXPECT_EQ(r.msgid, "charge");
  EXPECT_EQ(r.msg, expected_msg(i));
}

// rsyslog inputs: plain TCP, and TLS (gtls) with the test PKI's server
// certificate and the given client authentication mode.
std::string tcp_input(std::uint16_t port) {
  return "module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"" + std::to_string(port) +
         "\" ruleset=\"out\")\n";
}

std::string tls_input(const testing::TestPki& pki, std::uint16_t port, const std::string& auth_mode) {
  return "global(defaultNetstreamDriverCAFile=\"" + pki.ca + "\" defaultNetstreamDriverCertFile=\"" +
         pki.server_cert + "\" defaultNetstreamDriverKeyFile=\"" + pki.server_key + "\")\n" +
         "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"" +
         auth_mode + "\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"" + std::to_string(port) +
         "\" ruleset=\"out\")\n";
}

class SocketSinkRsyslog : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Rsyslog::program().empty()) GTEST_SKIP() << "rsyslogd is not installed (scripts/test installs it)";
  }
  TempDir dir_{"socket-sink"};
  perf::BackendSinkShard counters_{};
};

TEST(SyslogSeverity, VerbosityThenSeverityCap) {
  using event::Severity, event::Verbosity;
  EXPECT_EQ(syslog_severity(Severity::ok, Verbosity::trace), 7u);
  EXPECT_EQ(syslog_severity(Severity::ok, Verbosity::debug), 7u);
  EXPECT_EQ(syslog_severity(Severity::ok, Verbosity::info), 6u);
  EXPECT_EQ(syslog_severity(Severity::ok, Verbosity::warn), 4u);
  EXPECT_EQ(syslog_severity(Severity::ok, Verbosity::error), 3u);
  EXPECT_EQ(syslog_severity(Severity::ok, Verbosity::fatal), 2u);
  EXPECT_EQ(syslog_severity(Severity::warning, Verbosity::info), 4u);
  EXPECT_EQ(syslog_severity(Severity::warning, Verbosity::error), 3u);
  EXPECT_EQ(syslog_severity(Severity::critical, Verbosity::trace), 2u);
  EXPECT_EQ(syslog_facility("local0"), 16);
  EXPECT_EQ(syslog_facility("kern"), 0);
  EXPECT_EQ(syslog_facility("nope"), -1);
}

TEST(SyslogEncoder, SeverityMapIsConfigurable) {
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  options.framing = Framing::newline;
  options.facility = 3;  // daemon
  options.severity.by_verbosity[2] = 5;  // info -> notice
  options.severity.cap[2] = 1;           // critical -> alert
  EventEncoder encoder(options);
  testing::JsonEvent ev;
  ByteBuffer out;
  encoder.encode(ev(R"({"timestamp":0,"verbosity":"info"})"), out);
  encoder.encode(ev(R"({"timestamp":0,"verbosity":"info","severity":"critical"})"), out);
  EXPECT_TRUE(out.view().starts_with("<29>1 ")) << out.view();  // 3 * 8 + 5
  EXPECT_NE(out.view().find("\n<25>1 "), std::string_view::npos) << out.view();  // 3 * 8 + 1
}

TEST(SyslogEncoder, OctetCountIsTheMessageLength) {
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  EventEncoder encoder(options);
  testing::JsonEvent ev;
  ByteBuffer out;
  encoder.encode(ev(event_line(4)), out);
  const std::string_view text = out.view();
  const std::size_t space = text.find(' ');
  ASSERT_NE(space, std::string_view::npos);
  EXPECT_EQ(std::stoul(std::string(text.substr(0, space))), text.size() - space - 1);
  EXPECT_TRUE(text.substr(space + 1).starts_with("<131>1 2026-11-23T16:55:28.123456Z gw-1 billing_app - charge - {"))
      << text;
  EXPECT_NE(text.back(), '\n');
}

// The TZ given, for one scope (tzset() read again both ways).
struct TimeZone {
  explicit TimeZone(const char* tz) {
    if (const char* was = std::getenv("TZ")) before = was, had = true;
    ::setenv("TZ", tz, 1);
    ::tzset();
  }
  ~TimeZone() {
    if (had) {
      ::setenv("TZ", before.c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }
  std::string before;
  bool had = false;
};

// syslog(3)'s form: "<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MSG" in local time
// (the day padded with a space), HOSTNAME left out where the sink writes
// to a local socket, the TAG at most 32 characters of the app's name.
TEST(SyslogEncoder, Rfc3164IsSyslog3sFormInLocalTime) {
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  options.framing = Framing::none;
  options.syslog_format = SyslogFormat::rfc3164;
  testing::JsonEvent ev;
  const auto encoded = [&](const EncodeOptions& with, const std::string& line) {
    EventEncoder encoder(with);
    ByteBuffer out;
    encoder.encode(ev(line), out);
    return std::string(out.view());
  };
  {
    const TimeZone utc("UTC0");
    EXPECT_EQ(encoded(options, event_line(4)), "<131>Nov 23 16:55:28 gw-1 billing_app: " + expected_msg(4));
    EncodeOptions local = options;
    local.rfc3164_hostname = false;
    EXPECT_EQ(encoded(local, event_line(4)), "<131>Nov 23 16:55:28 billing_app: " + expected_msg(4));
    // 2026-12-06T05:04:03Z: a day of one digit; an app name past 32
    // characters, with bytes a TAG can't hold.
    EXPECT_TRUE(encoded(options, R"({"id":"d","timestamp":1796533443000000000,"severity":"ok","verbosity":"info",)"
                                 R"("app_name":"a:b[c] d/e.f-g_h0123456789012345678901234567","body":{}})")
                    .starts_with("<134>Dec  6 05:04:03 "))
        << "the day is padded with a space";
    EXPECT_TRUE(encoded(options, R"({"id":"d","timestamp":1796533443000000000,"severity":"ok","verbosity":"info",)"
                                 R"("node":"n","app_name":"a:b[c] d/e.f-g_h0123456789012345678901234567","body":{}})")
                    .starts_with("<134>Dec  6 05:04:03 n a_b_c__d/e.f-g_h0123456789012345: {"));
    EXPECT_TRUE(encoded(options, R"({"id":"d","timestamp":1796533443000000000,"node":"n","body":{}})")
                    .starts_with("<134>Dec  6 05:04:03 n -: {"))
        << "no app: the NILVALUE as TAG";
    // A HOSTNAME as rsyslog's 3164 parser takes one (letters, digits, '.',
    // '_', '-', ending in a letter or digit): a Kazoo node name, or an IPv6
    // address, was not one, and the receiver read the node as the TAG.
    EXPECT_TRUE(encoded(options, R"({"id":"d","timestamp":1796533443000000000,"node":"ecallmgr@apps001.example.com.",)"
                                 R"("app_name":"a","body":{}})")
                    .starts_with("<134>Dec  6 05:04:03 ecallmgr_apps001.example.com a: {"));
    EXPECT_TRUE(encoded(options, R"({"id":"d","timestamp":1796533443000000000,"node":"fe80::1","app_name":"a","body":{}})")
                    .starts_with("<134>Dec  6 05:04:03 fe80__1 a: {"));
  }
  const TimeZone india("IST-5:30");  // a zone ahead of UTC by 5:30, no tzdata needed
  EXPECT_TRUE(encoded(options, event_line(4)).starts_with("<131>Nov 23 22:25:28 gw-1 billing_app: "));
}

EncodeOptions newline_syslog_with_structured_data() {
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  options.framing = Framing::newline;
  options.structured_data = true;
  return options;
}

TEST(SyslogEncoder, StructuredDataEscapesQuoteBackslashAndBracket) {
  EventEncoder encoder(newline_syslog_with_structured_data());
  testing::JsonEvent ev;
  ByteBuffer out;
  encoder.encode(ev(R"({"id":"a\"b]c\\d","timestamp":0,"topic":"x.y"})"), out);
  EXPECT_NE(out.view().find(R"([ringroute@32473 id="a\"b\]c\\d" topic="x.y"])"), std::string_view::npos) << out.view();
  EXPECT_EQ(out.view().back(), '\n');
  // A line break in a value would cut a newline-framed message in two.
  out.clear();
  encoder.encode(ev(R"({"id":"a\nb\r\nc","timestamp":0,"tag":"t\n"})"), out);
  EXPECT_EQ(out.view().find('\n'), out.view().size() - 1) << out.view();
  EXPECT_NE(out.view().find(R"(id="a b  c")"), std::string_view::npos) << out.view();
  // Nor a NUL (syslog-ng ends a record there too) or another control byte:
  // the rest would be read as a record of the producer's making.
  out.clear();
  event::EventInput input;
  input.set(event::StringField::id, std::string_view("a\0<0>1 forged\x1b\x7f", 15));
  encoder.encode(testing::EncodedEvent(input).view, out);
  EXPECT_NE(out.view().find(R"(id="a <0>1 forged  ")"), std::string_view::npos) << out.view();
}

// Strings from the C ABI are bytes: what is not valid UTF-8 becomes U+FFFD
// in the structured data as in the message (RFC 5424: PARAM-VALUE is
// UTF-8). It used to go through as it came, a stray lead byte right before
// the closing quote.
TEST(SyslogEncoder, StructuredDataIsValidUtf8WhateverTheBytes) {
  EventEncoder encoder(newline_syslog_with_structured_data());
  event::EventInput input;
  input.set(event::StringField::id, "a\xff");
  input.set(event::StringField::account_id, "acc\xc3");
  input.set(event::StringField::tag, "t\xc3\xa9\xed\xa0\x80");  // é, then an encoded surrogate
  ByteBuffer out;
  encoder.encode(testing::EncodedEvent(input).view, out);
  EXPECT_NE(out.view().find("[ringroute@32473 id=\"a\xEF\xBF\xBD\" account_id=\"acc\xEF\xBF\xBD\" "
                            "tag=\"t\xc3\xa9\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"]"),
            std::string_view::npos)
      << out.view();
}

TEST_F(SocketSinkRsyslog, TcpOctetCountingDeliversEveryEventOnceInOrder) {
  const std::uint16_t port = testing::free_port();
  Rsyslog rsyslog(dir_, tcp_input(port));
  ASSERT_TRUE(rsyslog.wait_tcp(port)) << rsyslog.log();
  SocketSink sink({.url = "syslog+tcp://127.0.0.1:" + std::to_string(port), .max_connections = 1});
  sink.attach_counters(&counters_);
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  Batch batch;
  constexpr std::size_t kBatches = 20, kPerBatch = 500;
  for (std::size_t b = 0; b < kBatches; ++b) {
    fill(batch, options, b * kPerBatch, kPerBatch);
    ASSERT_EQ(write_until_ok(sink, batch), Outcome::ok);
  }
  const auto lines = testing::wait_for_lines(rsyslog.output(), kBatches * kPerBatch);
  ASSERT_EQ(lines.size(), kBatches * kPerBatch) << rsyslog.log();
  for (std::size_t i = 0; i < lines.size(); ++i) expect_event(parse(lines[i]), i);
  EXPECT_EQ(counters_.connects.read(), 1u);
  EXPECT_EQ(counters_.connect_failures.read(), 0u);
}

TEST_F(SocketSinkRsyslog, TcpNewlineFraming) {
  const std::uint16_t port = testing::free_port();
  Rsyslog rsyslog(dir_, tcp_input(port));
  ASSERT_TRUE(rsyslog.wait_tcp(port)) << rsyslog.log();
  SocketSink sink({.url = "syslog://127.0.0.1:" + std::to_string(port), .max_connections = 1});
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  options.framing = Framing::newline;
  Batch batch;
  fill(batch, options, 0, 300);
  ASSERT_EQ(write_until_ok(sink, batch), Outcome::ok);
  const auto lines = testing::wait_for_lines(rsyslog.output(), 300);
  ASSERT_EQ(lines.size(), 300u) << rsyslog.log();
  for (std::size_t i = 0; i < lines.size(); ++i) expect_event(parse(lines[i]), i);
}

TEST_F(SocketSinkRsyslog, ReceiverDownAtStartThenUpLosesNothing) {
  const std::uint16_t port = testing::free_port();
  SocketSink sink({.url = "syslog+tcp://127.0.0.1:" + std::to_string(port), .max_connections = 1});
  sink.attach_counters(&counters_);
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  Batch batch;
  fill(batch, options, 0, 200);
  std::string why;
  EXPECT_EQ(sink.write(batch, why), Outcome::retry);
  EXPECT_NE(why.find("Connection refused"), std::string::npos) << why;
  EXPECT_EQ(counters_.connect_failures.read(), 1u);

  Rsyslog rsyslog(dir_, tcp_input(port));
  ASSERT_TRUE(rsyslog.wait_tcp(port)) << rsyslog.log();
  ASSERT_EQ(write_until_ok(sink, batch), Outcome::ok);
  const auto lines = testing::wait_for_lines(rsyslog.output(), 200);
  ASSERT_EQ(lines.size(), 200u) << rsyslog.log();
  for (std::size_t i = 0; i < lines.size(); ++i) expect_event(parse(lines[i]), i);
}

TEST_F(SocketSinkRsyslog, ReceiverRestartedBetweenBatchesIsNoticedBeforeSending) {
  const std::uint16_t port = testing::free_port();
  const std::string input = tcp_input(port);
  SocketSink sink({.url = "syslog+tcp://127.0.0.1:" + std::to_string(port), .max_connections = 1});
  sink.attach_counters(&counters_);
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  Batch batch;
  {
    Rsyslog first(dir_, input);
    ASSERT_TRUE(first.wait_tcp(port));
    fill(batch, options, 0, 100);
    ASSERT_EQ(write_until_ok(sink, batch), Outcome::ok);
    ASSERT_EQ(testing::wait_for_lines(first.output(), 100).size(), 100u);
  }  // stopped: our connection is closed by the peer while idle
  Rsyslog second(dir_, input);
  ASSERT_TRUE(second.wait_tcp(port));
  fill(batch, options, 100, 100);
  ASSERT_EQ(write_until_ok(sink, batch), Outcome::ok);
  const auto lines = testing::wait_for_lines(second.output(), 200);
  ASSERT_EQ(lines.size(), 200u) << second.log();
  for (std::size_t i = 0; i < lines.size(); ++i) expect_event(parse(lines[i]), i);
  EXPECT_EQ(counters_.connects.read(), 2u);
}

// rsyslog inputs on a TCP and a UDP port, both to the output: the TCP one
// says when rsyslog is up (UDP can't), and they start together.
std::string tcp_and_udp_inputs(std::uint16_t tcp, std::uint16_t udp) {
  return "module(load=\"imtcp\")\nmodule(load=\"imudp\")\n"
         "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"" + std::to_string(tcp) + "\" ruleset=\"out\")\n"
         "input(type=\"imudp\" address=\"127.0.0.1\" port=\"" + std::to_string(udp) + "\" ruleset=\"out\")\n";
}

TEST_F(SocketSinkRsyslog, UdpOneDatagramPerEventAndTruncationCounted) {
  const std::uint16_t tcp = testing::free_port(), udp = testing::free_port(SOCK_DGRAM);
  Rsyslog rsyslog(dir_, tcp_and_udp_inputs(tcp, udp));
  ASSERT_TRUE(rsyslog.wait_tcp(tcp)) << rsyslog.log();  // inputs start together
  SocketSink sink({.url = "syslog+udp://127.0.0.1:" + std::to_string(udp), .max_datagram_bytes = 8192});
  sink.attach_counters(&counters_);
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  options.framing = Framing::none;
  Batch batch;
  // Small batches: UDP has no flow control, and the test must not depend on
  // the receiver's socket buffer.
  for (std::size_t b = 0; b < 10; ++b) {
    fill(batch, options, b * 50, 50);
    ASSERT_EQ(write_until_ok(sink, batch), Outcome::ok);
    testing::wait_for_lines(rsyslog.output(), (b + 1) * 50);
  }
  const auto lines = testing::wait_for_lines(rsyslog.output(), 500);
  ASSERT_EQ(lines.size(), 500u) << rsyslog.log();
  for (std::size_t i = 0; i < lines.size(); ++i) expect_event(parse(lines[i]), i);
  EXPECT_EQ(counters_.truncated.read(), 0u);

  SocketSink small({.url = "syslog+udp://127.0.0.1:" + std::to_string(udp), .max_datagram_bytes = 100});
  small.attach_counters(&counters_);
  fill(batch, options, 500, 1);
  ASSERT_EQ(write_until_ok(small, batch), Outcome::ok);
  EXPECT_EQ(counters_.truncated.read(), 1u);
  const auto all = testing::wait_for_lines(rsyslog.output(), 501);
  ASSERT_EQ(all.size(), 501u);
  EXPECT_EQ(parse(all[500]).msgid, "charge");  // the header survives the cut
}

// A datagram was cut wherever its limit fell: inside a STRUCTURED-DATA
// never closed (a long tag), rsyslog took the rest of the SD as MSG and the
// body was gone; inside the header, it read a hostname cut short and an
// empty MSG. Now the SD goes ("-") where it would be cut, and a message
// whose header alone is over the limit is refused, counted and said.
TEST_F(SocketSinkRsyslog, ADatagramIsNeverCutInsideItsHeaderOrItsStructuredData) {
  const std::uint16_t tcp = testing::free_port(), udp = testing::free_port(SOCK_DGRAM);
  Rsyslog rsyslog(dir_, tcp_and_udp_inputs(tcp, udp));
  ASSERT_TRUE(rsyslog.wait_tcp(tcp)) << rsyslog.log();
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  options.framing = Framing::none;
  options.structured_data = true;
  EventEncoder encoder(options);
  testing::JsonEvent ev;
  auto one_event = [&](const std::string& line) {
    Batch batch;
    batch.reset();
    batch.end = 1;
    encoder.encode(ev(line), batch.bytes);
    batch.event_ends.push_back(static_cast<std::uint32_t>(batch.bytes.size()));
    batch.events = 1;
    return batch;
  };
  const std::string tag(9000, 't');
  const Batch long_tag = one_event(R"({"id":"e-1","event_type":"charge","node":"gw-1","tag":")" + tag +
                                   R"(","body":{"n":1}})");
  SocketSink sink({.url = "syslog+udp://127.0.0.1:" + std::to_string(udp), .max_datagram_bytes = 8192});
  sink.attach_counters(&counters_);
  ASSERT_EQ(write_until_ok(sink, long_tag), Outcome::ok);
  const auto lines = testing::wait_for_lines(rsyslog.output(), 1);
  ASSERT_EQ(lines.size(), 1u) << rsyslog.log();
  const Received r = parse(lines[0]);
  EXPECT_EQ(r.hostname, "gw-1");
  EXPECT_EQ(r.msgid, "charge");
  EXPECT_EQ(r.sd, "-");
  EXPECT_EQ(r.msg.substr(0, 14), R"({"body":{"n":1)") << r.msg.substr(0, 80);
  EXPECT_EQ(counters_.truncated.read(), 1u);

  const Batch long_host = one_event(R"({"id":"e-2","event_type":"charge","node":")" + std::string(60, 'h') +
                                    R"(","body":{"n":2}})");
  SocketSink small({.url = "syslog+udp://127.0.0.1:" + std::to_string(udp), .max_datagram_bytes = 64});
  std::string why;
  EXPECT_EQ(small.write(long_host, why), Outcome::ok);
  ASSERT_EQ(small.rejected_ranges().size(), 1u);
  EXPECT_EQ(small.rejected_ranges()[0], (std::pair<std::uint32_t, std::uint32_t>{0, 1}));
  EXPECT_NE(why.find("syslog messages whose header alone is over max_datagram_bytes (64)"), std::string::npos)
      << why;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(testing::read_lines(rsyslog.output()).size(), 1u) << "a message cut in its header went";
}

TEST_F(SocketSinkRsyslog, UnixStreamAndUnixDatagram) {
  const std::uint16_t tcp = testing::free_port();
  const std::string stream = dir_ / "stream.sock", datagram = dir_ / "dgram.sock";
  Rsyslog rsyslog(dir_, "module(load=\"imtcp\")\nmodule(load=\"imptcp\")\n"
                        "module(load=\"imuxsock\" SysSock.Use=\"off\")\n"
                        "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"" + std::to_string(tcp) +
                            "\" ruleset=\"out\")\n"
                        "input(type=\"imptcp\" path=\"" + stream + "\" ruleset=\"out\")\n"
                        "input(type=\"imuxsock\" socket=\"" + datagram +
                            "\" useSpecialParser=\"off\" parseHostname=\"on\" ignoreTimestamp=\"off\" ruleset=\"out\")\n");
  ASSERT_TRUE(rsyslog.wait_tcp(tcp)) << rsyslog.log();
  ASSERT_TRUE(rsyslog.wait_path(stream) && rsyslog.wait_path(datagram)) << rsyslog.log();
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  Batch batch;
  SocketSink unix_stream({.url = "unix://" + stream, .max_connections = 1});
  fill(batch, options, 0, 100);
  ASSERT_EQ(write_until_ok(unix_stream, batch), Outcome::ok);
  ASSERT_EQ(testing::wait_for_lines(rsyslog.output(), 100).size(), 100u) << rsyslog.log();

  options.framing = Framing::none;
  SocketSink unix_datagram({.url = "unixgram://" + datagram});
  fill(batch, options, 100, 100);
  ASSERT_EQ(write_until_ok(unix_datagram, batch), Outcome::ok);
  const auto lines = testing::wait_for_lines(rsyslog.output(), 200);
  ASSERT_EQ(lines.size(), 200u) << rsyslog.log();
  for (std::size_t i = 0; i < lines.size(); ++i) expect_event(parse(lines[i]), i);
}

// RFC 3164 as rsyslog reads it: on a local datagram socket through
// imuxsock's own parser (the one for syslog(3), which takes no HOSTNAME),
// and over UDP through its RFC 3164 parser, HOSTNAME and all. rsyslog
// reads the year from its own clock, so only the rest is compared.
TEST_F(SocketSinkRsyslog, Rfc3164ReachesImuxsocksDefaultParserAndImudp) {
  const std::uint16_t tcp = testing::free_port(), udp = testing::free_port(SOCK_DGRAM);
  const std::string datagram = dir_ / "log.sock";
  Rsyslog rsyslog(dir_, tcp_and_udp_inputs(tcp, udp) + "module(load=\"imuxsock\" SysSock.Use=\"off\")\n"
                        "input(type=\"imuxsock\" socket=\"" + datagram + "\" ignoreTimestamp=\"off\" useSysTimeStamp=\"off\" ruleset=\"out\")\n");
  ASSERT_TRUE(rsyslog.wait_tcp(tcp) && rsyslog.wait_path(datagram)) << rsyslog.log();
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  options.framing = Framing::none;
  options.syslog_format = SyslogFormat::rfc3164;
  Batch batch;
  options.rfc3164_hostname = false;  // as parse_backend_options sets it for unix sockets
  SocketSink local({.url = "unixgram://" + datagram});
  fill(batch, options, 0, 20);
  ASSERT_EQ(write_until_ok(local, batch), Outcome::ok);
  ASSERT_EQ(testing::wait_for_lines(rsyslog.output(), 20).size(), 20u) << rsyslog.log();
  options.rfc3164_hostname = true;
  SocketSink network({.url = "syslog+udp://127.0.0.1:" + std::to_string(udp)});
  fill(batch, options, 20, 20);
  ASSERT_EQ(write_until_ok(network, batch), Outcome::ok);
  const auto lines = testing::wait_for_lines(rsyslog.output(), 40);
  ASSERT_EQ(lines.size(), 40u) << rsyslog.log();

  // The event's time as rsyslog writes it back (RFC 3339, local), past the year.
  const std::time_t reported = 1795452928;
  std::tm local_time{};
  ::localtime_r(&reported, &local_time);
  char month_to_second[32];
  std::strftime(month_to_second, sizeof month_to_second, "-%m-%dT%H:%M:%S", &local_time);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const Received r = parse(lines[i]);
    EXPECT_EQ(r.pri, expected_pri(i)) << i;
    EXPECT_EQ(r.hostname, i < 20 ? std::string(Rsyslog::kHostName) : "gw-1") << i;
    EXPECT_EQ(r.app, "billing_app") << i;
    EXPECT_EQ(r.timestamp.substr(4, 15), month_to_second) << i << " " << r.timestamp;
    // rsyslog keeps the space after the TAG's colon in MSG (RFC 3164 puts
    // it in the CONTENT).
    std::string msg = r.msg;
    if (msg.starts_with(' ')) msg.erase(0, 1);
    EXPECT_EQ(msg, expected_msg(i)) << i;
  }
}

TEST_F(SocketSinkRsyslog, TlsWithTheTestCaDeliversAndAWrongCaIsAClearCountedError) {
  const testing::TestPki pki = testing::make_test_pki(dir_);
  ASSERT_TRUE(pki.ok()) << testing::read_text(dir_ / "openssl.log");
  const std::uint16_t port = testing::free_port();
  Rsyslog rsyslog(dir_, tls_input(pki, port, "anon"));
  ASSERT_TRUE(rsyslog.wait_tcp(port)) << rsyslog.log();
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  Batch batch;

  SocketSink wrong({.url = "syslog+tls://127.0.0.1:" + std::to_string(port), .tls = {.ca_file = pki.other_ca}});
  wrong.attach_counters(&counters_);
  fill(batch, options, 0, 10);
  std::string why;
  EXPECT_EQ(wrong.write(batch, why), Outcome::retry);
  EXPECT_NE(why.find("certificate verify failed"), std::string::npos) << why;
  EXPECT_EQ(counters_.connect_failures.read(), 1u);
  EXPECT_EQ(counters_.connects.read(), 0u);

  SocketSink sink({.url = "syslog+tls://localhost:" + std::to_string(port), .max_connections = 1, .tls = {.ca_file = pki.ca}});
  sink.attach_counters(&counters_);
  // Large enough that the ciphertext goes out in several chunks and sends.
  for (std::size_t b = 0; b < 4; ++b) {
    fill(batch, options, b * 1000, 1000);
    ASSERT_EQ(write_until_ok(sink, batch), Outcome::ok);
  }
  const auto lines = testing::wait_for_lines(rsyslog.output(), 4000);
  ASSERT_EQ(lines.size(), 4000u) << rsyslog.log();
  for (std::size_t i = 0; i < lines.size(); ++i) expect_event(parse(lines[i]), i);
  EXPECT_EQ(counters_.connects.read(), 1u);

  // The name in the certificate is checked: receiver.example is not in it.
  SocketSink misnamed({.url = "syslog+tls://127.0.0.1:" + std::to_string(port), .tls = {.ca_file = pki.ca,
                       .server_name = "receiver.example"}});
  EXPECT_EQ(misnamed.write(batch, why), Outcome::retry);
  EXPECT_NE(why.find("certificate verify failed"), std::string::npos) << why;
}

TEST_F(SocketSinkRsyslog, TlsClientCertificateWhenTheReceiverAsksForOne) {
  const testing::TestPki pki = testing::make_test_pki(dir_);
  ASSERT_TRUE(pki.ok()) << testing::read_text(dir_ / "openssl.log");
  const std::uint16_t port = testing::free_port();
  Rsyslog rsyslog(dir_, tls_input(pki, port, "x509/certvalid"));
  ASSERT_TRUE(rsyslog.wait_tcp(port)) << rsyslog.log();
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  Batch batch;
  fill(batch, options, 0, 50);
  // Without a client certificate the receiver drops the session. Under
  // TLS 1.3 it says so only after our handshake is done; the sink waits
  // for that word before sending, so the batch is not taken as written.
  SocketSink anonymous({.url = "syslog+tls://localhost:" + std::to_string(port), .max_connections = 1,
                        .tls = {.ca_file = pki.ca}});
  std::string why;
  EXPECT_NE(anonymous.write(batch, why), Outcome::ok);
  EXPECT_NE(why.find("TLS"), std::string::npos) << why;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(testing::read_lines(rsyslog.output()).size(), 0u);

  SocketSink sink({.url = "syslog+tls://localhost:" + std::to_string(port), .max_connections = 1,
                   .tls = {.ca_file = pki.ca, .cert_file = pki.client_cert, .key_file = pki.client_key}});
  ASSERT_EQ(write_until_ok(sink, batch), Outcome::ok);

  // The same key encrypted, with its passphrase given.
  const std::string encrypted = dir_ / "client-encrypted.key";
  ASSERT_EQ(std::system(("openssl pkey -in " + pki.client_key + " -aes256 -passout pass:s3cret -out " + encrypted +
                         " 2>/dev/null")
                            .c_str()),
            0);
  SocketSink with_passphrase({.url = "syslog+tls://localhost:" + std::to_string(port), .max_connections = 1,
                              .tls = {.ca_file = pki.ca, .cert_file = pki.client_cert, .key_file = encrypted,
                                      .key_passphrase = "s3cret"}});
  Batch second;
  fill(second, options, 50, 50);
  ASSERT_EQ(write_until_ok(with_passphrase, second), Outcome::ok);
  const auto lines = testing::wait_for_lines(rsyslog.output(), 100);
  ASSERT_EQ(lines.size(), 100u) << rsyslog.log();
  for (std::size_t i = 0; i < lines.size(); ++i) expect_event(parse(lines[i]), i);
}

// A unix datagram socket bound at `path`, or -1.
int bound_unix_datagram_socket(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strcpy(address.sun_path, path.c_str());
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST(SocketSink, NdjsonOverUnixStreamAndDatagrams) {
  TempDir dir("ndjson");
  const std::string stream_path = dir / "stream.sock", datagram_path = dir / "dgram.sock";
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int datagrams = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  for (auto [fd, path] : {std::pair{listener, stream_path}, std::pair{datagrams, datagram_path}}) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strcpy(address.sun_path, path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  }
  ::listen(listener, 4);
  Batch batch;
  fill(batch, EncodeOptions{}, 0, 20);  // json lines, as format "ndjson" encodes them

  SocketSink stream({.url = "unix://" + stream_path});
  std::string why;
  ASSERT_EQ(stream.write(batch, why), Outcome::ok) << why;
  const int accepted = ::accept(listener, nullptr, nullptr);
  std::string received;
  char buffer[65536];
  while (received.size() < batch.bytes.size()) {
    const ssize_t n = ::recv(accepted, buffer, sizeof buffer, 0);
    ASSERT_GT(n, 0);
    received.append(buffer, static_cast<std::size_t>(n));
  }
  EXPECT_EQ(received, std::string(batch.bytes.view()));  // the lines, newline-terminated, nothing else

  // The kernel queues only a few datagrams per unix socket
  // (net.unix.max_dgram_qlen): the receiver reads while the sink sends, and
  // a full queue is EAGAIN, retried.
  std::vector<std::string> got;
  const timeval limit{2, 0};  // a failing sink must fail the test, not hang it
  ::setsockopt(datagrams, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  std::thread reader([&] {
    char datagram_buffer[65536];
    while (got.size() < 20) {
      const ssize_t n = ::recv(datagrams, datagram_buffer, sizeof datagram_buffer, 0);
      if (n <= 0) return;
      got.emplace_back(datagram_buffer, static_cast<std::size_t>(n));
    }
  });
  SocketSink datagram({.url = "unixgram://" + datagram_path, .strip_newline = true});
  EXPECT_EQ(write_until_ok(datagram, batch), Outcome::ok);
  reader.join();
  ASSERT_EQ(got.size(), 20u);
  for (std::size_t i = 0; i < 20; ++i) {
    std::string_view expected = batch.events_bytes(i, i + 1);
    expected.remove_suffix(1);  // each datagram is one document, without the newline
    EXPECT_EQ(got[i], expected);  // and in order
  }
  ::close(accepted);
  ::close(listener);
  ::close(datagrams);
}

// A connection closed with bytes from its receiver still unread (anything
// a receiver says; over TLS 1.3, session tickets that came late) ends with
// a reset instead of a FIN, and the kernel throws away what the send queue
// held: events counted as written, lost. Read off first, the close is
// clean and the receiver gets them all.
TEST(SocketSink, AConnectionClosedWithUnreadBytesStillDeliversWhatWasWritten) {
  const testing::BoundSocket listener = testing::bind_loopback(SOCK_STREAM, 4096);  // so our send queue holds the batch
  auto sink = std::make_unique<SocketSink>(
      SocketSinkOptions{.url = "syslog://127.0.0.1:" + std::to_string(listener.port), .max_connections = 1});
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  Batch batch;
  fill(batch, options, 0, 1000);  // a few hundred KB: the kernel takes it at once, the receiver reads none yet
  std::string why;
  ASSERT_EQ(sink->write(batch, why), Outcome::ok) << why;
  const int accepted = ::accept(listener.fd, nullptr, nullptr);
  ASSERT_GE(accepted, 0);
  ASSERT_EQ(::send(accepted, "x", 1, MSG_NOSIGNAL), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the byte arrives
  sink.reset();  // closes the connection
  const timeval limit{2, 0};
  ::setsockopt(accepted, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  std::string received;
  char buffer[65536];
  ssize_t n = 0;
  while ((n = ::recv(accepted, buffer, sizeof buffer, 0)) > 0) received.append(buffer, static_cast<std::size_t>(n));
  EXPECT_EQ(n, 0) << "the connection ended with " << std::strerror(errno) << ", not a FIN";
  EXPECT_EQ(received.size(), batch.bytes.size());
  EXPECT_TRUE(received == batch.bytes.view());
  ::close(accepted);
  ::close(listener.fd);
}

// Lines a sink gives the log (Sink::notice), kept.
struct Notices {
  std::vector<std::string> lines;
  void attach(Sink& sink) {
    sink.attach_notices([](void* self, std::string_view line, bool) noexcept {
      static_cast<Notices*>(self)->lines.emplace_back(line);
    }, this);
  }
};

// A receiver that resets its connection between batches throws away what
// its kernel held unread, which ours had acknowledged: said when the next
// batch finds it, as it connects again. It went unsaid, and uncounted.
TEST(SocketSink, AConnectionTheReceiverResetBetweenBatchesIsSaid) {
  const testing::BoundSocket listener = testing::bind_loopback();
  ASSERT_EQ(::listen(listener.fd, 4), 0);
  auto sink = std::make_unique<SocketSink>(
      SocketSinkOptions{.url = "syslog://127.0.0.1:" + std::to_string(listener.port), .max_connections = 1});
  Notices notices;
  notices.attach(*sink);
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  Batch batch;
  fill(batch, options, 0, 10);
  std::string why;
  ASSERT_EQ(sink->write(batch, why), Outcome::ok) << why;
  const int first = ::accept(listener.fd, nullptr, nullptr);
  ASSERT_GE(first, 0);
  const linger reset{1, 0};  // closed with a reset, not a FIN
  ASSERT_EQ(::setsockopt(first, SOL_SOCKET, SO_LINGER, &reset, sizeof reset), 0);
  ::close(first);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the reset arrives
  EXPECT_TRUE(notices.lines.empty());
  Batch next;
  fill(next, options, 10, 10);
  ASSERT_EQ(sink->write(next, why), Outcome::ok) << why;
  ASSERT_EQ(notices.lines.size(), 1u);
  EXPECT_NE(notices.lines[0].find("was found reset by the receiver between batches: connecting again (events the "
                                  "receiver had taken and not read are lost with it)"),
            std::string::npos)
      << notices.lines[0];
  sink.reset();
  ::close(listener.fd);
}

// A unix datagram receiver queues only a few datagrams (10 by default,
// net.unix.max_dgram_qlen): a sink faster than its reader meets a full
// queue at once, and waits for room, as a blocking send would. It failed
// the try instead, and the runner's backoff let through 11 datagrams every
// few seconds to a receiver that read as fast as it could. One that takes
// nothing for a second is said not to keep up.
TEST(SocketSink, AUnixDatagramReceiverWithAFullQueueIsWaitedForNotFailed) {
  TempDir dir("dgram-full");
  const std::string path = dir / "dgram.sock";
  const int receiver = bound_unix_datagram_socket(path);
  ASSERT_GE(receiver, 0);
  const timeval limit{2, 0};  // a failing sink must fail the test, not hang it
  ::setsockopt(receiver, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  // Many times what the receiver's queue holds, whatever this host's bound.
  std::size_t queue_bound = 10;
  std::ifstream("/proc/sys/net/unix/max_dgram_qlen") >> queue_bound;
  const std::size_t kEvents = std::max<std::size_t>(300, 30 * queue_bound);
  std::size_t received = 0;
  std::thread reader([&] {
    char buffer[65536];
    while (received < kEvents && ::recv(receiver, buffer, sizeof buffer, 0) > 0) {
      if (++received % 10 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  SocketSink sink({.url = "unixgram://" + path, .strip_newline = true});
  Batch batch;
  fill(batch, EncodeOptions{}, 0, kEvents);
  std::string why;
  EXPECT_EQ(sink.write(batch, why), Outcome::ok) << why;  // one try, however full the queue was meanwhile
  reader.join();
  EXPECT_EQ(received, kEvents);

  // Nobody reads now: the queue fills, and after a second's wait the try is
  // given back to the runner's backoff, said.
  Batch more;
  const std::size_t more_events = queue_bound + 40;
  fill(more, EncodeOptions{}, 0, more_events);
  EXPECT_EQ(sink.write(more, why), Outcome::retry);
  EXPECT_NE(why.find("receiver not keeping up"), std::string::npos) << why;
  EXPECT_GT(sink.delivered_events(), 0u);
  EXPECT_LT(sink.delivered_events(), more_events);
  ::close(receiver);
}

// A unix url naming a file that is no socket: the kernel's "Connection
// refused" alone sent the user looking for a receiver that was down.
TEST(SocketSink, AUnixPathThatIsNoSocketIsSaidSo) {
  TempDir dir("not-a-socket");
  const std::string path = dir / "plain.file";
  std::ofstream(path) << "not a socket\n";
  for (const char* scheme : {"unix://", "unixgram://"}) {
    SocketSink sink({.url = scheme + path});
    Batch batch;
    fill(batch, EncodeOptions{}, 0, 1);
    std::string why;
    EXPECT_EQ(sink.write(batch, why), Outcome::retry) << scheme;
    EXPECT_NE(why.find("Connection refused (" + path + " is not a socket)"), std::string::npos) << why;
  }
}

// A destination whose name does not resolve is a connect that failed, for
// datagrams as for streams: `stat` would otherwise show an unresolvable
// syslog host as never tried. The name's 70-byte label is refused by the
// C library's resolver itself, so no name server is asked (none may be
// reachable here).
TEST(SocketSink, ANameThatDoesNotResolveCountsAsAFailedConnectForDatagramsAndStreams) {
  const std::string host = std::string(70, 'a') + ".invalid";
  for (const char* scheme : {"syslog+udp://", "syslog+tcp://"}) {
    SocketSink sink({.url = scheme + host + ":514"});
    perf::BackendSinkShard counters;
    sink.attach_counters(&counters);
    EncodeOptions options;
    options.wrap = Wrap::syslog;
    Batch batch;
    fill(batch, options, 0, 1);
    std::string why;
    EXPECT_EQ(sink.write(batch, why), Outcome::retry) << scheme;
    EXPECT_NE(why.find(host), std::string::npos) << scheme << ": " << why;
    EXPECT_EQ(counters.connect_failures.read(), 1u) << scheme;
    EXPECT_EQ(counters.connects.read(), 0u) << scheme;
  }
}

// A stop while a chain of datagrams goes: sent without waiting, they have
// mostly gone by the time the write is cut short, and those that went are
// delivered. The chain's completions were left unread, so every datagram
// in it counted as not delivered and a successor sent them again.
TEST(SocketSink, AStopMidChainCountsTheDatagramsThatWentAsDelivered) {
  TempDir dir("dgram-stop");
  const std::string path = dir / "dgram.sock";
  const int receiver = bound_unix_datagram_socket(path);
  ASSERT_GE(receiver, 0);
  SocketSink sink({.url = "unixgram://" + path, .strip_newline = true});
  const std::atomic<bool> stop{true};  // stopping already: the first wait for completions ends the write
  sink.attach_stop(&stop);
  Batch batch;
  fill(batch, EncodeOptions{}, 0, 5);  // within any unix datagram queue (net.unix.max_dgram_qlen)
  std::string why;
  EXPECT_THROW((void)sink.write(batch, why), WriteInterrupted);
  std::size_t received = 0;
  char buffer[65536];
  while (::recv(receiver, buffer, sizeof buffer, MSG_DONTWAIT) > 0) ++received;
  EXPECT_GT(received, 0u);
  EXPECT_EQ(sink.delivered_events(), received);
  std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges;
  sink.delivered_ranges(ranges);
  if (received > 0) {
    EXPECT_EQ(ranges, (std::vector<std::pair<std::uint32_t, std::uint32_t>>{{0, static_cast<std::uint32_t>(received)}}));
  }
  ::close(receiver);
}

// An event too long for a datagram: as NDJSON it is rejected, counted and
// said (cut, it was a line that does not parse); as syslog it is cut where
// a character starts, so MSG stays valid UTF-8.
TEST(SocketSink, ADatagramTooLongIsRejectedAsNdjsonAndCutWholeCharactersAsSyslog) {
  TempDir dir("dgram-long");
  const std::string path = dir / "dgram.sock";
  const int datagrams = bound_unix_datagram_socket(path);
  ASSERT_GE(datagrams, 0);
  const timeval limit{2, 0};
  ::setsockopt(datagrams, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  auto batch_of = [](const std::vector<std::string>& lines, std::uint64_t end) {
    Batch batch;
    for (const std::string& line : lines) {
      batch.bytes.append(line);
      batch.event_ends.push_back(static_cast<std::uint32_t>(batch.bytes.size()));
      batch.event_ns.push_back(0);
      ++batch.events;
    }
    batch.end = end;
    return batch;
  };
  auto receive = [&](std::size_t count) {
    std::vector<std::string> got;
    char buffer[65536];
    while (got.size() < count) {
      const ssize_t n = ::recv(datagrams, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      got.emplace_back(buffer, static_cast<std::size_t>(n));
    }
    return got;
  };
  perf::BackendSinkShard counters{};
  SocketSink ndjson({.url = "unixgram://" + path, .max_datagram_bytes = 64, .strip_newline = true});
  ndjson.attach_counters(&counters);
  const Batch lines = batch_of({"{\"a\":1}\n", "{\"b\":\"" + std::string(100, 'x') + "\"}\n", "{\"c\":3}\n"}, 1);
  std::string why;
  ASSERT_EQ(ndjson.write(lines, why), Outcome::ok) << why;
  EXPECT_EQ(ndjson.rejected_events(), 1u);
  // Which one, so the runner counts neither its bytes nor its latency.
  EXPECT_EQ(ndjson.rejected_ranges(), (std::vector<std::pair<std::uint32_t, std::uint32_t>>{{1, 2}}));
  EXPECT_NE(why.find("over max_datagram_bytes (64)"), std::string::npos) << why;
  EXPECT_EQ(receive(2), (std::vector<std::string>{"{\"a\":1}", "{\"c\":3}"}));
  EXPECT_EQ(counters.truncated.read(), 0u);

  SocketSink syslog({.url = "unixgram://" + path, .max_datagram_bytes = 65});
  syslog.attach_counters(&counters);
  std::string accented;
  for (int i = 0; i < 50; ++i) accented += "\xc3\xa9";  // é: the 65th byte is the middle of one
  why.clear();
  ASSERT_EQ(syslog.write(batch_of({accented}, 2), why), Outcome::ok) << why;
  EXPECT_EQ(syslog.rejected_events(), 0u);
  const auto cut = receive(1);
  ASSERT_EQ(cut.size(), 1u);
  EXPECT_EQ(cut[0], accented.substr(0, 64));
  EXPECT_EQ(counters.truncated.read(), 1u);

  // RFC 3164 has no fields past its TAG: a long message is cut in MSG
  // whatever MSG holds. Read as RFC 5424, its sixth space fell in MSG,
  // and the " - " there passed for an SD past the limit: refused.
  const std::string rfc3164 = "<134>Dec 16 05:04:03 gw-1 app: {\"a\":\"" + std::string(40, 'x') + " - [x] y\"}";
  why.clear();
  ASSERT_EQ(syslog.write(batch_of({rfc3164}, 3), why), Outcome::ok) << why;
  EXPECT_EQ(syslog.rejected_events(), 0u) << why;
  EXPECT_EQ(receive(1), std::vector<std::string>{rfc3164.substr(0, 65)});
  // But its header is whole or the message is refused, as RFC 5424's: a
  // long HOSTNAME was cut, and the receiver got no TAG and no MSG.
  const std::string long_host = "<134>Dec 16 05:04:03 " + std::string(60, 'h') + " app: {}";
  why.clear();
  ASSERT_EQ(syslog.write(batch_of({long_host, rfc3164}, 4), why), Outcome::ok) << why;
  EXPECT_EQ(syslog.rejected_events(), 1u) << why;
  EXPECT_NE(why.find("header alone is over max_datagram_bytes (65)"), std::string::npos) << why;
  EXPECT_EQ(receive(1), std::vector<std::string>{rfc3164.substr(0, 65)});
  ::close(datagrams);
}

// A TCP receiver whose every connection reads slowly (16 KB, then a 2 ms
// nap): one connection can't keep up with large batches, several can.
// With `pause_first_after`, its first connection stops reading after that
// many bytes until resume(), and the others read without a nap.
class SlowReceiver {
 public:
  explicit SlowReceiver(std::size_t pause_first_after = 0) : pause_first_after_(pause_first_after) {
    const testing::BoundSocket bound = testing::bind_loopback(SOCK_STREAM, kReceiveBuffer);
    listener_ = bound.fd;
    port_ = bound.port;
    acceptor_ = std::thread([this] {
      for (;;) {
        const int fd = ::accept(listener_, nullptr, nullptr);
        if (fd < 0) return;
        std::lock_guard lock(mutex_);
        streams_.emplace_back();
        fds_.push_back(fd);
        resets_.push_back(false);
        readers_.emplace_back([this, fd, index = streams_.size() - 1] {
          char buffer[16 * 1024];
          const bool pausing = index == 0 && pause_first_after_ > 0;
          for (std::size_t got = 0;;) {
            std::size_t most = sizeof buffer;
            if (pausing && got >= pause_first_after_) {
              while (!resumed_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            } else if (pausing) {
              most = std::min(most, pause_first_after_ - got);
            }
            const ssize_t n = ::recv(fd, buffer, most, 0);
            if (n <= 0) break;
            got += static_cast<std::size_t>(n);
            {
              std::lock_guard append_lock(mutex_);
              if (resets_[index]) break;
              streams_[index].append(buffer, static_cast<std::size_t>(n));
            }
            if (pause_first_after_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
          }
          std::lock_guard close_lock(mutex_);
          if (resets_[index]) {
            // Unread bytes and no linger: the close resets the connection,
            // as a load balancer or a crashed receiver does.
            const linger abort{1, 0};
            ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
          }
          ::close(fd);
        });
      }
    });
  }
  ~SlowReceiver() {
    resumed_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    acceptor_.join();
    for (auto& r : readers_) r.join();
  }
  static constexpr int kReceiveBuffer = 64 * 1024;  // the kernel doubles it
  [[nodiscard]] std::uint16_t port() const { return port_; }
  // Bytes the first connection has read.
  [[nodiscard]] std::size_t first_bytes() {
    std::lock_guard lock(mutex_);
    return streams_.empty() ? 0 : streams_[0].size();
  }
  void resume() { resumed_ = true; }
  // Event numbers in every stream, from its octet-counted frames.
  std::vector<std::size_t> events() {
    std::vector<std::size_t> out;
    for (const auto& stream : events_by_connection()) out.insert(out.end(), stream.begin(), stream.end());
    std::sort(out.begin(), out.end());
    return out;
  }
  // Each connection's event numbers, in the order it got them.
  std::vector<std::vector<std::size_t>> events_by_connection() {
    std::lock_guard lock(mutex_);
    std::vector<std::vector<std::size_t>> out;
    for (const std::string& stream : streams_) {
      std::vector<std::size_t>& numbers = out.emplace_back();
      std::size_t at = 0;
      while (at < stream.size()) {
        const std::size_t space = stream.find(' ', at);
        if (space == std::string::npos) break;
        const std::size_t length = std::stoul(stream.substr(at, space - at));
        if (space + 1 + length > stream.size()) break;  // still arriving, or cut by a reset
        const std::string message = stream.substr(space + 1, length);
        const std::size_t id = message.find("\"id\":\"e-");
        numbers.push_back(std::stoul(message.substr(id + 8)));
        at = space + 1 + length;
      }
    }
    return out;
  }
  // The same, once 300 ms pass with nothing more (a loaded machine's
  // readers may be off the CPU that long).
  std::vector<std::vector<std::size_t>> events_by_connection_once_quiet() {
    std::vector<std::vector<std::size_t>> streams;
    for (std::size_t total = 0, before = 1; total != before;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      streams = events_by_connection();
      before = total;
      total = 0;
      for (const auto& stream : streams) total += stream.size();
    }
    return streams;
  }
  // Resets the first connection still open, at its reader's next read.
  void reset_first_open() {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < fds_.size(); ++i) {
      if (resets_[i]) continue;
      resets_[i] = true;
      ::shutdown(fds_[i], SHUT_RD);  // wakes a reader blocked in recv()
      return;
    }
  }

 private:
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::thread acceptor_;
  std::mutex mutex_;
  std::deque<std::string> streams_;
  std::vector<int> fds_;
  std::vector<bool> resets_;
  std::vector<std::thread> readers_;
  const std::size_t pause_first_after_;
  std::atomic<bool> resumed_{false};
};

// A syslog sink of up to `connections` connections to a SlowReceiver, and
// the batch it is written from.
struct SlowSyslog {
  explicit SlowSyslog(std::uint32_t connections)
      : sink({.url = "syslog://127.0.0.1:" + std::to_string(receiver.port()), .max_connections = connections}) {
    options.wrap = Wrap::syslog;
  }
  SlowReceiver receiver;
  SocketSink sink;
  EncodeOptions options;
  Batch batch;
  std::size_t next = 0;  // the next event's number
};

TEST(SocketSink, OpensMoreConnectionsOnlyWhenOneDoesNotKeepUp) {
  SlowSyslog slow(3);
  auto& [receiver, sink, options, batch, next] = slow;
  // Small batches now and then: the socket buffer takes each at once.
  for (int i = 0; i < 20; ++i, next += 5) {
    fill(batch, options, next, 5);
    ASSERT_EQ(write_until_ok(sink, batch), Outcome::ok);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // One, or two where a loaded machine held one small write past half the
  // sink's window; all three only where it opens them without need.
  EXPECT_LE(sink.open_connections(), 2u);
  // Large batches back to back: once the kernel's send buffer is full (a few
  // MB), one connection takes tens of ms for each.
  for (int i = 0; i < 20; ++i, next += 2000) {
    fill(batch, options, next, 2000);
    ASSERT_EQ(write_until_ok(sink, batch), Outcome::ok);
  }
  EXPECT_GE(sink.open_connections(), 2u);
  EXPECT_LE(sink.open_connections(), 3u);
  std::vector<std::size_t> got;
  // Each look parses every stream under the lock its readers take, so
  // looks are far apart: they would slow the drain they wait for.
  for (const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
       got.size() < next && std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    got = receiver.events();
  }
  ASSERT_EQ(got.size(), next);
  for (std::size_t i = 0; i < next; ++i) ASSERT_EQ(got[i], i);  // each once
}

// As the HTTP sink's test of the same name: a process with no descriptor
// left for one more connection (its limit, which other backends share)
// sends on the connections it has. The write failed and backed off as if
// the receiver had, each time the sink wanted one more.
TEST(SocketSink, OutOfDescriptorsTheWriteGoesOnWithTheConnectionsItHas) {
  SlowReceiver receiver;  // here, outside the child's limit
  constexpr std::size_t kBatches = 20, kEvents = 2000;  // the kernel's buffers full, the sink wants a third
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(20);
    SocketSink sink({.url = "syslog://127.0.0.1:" + std::to_string(receiver.port()), .max_connections = 8});
    perf::BackendSinkShard counters{};
    sink.attach_counters(&counters);
    EncodeOptions options;
    options.wrap = Wrap::syslog;
    Batch batch;
    testing::leave_room_for_descriptors(2);
    for (std::size_t i = 0; i < kBatches; ++i) {
      fill(batch, options, i * kEvents, kEvents);
      std::string why;
      if (sink.write(batch, why) != Outcome::ok) {
        std::fprintf(stderr, "write %zu: %s\n", i, why.c_str());
        ::_exit(1);
      }
    }
    ::_exit(counters.failures.read() == 0 && sink.open_connections() == 2 ? 0 : 2);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const auto streams = receiver.events_by_connection_once_quiet();
  EXPECT_EQ(streams.size(), 2u);
  std::vector<std::size_t> every;
  for (const auto& stream : streams) {
    EXPECT_TRUE(std::is_sorted(stream.begin(), stream.end()));  // order holds on each
    every.insert(every.end(), stream.begin(), stream.end());
  }
  std::sort(every.begin(), every.end());
  std::vector<std::size_t> all(kBatches * kEvents);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(every, all);  // each once
}

// A TLS 1.3 receiver that reads and discards, and sends no session tickets
// after the handshake: each new connection then waits out the sink's
// confirm wait (250 ms), a setup far longer than any send.
class QuietTlsReceiver {
 public:
  explicit QuietTlsReceiver(const testing::TestPki& pki) : bound_(testing::bind_loopback()) {
    context_ = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate_chain_file(context_, pki.server_cert.c_str());
    SSL_CTX_use_PrivateKey_file(context_, pki.server_key.c_str(), SSL_FILETYPE_PEM);
    SSL_CTX_set_min_proto_version(context_, TLS1_3_VERSION);
    SSL_CTX_set_num_tickets(context_, 0);
    acceptor_ = std::thread([this] {
      for (;;) {
        const int fd = ::accept(bound_.fd, nullptr, nullptr);
        if (fd < 0) return;  // the listener was shut down
        std::lock_guard lock(mutex_);
        fds_.push_back(fd);
        readers_.emplace_back([this, fd] {
          SSL* ssl = SSL_new(context_);
          SSL_set_fd(ssl, fd);
          char data[16384];
          if (SSL_accept(ssl) == 1) {
            while (SSL_read(ssl, data, sizeof data) > 0) {
            }
          }
          SSL_free(ssl);
        });
      }
    });
  }
  ~QuietTlsReceiver() {
    ::shutdown(bound_.fd, SHUT_RDWR);
    acceptor_.join();
    {
      std::lock_guard lock(mutex_);
      for (const int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& reader : readers_) reader.join();
    for (const int fd : fds_) ::close(fd);
    ::close(bound_.fd);
    SSL_CTX_free(context_);
  }
  [[nodiscard]] std::uint16_t port() const { return bound_.port; }

 private:
  testing::BoundSocket bound_;
  SSL_CTX* context_ = nullptr;
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<int> fds_;
  std::vector<std::thread> readers_;
};

// Setting a connection up (here a TLS handshake and its 250 ms confirm
// wait) is not a receiver that lags: small batches that one connection
// carries at once stay on it. The setup used to count as time spent
// waiting on sends, so the first write opened a second connection, whose
// own setup opened a third, one a batch up to max_connections, and the
// batches were split between them.
TEST(SocketSink, SettingUpAConnectionIsNotTakenForAReceiverThatLags) {
  testing::TempDir dir("socket-setup");
  const testing::TestPki pki = testing::make_test_pki(dir);
  if (!pki.ok()) GTEST_SKIP() << "no openssl to make the test's certificates";
  QuietTlsReceiver receiver(pki);
  SocketSink sink({.url = "syslog+tls://localhost:" + std::to_string(receiver.port()), .max_connections = 8,
                   .tls = {.ca_file = pki.ca}});
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  Batch batch;
  for (std::size_t i = 0, next = 0; i < 8; ++i, next += 5) {
    fill(batch, options, next, 5);
    ASSERT_EQ(write_until_ok(sink, batch), Outcome::ok);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // One; a loaded machine that holds a write up past half a window may
  // open another. Counted, each setup opened one more: all 8 by the end.
  EXPECT_LE(sink.open_connections(), 2u);
}

// Two connections, and the first reset partway through a batch: its rest
// lies before what the second carried, so it goes again on a fresh
// connection, never on the second one behind later events. It used to be
// split over both.
TEST(SocketSink, AConnectionResetMidBatchLeavesItsRestOffConnectionsThatCarriedLaterEvents) {
  SlowSyslog slow(2);
  auto& [receiver, sink, options, batch, next] = slow;
  for (int i = 0; i < 20 && sink.open_connections() < 2; ++i, next += 2000) {
    fill(batch, options, next, 2000);
    ASSERT_EQ(write_until_ok(sink, batch), Outcome::ok);
  }
  ASSERT_EQ(sink.open_connections(), 2u) << "large batches back to back open a second connection";
  // Several MB for each connection: more than the socket buffers take at
  // once, so each part is still being sent when the first is reset.
  constexpr std::size_t kLarge = 30000;
  fill(batch, options, next, kLarge);
  next += kLarge;
  std::thread resetter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    slow.receiver.reset_first_open();  // clang 14 lets no lambda name a structured binding
  });
  const Outcome outcome = write_until_ok(sink, batch);
  resetter.join();
  ASSERT_EQ(outcome, Outcome::ok);
  // What the reset threw away of our send queue went again (the sink
  // counts what the receiver acknowledged); all has come once nothing more
  // comes.
  const auto streams = receiver.events_by_connection_once_quiet();
  ASSERT_GE(streams.size(), 3u) << "the reset connection was opened again";
  for (std::size_t k = 0; k < streams.size(); ++k) {
    for (std::size_t i = 1; i < streams[k].size(); ++i) {
      ASSERT_LT(streams[k][i - 1], streams[k][i]) << "connection " << k << ", its event " << i;
    }
  }
}

// A peer that answers the ClientHello with the start of a 16 KiB TLS record
// and then one byte every 50 ms: each read completes well within its own
// timeout, but connect and handshake together get connect_timeout, so the
// write fails in about that time (it would have taken 13 minutes), counted
// as a connect failure and a timeout.
TEST(SocketSink, ATlsHandshakeThatDripsEndsAtTheConnectTimeout) {
  const testing::BoundSocket bound = testing::bind_loopback(SOCK_STREAM, 64 * 1024);
  std::atomic<bool> done{false};
  std::thread peer([&] {
    const int fd = ::accept(bound.fd, nullptr, nullptr);
    if (fd < 0) return;
    char hello[4096];
    (void)::recv(fd, hello, sizeof hello, 0);
    const char record_start[] = {0x16, 0x03, 0x03, 0x40, 0x00};
    (void)::send(fd, record_start, sizeof record_start, MSG_NOSIGNAL);
    for (int i = 0; i < 100 && !done.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (::send(fd, "x", 1, MSG_NOSIGNAL) != 1) break;
    }
    ::close(fd);
  });
  SocketSink sink({.url = "syslog+tls://127.0.0.1:" + std::to_string(bound.port), .max_connections = 1,
                   .connect_timeout = std::chrono::milliseconds(300)});
  perf::BackendSinkShard counters;
  sink.attach_counters(&counters);
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  Batch batch;
  fill(batch, options, 0, 5);
  std::string why;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_NE(sink.write(batch, why), Outcome::ok);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  done = true;
  peer.join();
  ::close(bound.fd);
  EXPECT_LT(elapsed, std::chrono::milliseconds(1500));
  // The last step either times out (its limit is what was left) or finds
  // no time left.
  EXPECT_TRUE(why.find("TLS handshake with") != std::string::npos &&
              (why.find("timed out") != std::string::npos ||
               why.find("not done within connect_timeout (300 ms)") != std::string::npos))
      << why;
  EXPECT_GE(counters.connect_failures.read(), 1u);
  EXPECT_GE(counters.timeouts.read(), 1u);
}

// A receiver that takes 1 KB every 10 ms makes progress on every send well
// within `timeout`, so a batch of 10 MB would take minutes. A stop must not
// wait for it: after its drain the write is cut short (within about 50 ms).
// The events the receiver had acknowledged by then count as sent; the rest
// of the batch as handed over and not written, as a write that failed
// would. The peer gives up after 3 s, so without the cut the stop would
// take that long.
TEST(SocketSink, AStopCutsShortAWriteToADestinationThatTakesEveryStepJustInTime) {
  const testing::BoundSocket bound = testing::bind_loopback(SOCK_STREAM, 4096);
  std::atomic<bool> done{false};
  std::thread peer([&] {
    const int fd = ::accept(bound.fd, nullptr, nullptr);
    if (fd < 0) return;
    char buffer[1024];
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (!done.load() && std::chrono::steady_clock::now() < until) {
      if (::recv(fd, buffer, sizeof buffer, 0) <= 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::close(fd);
  });
  perf::BackendSlot slot;
  {
    BackendRunner runner("slow", BackendOptions{},
                         std::make_unique<SocketSink>(SocketSinkOptions{
                             .url = "syslog://127.0.0.1:" + std::to_string(bound.port), .max_connections = 1}),
                         slot);
    EncodeOptions options;
    options.wrap = Wrap::syslog;
    Batch* batch = runner.take_batch();
    fill(*batch, options, 0, 20000);
    batch->event_ns.assign(batch->events, 0);
    batch->ring = 0;
    batch->holds_ring = true;
    runner.submit(batch);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the write is under way
    const auto start = std::chrono::steady_clock::now();
    runner.stop(std::chrono::milliseconds(100));
    const auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_GE(elapsed, std::chrono::milliseconds(100));
    EXPECT_LT(elapsed, std::chrono::milliseconds(1000));
    const std::uint64_t sent = slot.sink.sent.read();
    EXPECT_GT(sent, 0u) << "the receiver had acknowledged some events whole";
    EXPECT_LT(sent, 20000u);
    EXPECT_EQ(runner.unwritten_events(), 20000u - sent);
    EXPECT_EQ(slot.written_through[0].load(), 0u);
  }
  done = true;
  peer.join();
  ::close(bound.fd);
}

// A stop cuts short a write to a receiver that stopped reading, and a
// changed backend's new runner takes the batch over. Delivered are the
// events the receiver's TCP acknowledged: what it read, and at most its
// receive buffer more. What our kernel still held (megabytes of send
// queue) is not: the old connection may never get it through, so the new
// runner writes it again, from the first event not acknowledged. The old
// code counted nothing delivered, and the new runner wrote the batch
// whole; counting what our kernel took lost the send queue with a
// receiver that never read again.
TEST(SocketSink, AStopCountsAsDeliveredWhatTheReceiverAcknowledgedNotWhatTheKernelTook) {
  SlowReceiver receiver(1 << 20);  // its first connection reads 1 MB, then nothing until resumed
  const auto to_receiver = [&] {
    return std::make_unique<SocketSink>(
        SocketSinkOptions{.url = "syslog://127.0.0.1:" + std::to_string(receiver.port()), .max_connections = 1});
  };
  auto slot = std::make_unique<perf::BackendSlot>();
  auto old_runner = std::make_shared<BackendRunner>("changed", BackendOptions{}, to_receiver(), *slot);
  EncodeOptions options;
  options.wrap = Wrap::syslog;
  constexpr std::size_t kEvents = 20000;  // about 7 MB: more than the receiver and both kernels hold
  Batch* batch = old_runner->take_batch();
  fill(*batch, options, 0, kEvents);
  batch->event_ns.assign(batch->events, 0);
  batch->holds_ring = false;
  std::uint32_t smallest = batch->event_ends[0];
  for (std::size_t i = 1; i < kEvents; ++i) smallest = std::min(smallest, batch->event_ends[i] - batch->event_ends[i - 1]);
  old_runner->submit(batch);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (receiver.first_bytes() < (1u << 20) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(receiver.first_bytes(), 1u << 20);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the buffers fill up
  const std::size_t read = receiver.events().size();

  BackendRunner new_runner("changed", BackendOptions{}, to_receiver(), *slot, old_runner);
  old_runner->stop(std::chrono::milliseconds(0));
  const std::uint64_t delivered = kEvents - old_runner->unwritten_events();
  old_runner.reset();
  EXPECT_GE(delivered, read) << "what the receiver read was acknowledged";
  EXPECT_LE(delivered, read + 2 * SlowReceiver::kReceiveBuffer / smallest + 1)
      << "no more than its receive buffer held past that";

  while (!new_runner.idle() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  new_runner.stop(std::chrono::milliseconds(1000));
  receiver.resume();  // the old connection's close delivers what it still can
  const auto streams = receiver.events_by_connection_once_quiet();
  ASSERT_EQ(streams.size(), 2u);
  // The new runner wrote from the first event not acknowledged, in order.
  ASSERT_FALSE(streams[1].empty());
  EXPECT_EQ(streams[1].front(), delivered);
  EXPECT_EQ(streams[1].size(), kEvents - delivered);
  for (std::size_t i = 1; i < streams[1].size(); ++i) ASSERT_EQ(streams[1][i], streams[1][i - 1] + 1);
  // Every event came; those the old connection still got through came twice.
  std::vector<bool> seen(kEvents, false);
  for (const auto& stream : streams) {
    for (const std::size_t event : stream) seen[event] = true;
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), true), static_cast<std::ptrdiff_t>(kEvents));
  EXPECT_EQ(slot->sink.sent.read(), kEvents);
  EXPECT_EQ(new_runner.unwritten_events(), 0u);
}

// A one-connection syslog sink with send timeouts of `timeout` to a
// SlowReceiver that stops reading after 256 KB, and a batch of about 10 MB
// (more than the receiver and both kernels hold).
struct StallingReceiver {
  explicit StallingReceiver(std::chrono::milliseconds timeout)
      : sink({.url = "syslog://127.0.0.1:" + std::to_string(receiver.port()), .max_connections = 1,
              .timeout = timeout}) {
    sink.attach_counters(&counters);
    EncodeOptions options;
    options.wrap = Wrap::syslog;
    fill(batch, options, 0, kEvents);
  }
  static constexpr std::size_t kEvents = 30000;
  SlowReceiver receiver{256 * 1024};
  SocketSink sink;
  perf::BackendSinkShard counters;
  Batch batch;
};

// A receiver that stops reading (a stalled rsyslog: its window closed) is
// waited for on the same connection, each timeout counted. The connection
// was closed at each timeout and the rest sent on a fresh one, and the
// receiver, back, read the old connections' unread bytes beside the new
// one's: out of order with max_connections 1, and some twice.
TEST(SocketSink, AReceiverThatStopsReadingIsWaitedForOnItsConnectionInOrder) {
  StallingReceiver stalling(std::chrono::milliseconds(250));
  auto& [receiver, sink, counters, batch] = stalling;
  constexpr std::size_t kEvents = StallingReceiver::kEvents;
  Notices notices;
  notices.attach(sink);
  std::thread resume([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(900));
    receiver.resume();
  });
  std::string why;
  std::size_t retries = 0;
  while (sink.write(batch, why) != Outcome::ok && retries < 20) ++retries;
  resume.join();
  EXPECT_EQ(retries, 0u) << why;
  const auto streams = receiver.events_by_connection_once_quiet();
  ASSERT_EQ(streams.size(), 1u);
  ASSERT_EQ(streams[0].size(), kEvents);
  for (std::size_t i = 0; i < kEvents; ++i) ASSERT_EQ(streams[0][i], i);
  EXPECT_GE(counters.timeouts.read(), 2u);
  EXPECT_EQ(counters.connects.read(), 1u);
  // Said at the first timeout of a stall (a window probe's progress starts
  // another): the wait was silent up to the sixth.
  ASSERT_GE(notices.lines.size(), 1u);
  EXPECT_LT(notices.lines.size(), counters.timeouts.read());
  EXPECT_NE(notices.lines[0].find(": the receiver has read nothing for 250 ms; waiting on this connection (it is made "
                                  "anew after 6 such timeouts in a row)"),
            std::string::npos)
      << notices.lines[0];
}

// Not for ever: a receiver hung for good (or a balancer in front of a
// stalled server) is left after 6 timeouts in a row, as any failed
// connection, and the events go again on a fresh one.
TEST(SocketSink, AReceiverStalledForGoodIsLeftAfterSixTimeouts) {
  StallingReceiver stalling(std::chrono::milliseconds(100));
  auto& [receiver, sink, counters, batch] = stalling;
  constexpr std::size_t kEvents = StallingReceiver::kEvents;
  std::string why;
  EXPECT_EQ(sink.write(batch, why), Outcome::retry);
  // Six in a row at least (a window probe's worth of progress starts the
  // count over).
  EXPECT_GE(counters.timeouts.read(), 6u);
  EXPECT_NE(why.find(": the receiver read nothing through 6 timeouts in a row"), std::string::npos) << why;
  receiver.resume();
  std::size_t retries = 0;
  while (sink.write(batch, why) != Outcome::ok && retries < 20) ++retries;
  EXPECT_EQ(retries, 0u) << why;
  EXPECT_EQ(counters.connects.read(), 2u);
  std::vector<std::size_t> events;
  for (const auto& stream : receiver.events_by_connection_once_quiet()) {
    events.insert(events.end(), stream.begin(), stream.end());
  }
  std::sort(events.begin(), events.end());
  events.erase(std::unique(events.begin(), events.end()), events.end());
  EXPECT_EQ(events.size(), kEvents);
}

// A name with an address nobody listens on (localhost's ::1 where the
// receiver is on 127.0.0.1 only) is the common case; here a private
// /etc/hosts gives a name two loopback addresses and only the one
// getaddrinfo puts second listens. The write reaches it at once, not after a
// retry; with every address refused, the error says each was tried.
TEST(SocketSink, AConnectRefusedAtAHostsFirstAddressGoesOnToItsNextInTheSameWrite) {
  const int status = testing::run_with_two_address_name([](const std::string& second) {
    const testing::BoundSocket listener = testing::bind_loopback(SOCK_STREAM, 0, second.c_str());
    Batch batch;
    fill(batch, EncodeOptions{}, 0, 10);
    SocketSink sink({.url = "syslog+tcp://rr-two-addresses:" + std::to_string(listener.port)});
    std::string why;
    if (const Outcome outcome = sink.write(batch, why); outcome != Outcome::ok) {
      std::fprintf(stderr, "the first write was not ok: %s\n", why.c_str());
      return 1;
    }
    const int accepted = ::accept(listener.fd, nullptr, nullptr);
    const timeval limit{2, 0};
    ::setsockopt(accepted, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    std::string received;
    char buffer[65536];
    while (received.size() < batch.bytes.size()) {
      const ssize_t n = ::recv(accepted, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      received.append(buffer, static_cast<std::size_t>(n));
    }
    if (received != batch.bytes.view()) {
      std::fprintf(stderr, "received %zu bytes, not the batch's %zu\n", received.size(), batch.bytes.size());
      return 2;
    }
    SocketSink refused({.url = "syslog+tcp://rr-two-addresses:" + std::to_string(testing::free_port())});
    if (refused.write(batch, why) != Outcome::retry || why.find("each of its 2 addresses tried") == std::string::npos) {
      std::fprintf(stderr, "every address refused: %s\n", why.c_str());
      return 4;
    }
    return 0;
  });
  if (status == testing::kNoPrivateMounts) GTEST_SKIP() << "no private /etc/hosts here (a mount namespace, and a name service that reads the file)";
  EXPECT_EQ(status, 0);
}

// An address written out is dialled whatever addresses the host has. With
// AI_ADDRCONFIG, which does not count loopback addresses, "[::1]" on a host
// with an IPv4 address and no global IPv6 one (a typical container) did not
// resolve, and every write was a retry. Here a network namespace whose
// loopback device has 10.0.0.1 and ::1.
TEST(SocketSink, AnAddressLiteralIsDialledOnAHostWithoutThatFamilysGlobalAddresses) {
  const int status = testing::run_in_private_mounts([&] {
    if (::unshare(CLONE_NEWNET) != 0) return testing::kNoPrivateMounts;
    const int control = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq request{};
    std::strcpy(request.ifr_name, "lo");
    auto* address = reinterpret_cast<sockaddr_in*>(&request.ifr_addr);
    address->sin_family = AF_INET;
    address->sin_addr.s_addr = htonl(0x0a000001);
    if (::ioctl(control, SIOCSIFADDR, &request) != 0 || ::ioctl(control, SIOCGIFFLAGS, &request) != 0) {
      return testing::kNoPrivateMounts;
    }
    request.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (::ioctl(control, SIOCSIFFLAGS, &request) != 0) return testing::kNoPrivateMounts;
    const int receiver = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in6 local{};
    local.sin6_family = AF_INET6;
    local.sin6_addr = in6addr_loopback;
    socklen_t length = sizeof local;
    if (::bind(receiver, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
        ::getsockname(receiver, reinterpret_cast<sockaddr*>(&local), &length) != 0) {
      return testing::kNoPrivateMounts;  // no IPv6 here
    }
    // What made it fail: the lookup with AI_ADDRCONFIG refuses "::1" here.
    addrinfo hints{}, *found = nullptr;
    hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICHOST;
    hints.ai_socktype = SOCK_DGRAM;
    if (::getaddrinfo("::1", "514", &hints, &found) == 0) {
      ::freeaddrinfo(found);
      std::fprintf(stderr, "this C library resolves ::1 with AI_ADDRCONFIG here: nothing to show\n");
      return testing::kNoPrivateMounts;
    }
    EncodeOptions options;
    options.wrap = Wrap::syslog;
    options.framing = Framing::none;
    Batch batch;
    fill(batch, options, 0, 1);
    SocketSink sink({.url = "syslog+udp://[::1]:" + std::to_string(ntohs(local.sin6_port))});
    std::string why;
    if (sink.write(batch, why) != Outcome::ok) {
      std::fprintf(stderr, "write: %s\n", why.c_str());
      return 2;
    }
    char datagram[4096];
    const timeval wait{2, 0};
    ::setsockopt(receiver, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    return ::recv(receiver, datagram, sizeof datagram, 0) > 0 ? 0 : 3;
  });
  if (status == testing::kNoPrivateMounts) GTEST_SKIP() << "no network namespace of our own, or no IPv6 in it";
  EXPECT_EQ(status, 0);
}

// A name lookup that hangs (a DNS server that never answers: 5 s a try by
// default) ends with the stop, as a write does: it held the sink thread,
// and with it a stop or a reload, for as long as the resolver took. Here a
// private resolv.conf names a local server that reads and never answers.
TEST(SocketSink, AStopCutsShortANameLookupThatHangs) {
  TempDir dir("resolver");
  const std::string resolv = dir / "resolv.conf", hosts = dir / "hosts";
  std::ofstream(resolv) << "nameserver 127.0.0.1\noptions timeout:5 attempts:2\n";
  std::ofstream(hosts) << "127.0.0.1 localhost\n";
  const int status = testing::run_in_private_mounts([&] {
    // Port 53 needs root; the mounts a mount namespace of our own.
    const int silent = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(53);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(silent, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::mount(resolv.c_str(), "/etc/resolv.conf", nullptr, MS_BIND, nullptr) != 0 ||
        ::mount(hosts.c_str(), "/etc/hosts", nullptr, MS_BIND, nullptr) != 0) {
      return testing::kNoPrivateMounts;
    }
    Batch batch;
    fill(batch, EncodeOptions{}, 0, 1);
    SocketSink sink({.url = "syslog+tcp://rr-lookup-hangs.example:514"});
    std::atomic<bool> stop{false};
    sink.attach_stop(&stop);
    std::thread stopper([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      stop.store(true);
    });
    const auto started = std::chrono::steady_clock::now();
    int result = 1;
    try {
      std::string why;
      (void)sink.write(batch, why);
      if (std::chrono::steady_clock::now() - started < std::chrono::milliseconds(150)) {
        // The lookup did not wait for our server (a name service that does
        // not read resolv.conf: nscd, systemd-resolved): nothing to cut short.
        std::fprintf(stderr, "the lookup ended on its own at once: %s\n", why.c_str());
        result = testing::kNoPrivateMounts;
      } else {
        std::fprintf(stderr, "the write ended after the stop without being cut short: %s\n", why.c_str());
      }
    } catch (const WriteInterrupted& e) {
      const auto took = std::chrono::steady_clock::now() - started;
      result = took < std::chrono::seconds(1) ? 0 : 2;
      if (result != 0) std::fprintf(stderr, "the stop took %lld ms\n", static_cast<long long>(
                                              std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
    }
    stopper.join();
    return result;
  });
  if (status == testing::kNoPrivateMounts) GTEST_SKIP() << "no private resolver here (it needs root for port 53 and a name service that reads resolv.conf)";
  EXPECT_EQ(status, 0);
}

TEST(SocketSink, BadUrlsAreClearErrors) {
  EXPECT_THROW(SocketSink({.url = "unix://relative"}), std::runtime_error);
  EXPECT_THROW(SocketSink({.url = "syslog://host:99999"}), std::runtime_error);
  try {
    SocketSink sink({.url = "syslog+tls://127.0.0.1", .tls = {.ca_file = "/nonexistent/ca.pem"}});
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/ca.pem"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ringroute::sinks
