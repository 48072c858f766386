#pragma once
// Events for tests, written as the NDJSON lines `route` reads, turned into the
// ring record and decoded: tests match exactly what the router would.

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "ringroute/event/event.hpp"
#include "ringroute/ingest/event_json.hpp"

namespace ringroute::testing {

class JsonEvent {
 public:
  // The view stays valid until the next call.
  const event::EventView& operator()(std::string_view line) {
    if (auto problem = parser_.parse(line, parsed_)) throw std::invalid_argument(*problem + ": " + std::string(line));
    if (auto problem = ingest::encode_record(parsed_, record_)) throw std::invalid_argument(*problem);
    if (event::decode(record_, view_) != event::DecodeError::none) throw std::logic_error("decode failed");
    return view_;
  }

 private:
  ingest::EventLineParser parser_;
  ingest::ParsedEvent parsed_;
  std::vector<std::byte> record_;
  event::EventView view_;
};

// One event kept alive with its record (for fixed events that outlive a
// parser). Throws std::invalid_argument for a bad line.
struct OwnedEvent {
  std::vector<std::byte> record;
  event::EventView view;
  explicit OwnedEvent(std::string_view line) {
    ingest::EventLineParser parser;
    ingest::ParsedEvent parsed;
    if (auto problem = parser.parse(line, parsed)) throw std::invalid_argument(*problem);
    if (auto problem = ingest::encode_record(parsed, record)) throw std::invalid_argument(*problem);
    if (event::decode(record, view) != event::DecodeError::none) throw std::logic_error("decode failed");
  }
};

// One event made from `input` (and its account tree) as the producer
// library encodes it, without the library's checks: bytes reach the sinks
// as they are, as from a producer that marks its body trusted or writes
// the ring itself. `view` reads `record`. Throws std::logic_error where the
// record does not decode.
struct EncodedEvent {
  std::vector<std::byte> record;
  event::EventView view;
  explicit EncodedEvent(const event::EventInput& input, const std::vector<std::string_view>& tree = {}) {
    record.resize(event::encoded_size(input, tree));
    event::encode(input, tree, !tree.empty(), record.data());
    if (event::decode(record, view) != event::DecodeError::none) throw std::logic_error("decode failed");
  }
  EncodedEvent(const EncodedEvent&) = delete;
  EncodedEvent& operator=(const EncodedEvent&) = delete;
};

}  // namespace ringroute::testing
