// `ringroute emit`: one event from flags, or NDJSON events on stdin.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "ringroute/ingest/body_check.hpp"
#include "ringroute/ingest/event_json.hpp"
#include "ringroute/perf/block.hpp"
#include "ringroute/producer.hpp"
#include "ringroute/ring/segment.hpp"
#include "ringroute/tools/commands.hpp"
#include "ringroute/tools/config.hpp"
#include "ringroute/tools/event_args.hpp"
#include "ringroute/tools/json_text.hpp"

namespace ringroute::tools {

namespace {

struct EmitArgs {
  std::string ring = "ringroute";
  std::string config;    // when given, the ring is its first
  std::string instance;  // when given, the first ring its router named
  std::int64_t wait_ms = 1000;
  std::optional<std::string> severity, verbosity, account_id, account_tree, app_name, app_version, topic, id,
      node, stream_name, event_type, tag, body;
};

// The flags, as one NDJSON line, so both paths share the parser's rules.
// --account-tree's ids, empty ones kept (a trailing comma's too), so that
// tree_problem() can name them.
std::vector<std::string> tree_ids(const std::string& text) {
  std::vector<std::string> ids;
  std::size_t start = 0;
  for (std::size_t comma; (comma = text.find(',', start)) != std::string::npos; start = comma + 1) {
    ids.push_back(text.substr(start, comma - start));
  }
  ids.push_back(text.substr(start));
  return ids;
}

std::optional<std::string> tree_problem(const std::string& text) {
  if (text.empty()) return "--account-tree: empty (leave it out for an account without ancestors)";
  const std::vector<std::string> ids = tree_ids(text);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i].empty()) {
      return "--account-tree: id " + std::to_string(i + 1) + " of " + std::to_string(ids.size()) + " in " +
             json_quote(text) + " is empty (ids are separated by single commas, root first)";
    }
  }
  return std::nullopt;
}

// The flags that give one string member of the line.
struct StringFlag {
  const char* flag;
  const char* member;
  std::optional<std::string> EmitArgs::*value;
};
constexpr StringFlag kStringFlags[] = {
    {"--severity", "severity", &EmitArgs::severity},       {"--verbosity", "verbosity", &EmitArgs::verbosity},
    {"--account-id", "account_id", &EmitArgs::account_id}, {"--app-name", "app_name", &EmitArgs::app_name},
    {"--app-version", "app_version", &EmitArgs::app_version}, {"--topic", "topic", &EmitArgs::topic},
    {"--id", "id", &EmitArgs::id},                         {"--node", "node", &EmitArgs::node},
    {"--stream-name", "stream_name", &EmitArgs::stream_name}, {"--event-type", "event_type", &EmitArgs::event_type},
    {"--tag", "tag", &EmitArgs::tag},
};

// A flag's value that is not UTF-8, named with its byte. Quoted into the
// line as it was, its bad bytes became U+FFFD: a changed value emitted,
// that the same event as an NDJSON line is refused for.
std::optional<std::string> utf8_problem(const EmitArgs& a) {
  auto check = [](const char* flag, const std::string& value) -> std::optional<std::string> {
    const std::size_t at = ingest::first_invalid_utf8(value);
    if (at == value.size()) return std::nullopt;
    return std::string(flag) + ": byte " + std::to_string(at) + ": not valid UTF-8 (a field is UTF-8 text)";
  };
  for (const StringFlag& f : kStringFlags) {
    if (const auto& value = a.*f.value) {
      if (auto why = check(f.flag, *value)) return why;
    }
  }
  return a.account_tree ? check("--account-tree", *a.account_tree) : std::nullopt;
}

std::string flags_as_json(const EmitArgs& a) {
  std::string line = "{";
  for (const StringFlag& f : kStringFlags) {
    const auto& value = a.*f.value;
    if (!value) continue;
    if (line.size() > 1) line += ',';
    line += json_quote(f.member) + ":" + json_quote(*value);
  }
  if (a.account_tree) {
    if (line.size() > 1) line += ',';
    line += "\"account_tree\":[";
    const std::vector<std::string> ids = tree_ids(*a.account_tree);
    for (std::size_t i = 0; i < ids.size(); ++i) line += (i == 0 ? "" : ",") + json_quote(ids[i]);
    line += ']';
  }
  if (a.body) {
    if (line.size() > 1) line += ',';
    line += "\"body\":" + *a.body;
  }
  return line + "}";
}

// An error of the line made from the flags names the line's member
// (`verbosity: unknown level`); the user wrote a flag, and is told of it.
std::string said_of_flags(const std::string& why) {
  auto with_flag = [&](std::string_view member, std::string_view flag) -> std::optional<std::string> {
    if (!why.starts_with(member) || why.compare(member.size(), 2, ": ") != 0) return std::nullopt;
    return std::string(flag) + why.substr(member.size());
  };
  for (const StringFlag& f : kStringFlags) {
    if (auto said = with_flag(f.member, f.flag)) return *said;
  }
  if (auto said = with_flag("account_tree", "--account-tree")) return *said;
  if (auto said = with_flag("body", "--body")) return *said;
  return why;
}

bool any_field(const EmitArgs& a) {
  return a.severity || a.verbosity || a.account_id || a.account_tree || a.app_name || a.app_version || a.topic ||
         a.id || a.node || a.stream_name || a.event_type || a.tag || a.body;
}

int run_emit(const EmitArgs& args) {
  ingest::EventLineParser parser;
  ingest::ParsedEvent parsed;
  std::string flags_line;
  if (any_field(args)) {
    // The flags are judged before the ring is opened, so a usage error says
    // so even where no router runs. --body is checked on its own: pasted
    // into the event line unchecked, `{},"id":"x"` set the id and a fault's
    // byte counted in a line the user never wrote.
    if (args.body) {
      if (const auto problem = ingest::check_json_object(*args.body)) {
        const std::string what = problem->valid_json ? std::string("expected a JSON object")
                                                     : "byte " + std::to_string(problem->byte_offset) + ": " +
                                                           problem->reason;
        std::fprintf(stderr, "ringroute emit: --body: %s\n", what.c_str());
        return 2;
      }
    }
    if (auto why = utf8_problem(args)) {
      std::fprintf(stderr, "ringroute emit: %s\n", why->c_str());
      return 2;
    }
    if (args.account_tree) {
      if (auto why = tree_problem(*args.account_tree)) {
        std::fprintf(stderr, "ringroute emit: %s\n", why->c_str());
        return 2;
      }
    }
    flags_line = flags_as_json(args);
    if (auto why = parser.parse(flags_line, parsed)) {
      std::fprintf(stderr, "ringroute emit: %s\n", said_of_flags(*why).c_str());
      return 2;  // a bad flag is a usage error
    }
  }
  std::string ring = args.ring;
  if (!args.config.empty()) {
    const ConfigResult loaded = load_config_file(args.config);
    if (report_config_errors(loaded)) return 2;
    ring = loaded.config->rings.front().name;
  } else if (!args.instance.empty()) {
    std::string error;
    const auto block = perf::BlockMapping::open_read_only(args.instance, &error);
    if (!block) {
      std::fprintf(stderr, "ringroute emit: %s\n", error.c_str());
      return 2;
    }
    // The block keeps the slots of rings an earlier config named: the first
    // whose consumer is the block's router (one that crashed stays it),
    // else (stopped, or never started) the first still there.
    const std::int32_t router = block->block().header.router_pid.load(std::memory_order_relaxed);
    std::optional<std::string> consumed, present;
    for (const std::string& name : block->ring_names()) {
      ring::Segment segment;
      if (ring::Segment::attach(name, segment, nullptr, ring::Segment::Access::read_only) != ring::Status::ok) continue;
      if (!present) present = name;
      // Relaxed: only compared with the router's pid, never used to read
      // the ticks published with it (which is why elsewhere it is acquire).
      if (router > 0 && segment.header().consumer_pid.load(std::memory_order_relaxed) == router) {
        consumed = name;
        break;
      }
    }
    if (!consumed && !present) {
      std::fprintf(stderr, "ringroute emit: instance %s has no ring in /dev/shm (has its router run?)\n",
                   args.instance.c_str());
      return 2;
    }
    ring = consumed ? *consumed : *present;
  }
  EventProducer producer;
  rr_producer_options options{};
  // Saturated: --wait-ms past what int64 nanoseconds hold waits for good.
  constexpr std::int64_t kMaxMillis = std::numeric_limits<std::int64_t>::max() / 1'000'000;
  options.wait_timeout_ns = args.wait_ms >= kMaxMillis ? std::numeric_limits<std::int64_t>::max()
                                                       : static_cast<std::int64_t>(args.wait_ms) * 1'000'000;
  rr_error error{};
  if (rr_status s = producer.open(ring, &options, &error); s != RR_OK) {
    std::fprintf(stderr, "ringroute emit: %s\n", error.message);
    return 2;
  }
  std::vector<rr_str> tree;
  // Emits `parsed`, the event parser.parse() just read.
  auto emit_parsed = [&]() -> std::optional<std::string> {
    if (parsed.has_timestamp && parsed.input.timestamp_ns == 0) {
      // Sent as 0 it would be stamped with the time of the emit.
      return std::string("the event's time is 1970-01-01T00:00:00Z (0 ns since the epoch), which can't be sent: "
                         "the producer library takes 0 as \"stamp it at emit\"");
    }
    const rr_event event = to_rr_event(parsed, tree);
    rr_error e{};
    if (rr_status s = producer.emit(event, 0, &e); s != RR_OK) {
      // "event 0: body: byte 3: ..." -> "body: byte 3: ..."
      std::string_view message = e.message;
      if (message.starts_with("event 0: ")) message.remove_prefix(9);
      return std::string(message);
    }
    return std::nullopt;
  };

  if (any_field(args)) {
    if (auto why = emit_parsed()) {
      std::fprintf(stderr, "ringroute emit: %s\n", why->c_str());
      return 2;
    }
    return 0;
  }
  bool any_bad = false;
  for_each_ndjson_line(std::cin, [&](std::string_view line, std::size_t number) {
    std::optional<std::string> why = parser.parse(line, parsed);
    if (!why) why = emit_parsed();
    if (why) {
      any_bad = true;
      std::fprintf(stderr, "{\"line\":%zu,\"error\":%s}\n", number, json_quote(*why).c_str());
    }
  }, [&](std::size_t number, std::size_t length) {
    any_bad = true;
    std::fprintf(stderr, "{\"line\":%zu,\"error\":%s}\n", number, json_quote(too_long_line(length)).c_str());
  });
  // A failed read is an I/O error, not the end of the input.
  if (read_failed(std::cin)) {
    std::fprintf(stderr, "ringroute emit: reading stdin failed: %s\n", std::strerror(errno));
    return 2;
  }
  return any_bad ? 1 : 0;
}

}  // namespace

Run add_emit(CLI::App& app) {
  auto args = std::make_shared<EmitArgs>();
  CLI::App* cmd = app.add_subcommand(
      "emit", "write events into a ring: one from the flags, or NDJSON lines on stdin when no field flag is given");
  cmd->add_option("--ring", args->ring, "ring to write to (the name under /dev/shm)")
      ->capture_default_str()
      ->check(ring_name());
  CLI::Option* config = cmd->add_option("--config", args->config, "write to the first ring of this config file");
  config->excludes("--ring");
  cmd->add_option("--instance", args->instance, "write to the first ring of this instance's router")
      ->check(instance_name())
      ->excludes("--ring")
      ->excludes(config);
  cmd->add_option("--wait-ms", args->wait_ms, "how long to wait for room when the ring is full")
      ->capture_default_str()
      ->check(whole_number());
  cmd->add_option("--severity", args->severity, "ok, warning or critical");
  cmd->add_option("--verbosity", args->verbosity, "trace, debug, info, warn, error or fatal");
  cmd->add_option("--account-id", args->account_id, "the account");
  cmd->add_option("--account-tree", args->account_tree, "the account's ancestors, root first, comma-separated");
  cmd->add_option("--app-name", args->app_name, "the app");
  cmd->add_option("--app-version", args->app_version, "the app's version");
  cmd->add_option("--topic", args->topic, "routing key (default: derived)");
  cmd->add_option("--id", args->id, "event id (default: assigned)");
  cmd->add_option("--node", args->node, "node (default: the host name)");
  cmd->add_option("--stream-name", args->stream_name, "eventd stream name");
  cmd->add_option("--event-type", args->event_type, "eventd event type");
  cmd->add_option("--tag", args->tag, "eventd tag");
  cmd->add_option("--body", args->body, "the body, a JSON object");
  return [args] { return run_emit(*args); };
}

}  // namespace ringroute::tools
