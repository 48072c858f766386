#pragma once
// Events into a ring as the router tests make them: through the producer
// library, each with the trusted body {"k":1}.

#include <string>

#include "ringroute/producer.hpp"

namespace ringroute::testing {

// `count` events into `ring`; false when the ring can't be opened or an
// emit is refused.
inline bool emit_events(const std::string& ring, int count) {
  EventProducer producer;
  if (producer.open(ring) != RR_OK) return false;
  rr_event event{};
  event.body = to_rr_str(R"({"k":1})");
  for (int i = 0; i < count; ++i) {
    if (producer.emit(event, RR_EMIT_BODY_TRUSTED) != RR_OK) return false;
  }
  return true;
}

}  // namespace ringroute::testing
