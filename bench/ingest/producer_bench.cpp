// The producer library in one thread: emit_batch into a ring that the same
// thread drains, so the figure is CPU work per event without cross-core
// traffic (`ringroute bench ring` has that). Also body validation on its own.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "ringroute/ingest/body_check.hpp"
#include "ringroute/producer.hpp"
#include "ringroute/ring/ring.hpp"

namespace {

using namespace ringroute;

std::string body_of(std::size_t bytes) {
  return R"({"p":")" + std::string(bytes > 9 ? bytes - 9 : 0, 'x') + R"("})";
}

// range(0): body bytes; range(1): 1 to validate bodies, 0 for RR_EMIT_BODY_TRUSTED.
void BM_EmitBatch(benchmark::State& state) {
  const std::string name = "rr-gbench-emit-" + std::to_string(::getpid());
  ring::Segment::remove(name);
  ring::SegmentOptions options;
  options.capacity_bytes = 4 << 20;
  ring::Segment segment = ring::Segment::create_or_attach(name, options);
  ring::Consumer consumer(segment);
  EventProducer producer;
  rr_producer_options popts{};
  popts.name = "bench";
  if (producer.open(name, &popts) != RR_OK) throw std::runtime_error("open failed");
  (void)producer.prefault();
  const std::string body = body_of(static_cast<std::size_t>(state.range(0)));
  const std::uint32_t flags = state.range(1) != 0 ? 0 : RR_EMIT_BODY_TRUSTED;
  std::vector<rr_event> events(64);
  for (auto& e : events) {
    e.app_name = to_rr_str("app042");
    e.account_id = to_rr_str("acct-012345");
    e.body = to_rr_str(body);
  }
  std::uint64_t seen = 0;
  auto on_record = [&](std::span<const std::byte>, std::uint64_t) { ++seen; };
  for (auto _ : state) {
    if (producer.emit_batch(events, flags) != RR_OK) state.SkipWithError("emit failed");
    consumer.poll(on_record, events.size());
    consumer.release(consumer.read_position());
  }
  if (seen != state.iterations() * events.size()) state.SkipWithError("events lost");
  state.SetItemsProcessed(static_cast<std::int64_t>(seen));
  ring::Segment::remove(name);
}
BENCHMARK(BM_EmitBatch)->Args({16, 0})->Args({200, 0})->Args({200, 1});

void BM_BodyCheck(benchmark::State& state) {
  const std::string body = body_of(static_cast<std::size_t>(state.range(0)));
  if (ingest::check_json_object(body)) throw std::runtime_error("sample body rejected");
  for (auto _ : state) benchmark::DoNotOptimize(ingest::check_json_object(body));
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(body.size()));
}
BENCHMARK(BM_BodyCheck)->Arg(16)->Arg(200)->Arg(4096);

}  // namespace
