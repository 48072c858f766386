// The json formatter per event, and the file sink's two submission styles
// (write(2) and io_uring) per batch, to tmpfs and to the disk under /tmp.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "ringroute/event/event.hpp"
#include "ringroute/ingest/event_json.hpp"
#include "ringroute/sinks/file_sink.hpp"
#include "ringroute/sinks/json_formatter.hpp"

namespace {

using namespace ringroute;

// One of DESIGN.md's generated events with a 200-byte body, as a record.
struct SampleEvent {
  std::vector<std::byte> record;
  event::EventView view;
  SampleEvent() {
    ingest::EventLineParser parser;
    ingest::ParsedEvent parsed;
    const std::string body = "{\"seq\":12,\"pad\":\"" + std::string(200 - 19, 'x') + "\"}";
    const std::string line = R"({"id":"bench0-123456","timestamp":1795452928123456789,"severity":"warning",)"
                             R"("verbosity":"info","account_id":"acct-012345","account_tree":["org-01","grp-0123"],)"
                             R"("app_name":"app042","node":"gw1","body":)" + body + "}";
    if (parser.parse(line, parsed) || ingest::encode_record(parsed, record)) std::abort();
    if (event::decode(record, view) != event::DecodeError::none) std::abort();
  }
};

void BM_JsonFormat(benchmark::State& state) {
  SampleEvent sample;
  sinks::JsonFormatOptions options;
  options.include_metadata = state.range(0) != 0;
  sinks::JsonFormatter formatter(options);
  sinks::ByteBuffer out(1 << 20);
  for (auto _ : state) {
    if (out.size() > (1 << 20) - 4096) out.clear();
    formatter.format(sample.view, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  out.clear();
  formatter.format(sample.view, out);
  state.counters["line_bytes"] = static_cast<double>(out.size());
}
BENCHMARK(BM_JsonFormat)->Arg(1)->Arg(0);

// Batches of 1000 formatted events (~460 KB) appended to one file.
void BM_FileSinkBatch(benchmark::State& state) {
  const bool uring = state.range(0) != 0;
  const bool tmpfs = state.range(1) != 0;
  const std::string dir = std::string(tmpfs ? "/dev/shm" : "/tmp") + "/rr-bench-sink-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  SampleEvent sample;
  sinks::JsonFormatter formatter;
  sinks::Batch batch;
  for (int i = 0; i < 1000; ++i) formatter.format(sample.view, batch.bytes);
  batch.events = 1000;
  sinks::FileSinkOptions options;
  options.path = dir + "/out.ndjson";
  options.io = uring ? sinks::FileIo::uring : sinks::FileIo::write;
  options.rotate_bytes = 256ull << 20;  // bounds what a long run leaves in memory or on disk
  options.keep = 0;
  sinks::FileSink sink(options);
  std::string why;
  for (auto _ : state) {
    if (sink.write(batch, why) != sinks::Outcome::ok) state.SkipWithError(why.c_str());
  }
  state.SetItemsProcessed(state.iterations() * 1000);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(batch.bytes.size()));
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_FileSinkBatch)
    ->ArgNames({"uring", "tmpfs"})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Args({0, 0})
    ->Args({1, 0})
    ->UseRealTime();

}  // namespace
