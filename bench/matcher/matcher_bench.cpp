// The compiled binding matcher: ns per event, compile time and the compiled
// form's size at 10, 1,000, 100,000 and 1,000,000 bindings.
//
// Bindings are a realistic mix over 128 backends (fewer when there are fewer
// bindings): per-account bindings on accounts acct-NNNNNN (one app, a few
// apps, or "*"), include_descendants bindings on org-NN / grp-NNNN ids, a
// share of wildcard-account bindings, a few topic patterns, and severities
// and verbosities spread (thresholds, exact levels, arrays). Events are
// drawn uniformly over the bound accounts (account_tree as DESIGN.md's
// generated events) and over app000..app099, severities and verbosities
// uniform; 65,536 of them are decoded up front into one contiguous buffer, so
// the timed loop only matches, and it walks them in order (no hot replay).
//
// BM_Match/N/T     ns per event (items_per_second), matched backends/event
// BM_Compile/N     time per Matcher::compile, memory_bytes()
// BM_MatchFixed/N/T a fixed count of matches, for callgrind:
//   valgrind --tool=callgrind --toggle-collect='ringroute::matcher::Matcher::match*'
//     ./bench_matcher --benchmark_filter='BM_MatchFixed/bindings:1000000/topics:1/'
//   (one command line)
//   instructions per event = collected Ir / (kFixedIterations * kBatch).
// BM_MatchBatch/N/T, BM_MatchBatchFixed/N/T: the same through match_batch
//   (runs of kBatch consecutive events), as the router matches
//   (BM_MatchBatch/bindings:0/topics:0: the router benchmark's config); for
//   callgrind, --toggle-collect='ringroute::matcher::Matcher::match_batch*'.
// BM_MatchDecoded/N/T: match_batch with each run decoded just before it,
//   as the router's worker does: the events are in cache (BM_MatchBatch
//   reads them from 30 MiB decoded up front).
// BM_MatchDecodedHot/N/T: the same, with events over 64 accounts only: the
//   walk's instructions without its misses.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "ringroute/event/event.hpp"
#include "ringroute/ingest/event_json.hpp"
#include "ringroute/matcher/matcher.hpp"

namespace {

using namespace ringroute;
using matcher::BackendSpec;
using matcher::BindingSpec;

constexpr std::size_t kEvents = 65536;  // power of two
constexpr std::size_t kBatch = 256;     // events per benchmark iteration
constexpr int kFixedIterations = 64;    // BM_MatchFixed: 16,384 matches

std::string account_name(std::uint32_t n) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "acct-%06u", n);
  return buf;
}
std::string org_name(std::uint32_t n) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "org-%02u", n / 10000);
  return buf;
}
std::string grp_name(std::uint32_t n) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "grp-%04u", n / 100);
  return buf;
}
std::string app_name(std::uint32_t n) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "app%03u", n);
  return buf;
}

// A level key: mostly a threshold ("warning" = warning and up), some exact
// levels, some arrays (`pair` as the array).
template <class Level>
void random_level(matcher::LevelSpec<Level>& spec, unsigned count, std::array<Level, 2> pair, std::mt19937_64& rng) {
  const unsigned kind = rng() % 10;
  if (kind < 9) {
    spec = {{static_cast<Level>(rng() % count)}, false, kind >= 7};
  } else {
    spec = {{pair[0], pair[1]}, true, false};
  }
}
void random_severity(BindingSpec& b, std::mt19937_64& rng) {
  random_level(b.severity, event::kSeverityCount, {event::Severity::ok, event::Severity::critical}, rng);
}
void random_verbosity(BindingSpec& b, std::mt19937_64& rng) {
  random_level(b.verbosity, event::kVerbosityCount, {event::Verbosity::debug, event::Verbosity::error}, rng);
}
void random_apps(BindingSpec& b, std::mt19937_64& rng) {
  const unsigned kind = rng() % 10;
  if (kind < 4) {
    b.apps = {"*"};
  } else if (kind < 8) {
    b.apps = {app_name(rng() % 100)};
  } else {
    b.apps.clear();
    const unsigned count = 2 + rng() % 2;
    for (unsigned i = 0; i < count; ++i) b.apps.push_back(app_name(rng() % 100));
  }
}

struct Workload {
  std::size_t bindings = 0;
  bool with_topics = true;
  std::size_t hot_accounts = 0;  // events over the first this many bound accounts only; 0: all of them
  std::vector<BackendSpec> backends;
  std::vector<std::uint32_t> bound_accounts;  // account numbers with a binding on them
  std::vector<std::byte> records;             // kEvents encoded records, back to back
  std::vector<event::EventView> events;       // views into `records`
  std::vector<std::span<const std::byte>> record_spans;  // each record's bytes in `records`
};

std::vector<BackendSpec> make_backends(std::size_t total, bool with_topics, std::vector<std::uint32_t>& bound_accounts) {
  std::mt19937_64 rng(0x5eed0000 + total);
  const std::size_t backend_count = std::min<std::size_t>(128, std::max<std::size_t>(1, total));
  std::vector<BackendSpec> backends(backend_count);
  for (std::size_t i = 0; i < backend_count; ++i) backends[i].name = "backend-" + std::to_string(i);

  // The mix: a few topic bindings, a share of wildcard-account bindings
  // (catch-all or per-app backends), include_descendants on a few orgs and on
  // 2% groups, the rest per-account (5% of those with include_descendants).
  // Without topics, the same mix less its topic bindings: every other
  // binding drawn as with them (the same counts, the same draws).
  const std::size_t topics = std::min<std::size_t>(5, std::max<std::size_t>(1, total / 200));
  const std::size_t wildcards = std::min<std::size_t>(16, std::max<std::size_t>(1, total / 1000));
  // Organisation-wide bindings are few; group-wide ones 2%.
  const std::size_t org_bindings = std::min<std::size_t>(100, total / 10000);
  const std::size_t grp_bindings = std::max<std::size_t>(total >= 10 ? 1 : 0, total / 50);
  const std::size_t descendants = org_bindings + grp_bindings;
  const std::size_t per_account = total - std::min(total, topics + wildcards + descendants);
  // About two bindings per bound account (several backends bind the same
  // account); accounts are numbered up to 999,999 so org/grp ids stay in format.
  const std::uint32_t account_space =
      static_cast<std::uint32_t>(std::min<std::size_t>(1'000'000, std::max<std::size_t>(1, per_account / 2 + 1)));
  std::unordered_set<std::uint32_t> bound;

  auto backend = [&]() -> BackendSpec& { return backends[rng() % backend_count]; };
  static const char* kTopics[] = {"edr.critical.#", "edr.*.error.#", "edr.*.*.acct-000042.#",
                                  "edr.warning.*.*.app007", "#.app013"};
  for (std::size_t i = 0; i < topics; ++i) {
    BindingSpec b;
    b.topic = kTopics[i % 5];
    b.severity = {{event::Severity::ok}, false, false};
    b.verbosity = {{event::Verbosity::trace}, false, false};
    BackendSpec& drawn = backend();
    if (with_topics) drawn.bindings.push_back(std::move(b));
  }
  for (std::size_t i = 0; i < wildcards; ++i) {
    BindingSpec b;  // accounts "*"
    random_apps(b, rng);
    random_severity(b, rng);
    random_verbosity(b, rng);
    backend().bindings.push_back(std::move(b));
  }
  for (std::size_t i = 0; i < descendants; ++i) {
    BindingSpec b;
    const std::uint32_t n = static_cast<std::uint32_t>(rng() % account_space);
    b.accounts = {i < org_bindings ? org_name(n) : grp_name(n)};
    b.include_descendants = true;
    random_apps(b, rng);
    random_severity(b, rng);
    random_verbosity(b, rng);
    backend().bindings.push_back(std::move(b));
  }
  for (std::size_t i = 0; i < per_account; ++i) {
    BindingSpec b;
    const std::uint32_t n = static_cast<std::uint32_t>(rng() % account_space);
    b.accounts = {account_name(n)};
    bound.insert(n);
    b.include_descendants = rng() % 20 == 0;  // an account with sub-accounts
    random_apps(b, rng);
    random_severity(b, rng);
    random_verbosity(b, rng);
    backend().bindings.push_back(std::move(b));
  }
  if (bound.empty()) bound.insert(0);
  bound_accounts.assign(bound.begin(), bound.end());
  std::sort(bound_accounts.begin(), bound_accounts.end());
  return backends;
}

void make_events(Workload& w) {
  std::mt19937_64 rng(0xe7e7 + w.bindings);
  ingest::EventLineParser parser;
  ingest::ParsedEvent parsed;
  std::vector<std::byte> record;
  std::vector<std::size_t> offsets;
  std::vector<std::size_t> sizes;
  for (std::size_t i = 0; i < kEvents; ++i) {
    const std::size_t drawn_from =
        w.hot_accounts != 0 ? std::min(w.hot_accounts, w.bound_accounts.size()) : w.bound_accounts.size();
    const std::uint32_t n = w.bound_accounts[rng() % drawn_from];
    const std::string line =
        "{\"id\":\"ev-" + std::to_string(i) + "\",\"severity\":\"" +
        std::string(event::kSeverityNames[rng() % event::kSeverityCount]) + "\",\"verbosity\":\"" +
        std::string(event::kVerbosityNames[rng() % event::kVerbosityCount]) + "\",\"account_id\":\"" +
        account_name(n) + "\",\"account_tree\":[\"" + org_name(n) + "\",\"" + grp_name(n) +
        "\"],\"app_name\":\"" + app_name(static_cast<std::uint32_t>(rng() % 100)) +
        "\",\"app_version\":\"1.2.3\",\"node\":\"gw-01\",\"body\":{\"attrs\":{\"type\":\"call-end\",\"duration\":" +
        std::to_string(rng() % 100) + "}}}";
    if (auto problem = parser.parse(line, parsed)) throw std::runtime_error(*problem);
    if (auto problem = ingest::encode_record(parsed, record)) throw std::runtime_error(*problem);
    offsets.push_back(w.records.size());
    sizes.push_back(record.size());
    w.records.insert(w.records.end(), record.begin(), record.end());
  }
  w.events.resize(kEvents);
  for (std::size_t i = 0; i < kEvents; ++i) {
    const std::span<const std::byte> bytes(w.records.data() + offsets[i], sizes[i]);
    w.record_spans.push_back(bytes);
    if (event::decode(bytes, w.events[i]) != event::DecodeError::none) throw std::runtime_error("decode failed");
  }
}

// bench/configs/100-bindings.json, the router benchmark's config: each of
// app000..app099 bound (any account, verbosity trace and up) to one of four
// backends in turn.
std::vector<BackendSpec> router_config_backends(std::vector<std::uint32_t>& bound_accounts) {
  std::vector<BackendSpec> backends(4);
  for (std::size_t i = 0; i < backends.size(); ++i) backends[i].name = "apps-" + std::to_string(i);
  for (std::uint32_t app = 0; app < 100; ++app) {
    BindingSpec b;
    b.apps = {app_name(app)};
    b.verbosity = {{event::Verbosity::trace}, false, false};
    backends[app % 4].bindings.push_back(std::move(b));
  }
  bound_accounts.resize(100000);  // events over acct-000000..acct-099999, as ringroute bench makes them
  for (std::uint32_t n = 0; n < bound_accounts.size(); ++n) bound_accounts[n] = n;
  return backends;
}
constexpr std::size_t kRouterConfig = 0;  // a `bindings` value: the router benchmark's config

// One workload at a time (a million bindings' specs take a few hundred MB).
Workload& workload(std::size_t bindings, bool with_topics = true, std::size_t hot_accounts = 0) {
  static std::unique_ptr<Workload> current;
  if (!current || current->bindings != bindings || current->with_topics != with_topics ||
      current->hot_accounts != hot_accounts) {
    current.reset();
    current = std::make_unique<Workload>();
    current->bindings = bindings;
    current->with_topics = with_topics;
    current->hot_accounts = hot_accounts;
    current->backends = bindings == kRouterConfig ? router_config_backends(current->bound_accounts)
                                                  : make_backends(bindings, with_topics, current->bound_accounts);
    make_events(*current);
  }
  return *current;
}

struct Compiled {
  std::size_t bindings = 0;
  bool with_topics = true;
  std::unique_ptr<const matcher::Matcher> matcher;
};
// `hot_accounts` only picks the workload made if one must be (the compiled
// form does not depend on it), so a caller's workload stays the current one.
const matcher::Matcher& compiled(std::size_t bindings, bool with_topics = true, std::size_t hot_accounts = 0) {
  static Compiled current;
  if (!current.matcher || current.bindings != bindings || current.with_topics != with_topics) {
    current.matcher.reset();
    current.matcher = matcher::Matcher::compile(workload(bindings, with_topics, hot_accounts).backends);
    current.bindings = bindings;
    current.with_topics = with_topics;
  }
  return *current.matcher;
}

// Matches kBatch events per iteration, walking the events with `stride`;
// returns the events matched and adds the per-event counters.
double run_matches(benchmark::State& state, std::size_t stride) {
  const auto bindings = static_cast<std::size_t>(state.range(0));
  const bool with_topics = state.range(1) != 0;
  Workload& w = workload(bindings, with_topics);
  const matcher::Matcher& m = compiled(bindings, with_topics);
  matcher::MatchScratch scratch;
  matcher::BackendSet out;
  out.resize(m.backend_count());
  std::size_t next = 0;
  std::uint64_t matched = 0;
  for (auto _ : state) {
    for (std::size_t i = 0; i < kBatch; ++i) {
      m.match(w.events[next], scratch, out);
      next = (next + stride) & (kEvents - 1);
      matched += out.size();
      out.clear();
    }
  }
  benchmark::DoNotOptimize(matched);
  const auto events = static_cast<double>(state.iterations()) * kBatch;
  state.SetItemsProcessed(static_cast<std::int64_t>(events));
  state.counters["matched_per_event"] = static_cast<double>(matched) / events;
  state.counters["bound_accounts"] = static_cast<double>(w.bound_accounts.size());
  state.counters["memory_MiB"] = static_cast<double>(m.memory_bytes()) / (1024.0 * 1024.0);
  return events;
}

void BM_Match(benchmark::State& state) {
  const double events = run_matches(state, 1);
  state.counters["ns_per_event"] =
      benchmark::Counter(events, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
// Second argument: 1 = the mix with its few topic patterns, 0 = the same
// mix without them (shows what the topic walk costs).
BENCHMARK(BM_Match)->ArgNames({"bindings", "topics"})->ArgsProduct({{10, 1000, 100000, 1000000}, {1, 0}})
    ->UseRealTime();  // ns_per_event is a rate: over wall time, as DESIGN.md measures

// match_batch over runs of kBatch consecutive events. With `decode_first`
// each run of records is decoded (untimed) just before, as the router's
// worker does, so the events are in cache and only the compiled form's lines
// come from memory; without it the events were decoded long before, and
// walking 30 MiB of them costs each event a few cache misses the router
// does not pay.
void run_batches(benchmark::State& state, bool decode_first, std::size_t hot_accounts = 0) {
  const auto bindings = static_cast<std::size_t>(state.range(0));
  const bool with_topics = state.range(1) != 0;
  Workload& w = workload(bindings, with_topics, hot_accounts);
  const matcher::Matcher& m = compiled(bindings, with_topics, hot_accounts);
  matcher::MatchScratch scratch;
  std::vector<matcher::BackendSet> outs(kBatch);
  for (auto& out : outs) out.resize(m.backend_count());
  std::vector<event::EventView> decoded(kBatch);
  std::size_t next = 0;
  std::uint64_t matched = 0;
  for (auto _ : state) {
    const event::EventView* views = w.events.data() + next;
    if (decode_first) {
      for (std::size_t i = 0; i < kBatch; ++i) {
        if (event::decode(w.record_spans[next + i], decoded[i]) != event::DecodeError::none) std::abort();
      }
      views = decoded.data();
    }
    const auto start = std::chrono::steady_clock::now();
    m.match_batch(std::span<const event::EventView>(views, kBatch), scratch, outs.data());
    for (auto& out : outs) {
      // As the router reads a set: each matched backend in config order.
      out.for_each([&](std::uint32_t) { ++matched; });
      out.clear();
    }
    if (decode_first) {
      state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    next = (next + kBatch) & (kEvents - 1);
  }
  benchmark::DoNotOptimize(matched);
  const auto events = static_cast<double>(state.iterations()) * kBatch;
  state.SetItemsProcessed(static_cast<std::int64_t>(events));
  state.counters["matched_per_event"] = static_cast<double>(matched) / events;
  state.counters["topic_dfas"] = static_cast<double>(m.topic_dfa_count());
  state.counters["topic_walks"] = static_cast<double>(m.topic_walk_count());
  state.counters["ns_per_event"] =
      benchmark::Counter(events, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
void BM_MatchBatch(benchmark::State& state) { run_batches(state, false); }
void BM_MatchDecoded(benchmark::State& state) { run_batches(state, true); }
BENCHMARK(BM_MatchBatch)->ArgNames({"bindings", "topics"})->ArgsProduct({{10, 1000, 100000, 1000000}, {1, 0}})
    ->UseRealTime();  // ns_per_event is a rate: over wall time, as DESIGN.md measures
// bindings:0 is bench/configs/100-bindings.json (see router_config_backends).
BENCHMARK(BM_MatchBatch)->ArgNames({"bindings", "topics"})->Args({kRouterConfig, 0})
    ->UseRealTime();  // ns_per_event is a rate: over wall time, as DESIGN.md measures
// Timed by hand around the match (wall time, two steady_clock reads of
// about 25 ns a run of 256): PauseTiming() and ResumeTiming() around the
// decoding cost 1.4 us a run inside the timed span on this VM (they read
// the process's CPU clock, a system call), 5.4 ns an event that were not
// the matcher's.
BENCHMARK(BM_MatchDecoded)->ArgNames({"bindings", "topics"})->ArgsProduct({{10, 1000, 100000, 1000000}, {1, 0}})
    ->UseManualTime();
BENCHMARK(BM_MatchDecoded)->ArgNames({"bindings", "topics"})->Args({kRouterConfig, 0})->UseManualTime();
// The same compiled form, with events over 64 of its accounts only, so the
// lines they read stay in cache: what the walk costs in instructions alone
// (against BM_MatchDecoded, what the misses add).
void BM_MatchDecodedHot(benchmark::State& state) { run_batches(state, true, 64); }
BENCHMARK(BM_MatchDecodedHot)->ArgNames({"bindings", "topics"})->ArgsProduct({{100000, 1000000}, {1, 0}})
    ->UseManualTime();
void BM_MatchBatchFixed(benchmark::State& state) { BM_MatchBatch(state); }
BENCHMARK(BM_MatchBatchFixed)
    ->ArgNames({"bindings", "topics"})
    ->ArgsProduct({{10, 1000, 100000, 1000000}, {1, 0}})
    ->Iterations(kFixedIterations)
    ->UseRealTime();
BENCHMARK(BM_MatchBatchFixed)
    ->ArgNames({"bindings", "topics"})
    ->Args({kRouterConfig, 0})
    ->Iterations(kFixedIterations)
    ->UseRealTime();

// Fixed work for callgrind (see the top of the file); spread over the whole set.
void BM_MatchFixed(benchmark::State& state) { run_matches(state, 7919); }
BENCHMARK(BM_MatchFixed)
    ->ArgNames({"bindings", "topics"})
    ->ArgsProduct({{10, 1000, 100000, 1000000}, {1, 0}})
    ->Iterations(kFixedIterations)
    ->UseRealTime();

void BM_Compile(benchmark::State& state) {
  const auto bindings = static_cast<std::size_t>(state.range(0));
  Workload& w = workload(bindings);
  std::size_t memory = 0;
  std::size_t nodes = 0;
  for (auto _ : state) {
    // Timed by hand: freeing the form is not compile time, and pausing the
    // timer around it cost a system call inside the timed span (1.3 us an
    // iteration, a fifth of compiling 10 bindings).
    const auto start = std::chrono::steady_clock::now();
    auto m = matcher::Matcher::compile(w.backends);
    benchmark::DoNotOptimize(m.get());
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    memory = m->memory_bytes();
    nodes = m->node_count();
    m.reset();
  }
  state.counters["bindings"] = static_cast<double>(bindings);
  state.counters["memory_bytes"] = static_cast<double>(memory);
  state.counters["memory_MiB"] = static_cast<double>(memory) / (1024.0 * 1024.0);
  state.counters["bytes_per_binding"] = static_cast<double>(memory) / static_cast<double>(bindings);
  state.counters["nodes"] = static_cast<double>(nodes);
}
BENCHMARK(BM_Compile)->Arg(10)->Arg(1000)->Arg(100000)->Arg(1000000)->Unit(benchmark::kMicrosecond)->UseManualTime();

}  // namespace
