// Single-thread costs of the ring and the event record: claim + commit +
// poll + release for one record at a time and for batches, and decode. Each
// benchmark checks its output before it times anything. Cross-process figures
// come from `ringroute bench ring`.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "ringroute/event/event.hpp"
#include "ringroute/ring/ring.hpp"

namespace {

using namespace ringroute;

struct BenchRing {
  std::string name = "rr-gbench-" + std::to_string(::getpid());
  ring::Segment segment;
  explicit BenchRing(std::uint64_t capacity) {
    ring::Segment::remove(name);
    ring::SegmentOptions options;
    options.capacity_bytes = capacity;
    segment = ring::Segment::create_or_attach(name, options);
  }
  ~BenchRing() { ring::Segment::remove(name); }
};

// One record per claim: claim, write the payload, commit; then the consumer
// reads and releases. range(0) = record bytes on the ring.
void BM_ClaimCommitPoll(benchmark::State& state) {
  BenchRing r(1 << 20);
  ring::Producer producer(r.segment);
  ring::Consumer consumer(r.segment);
  const auto bytes = static_cast<std::uint32_t>(state.range(0));
  const std::size_t payload = bytes - ring::kRecordHeaderBytes;
  std::vector<std::byte> source(payload, std::byte{0x5a});
  std::uint64_t seen = 0;
  auto on_record = [&](std::span<const std::byte> p, std::uint64_t) { seen += p.size(); };
  // Check before timing: a record goes through intact.
  {
    ring::Claim c;
    if (producer.try_claim(bytes, c) != ring::Status::ok) throw std::runtime_error("claim failed");
    std::memcpy(c.first + ring::kRecordHeaderBytes, source.data(), payload);
    producer.commit_one(c, bytes);
    if (consumer.poll(on_record, 1) != 1 || seen != payload) throw std::runtime_error("record lost");
    consumer.release(consumer.read_position());
  }
  constexpr int kPerRound = 64;
  for (auto _ : state) {
    for (int i = 0; i < kPerRound; ++i) {
      ring::Claim c;
      (void)producer.try_claim(bytes, c);
      std::memcpy(c.first + ring::kRecordHeaderBytes, source.data(), payload);
      producer.commit_one(c, bytes);
    }
    consumer.poll(on_record, kPerRound);
    consumer.release(consumer.read_position());
  }
  state.SetItemsProcessed(state.iterations() * kPerRound);
  state.SetBytesProcessed(state.iterations() * kPerRound * bytes);
  benchmark::DoNotOptimize(seen);
}
BENCHMARK(BM_ClaimCommitPoll)->Arg(64)->Arg(256)->Arg(1024);

// A batch of 64 records under one claim and one commit.
void BM_BatchClaimCommitPoll(benchmark::State& state) {
  BenchRing r(1 << 20);
  ring::Producer producer(r.segment);
  ring::Consumer consumer(r.segment);
  const auto bytes = static_cast<std::uint32_t>(state.range(0));
  constexpr std::size_t kBatch = 64;
  std::vector<std::uint32_t> lengths(kBatch, bytes);
  std::uint64_t seen = 0;
  auto on_record = [&](std::span<const std::byte> p, std::uint64_t) { seen += p.size(); };
  for (auto _ : state) {
    ring::Claim c;
    (void)producer.try_claim(static_cast<std::uint32_t>(bytes * kBatch), c);
    for (std::size_t i = 0; i < kBatch; ++i) {
      std::memset(c.first + i * bytes + ring::kRecordHeaderBytes, 0x5a, bytes - ring::kRecordHeaderBytes);
    }
    producer.commit(c, lengths.data(), kBatch);
    if (consumer.poll(on_record, kBatch) != kBatch) state.SkipWithError("batch not read whole");
    consumer.release(consumer.read_position());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetBytesProcessed(state.iterations() * kBatch * bytes);
  benchmark::DoNotOptimize(seen);
}
BENCHMARK(BM_BatchClaimCommitPoll)->Arg(64)->Arg(256);

struct Tree2 {
  std::string_view a = "org-01", b = "grp-0123";
  std::size_t size() const { return 2; }
  std::string_view operator[](std::size_t i) const { return i == 0 ? a : b; }
};

std::vector<std::byte> sample_record(std::size_t body_bytes) {
  event::EventInput in;
  in.set(event::StringField::id, "p1234.lq2k3j-1234567");
  in.set(event::StringField::account_id, "acct-012345");
  in.set(event::StringField::app_name, "app042");
  in.set(event::StringField::node, "gateway-7");
  in.severity = event::Severity::warning;
  in.verbosity = event::Verbosity::error;
  in.timestamp_ns = 1'790'000'000'000'000'000;
  static std::string body;
  body = R"({"p":")" + std::string(body_bytes > 9 ? body_bytes - 9 : 0, 'x') + R"("})";
  in.body = body;
  std::vector<std::byte> out(event::encoded_size(in, Tree2{}));
  event::encode(in, Tree2{}, true, out.data());
  return out;
}

void BM_EventEncode(benchmark::State& state) {
  event::EventInput in;
  in.set(event::StringField::id, "p1234.lq2k3j-1234567");
  in.set(event::StringField::account_id, "acct-012345");
  in.set(event::StringField::app_name, "app042");
  in.set(event::StringField::node, "gateway-7");
  const std::string body(200, 'x');
  in.body = body;
  std::vector<std::byte> out(event::encoded_size(in, Tree2{}));
  for (auto _ : state) {
    event::encode(in, Tree2{}, true, out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EventEncode);

void BM_EventDecode(benchmark::State& state) {
  const auto record = sample_record(static_cast<std::size_t>(state.range(0)));
  event::EventView view;
  if (event::decode(record, view) != event::DecodeError::none || view.get(event::StringField::app_name) != "app042") {
    throw std::runtime_error("sample record does not decode");
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(event::decode(record, view));
    benchmark::DoNotOptimize(view);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(record.size()));
}
BENCHMARK(BM_EventDecode)->Arg(16)->Arg(200);

}  // namespace
