// The HTTP sink against a real HTTP/1.1 server on 127.0.0.1 that records
// what it receives: requests and batching, auth and headers, and every fault
// the issue names (down then up, 500 then 200, 429 with Retry-After, 400,
// a server that never answers, a redirect).
#include <gtest/gtest.h>

#include <simdjson.h>
#include <zlib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <map>
#include <numeric>
#include <set>
#include <string>

#include "http_receiver.hpp"
#include "json_event.hpp"
#include "peers.hpp"
#include "ringroute/perf/block.hpp"
#include "ringroute/sinks/backend.hpp"
#include "ringroute/sinks/event_encoder.hpp"
#include "ringroute/sinks/http_sink.hpp"

namespace ringroute::sinks {
namespace {

using testing::HttpReceiver;
using testing::HttpRequest;
using testing::HttpResponse;

std::string event_line(std::size_t i) {
  return R"({"id":"e-)" + std::to_string(i) +
         R"(","timestamp":1795452928123456789,"account_id":"acct-1","app_name":"billing","body":{"n":)" +
         std::to_string(i) + R"(,"pad":"0123456789012345678901234567890123456789"}})";
}

// A batch of events first .. first + count - 1, event i from line(i).
template <class Line>
void fill_with(Batch& batch, std::size_t first, std::size_t count, Line&& line) {
  batch.reset();
  batch.first_start = first;
  batch.end = first + count;
  EventEncoder encoder;
  testing::JsonEvent ev;
  for (std::size_t i = first; i < first + count; ++i) {
    encoder.encode(ev(line(i)), batch.bytes);
    batch.event_ends.push_back(static_cast<std::uint32_t>(batch.bytes.size()));
    ++batch.events;
  }
}

void fill(Batch& batch, std::size_t first, std::size_t count) { fill_with(batch, first, count, event_line); }

// The event ids in a body: one document, NDJSON, or a JSON array.
std::vector<std::string> ids_in(const std::string& body) {
  std::vector<std::string> ids;
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body).get(root) == simdjson::SUCCESS) {
    if (root.is_array()) {
      for (auto e : root.get_array()) ids.emplace_back(std::string_view(e["id"]));
    } else {
      ids.emplace_back(std::string_view(root["id"]));
    }
    return ids;
  }
  std::size_t start = 0;
  while (start < body.size()) {
    const std::size_t end = body.find('\n', start);
    EXPECT_NE(end, std::string::npos) << "NDJSON body does not end with a newline";
    if (end == std::string::npos) break;
    simdjson::dom::parser line_parser;
    simdjson::dom::element line = line_parser.parse(body.substr(start, end - start));
    ids.emplace_back(std::string_view(line["id"]));
    start = end + 1;
  }
  return ids;
}

std::string gunzip(const std::string& in) {
  z_stream z{};
  inflateInit2(&z, 15 + 16);
  std::string out(in.size() * 20 + 1024, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z, Z_FINISH);
  out.resize(z.total_out);
  inflateEnd(&z);
  return rc == Z_STREAM_END ? out : std::string();
}

std::vector<std::string> expected_ids(std::size_t first, std::size_t count) {
  std::vector<std::string> ids;
  for (std::size_t i = first; i < first + count; ++i) ids.push_back("e-" + std::to_string(i));
  return ids;
}

class HttpSinkTest : public ::testing::Test {
 protected:
  perf::BackendSinkShard counters_{};
  Batch batch_;
  std::string why_;
};

TEST_F(HttpSinkTest, OneEventPerRequestWithoutBatchAsKazoo) {
  HttpReceiver receiver;
  HttpSink sink({.url = receiver.url("/edr"), .max_connections = 1});
  sink.attach_counters(&counters_);
  fill(batch_, 0, 20);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 20u);
  std::vector<std::string> ids;
  for (const HttpRequest& r : requests) {
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.target, "/edr");
    EXPECT_EQ(r.headers.at("content-type"), "application/json");
    EXPECT_NE(r.body.back(), '\n');
    for (auto& id : ids_in(r.body)) ids.push_back(id);
  }
  EXPECT_EQ(ids, expected_ids(0, 20));  // one connection: in order
  EXPECT_EQ(counters_.connects.read(), 1u);  // keep-alive
}

TEST_F(HttpSinkTest, BatchesHonourMaxEventsAndMaxBytesAndNeverSplitAnEvent) {
  HttpReceiver receiver;
  fill(batch_, 0, 95);
  const std::size_t event_bytes = batch_.event_ends[0];
  const std::uint64_t max_bytes = event_bytes * 7 + event_bytes / 2;  // room for 7 whole events
  HttpSink sink({.url = receiver.url(), .max_connections = 1, .batched = true, .max_events = 10, .max_bytes = max_bytes});
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  std::vector<std::string> ids;
  for (const HttpRequest& r : receiver.requests()) {
    EXPECT_EQ(r.headers.at("content-type"), "application/x-ndjson");
    EXPECT_LE(r.body.size(), max_bytes);
    const auto in_request = ids_in(r.body);
    EXPECT_LE(in_request.size(), 7u);
    ids.insert(ids.end(), in_request.begin(), in_request.end());
  }
  EXPECT_EQ(ids, expected_ids(0, 95));
  EXPECT_EQ(receiver.requests().size(), 14u);  // 13 x 7 + 4

  HttpReceiver second;
  HttpSink by_count({.url = second.url(), .max_connections = 1, .batched = true, .max_events = 10});
  ASSERT_EQ(by_count.write(batch_, why_), Outcome::ok) << why_;
  ASSERT_EQ(second.requests().size(), 10u);
  EXPECT_EQ(ids_in(second.requests()[9].body).size(), 5u);
}

// A JSON array is a byte longer than the same events as NDJSON (n - 1
// commas and two brackets against n newlines). Requests were planned by
// the NDJSON size, so an array that just fitted went one byte over, and a
// receiver whose limit is max_bytes refused it (nginx: 413).
TEST_F(HttpSinkTest, AJsonArrayBodyStaysWithinMaxBytesToo) {
  HttpReceiver receiver;
  fill(batch_, 0, 8);  // ids e-0 .. e-7: every event the same size
  const std::size_t event_bytes = batch_.event_ends[0];
  const std::uint64_t max_bytes = event_bytes * 4;  // 4 events as NDJSON exactly
  HttpSink sink({.url = receiver.url(), .max_connections = 1, .batched = true, .max_events = 100,
                 .max_bytes = max_bytes, .json_array = true});
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  std::vector<std::string> ids;
  for (const HttpRequest& r : receiver.requests()) {
    EXPECT_EQ(r.headers.at("content-type"), "application/json");
    EXPECT_LE(r.body.size(), max_bytes) << r.body;
    const auto in_request = ids_in(r.body);
    EXPECT_LE(in_request.size(), 3u);
    ids.insert(ids.end(), in_request.begin(), in_request.end());
  }
  EXPECT_EQ(ids, expected_ids(0, 8));
  EXPECT_EQ(receiver.requests().size(), 3u);  // 3 + 3 + 2
}

// A sink sending batches to `receiver` as requests of 5 events, one at a
// time, for a BackendRunner.
std::unique_ptr<Sink> fives_to(const HttpReceiver& receiver) {
  return std::make_unique<HttpSink>(
      HttpSinkOptions{.url = receiver.url(), .max_connections = 1, .batched = true, .max_events = 5});
}

// An event the destination refuses (a 4xx) is dropped with its reason.
// It was not written, so neither its bytes nor its latency count as
// written: `bytes` and the histogram agree with `sent`. They used to count
// the whole batch.
TEST_F(HttpSinkTest, RefusedEventsCountNeitherInBytesNorInLatencies) {
  HttpReceiver receiver([](const HttpRequest& request, std::size_t) {
    HttpResponse response;
    response.status = request.body.find(R"("id":"e-2")") != std::string::npos ? 400 : 204;
    return response;
  });
  auto slot = std::make_unique<perf::BackendSlot>();
  BackendRunner runner("refusing", BackendOptions{}, fives_to(receiver), *slot);
  Batch* batch = runner.take_batch();
  fill(*batch, 0, 10);  // two requests of 5: the first refused for its event 2, then halved down to it
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  batch->event_ns.assign(10, std::chrono::duration_cast<std::chrono::nanoseconds>(now).count());
  batch->holds_ring = false;
  const std::uint64_t written_bytes = batch->event_ends[9] - (batch->event_ends[2] - batch->event_ends[1]);
  runner.submit(batch);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!runner.idle() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(runner.idle());
  runner.stop(std::chrono::milliseconds(0));
  EXPECT_EQ(slot->sink.sent.read(), 9u);
  EXPECT_EQ(slot->sink.dropped_failed.read(), 1u);
  EXPECT_EQ(slot->sink.bytes.read(), written_bytes);
  std::uint64_t recorded = 0;
  for (const auto& bucket : slot->latency.buckets) recorded += bucket.read();
  EXPECT_EQ(recorded, 9u);
}

// A stop ends a batch whose first request the destination accepted, while
// the second is in flight or waits out a Retry-After: those events are
// sent, and a removed backend or a `drop` one at a stop counts only the
// rest as dropped. The whole batch was counted unwritten.
TEST_F(HttpSinkTest, WhatAStoppedWriteHadDeliveredIsSentNotDropped) {
  for (const bool hangs : {true, false}) {
    SCOPED_TRACE(hangs ? "the second request hangs" : "the second request waits out a Retry-After");
    HttpReceiver receiver([hangs](const HttpRequest&, std::size_t index) {
      HttpResponse response;
      if (index == 1) {
        response.hang = hangs;  // never answered
        if (!hangs) {
          response.status = 503;
          response.headers = {{"Retry-After", "10"}};
        }
      }
      return response;
    });
    auto slot = std::make_unique<perf::BackendSlot>();
    BackendRunner runner("stopped", BackendOptions{}, fives_to(receiver), *slot);
    Batch* batch = runner.take_batch();
    fill(*batch, 0, 10);  // two requests of 5
    batch->holds_ring = false;
    runner.submit(batch);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while ((receiver.requests().size() < 2 || (!hangs && !runner.retrying())) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(receiver.requests().size(), 2u);
    runner.stop(std::chrono::milliseconds(0));
    EXPECT_EQ(slot->sink.sent.read(), 5u);
    EXPECT_EQ(runner.unwritten_events(), 5u);
    EXPECT_EQ(runner.unwritten_events_outside_ring(), 5u);
  }
}

// A destination that fails one request in four is up: each try of the
// batch delivers some of it, and the runner's backoff starts over after
// such a try. It doubled on every try instead, and the batch's last
// requests went out 2.5-5 s apart while the server took three in four.
TEST_F(HttpSinkTest, ATryThatDeliveredPartOfItsBatchStartsTheBackoffOver) {
  HttpReceiver receiver([](const HttpRequest&, std::size_t index) {
    return index % 4 == 3 ? HttpResponse{.status = 500} : HttpResponse{.status = 204};
  });
  auto slot = std::make_unique<perf::BackendSlot>();
  BackendRunner runner("flaky", BackendOptions{},
                       std::make_unique<HttpSink>(HttpSinkOptions{.url = receiver.url(), .max_connections = 1}), *slot);
  Batch* batch = runner.take_batch();
  fill(*batch, 0, 40);  // a request an event: 13 tries end at a 500
  batch->holds_ring = false;
  runner.submit(batch);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!runner.idle() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(runner.idle()) << slot->sink.retries.read() << " retries so far";
  runner.stop(std::chrono::milliseconds(0));
  EXPECT_EQ(slot->sink.sent.read(), 40u);
  EXPECT_GE(slot->sink.retries.read(), 13u);
}

// A reload that changes a backend stops its runner, and the new one writes
// what the old one's stop left. The old one's first request had been
// accepted: the new one sent it again (the batch whole), and `sent`
// counted its events twice.
TEST_F(HttpSinkTest, AChangedBackendsNewRunnerSendsOnlyWhatTheOldOnesStopLeftUndelivered) {
  HttpReceiver receiver([](const HttpRequest&, std::size_t index) {
    HttpResponse response;
    response.hang = index == 1;  // the old runner's second request: never answered
    return response;
  });
  auto slot = std::make_unique<perf::BackendSlot>();
  auto old_runner = std::make_shared<BackendRunner>("changed", BackendOptions{}, fives_to(receiver), *slot);
  Batch* batch = old_runner->take_batch();
  fill(*batch, 0, 10);  // two requests of 5
  batch->holds_ring = false;
  old_runner->submit(batch);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (receiver.requests().size() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(receiver.requests().size(), 2u);
  BackendRunner new_runner("changed", BackendOptions{}, fives_to(receiver), *slot, old_runner);
  old_runner->stop(std::chrono::milliseconds(0));
  old_runner.reset();
  while ((!new_runner.idle() || receiver.requests().size() < 3) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  new_runner.stop(std::chrono::milliseconds(1000));
  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(ids_in(requests[2].body), ids_in(requests[1].body)) << "the accepted request went again";
  EXPECT_EQ(slot->sink.sent.read(), 10u);
  EXPECT_EQ(new_runner.unwritten_events(), 0u);
}

TEST_F(HttpSinkTest, AnEventLargerThanMaxBytesGoesAlone) {
  HttpReceiver receiver;
  HttpSink sink({.url = receiver.url(), .batched = true, .max_events = 100, .max_bytes = 16});
  fill(batch_, 0, 5);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  ASSERT_EQ(receiver.requests().size(), 5u);
  std::set<std::string> ids;
  for (const HttpRequest& r : receiver.requests()) {
    const auto in_request = ids_in(r.body);
    ASSERT_EQ(in_request.size(), 1u);
    ids.insert(in_request[0]);
  }
  EXPECT_EQ(ids.size(), 5u);
}

TEST_F(HttpSinkTest, BasicAuthFromUserinfoHeadersQueryAndMethod) {
  HttpReceiver receiver;
  HttpSink sink({.url = "http://edr%20user:pa%3Ass@127.0.0.1:" + std::to_string(receiver.port()) + "/in?token=abc&x=1",
                 .method = "put",
                 .headers = {{"X-Api-Key", "k-123"}, {"X-Team", "billing"}}});
  fill(batch_, 0, 1);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  ASSERT_EQ(receiver.requests().size(), 1u);
  const HttpRequest r = receiver.requests()[0];
  EXPECT_EQ(r.method, "PUT");
  EXPECT_EQ(r.target, "/in?token=abc&x=1");
  EXPECT_EQ(r.headers.at("authorization"), "Basic ZWRyIHVzZXI6cGE6c3M=");  // "edr user:pa:ss"
  EXPECT_EQ(r.headers.at("x-api-key"), "k-123");
  EXPECT_EQ(r.headers.at("x-team"), "billing");
  EXPECT_EQ(r.headers.at("host"), "127.0.0.1:" + std::to_string(receiver.port()));
}

// The sink's User-Agent is a default: one in `headers` replaces it. Both
// went out, and a gateway filtering on it saw "ringroute, my-agent/1.0".
TEST_F(HttpSinkTest, AUserAgentInTheHeadersReplacesTheSinksOwn) {
  HttpReceiver receiver;
  const std::string url = "http://127.0.0.1:" + std::to_string(receiver.port()) + "/in";
  HttpSink own({.url = url});
  HttpSink theirs({.url = url, .headers = {{"user-agent", "my-agent/1.0"}}});
  fill(batch_, 0, 1);
  ASSERT_EQ(own.write(batch_, why_), Outcome::ok) << why_;
  ASSERT_EQ(theirs.write(batch_, why_), Outcome::ok) << why_;
  ASSERT_EQ(receiver.requests().size(), 2u);
  EXPECT_EQ(receiver.requests()[0].headers.at("user-agent"), "ringroute");
  EXPECT_EQ(receiver.requests()[1].headers.at("user-agent"), "my-agent/1.0");
}

TEST_F(HttpSinkTest, JsonArrayAndGzipBodies) {
  HttpReceiver receiver;
  HttpSink array({.url = receiver.url(), .batched = true, .json_array = true});
  fill(batch_, 0, 30);
  ASSERT_EQ(array.write(batch_, why_), Outcome::ok) << why_;
  ASSERT_EQ(receiver.requests().size(), 1u);
  EXPECT_EQ(receiver.requests()[0].headers.at("content-type"), "application/json");
  EXPECT_EQ(ids_in(receiver.requests()[0].body), expected_ids(0, 30));

  HttpSink gzipped({.url = receiver.url(), .batched = true, .gzip = true});
  // What crossed the network, for sizing links and a collector's ingress:
  // `bytes` counts the body as formatted.
  gzipped.attach_counters(&counters_);
  ASSERT_EQ(gzipped.write(batch_, why_), Outcome::ok) << why_;
  ASSERT_EQ(receiver.requests().size(), 2u);
  const HttpRequest r = receiver.requests()[1];
  EXPECT_EQ(r.headers.at("content-encoding"), "gzip");
  EXPECT_LT(r.body.size(), batch_.bytes.size() / 2);
  EXPECT_EQ(gunzip(r.body), std::string(batch_.bytes.view()));
  EXPECT_EQ(counters_.body_bytes_sent.read(), r.body.size());

  // One event a request, one connection: its deflate state is reset
  // between bodies, each a gzip stream of its own.
  HttpSink single({.url = receiver.url(), .max_connections = 1, .gzip = true});
  fill(batch_, 30, 5);
  ASSERT_EQ(single.write(batch_, why_), Outcome::ok) << why_;
  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 7u);
  for (std::size_t i = 0; i < 5; ++i) {
    std::string_view document = batch_.events_bytes(i, i + 1);
    document.remove_suffix(1);  // one event: its document without the newline
    EXPECT_EQ(gunzip(requests[2 + i].body), document) << i;
    EXPECT_EQ(requests[2 + i].connection, requests[2].connection) << i;
  }
}

TEST_F(HttpSinkTest, ServerDownAtStartThenUpLosesNothing) {
  const std::uint16_t port = testing::free_port();
  HttpSink sink({.url = "http://127.0.0.1:" + std::to_string(port) + "/", .batched = true});
  sink.attach_counters(&counters_);
  fill(batch_, 0, 50);
  EXPECT_EQ(sink.write(batch_, why_), Outcome::retry);
  EXPECT_NE(why_.find("Connection refused"), std::string::npos) << why_;
  EXPECT_EQ(counters_.connect_failures.read(), 1u);
  HttpReceiver receiver({}, port);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  ASSERT_EQ(receiver.requests().size(), 1u);
  EXPECT_EQ(ids_in(receiver.requests()[0].body), expected_ids(0, 50));
}

TEST_F(HttpSinkTest, ServerErrorIsRetriedAndOnlyUnfinishedRequestsGoAgain) {
  // The second request the server sees is answered 500, every other one 200.
  HttpReceiver receiver([](const HttpRequest&, std::size_t index) {
    return index == 1 ? HttpResponse{.status = 500, .body = "upstream down"} : HttpResponse{.status = 200};
  });
  HttpSink sink({.url = receiver.url(), .max_connections = 1, .batched = true, .max_events = 10});
  fill(batch_, 0, 30);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::retry);
  EXPECT_NE(why_.find("HTTP 500"), std::string::npos) << why_;
  EXPECT_NE(why_.find("upstream down"), std::string::npos) << why_;
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  std::vector<std::string> accepted;
  const auto requests = receiver.requests();
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (i == 1) continue;  // the one answered 500
    for (auto& id : ids_in(requests[i].body)) accepted.push_back(id);
  }
  std::sort(accepted.begin(), accepted.end());
  auto expected = expected_ids(0, 30);
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(accepted, expected);  // each event accepted exactly once
  // First write: request A (200), request B (500) and stop. Second: B, C.
  EXPECT_EQ(requests.size(), 4u);
}

TEST_F(HttpSinkTest, TooManyRequestsHonoursRetryAfter) {
  HttpReceiver receiver([](const HttpRequest&, std::size_t index) {
    return index == 0 ? HttpResponse{.status = 429, .headers = {{"Retry-After", "2"}}} : HttpResponse{};
  });
  HttpSink sink({.url = receiver.url(), .batched = true});
  fill(batch_, 0, 5);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::retry);
  EXPECT_EQ(sink.retry_after(), std::chrono::milliseconds(2000));
  // The wait is said (an hour's fell silent for the hour), and an empty
  // body leaves no dangling colon.
  const std::string url = receiver.url();
  EXPECT_EQ(why_, "HTTP 429 from " + url.substr(0, url.size() - 1) + " (Retry-After: 2 s)");
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  EXPECT_EQ(sink.retry_after(), std::chrono::milliseconds(0));
}

// An HTTP-date in each of the three forms RFC 9110 (5.6.7) has a recipient
// read: only the first was, the others taken as no wait at all.
TEST_F(HttpSinkTest, RetryAfterReadsEachFormOfAnHttpDate) {
  const std::time_t at = std::time(nullptr) + 120;
  std::tm tm{};
  ::gmtime_r(&at, &tm);
  for (const char* form : {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"}) {
    char date[64];
    std::strftime(date, sizeof date, form, &tm);
    SCOPED_TRACE(date);
    HttpReceiver receiver([&](const HttpRequest&, std::size_t) {
      return HttpResponse{.status = 503, .headers = {{"Retry-After", date}}};
    });
    HttpSink sink({.url = receiver.url(), .batched = true});
    fill(batch_, 0, 1);
    ASSERT_EQ(sink.write(batch_, why_), Outcome::retry);
    EXPECT_GE(sink.retry_after(), std::chrono::milliseconds(110'000));
    EXPECT_LE(sink.retry_after(), std::chrono::milliseconds(120'000));
  }
}

// A date is the server's clock: counted from its answer's Date, a clock two
// hours ahead of ours asks for 5 s, not the hour's cap it was taken for.
TEST_F(HttpSinkTest, ARetryAfterDateCountsFromTheAnswersOwnDate) {
  auto date_at = [](std::time_t at) {
    std::tm tm{};
    ::gmtime_r(&at, &tm);
    char text[64];
    std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return std::string(text);
  };
  const std::time_t server_now = std::time(nullptr) + 2 * 3600;
  HttpReceiver skewed([&](const HttpRequest&, std::size_t) {
    return HttpResponse{.status = 503,
                        .headers = {{"Date", date_at(server_now)}, {"Retry-After", date_at(server_now + 5)}}};
  });
  HttpSink sink({.url = skewed.url(), .batched = true});
  fill(batch_, 0, 1);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::retry);
  EXPECT_EQ(sink.retry_after(), std::chrono::milliseconds(5000));
  // Without a Date (or with one that does not parse), our own clock.
  HttpReceiver undated([&](const HttpRequest&, std::size_t) {
    return HttpResponse{.status = 503, .headers = {{"Date", "soon"}, {"Retry-After", date_at(server_now + 5)}}};
  });
  HttpSink from_ours({.url = undated.url(), .batched = true});
  ASSERT_EQ(from_ours.write(batch_, why_), Outcome::retry);
  EXPECT_EQ(from_ours.retry_after(), std::chrono::milliseconds(3'600'000));
}

// More seconds than an unsigned holds is a long pause, not none: the hour
// the sink believes at most (it was read as 0, retried at once).
TEST_F(HttpSinkTest, ARetryAfterPastAnyIntegerIsTheLongestPause) {
  HttpReceiver receiver([](const HttpRequest&, std::size_t) {
    return HttpResponse{.status = 503, .headers = {{"Retry-After", "99999999999999999999"}}};
  });
  HttpSink sink({.url = receiver.url(), .batched = true});
  fill(batch_, 0, 1);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::retry);
  EXPECT_EQ(sink.retry_after(), std::chrono::milliseconds(3'600'000));
}

// 408 (the server gave up reading the request) and 425 (too early) say
// "not now", as 429 does: retried, not rejected.
TEST_F(HttpSinkTest, RequestTimeoutAndTooEarlyAreRetried) {
  for (const unsigned status : {408u, 425u}) {
    HttpReceiver receiver([status](const HttpRequest&, std::size_t index) {
      return index == 0 ? HttpResponse{.status = status} : HttpResponse{};
    });
    HttpSink sink({.url = receiver.url(), .batched = true});
    fill(batch_, 0, 5);
    ASSERT_EQ(sink.write(batch_, why_), Outcome::retry) << status;
    EXPECT_EQ(sink.rejected_events(), 0u);
    ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
    EXPECT_EQ(ids_in(receiver.requests().back().body), expected_ids(0, 5));
  }
}

// Refused, not retried as it is; a batch is halved down to what the
// receiver refuses, at most HttpSink::kMostSplitsPerBatch times: a receiver
// that refuses everything costs twice that many requests more, not one an
// event.
TEST_F(HttpSinkTest, BadRequestIsRejectedNotRetried) {
  HttpReceiver receiver([](const HttpRequest&, std::size_t) {
    return HttpResponse{.status = 400, .body = "{\"error\":\"schema mismatch at /body/n\"}"};
  });
  HttpSink sink({.url = receiver.url(), .batched = true});
  fill(batch_, 0, 8);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok);
  EXPECT_EQ(sink.rejected_events(), 8u);
  EXPECT_NE(why_.find("HTTP 400"), std::string::npos) << why_;
  EXPECT_NE(why_.find("schema mismatch"), std::string::npos) << why_;
  EXPECT_EQ(receiver.requests().size(), 15u);  // 8, 4 + 4, 2 + 2 + 2 + 2, then each alone
  HttpSink big({.url = receiver.url(), .batched = true, .max_events = 1000, .max_bytes = 64 << 20});
  fill(batch_, 0, 1000);
  ASSERT_EQ(big.write(batch_, why_), Outcome::ok);
  EXPECT_EQ(big.rejected_events(), 1000u);
  EXPECT_EQ(receiver.requests().size(), 15u + 1 + 2 * 32);
}

// One event the receiver refuses (a trusted body that is no JSON, in an
// NDJSON or array body that then does not parse) took every event of its
// request with it, up to max_events, counted as rejected: the request is
// halved down to the events it refuses, and the rest delivered once each,
// in order over one connection (each half in the place of the request it
// halves: appended, they came after the batch's later requests).
TEST_F(HttpSinkTest, AnEventTheReceiverRefusesTakesOnlyItselfDownNotItsBatch) {
  for (const bool array : {false, true}) {
    SCOPED_TRACE(array ? "array" : "ndjson");
    HttpReceiver receiver([](const HttpRequest& request, std::size_t) {
      const bool bad = request.body.find(R"("id":"e-137")") != std::string::npos ||
                       request.body.find(R"("id":"e-802")") != std::string::npos;
      return HttpResponse{.status = bad ? 422u : 200u, .body = bad ? "{\"error\":\"not json\"}" : ""};
    });
    HttpSink sink({.url = receiver.url(), .max_connections = 1, .batched = true, .max_events = 100,
                   .max_bytes = 64 << 20, .json_array = array});
    fill(batch_, 0, 1000);
    ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
    EXPECT_EQ(sink.rejected_ranges(), (std::vector<std::pair<std::uint32_t, std::uint32_t>>{{137, 138}, {802, 803}}));
    EXPECT_NE(why_.find("HTTP 422"), std::string::npos) << why_;
    EXPECT_NE(why_.find("not json"), std::string::npos) << why_;
    std::vector<std::string> delivered;
    for (const HttpRequest& r : receiver.requests()) {
      if (r.body.find(R"("id":"e-137")") != std::string::npos || r.body.find(R"("id":"e-802")") != std::string::npos) {
        continue;
      }
      for (auto& id : ids_in(r.body)) delivered.push_back(id);
    }
    std::vector<std::string> expected = expected_ids(0, 1000);
    std::erase(expected, "e-137");
    std::erase(expected, "e-802");
    EXPECT_EQ(delivered, expected);  // each once, in order
    EXPECT_LE(receiver.requests().size(), 10u + 2 * 14);  // ten requests of 100; two bad events, seven halvings each
  }
}

// A server that answers before it has read the request (413 to a body it
// won't take), and then either closes (our send fails: the unread rest
// resets the connection) or only stops reading (our send times out). The
// answer is waiting in the socket either way and decides the request;
// sent again, it would be refused again, for ever. The timeout case was
// still retried for ever. Decided, the request is halved (a 413 is about
// its size) until the halves are under the server's limit: with 413 taken
// as the end, all 100,000 events were refused.
TEST_F(HttpSinkTest, AnAnswerSentBeforeTheRequestWasReadDecidesIt) {
  constexpr std::size_t kLimit = 8 << 20;  // the server's client_max_body_size
  for (const bool closes : {true, false}) {
    SCOPED_TRACE(closes ? "the server closes" : "the server stops reading");
    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int small = 4096;
    ::setsockopt(listener, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);  // so the body can't all be sent
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    ASSERT_EQ(::listen(listener, 16), 0);
    socklen_t length = sizeof address;
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
    std::atomic<int> refused{0};
    std::atomic<std::size_t> lines{0};  // events in the bodies taken
    std::vector<int> kept_open;  // the server thread's until it is joined
    std::thread server([&] {
      for (;;) {
        const int fd = ::accept(listener, nullptr, nullptr);
        if (fd < 0) return;
        std::string in;
        char chunk[64 * 1024];
        std::size_t head_end = std::string::npos;
        while (head_end == std::string::npos) {
          const ssize_t got = ::recv(fd, chunk, sizeof chunk, 0);
          if (got <= 0) break;
          in.append(chunk, static_cast<std::size_t>(got));
          head_end = in.find("\r\n\r\n");
        }
        if (head_end == std::string::npos) {
          ::close(fd);
          continue;
        }
        std::string head = in.substr(0, head_end);
        std::transform(head.begin(), head.end(), head.begin(), [](unsigned char ch) { return std::tolower(ch); });
        const std::size_t field = head.find("content-length:");
        const std::size_t body_bytes = field == std::string::npos ? 0 : std::stoull(head.substr(field + 15));
        if (body_bytes > kLimit) {
          const char answer[] = "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large";
          (void)::send(fd, answer, sizeof answer - 1, MSG_NOSIGNAL);
          ++refused;
          if (closes) {
            ::close(fd);
          } else {
            kept_open.push_back(fd);
          }
          continue;
        }
        while (in.size() < head_end + 4 + body_bytes) {
          const ssize_t got = ::recv(fd, chunk, sizeof chunk, 0);
          if (got <= 0) break;
          in.append(chunk, static_cast<std::size_t>(got));
        }
        const auto body = in.begin() + static_cast<std::ptrdiff_t>(head_end + 4);
        lines += static_cast<std::size_t>(std::count(body, in.end(), '\n'));
        const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        (void)::send(fd, answer, sizeof answer - 1, MSG_NOSIGNAL);
        ::close(fd);
      }
    });
    HttpSink sink({.url = "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/hook",
                   .timeout = std::chrono::milliseconds(closes ? 2000 : 300),
                   .max_connections = 1,
                   .batched = true,
                   .max_events = 100000,
                   .max_bytes = 64 << 20});
    perf::BackendSinkShard counters{};
    sink.attach_counters(&counters);
    fill(batch_, 0, 100000);  // about 20 MB: more than the socket buffers take
    ASSERT_GT(batch_.bytes.size(), 2 * kLimit);
    ASSERT_LE(batch_.bytes.size(), 4 * kLimit);
    EXPECT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
    EXPECT_EQ(sink.rejected_events(), 0u) << why_;
    // The whole, then its first half (its second is cut with it): the
    // four quarters taken.
    EXPECT_EQ(refused.load(), 2);
    EXPECT_EQ(counters.retries.read(), 2u);
    EXPECT_EQ(lines.load(), 100000u);
    ::shutdown(listener, SHUT_RDWR);
    ::close(listener);
    server.join();
    for (const int fd : kept_open) ::close(fd);
  }
}

// A receiver whose limit is below max_bytes (nginx's client_max_body_size
// is 1 MiB unless raised; gateways have their own) answers 413 to the
// requests over it. They were refused, every event of them dropped. Each
// 413 cuts the request and the batch's requests not yet sent at half its
// bytes, and later batches too, so they are not refused first. Blind
// halvings, which a bad event's 400 spends, ran out (32 a batch) with a
// limit under a 33rd of the batch, and the rest was refused whole. An
// event over the limit alone is refused, only it.
TEST_F(HttpSinkTest, ARequestOverTheReceiversLimitIsCutToItNotRefused) {
  constexpr std::size_t kLimit = 64 * 1024;
  HttpReceiver receiver([](const HttpRequest& request, std::size_t) {
    return request.body.size() > kLimit ? HttpResponse{.status = 413, .body = "request entity too large"}
                                        : HttpResponse{.status = 200};
  });
  HttpSink sink({.url = receiver.url(), .max_connections = 1, .batched = true, .max_events = 1000,
                 .max_bytes = 64 << 20});
  sink.attach_counters(&counters_);
  fill(batch_, 0, 1000);
  ASSERT_GT(batch_.bytes.size(), 2 * kLimit);  // about 200 KB: halved twice
  ASSERT_LE(batch_.bytes.size(), 4 * kLimit);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  EXPECT_EQ(sink.rejected_events(), 0u) << why_;
  EXPECT_EQ(counters_.retries.read(), 2u);  // the whole and its first half; the rest cut at once
  auto taken_ids = [&](std::size_t from) {
    std::vector<std::string> ids;
    const auto requests = receiver.requests();
    for (std::size_t r = from; r < requests.size(); ++r) {
      if (requests[r].body.size() > kLimit) continue;
      for (auto& id : ids_in(requests[r].body)) ids.push_back(id);
    }
    return ids;
  };
  EXPECT_EQ(taken_ids(0), expected_ids(0, 1000));  // each once, in order
  std::size_t refused = 0;
  for (const HttpRequest& r : receiver.requests()) refused += r.body.size() > kLimit ? 1 : 0;
  EXPECT_EQ(refused, 2u);
  EXPECT_LE(receiver.requests().size(), 2u + 7);  // each half cut under 57 KB: 4 or 5 requests, and a tail

  // The next batch is cut at half the last size refused: nothing refused.
  const std::size_t before = receiver.requests().size();
  fill(batch_, 1000, 1000);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  EXPECT_EQ(sink.rejected_events(), 0u) << why_;
  EXPECT_EQ(counters_.retries.read(), 2u);
  const auto requests = receiver.requests();
  EXPECT_EQ(requests.size() - before, 5u);  // 230 KB at 57 KB at most
  for (std::size_t r = before; r < requests.size(); ++r) EXPECT_LE(requests[r].body.size(), kLimit);
  EXPECT_EQ(taken_ids(before), expected_ids(1000, 1000));

  // A limit of 3,000 bytes, under an 80th of the batch, over 4 connections
  // (cuts while others are busy): every event taken once, a refusal for
  // each halving of the cut, about 7.
  constexpr std::size_t kSmallLimit = 3000;
  HttpReceiver small([](const HttpRequest& request, std::size_t) {
    return request.body.size() > kSmallLimit ? HttpResponse{.status = 413} : HttpResponse{.status = 200};
  });
  HttpSink cut({.url = small.url(), .max_connections = 4, .batched = true, .max_events = 1000,
                .max_bytes = 64 << 20});
  perf::BackendSinkShard cut_counters{};
  cut.attach_counters(&cut_counters);
  fill(batch_, 0, 1000);
  ASSERT_EQ(cut.write(batch_, why_), Outcome::ok) << why_;
  EXPECT_EQ(cut.rejected_events(), 0u) << why_;
  std::vector<std::string> taken;
  std::size_t refusals = 0;
  for (const HttpRequest& r : small.requests()) {
    if (r.body.size() > kSmallLimit) {
      ++refusals;
      continue;
    }
    for (auto& id : ids_in(r.body)) taken.push_back(id);
  }
  std::vector<std::string> all = expected_ids(0, 1000);
  std::sort(taken.begin(), taken.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(taken, all);  // each once
  EXPECT_GE(refusals, 7u);
  EXPECT_LE(refusals, 14u);  // 4 connections: a few sent before the cut fell
  EXPECT_EQ(cut_counters.retries.read(), refusals);

  // Eight events where one is as large as the limit allows no request of:
  // cut down to it, only it refused.
  HttpSink fresh({.url = receiver.url(), .max_connections = 1, .batched = true, .max_events = 1000,
                  .max_bytes = 64 << 20});
  fill_with(batch_, 0, 8, [](std::size_t i) {
    return R"({"id":"e-)" + std::to_string(i) + R"(","timestamp":1795452928123456789,"body":{"pad":")" +
           std::string(i == 5 ? kLimit : 100, 'p') + R"("}})";
  });
  ASSERT_EQ(fresh.write(batch_, why_), Outcome::ok) << why_;
  EXPECT_EQ(fresh.rejected_ranges(), (std::vector<std::pair<std::uint32_t, std::uint32_t>>{{5, 6}}));
  EXPECT_NE(why_.find("HTTP 413"), std::string::npos) << why_;
  EXPECT_NE(why_.find("request entity too large"), std::string::npos) << why_;
}

TEST_F(HttpSinkTest, ChunkedResponsesAreReadWholeAndKeepTheConnection) {
  HttpReceiver receiver([](const HttpRequest& request, std::size_t) {
    return request.body.find(R"("id":"e-2")") != std::string::npos
               ? HttpResponse{.status = 422, .body = "{\"error\":\"field n must be a string\"}", .chunked = true}
               : HttpResponse{.status = 200, .body = "{\"accepted\":true}", .chunked = true};
  });
  HttpSink sink({.url = receiver.url(), .max_connections = 1, .batched = true, .max_events = 5});
  sink.attach_counters(&counters_);
  fill(batch_, 0, 15);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok);
  EXPECT_EQ(sink.rejected_events(), 1u);  // e-2, its request halved down to it
  EXPECT_NE(why_.find("HTTP 422"), std::string::npos) << why_;
  EXPECT_NE(why_.find("field n must be a string"), std::string::npos) << why_;
  EXPECT_EQ(receiver.requests().size(), 7u);
  EXPECT_EQ(counters_.connects.read(), 1u);  // the chunked bodies ended the responses, not the connection
}

// RFC 9110 section 15.2: a client skips interim (1xx) responses. Taken for
// the final one, the first request was counted as rejected and every later
// response was matched to the request before it.
TEST_F(HttpSinkTest, InterimResponsesAreSkippedInOneReadOrApart) {
  HttpReceiver receiver([](const HttpRequest&, std::size_t index) {
    return HttpResponse{.status = index == 2 ? 503u : 200u,
                        .interim = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                        .interim_apart = index % 2 == 1};
  });
  HttpSink sink({.url = receiver.url(), .max_connections = 1});
  sink.attach_counters(&counters_);
  fill(batch_, 0, 5);
  // The 503 is the third request's: it and those not sent yet go again.
  ASSERT_EQ(sink.write(batch_, why_), Outcome::retry) << why_;
  EXPECT_NE(why_.find("HTTP 503"), std::string::npos) << why_;
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  EXPECT_EQ(sink.rejected_events(), 0u) << why_;
  std::vector<std::string> ids;
  for (const HttpRequest& r : receiver.requests()) ids.push_back(ids_in(r.body).at(0));
  EXPECT_EQ(ids, (std::vector<std::string>{"e-0", "e-1", "e-2", "e-2", "e-3", "e-4"}));
  EXPECT_EQ(counters_.connects.read(), 1u);
}

// An answer over the body limit is judged by its status and its body not
// read (it was, whole, into memory): sent whole (3 MiB), or only announced
// (a Content-Length of 8e18, which Beast reserved before checking the
// limit, throwing bad_alloc out of the sink; the fuzzer found it). An
// accepted request is done, and the unread body closes the connection.
TEST_F(HttpSinkTest, AnAcceptedRequestWithAHugeAnswerIsDoneNotRetried) {
  for (const HttpResponse& answer :
       {HttpResponse{.status = 200, .body = std::string(3 << 20, 'x')},
        HttpResponse{.status = 200, .body = "slow", .content_length = "0008182286708222226887"}}) {
    HttpReceiver receiver([&](const HttpRequest&, std::size_t) { return answer; });
    HttpSink sink({.url = receiver.url(), .max_connections = 1, .batched = true, .max_events = 4});
    perf::BackendSinkShard counters{};
    sink.attach_counters(&counters);
    fill(batch_, 0, 8);
    ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
    EXPECT_EQ(sink.rejected_events(), 0u);
    EXPECT_EQ(receiver.requests().size(), 2u);
    EXPECT_EQ(counters.connects.read(), 2u);
  }
}

TEST_F(HttpSinkTest, RedirectIsNotFollowedAndCountsAsRejected) {
  HttpReceiver receiver([](const HttpRequest&, std::size_t) {
    return HttpResponse{.status = 301, .headers = {{"Location", "http://elsewhere/"}}};
  });
  HttpSink sink({.url = receiver.url(), .batched = true});
  fill(batch_, 0, 3);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok);
  EXPECT_EQ(sink.rejected_events(), 3u);
  EXPECT_NE(why_.find("redirects are not followed"), std::string::npos) << why_;
  EXPECT_NE(why_.find("http://elsewhere/"), std::string::npos) << why_;
}

TEST_F(HttpSinkTest, ServerThatNeverAnswersTimesOutAndIsRetried) {
  HttpReceiver receiver([](const HttpRequest&, std::size_t index) { return HttpResponse{.hang = index == 0}; });
  HttpSink sink({.url = receiver.url(), .timeout = std::chrono::milliseconds(300), .batched = true});
  sink.attach_counters(&counters_);
  fill(batch_, 0, 4);
  const auto started = std::chrono::steady_clock::now();
  ASSERT_EQ(sink.write(batch_, why_), Outcome::retry);
  EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(250));
  EXPECT_NE(why_.find("no response within 300 ms"), std::string::npos) << why_;
  EXPECT_EQ(counters_.timeouts.read(), 1u);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  EXPECT_EQ(receiver.requests().size(), 2u);
}

// Bytes past a whole response (a body on a 204, coming after its head):
// the server framed it otherwise than the sink read it, so the connection
// is not kept. Kept, the rest of those bytes was read as the next request's
// answer, which failed it and sent it again.
TEST_F(HttpSinkTest, BytesPastAWholeResponseEndTheConnection) {
  HttpReceiver receiver([](const HttpRequest&, std::size_t index) {
    if (index == 0) return HttpResponse{.status = 204, .body = std::string(400, 'h'), .trickle = std::chrono::milliseconds(20)};
    return HttpResponse{};
  });
  HttpSink sink({.url = receiver.url(), .max_connections = 1});
  fill(batch_, 0, 3);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the first answer's trickle ends
  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 3u) << "each request once";
  EXPECT_EQ(requests[1].connection, 1u) << "the second on a new connection";
}

// Another protocol on the port (an SSH server, here its banner): named as
// not HTTP, with its first bytes, where Beast's "bad version" was all.
TEST_F(HttpSinkTest, AnAnswerThatIsNotHttpIsSaidSoWithItsFirstBytes) {
  const testing::BoundSocket listener = testing::bind_loopback();
  ASSERT_EQ(::listen(listener.fd, 4), 0);
  std::thread server([&] {
    const int fd = ::accept(listener.fd, nullptr, nullptr);
    if (fd < 0) return;
    const char banner[] = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";
    (void)::send(fd, banner, sizeof banner - 1, MSG_NOSIGNAL);
    char buffer[4096];
    while (::recv(fd, buffer, sizeof buffer, 0) > 0) {
    }
    ::close(fd);
  });
  {
    HttpSink sink({.url = "http://127.0.0.1:" + std::to_string(listener.port) + "/in", .max_connections = 1});
    fill(batch_, 0, 1);
    EXPECT_EQ(sink.write(batch_, why_), Outcome::retry);
    EXPECT_NE(why_.find("is not HTTP (it begins \"SSH-2.0-OpenSSH_9.2p1 Debian-2..\")"), std::string::npos)
        << why_;
  }  // the sink closes its connection: the server's read ends
  server.join();
  ::close(listener.fd);
}

// A status under 100 is none (`HTTP/1.1 000`, which Beast reads as 0): a
// broken answer, retried as an unparsable one is. It was taken for a 4xx,
// and its events dropped as rejected.
TEST_F(HttpSinkTest, AStatusUnder100IsABrokenAnswerAndRetried) {
  const testing::BoundSocket listener = testing::bind_loopback();
  ASSERT_EQ(::listen(listener.fd, 4), 0);
  // Accepts and reads give up after 2 s: a sink that keeps the first
  // connection (as it did, taking the answer for a 4xx) fails the test
  // rather than hanging it.
  const timeval two_seconds{2, 0};
  ASSERT_EQ(::setsockopt(listener.fd, SOL_SOCKET, SO_RCVTIMEO, &two_seconds, sizeof two_seconds), 0);
  std::thread server([&] {
    for (const char* answer : {"HTTP/1.1 000 What\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n"}) {
      const int fd = ::accept(listener.fd, nullptr, nullptr);
      if (fd < 0) return;
      (void)::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &two_seconds, sizeof two_seconds);
      // The whole request (head, then Content-Length bytes), then the answer.
      std::string request;
      char buffer[4096];
      for (;;) {
        const auto head_end = request.find("\r\n\r\n");
        if (head_end != std::string::npos) {
          const auto length_at = request.find("Content-Length: ");
          const std::size_t length =
              length_at == std::string::npos ? 0 : std::stoul(request.substr(length_at + 16));
          if (request.size() >= head_end + 4 + length) break;
        }
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        request.append(buffer, static_cast<std::size_t>(n));
      }
      (void)::send(fd, answer, std::strlen(answer), MSG_NOSIGNAL);
      if (std::string_view(answer).find("000") != std::string_view::npos) {
        while (::recv(fd, buffer, sizeof buffer, 0) > 0) {
        }
      }
      ::close(fd);
    }
  });
  {
    HttpSink sink({.url = "http://127.0.0.1:" + std::to_string(listener.port) + "/in", .max_connections = 1});
    fill(batch_, 0, 1);
    EXPECT_EQ(sink.write(batch_, why_), Outcome::retry) << why_;
    EXPECT_NE(why_.find("status 000 is no HTTP status"), std::string::npos) << why_;
    EXPECT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
    EXPECT_EQ(sink.rejected_events(), 0u);
  }
  server.join();
  ::close(listener.fd);
}

// 421 (misdirected: a proxy's pooled connection pinned to another host)
// says "not on this connection": retried on a new one, not dropped.
TEST_F(HttpSinkTest, AMisdirectedRequestIsRetriedOnANewConnection) {
  HttpReceiver receiver([](const HttpRequest&, std::size_t index) {
    return HttpResponse{.status = index == 0 ? 421u : 204u, .body = index == 0 ? "misdirected" : ""};
  });
  HttpSink sink({.url = receiver.url(), .max_connections = 1, .batched = true});
  sink.attach_counters(&counters_);
  fill(batch_, 0, 5);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::retry);
  EXPECT_NE(why_.find("HTTP 421"), std::string::npos) << why_;
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  EXPECT_EQ(sink.rejected_events(), 0u);
  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].connection, 1u) << "the retry on a new connection";

  // Misdirected on every connection (Host never matches): refused at the
  // second, not retried for good.
  HttpReceiver always([](const HttpRequest&, std::size_t) { return HttpResponse{.status = 421}; });
  HttpSink stubborn({.url = always.url(), .max_connections = 1, .batched = true});
  ASSERT_EQ(stubborn.write(batch_, why_), Outcome::retry);
  ASSERT_EQ(stubborn.write(batch_, why_), Outcome::ok) << why_;
  EXPECT_EQ(stubborn.rejected_events(), 5u);
  EXPECT_NE(why_.find("HTTP 421"), std::string::npos) << why_;
}

// A stop while a request is being sent: once write() has thrown, nothing of
// it reads the batch any more. A successor takes the batch over and moves
// its undelivered events down over the bytes the send was reading, which
// went out torn inside a correct Content-Length (here: the 'X's written
// over the batch after the throw reached the server).
TEST_F(HttpSinkTest, AStopLeavesNoSendReadingTheBatch) {
  const testing::BoundSocket listener = testing::bind_loopback(SOCK_STREAM, 4096);  // reads nothing until the end
  HttpSink sink({.url = "http://127.0.0.1:" + std::to_string(listener.port) + "/x", .max_connections = 1,
                 .batched = true, .max_events = 100000, .max_bytes = 64 << 20});
  std::atomic<bool> stop{false};
  sink.attach_stop(&stop);
  fill(batch_, 0, 50000);  // about 10 MB: more than both kernels' buffers take at once
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop = true;
  });
  EXPECT_THROW((void)sink.write(batch_, why_), WriteInterrupted);
  stopper.join();
  std::memset(batch_.bytes.data(), 'X', batch_.bytes.size());
  const int accepted = ::accept(listener.fd, nullptr, nullptr);
  ASSERT_GE(accepted, 0);
  const timeval limit{0, 500'000};
  ::setsockopt(accepted, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  std::string received;
  char buffer[65536];
  for (ssize_t n; (n = ::recv(accepted, buffer, sizeof buffer, 0)) > 0;) received.append(buffer, static_cast<std::size_t>(n));
  EXPECT_GT(received.size(), 0u);
  EXPECT_EQ(received.find('X'), std::string::npos) << "after " << received.size() << " bytes";
  ::close(accepted);
  ::close(listener.fd);
}

// `timeout` bounds the whole request: a server that answers a piece at a
// time, each well within it, still runs out of it. Before its status has
// come, the request goes again; once a final status has come, that status
// decides (a 200 is done, not sent again to be accepted twice) and the
// connection goes with the unread rest of the body.
TEST_F(HttpSinkTest, AResponseTrickledPastTheTimeoutTimesOut) {
  HttpReceiver late_status([](const HttpRequest&, std::size_t) {
    return HttpResponse{.status = 200, .headers = {{"X-Pad", std::string(1000, 'p')}}, .body = "{}",
                        .trickle = std::chrono::milliseconds(100)};
  });
  HttpSink sink({.url = late_status.url(), .timeout = std::chrono::milliseconds(300), .max_connections = 1});
  sink.attach_counters(&counters_);
  fill(batch_, 0, 1);
  EXPECT_EQ(sink.write(batch_, why_), Outcome::retry);
  EXPECT_NE(why_.find("no response within 300 ms"), std::string::npos) << why_;
  EXPECT_EQ(counters_.timeouts.read(), 1u);

  HttpReceiver late_body([](const HttpRequest&, std::size_t) {
    return HttpResponse{.status = 200, .body = std::string(1000, 'x'), .trickle = std::chrono::milliseconds(100)};
  });
  HttpSink answered({.url = late_body.url(), .timeout = std::chrono::milliseconds(300), .max_connections = 1});
  perf::BackendSinkShard counters{};
  answered.attach_counters(&counters);
  EXPECT_EQ(answered.write(batch_, why_), Outcome::ok) << why_;
  EXPECT_EQ(late_body.requests().size(), 1u);
  EXPECT_EQ(counters.timeouts.read(), 1u);
  fill(batch_, 1, 1);
  EXPECT_EQ(answered.write(batch_, why_), Outcome::ok) << why_;  // on a new connection: the old one went
  EXPECT_EQ(late_body.requests().size(), 2u);
  EXPECT_EQ(counters.connects.read(), 2u);
}

// A response that never ends ends the request: a chunk's size line that
// never ends held its bytes (Beast bounds no such line), doubling the
// buffer for as long as the timeout let the server go on; interim
// responses without end, each read at once, never let the timeout fire.
TEST_F(HttpSinkTest, AResponseThatNeverEndsEndsTheRequestWithinItsTimeout) {
  HttpReceiver endless_chunk([](const HttpRequest&, std::size_t) {
    return HttpResponse{.raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;x=",
                        .endless = std::string(4096, 'a')};
  });
  HttpSink sink({.url = endless_chunk.url(), .timeout = std::chrono::milliseconds(3000), .max_connections = 1});
  fill(batch_, 0, 1);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;  // its status said 200
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1500));
  EXPECT_EQ(endless_chunk.requests().size(), 1u);

  HttpReceiver early_hints([](const HttpRequest&, std::size_t) {
    std::string hints;
    for (int i = 0; i < 64; ++i) hints += "HTTP/1.1 103 Early Hints\r\n\r\n";
    return HttpResponse{.endless = hints};
  });
  HttpSink hinted({.url = early_hints.url(), .timeout = std::chrono::milliseconds(300), .max_connections = 1});
  std::atomic<bool> stop{false};
  hinted.attach_stop(&stop);
  std::thread stopper([&] {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(4);
    while (!stop.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    stop.store(true);
  });
  start = std::chrono::steady_clock::now();
  Outcome outcome = Outcome::ok;
  try {
    outcome = hinted.write(batch_, why_);
  } catch (const WriteInterrupted&) {
    ADD_FAILURE() << "the write went on until the stop";
  }
  const auto took = std::chrono::steady_clock::now() - start;
  stop.store(true);
  stopper.join();
  EXPECT_EQ(outcome, Outcome::retry);
  EXPECT_NE(why_.find("no response within 300 ms"), std::string::npos) << why_;
  EXPECT_LT(took, std::chrono::milliseconds(2000));
}

TEST_F(HttpSinkTest, ConnectionClosedByTheServerIsReopened) {
  HttpReceiver receiver([](const HttpRequest&, std::size_t) { return HttpResponse{.status = 200, .close = true}; });
  HttpSink sink({.url = receiver.url(), .max_connections = 1});
  sink.attach_counters(&counters_);
  fill(batch_, 0, 5);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  EXPECT_EQ(receiver.requests().size(), 5u);
  EXPECT_EQ(counters_.connects.read(), 5u);
}

// An answer whose header Beast refuses (a header name with a space; both
// Content-Length and Transfer-Encoding) was a connection error: the
// request, accepted, was sent again at every retry, for ever. Its status
// decides it, as curl and Go read it: a 200 is delivered, a 400 refused,
// a 503 retried.
TEST_F(HttpSinkTest, AStatusInAHeaderThatDoesNotParseStillDecidesTheRequest) {
  const std::vector<std::pair<std::string, std::string>> kUnreadable[] = {{{"Bad Name", "x"}},
                                                                          {{"Transfer-Encoding", "chunked"}}};
  for (const auto& headers : kUnreadable) {
    SCOPED_TRACE(headers[0].first);
    for (const unsigned status : {200u, 400u}) {
      HttpReceiver receiver([&](const HttpRequest&, std::size_t) {
        return HttpResponse{.status = status, .headers = headers, .body = "ok"};
      });
      HttpSink sink({.url = receiver.url(), .max_connections = 1});
      fill(batch_, 0, 3);
      ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
      EXPECT_EQ(receiver.requests().size(), 3u) << "each request once";
      EXPECT_EQ(sink.rejected_events(), status == 200 ? 0u : 3u);
      if (status == 400) {
        EXPECT_NE(why_.find("HTTP 400 from"), std::string::npos) << why_;
      }
    }
  }
  HttpReceiver busy([](const HttpRequest&, std::size_t) {
    return HttpResponse{.status = 503, .headers = {{"Bad Name", "x"}}};
  });
  HttpSink sink({.url = busy.url(), .max_connections = 1});
  fill(batch_, 0, 1);
  EXPECT_EQ(sink.write(batch_, why_), Outcome::retry);
  EXPECT_NE(why_.find("HTTP 503 from"), std::string::npos) << why_;
}

// A server that ends a kept-alive connection without saying so, just as
// the sink sends the next request on it: the request failed the whole
// write (a backoff, a failure and a retry counted, for each such close).
// It goes again at once on a new connection.
TEST_F(HttpSinkTest, ARequestOnAKeptAliveConnectionTheServerJustClosedGoesAgainAtOnce) {
  HttpReceiver receiver([](const HttpRequest&, std::size_t) {
    return HttpResponse{.status = 204, .close_after = std::chrono::milliseconds(50)};
  });
  HttpSink sink({.url = receiver.url(), .max_connections = 1});
  sink.attach_counters(&counters_);
  fill(batch_, 0, 5);
  EXPECT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  std::set<std::string> ids;
  for (const HttpRequest& r : receiver.requests()) ids.insert(ids_in(r.body).at(0));
  EXPECT_EQ(ids.size(), 5u);
  EXPECT_EQ(receiver.requests().size(), 5u);
  EXPECT_EQ(counters_.connects.read(), 5u);
}

// A server that took a request on a kept-alive connection and closed it
// without answering: the request goes again at once, and may be a
// duplicate there, so it counts as a retry. It counted nowhere but in
// `connects`.
TEST_F(HttpSinkTest, ARequestSentAgainAtOnceCountsAsARetry) {
  HttpReceiver receiver([](const HttpRequest&, std::size_t index) {
    return HttpResponse{.close_unanswered = index == 1};
  });
  HttpSink sink({.url = receiver.url(), .max_connections = 1});
  sink.attach_counters(&counters_);
  fill(batch_, 0, 3);
  EXPECT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  ASSERT_EQ(receiver.requests().size(), 4u);
  EXPECT_EQ(ids_in(receiver.requests()[1].body), ids_in(receiver.requests()[2].body));
  EXPECT_EQ(counters_.retries.read(), 1u);
  EXPECT_EQ(counters_.failures.read(), 0u);
  EXPECT_EQ(counters_.connects.read(), 2u);
}

// A receiver whose answers come `delay` late while `slow` is set.
HttpReceiver::Responder late_while(const std::atomic<bool>& slow, std::chrono::milliseconds delay) {
  return [&slow, delay](const HttpRequest&, std::size_t) {
    if (slow.load()) std::this_thread::sleep_for(delay);
    return HttpResponse{};
  };
}

// Each connection's requests, in the order they arrived, as event numbers.
std::map<std::size_t, std::vector<std::size_t>> numbers_by_connection(const std::vector<HttpRequest>& requests) {
  std::map<std::size_t, std::vector<std::size_t>> by_connection;
  for (const HttpRequest& r : requests) {
    for (const std::string& id : ids_in(r.body)) by_connection[r.connection].push_back(std::stoul(id.substr(2)));
  }
  return by_connection;
}

// DESIGN.md: one connection while one keeps up, more only when it does not.
// Kazoo's http backend sends a request at a time, and its users read the
// events in order. Every batch of requests used to be spread over all of
// max_connections at once (8 by default), so 40 events to an idle server
// arrived out of order over 8 connections.
TEST_F(HttpSinkTest, OneConnectionWhileOneKeepsUpAndMoreUpToTheLimitWhenNot) {
  std::atomic<bool> slow{false};
  HttpReceiver receiver(late_while(slow, std::chrono::milliseconds(2)));
  HttpSink sink({.url = receiver.url()});  // max_connections as Kazoo's users get it: 8
  sink.attach_counters(&counters_);
  std::size_t next = 0;
  for (int i = 0; i < 10; ++i, next += 40) {
    fill(batch_, next, 40);
    ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto by_connection = numbers_by_connection(receiver.requests());
  // One; two where a loaded machine held the answers up past half a window.
  EXPECT_LE(by_connection.size(), 2u);
  if (by_connection.size() == 1) {
    std::vector<std::size_t> all(next);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(by_connection.begin()->second, all);  // in order
  }

  // Answers 2 ms late: one connection carries 500 a second, and a write of
  // 1,200 keeps it waiting all the time. More open, a window at a time.
  slow = true;
  const std::size_t slow_from = next;
  fill(batch_, next, 1200);
  next += 1200;
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  by_connection = numbers_by_connection(receiver.requests());
  std::set<std::size_t> connections_used_late;
  std::vector<std::size_t> every;
  for (const auto& [connection, numbers] : by_connection) {
    EXPECT_TRUE(std::is_sorted(numbers.begin(), numbers.end())) << "connection " << connection;  // order holds on each
    for (std::size_t n : numbers) {
      every.push_back(n);
      if (n >= slow_from) connections_used_late.insert(connection);
    }
  }
  EXPECT_GE(connections_used_late.size(), 3u);
  EXPECT_LE(connections_used_late.size(), 8u);
  std::sort(every.begin(), every.end());
  std::vector<std::size_t> all(next);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(every, all);  // each once
  EXPECT_EQ(counters_.connects.read(), by_connection.size());
}

// Connections opened for a burst (each a descriptor the process's other
// backends share) are closed after a minute idle, all but the first. They
// stayed open for good.
TEST_F(HttpSinkTest, ConnectionsIdleForAMinuteAreClosedButTheFirst) {
  std::atomic<bool> slow{true};
  HttpReceiver receiver(late_while(slow, std::chrono::milliseconds(2)));
  HttpSink sink({.url = receiver.url(), .max_connections = 8});
  sink.attach_counters(&counters_);
  fill(batch_, 0, 600);  // slow answers: more connections open
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  const std::size_t opened = counters_.connects.read();
  ASSERT_GE(opened, 3u);
  slow = false;
  const std::size_t open = testing::open_descriptors().size();
  sink.tick(std::chrono::steady_clock::now());
  EXPECT_EQ(testing::open_descriptors().size(), open);  // not idle long enough
  sink.tick(std::chrono::steady_clock::now() + std::chrono::seconds(61));
  EXPECT_LE(testing::open_descriptors().size(), open - (opened - 1));
  fill(batch_, 600, 50);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;  // and they open again
  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 650u);
  // One was kept: the next write sends over it too (all closed, it would
  // have had only new connections).
  std::set<std::size_t> before;
  for (std::size_t i = 0; i < 600; ++i) before.insert(requests[i].connection);
  std::size_t over_kept = 0;
  for (std::size_t i = 600; i < 650; ++i) over_kept += before.count(requests[i].connection);
  EXPECT_GT(over_kept, 0u);
}

// A process with no descriptor left for one more connection (its limit,
// which other backends share) sends on the connections it has. That used to
// fail the whole write, which backed off as if the destination had.
TEST_F(HttpSinkTest, OutOfDescriptorsTheWriteGoesOnWithTheConnectionsItHas) {
  // Here, outside the child's limit; its answers slow, so the sink wants
  // more connections than the limit lets it open.
  const std::atomic<bool> slow{true};
  HttpReceiver receiver(late_while(slow, std::chrono::milliseconds(2)));
  fill(batch_, 0, 500);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(10);
    HttpSink sink({.url = receiver.url(), .max_connections = 64});
    testing::leave_room_for_descriptors(3);
    std::string why;
    const Outcome outcome = sink.write(batch_, why);
    if (outcome != Outcome::ok) std::fprintf(stderr, "write: %s\n", why.c_str());
    ::_exit(outcome == Outcome::ok ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(receiver.requests().size(), 500u);
  EXPECT_EQ(receiver.connections(), 3u);  // all it could open
}

// As the socket sink's test of the same name: a private /etc/hosts gives a
// name two loopback addresses, and only the one getaddrinfo puts second
// listens. Every request closes its connection, so each one connects: the
// first connect is refused and goes on to the next address at once, and the
// connections after it start at the address that answered.
TEST(HttpSink, AConnectRefusedAtAHostsFirstAddressGoesOnToItsNextInTheSameWrite) {
  const int status = testing::run_with_two_address_name([](const std::string& second) {
    HttpReceiver receiver([](const HttpRequest&, std::size_t) { return HttpResponse{.close = true}; }, 0, "", "",
                          second);
    HttpSink sink({.url = "http://rr-two-addresses:" + std::to_string(receiver.port()) + "/edr", .max_connections = 1});
    perf::BackendSinkShard counters{};
    sink.attach_counters(&counters);
    Batch batch;
    fill(batch, 0, 3);
    std::string why;
    if (const Outcome outcome = sink.write(batch, why); outcome != Outcome::ok) {
      std::fprintf(stderr, "the first write was not ok: %s\n", why.c_str());
      return 1;
    }
    std::vector<std::string> ids;
    for (const HttpRequest& r : receiver.requests()) {
      for (auto& id : ids_in(r.body)) ids.push_back(id);
    }
    if (ids != expected_ids(0, 3) || counters.connects.read() != 3 || counters.connect_failures.read() != 1) {
      std::fprintf(stderr, "%zu events, %llu connects, %llu failed\n", ids.size(),
                   static_cast<unsigned long long>(counters.connects.read()),
                   static_cast<unsigned long long>(counters.connect_failures.read()));
      return 2;
    }
    HttpSink refused({.url = "http://rr-two-addresses:" + std::to_string(testing::free_port()) + "/"});
    if (refused.write(batch, why) != Outcome::retry || why.find("each of its 2 addresses tried") == std::string::npos) {
      std::fprintf(stderr, "every address refused: %s\n", why.c_str());
      return 4;
    }
    return 0;
  });
  if (status == testing::kNoPrivateMounts) GTEST_SKIP() << "no private /etc/hosts here (a mount namespace, and a name service that reads the file)";
  EXPECT_EQ(status, 0);
}

TEST(HttpSink, BadOptionsAreClearErrors) {
  EXPECT_THROW(HttpSink({.url = "http://"}), std::runtime_error);
  EXPECT_THROW(HttpSink({.url = "http://h/", .headers = {{"X-Bad", "a\r\nInjected: 1"}}}), std::runtime_error);
  EXPECT_THROW(HttpSink({.url = "http://h/", .headers = {{"Content-Length", "1"}}}), std::runtime_error);
  try {
    HttpSink sink({.url = "https://127.0.0.1/", .tls = {.ca_file = "/nonexistent/ca.pem"}});
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/ca.pem"), std::string::npos) << e.what();
  }
}

// SIGHUP reads the TLS files again, as for a certificate renewed in place
// (certbot): the context loaded at start was kept until a restart, and
// once the old certificate expired every handshake failed.
TEST_F(HttpSinkTest, AReopenReadsTheTlsFilesAgain) {
  testing::TempDir dir("https-reopen");
  const testing::TestPki pki = testing::make_test_pki(dir);
  ASSERT_TRUE(pki.ok()) << testing::read_text(dir / "openssl.log");
  HttpReceiver receiver({}, 0, pki.server_cert, pki.server_key);
  const std::string ca_file = dir / "ca-in-use.pem";
  std::filesystem::copy_file(pki.other_ca, ca_file);
  HttpSink sink({.url = receiver.url(), .batched = true, .tls = {.ca_file = ca_file}});
  fill(batch_, 0, 10);
  EXPECT_EQ(sink.write(batch_, why_), Outcome::retry);
  EXPECT_NE(why_.find("certificate verify failed"), std::string::npos) << why_;

  std::filesystem::copy_file(pki.ca, ca_file, std::filesystem::copy_options::overwrite_existing);
  sink.reopen();
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  EXPECT_EQ(receiver.requests().size(), 1u);
}

// ca_path: a directory of CA certificates in OpenSSL's hashed form, as
// /etc/ssl/certs is; OpenSSL looks an issuer up there at each handshake.
TEST_F(HttpSinkTest, HttpsVerifiesAgainstACaDirectory) {
  testing::TempDir dir("https-ca-path");
  const testing::TestPki pki = testing::make_test_pki(dir);
  ASSERT_TRUE(pki.ok()) << testing::read_text(dir / "openssl.log");
  HttpReceiver receiver({}, 0, pki.server_cert, pki.server_key);
  for (const auto& [name, ca] : {std::pair{"right", pki.ca}, std::pair{"wrong", pki.other_ca}}) {
    std::filesystem::create_directory(dir / name);
    std::filesystem::copy_file(ca, dir / name + "/ca.pem");
    ASSERT_EQ(std::system(("openssl rehash " + (dir / name) + " 2>/dev/null").c_str()), 0);
  }
  HttpSink wrong({.url = receiver.url(), .batched = true, .tls = {.ca_path = dir / "wrong"}});
  fill(batch_, 0, 10);
  EXPECT_EQ(wrong.write(batch_, why_), Outcome::retry);
  EXPECT_NE(why_.find("certificate verify failed"), std::string::npos) << why_;
  HttpSink right({.url = receiver.url(), .batched = true, .tls = {.ca_path = dir / "right"}});
  ASSERT_EQ(right.write(batch_, why_), Outcome::ok) << why_;
  ASSERT_EQ(receiver.requests().size(), 1u);
  EXPECT_EQ(ids_in(receiver.requests()[0].body), expected_ids(0, 10));
}

TEST_F(HttpSinkTest, HttpsWithTheTestCaAndAWrongCaIsAClearCountedError) {
  testing::TempDir dir("https");
  const testing::TestPki pki = testing::make_test_pki(dir);
  ASSERT_TRUE(pki.ok()) << testing::read_text(dir / "openssl.log");
  HttpReceiver receiver({}, 0, pki.server_cert, pki.server_key);

  HttpSink wrong({.url = receiver.url(), .batched = true, .tls = {.ca_file = pki.other_ca}});
  wrong.attach_counters(&counters_);
  fill(batch_, 0, 10);
  EXPECT_EQ(wrong.write(batch_, why_), Outcome::retry);
  EXPECT_NE(why_.find("certificate verify failed"), std::string::npos) << why_;
  EXPECT_EQ(counters_.connect_failures.read(), 1u);
  // The server is told why, by the alert: it saw a connection that just
  // ended before.
  for (int i = 0; i < 200 && receiver.handshake_errors().empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(receiver.handshake_errors().size(), 1u);
  EXPECT_NE(receiver.handshake_errors()[0].find("alert unknown ca"), std::string::npos)
      << receiver.handshake_errors()[0];

  // Batched (one large body in several TLS chunks) and one event per request
  // over kept-alive TLS connections.
  HttpSink batched({.url = "https://user:secret@localhost:" + std::to_string(receiver.port()) + "/tls",
                    .batched = true, .max_events = 5000, .max_bytes = 64 << 20, .tls = {.ca_file = pki.ca}});
  fill(batch_, 0, 3000);
  ASSERT_EQ(batched.write(batch_, why_), Outcome::ok) << why_;
  ASSERT_EQ(receiver.requests().size(), 1u);
  const HttpRequest r = receiver.requests()[0];
  EXPECT_EQ(ids_in(r.body), expected_ids(0, 3000));
  EXPECT_EQ(r.headers.at("authorization"), "Basic dXNlcjpzZWNyZXQ=");
  EXPECT_EQ(r.headers.at("host"), "localhost:" + std::to_string(receiver.port()));

  HttpSink single({.url = receiver.url(), .max_connections = 2, .tls = {.ca_file = pki.ca}});
  single.attach_counters(&counters_);
  fill(batch_, 0, 40);
  ASSERT_EQ(single.write(batch_, why_), Outcome::ok) << why_;
  fill(batch_, 40, 40);
  ASSERT_EQ(single.write(batch_, why_), Outcome::ok) << why_;  // the same TLS session, kept alive
  EXPECT_EQ(receiver.requests().size(), 81u);
  // One keeps up; two where a loaded machine kept the first waiting most
  // of a window (80 requests back to back are a backlog to it).
  EXPECT_LE(counters_.connects.read(), 2u);

  // A sink closes its TLS connections with close_notify: the server reads
  // a clean end, not a cut one.
  const std::size_t clean_before = receiver.clean_closes();
  {
    HttpSink closing({.url = receiver.url(), .batched = true, .tls = {.ca_file = pki.ca}});
    fill(batch_, 0, 5);
    ASSERT_EQ(closing.write(batch_, why_), Outcome::ok) << why_;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (receiver.clean_closes() == clean_before && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(receiver.clean_closes(), clean_before + 1);
}

// `server_name` names the host the request is for too (an address in the
// URL, the name in its certificate): a server that checks Host against SNI
// answered the mismatch with 421, and the events were dropped. A name with
// its root's dot ("localhost.") verifies, and is sent, as the name.
TEST_F(HttpSinkTest, HttpsServerNameIsTheHostAndARootDotIsNotInTheCertificate) {
  testing::TempDir dir("https-name");
  const testing::TestPki pki = testing::make_test_pki(dir);
  ASSERT_TRUE(pki.ok()) << testing::read_text(dir / "openssl.log");
  HttpReceiver receiver({}, 0, pki.server_cert, pki.server_key);
  const std::string port = std::to_string(receiver.port());
  HttpSink named({.url = "https://127.0.0.1:" + port + "/", .tls = {.ca_file = pki.ca, .server_name = "localhost"}});
  fill(batch_, 0, 1);
  ASSERT_EQ(named.write(batch_, why_), Outcome::ok) << why_;
  HttpSink rooted({.url = "https://127.0.0.1:" + port + "/", .tls = {.ca_file = pki.ca, .server_name = "localhost."}});
  ASSERT_EQ(rooted.write(batch_, why_), Outcome::ok) << why_;
  ASSERT_EQ(receiver.requests().size(), 2u);
  EXPECT_EQ(receiver.requests()[0].headers.at("host"), "localhost:" + port);
  EXPECT_EQ(receiver.requests()[1].headers.at("host"), "localhost:" + port) << "as SNI has it";
}

// HTTPS offers http/1.1 by ALPN (RFC 7301), as curl does: a server that
// picks its protocol by ALPN picks ours, and one that speaks HTTP/2 alone
// refuses the handshake, said, instead of being sent a request it can't
// read (the sink offered nothing before).
TEST_F(HttpSinkTest, HttpsOffersHttp11ByAlpn) {
  testing::TempDir dir("https-alpn");
  const testing::TestPki pki = testing::make_test_pki(dir);
  ASSERT_TRUE(pki.ok()) << testing::read_text(dir / "openssl.log");
  HttpReceiver receiver({}, 0, pki.server_cert, pki.server_key);
  HttpSink sink({.url = receiver.url(), .tls = {.ca_file = pki.ca}});
  fill(batch_, 0, 1);
  ASSERT_EQ(sink.write(batch_, why_), Outcome::ok) << why_;
  EXPECT_EQ(receiver.offered_alpn(), std::vector<std::string>{"http/1.1"});

  HttpReceiver h2_only({}, 0, pki.server_cert, pki.server_key);
  h2_only.speak_only("h2");
  HttpSink refused({.url = h2_only.url(), .tls = {.ca_file = pki.ca}});
  EXPECT_EQ(refused.write(batch_, why_), Outcome::retry);
  EXPECT_NE(why_.find("no application protocol"), std::string::npos) << why_;
  EXPECT_TRUE(h2_only.requests().empty());
}

}  // namespace
}  // namespace ringroute::sinks
