// `ringroute route` and `ringroute validate`: how users test a config
// (SEMANTICS.md section 7). Events go through the same record encoding and
// the same compiled matcher as in the router.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>

#include "ringroute/ingest/event_json.hpp"
#include "ringroute/matcher/matcher.hpp"
#include "ringroute/ring/layout.hpp"
#include "ringroute/sinks/backend.hpp"
#include "ringroute/tools/commands.hpp"
#include "ringroute/tools/config.hpp"
#include "ringroute/tools/json_text.hpp"

namespace ringroute::tools {
namespace {

struct RouteArgs {
  std::string config;
  std::string events;  // empty: stdin
  std::string ring;    // whose size limits a record
  bool ring_given = false;  // else the config's first
};

int run_route(const RouteArgs& args) {
  const ConfigResult loaded = load_config_file(args.config);
  if (report_config_and_tls_file_errors(loaded)) return 2;
  const auto matcher = matcher::Matcher::compile(loaded.config->matching);
  // A producer can't emit a record past an eighth of its ring (RR_TOO_BIG):
  // such an event reaches no backend, whatever its bindings say. Judged
  // against the ring the events go into: `--ring`, else the first, where
  // `emit --config` writes. (Against the largest, events that `emit
  // --config` then refused were said to reach their backends.)
  const auto& rings = loaded.config->rings;
  const auto ring = !args.ring_given ? rings.begin()
                                      : std::find_if(rings.begin(), rings.end(),
                                                     [&](const auto& r) { return r.name == args.ring; });
  if (ring == rings.end()) {
    std::string names;
    for (const auto& r : rings) names += (names.empty() ? "" : ", ") + r.name;
    std::fprintf(stderr, "ringroute route: --ring %s: the config has no such ring (it has %s)\n", args.ring.c_str(),
                 names.c_str());
    return 2;
  }
  const std::uint64_t max_record = ring->size_bytes / 8;

  const bool from_stdin = args.events.empty() || args.events == "-";  // "-" as the tools it sits among read it
  std::optional<InputFile> file;
  if (!from_stdin) {
    file.emplace(args.events);
    if (!file->problem().empty()) {
      std::fprintf(stderr, "ringroute route: cannot read %s: %s\n", args.events.c_str(), file->problem().c_str());
      return 2;
    }
  }
  std::istream& in = file ? file->stream() : std::cin;

  ingest::EventLineParser parser;
  ingest::ParsedEvent parsed;
  std::vector<std::byte> record;
  event::EventView view;
  matcher::MatchScratch scratch;
  matcher::BackendSet matched;
  matched.resize(matcher->backend_count());
  std::string out;
  bool any_bad = false;
  auto flush = [&] {
    std::fwrite(out.data(), 1, out.size(), stdout);
    out.clear();
  };
  // Where an event has no id or node, the producer library stamps them in
  // (an id of its name and sequence, this host's name): the record is
  // judged with stand-ins as long as the default name's ids can run
  // ("PID.TIME[.OPENS]-SEQUENCE", each at its longest) and this host's
  // name, so an event at the edge is said to be, not passed.
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "localhost");
  // PID (7 digits where pid_max is 4194304) "." time "." opens, in base 36.
  const std::string stand_in_id =
      std::string(7, '9') + "." + std::string(13, 'z') + "." + std::string(13, 'z') + "-" + std::string(20, '9');
  const std::string stand_in_node = host;
  // Matching sees the event as the router will: with this host's name as
  // its node where it gives none (a filter on `node` matched no line
  // without one, while every emitted event has it), and without an id
  // where it gives none (a producer's id is not known before it emits);
  // its size takes the id's stand-in too.
  ingest::ParsedEvent stamped;
  std::vector<std::byte> stamped_record;
  for_each_ndjson_line(in, [&](std::string_view line, std::size_t number) {
    std::optional<std::string> problem = parser.parse(line, parsed);
    const auto given = [&](event::StringField field) { return (parsed.input.present & event::bit(field)) != 0; };
    const bool producer_adds_id = !problem && !given(event::StringField::id);
    const bool producer_adds = producer_adds_id || (!problem && !given(event::StringField::node));
    if (!problem && !given(event::StringField::node)) parsed.input.set(event::StringField::node, stand_in_node);
    if (!problem) problem = ingest::encode_record(parsed, record);
    if (!problem && event::decode(record, view) != event::DecodeError::none) {
      problem = "event could not be encoded as a record";
    }
    if (!problem && producer_adds_id) {
      stamped = parsed;
      stamped.input.set(event::StringField::id, stand_in_id);
      problem = ingest::encode_record(stamped, stamped_record);
    }
    const std::size_t record_bytes = producer_adds_id ? stamped_record.size() : record.size();
    if (const std::uint64_t bytes = ring::align_record(ring::kRecordHeaderBytes + record_bytes);
        !problem && bytes > max_record) {
      problem = "the event is a record of " + std::string(producer_adds ? "up to " : "") + std::to_string(bytes) +
                " bytes" + (producer_adds ? " (with the id and node a producer adds)" : "") + ", past the " +
                std::to_string(max_record) + " a producer may emit into ring " + ring->name +
                " (an eighth of its size_bytes): emit refuses it (RR_TOO_BIG)";
    }
    out += "{\"line\":" + std::to_string(number);
    if (problem) {
      any_bad = true;
      out += ",\"error\":" + json_quote(*problem) + "}\n";
    } else {
      matched.clear();
      matcher->match(view, scratch, matched);
      out += ",\"backends\":[";
      bool first = true;
      matched.for_each([&](std::uint32_t index) {
        if (!first) out += ',';
        first = false;
        out += json_quote(matcher->backend_name(index));
      });
      out += "]}\n";
    }
    if (out.size() > 1 << 16) flush();
  }, [&](std::size_t number, std::size_t length) {
    any_bad = true;
    out += "{\"line\":" + std::to_string(number) + ",\"error\":" + json_quote(too_long_line(length)) + "}\n";
  });
  flush();
  std::fflush(stdout);
  // getline stops at a read error as at the end: the lines after it were
  // never judged, so this is an I/O error, not a clean run.
  if (read_failed(in)) {
    std::fprintf(stderr, "ringroute route: reading %s failed: %s\n",
                 from_stdin ? "stdin" : args.events.c_str(), std::strerror(errno));
    return 2;
  }
  return any_bad ? 1 : 0;
}

int run_validate(const std::string& path) {
  const ConfigResult loaded = load_config_file(path);
  if (report_config_and_tls_file_errors(loaded)) return 2;
  const Config& config = *loaded.config;
  std::size_t enabled = 0, bindings = 0;
  for (std::size_t i = 0; i < config.backends.size(); ++i) {
    enabled += config.backends[i].enabled ? 1 : 0;
    bindings += config.matching[i].bindings.size();
  }
  std::printf("%s: ok (%zu backends, %zu enabled, %zu bindings, %zu ring%s)\n", path.c_str(),
              config.backends.size(), enabled, bindings, config.rings.size(), config.rings.size() == 1 ? "" : "s");
  // Valid, as DESIGN.md has it, but `run` would refuse it: said now.
  for (std::size_t i = 0; i < config.backends.size(); ++i) {
    if (std::string why = sinks::missing_sink(config.backends[i].type); config.backends[i].enabled && !why.empty()) {
      std::fprintf(stderr, "note: backends[%zu] (%s): %s\n", i, config.backends[i].name.c_str(), why.c_str());
    }
  }
  for (const std::string& note : config_notes(config)) std::fprintf(stderr, "note: %s\n", note.c_str());
  return 0;
}

}  // namespace

Run add_route(CLI::App& app) {
  auto args = std::make_shared<RouteArgs>();
  CLI::App* cmd = app.add_subcommand(
      "route", "print which backends each NDJSON event (from EVENTS or stdin) would reach");
  cmd->add_option("--config", args->config, "config file")->required();
  cmd->add_option("events", args->events, "NDJSON events (stdin when absent or -)");
  CLI::Option* ring = cmd->add_option(
      "--ring", args->ring,
      "the config's ring the events go into, whose size limits a record (default: the first, where emit --config "
      "writes)");
  return [args, ring] {
    // Given empty, a name no ring has: said, not taken as the default.
    args->ring_given = ring->count() != 0;
    return run_route(*args);
  };
}

Run add_validate(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto flag_path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("validate", "check a config file; every error with its JSON path");
  cmd->add_option("file", *path, "config file");
  cmd->add_option("--config", *flag_path, "config file (same as FILE)");
  return [path, flag_path] {
    if (path->empty() == flag_path->empty()) {
      std::fprintf(stderr, "ringroute validate: give the config file once, as FILE or --config FILE\n");
      return 2;
    }
    return run_validate(path->empty() ? *flag_path : *path);
  };
}

}  // namespace ringroute::tools
