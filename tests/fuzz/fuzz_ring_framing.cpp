// The ring's framing as the router reads it. Any process that can write the
// segment controls every byte of it: record headers, the producers' tail,
// the released position, an unfinished release and the saved framing
// jumps. A consumer made on arbitrary contents, then poll(), reread() and
// release() in turn: no read or write outside the ring, no record handed
// out that leaves it, no release past what was read, and an end (each
// round reads, or the position stalls and is judged: a claim the consumer
// takes for dead at once is skipped by its length, checked).
//
// Input: head, tail and releasing_to (8 bytes each), the jump count and
// 8 jumps (from, to), then the ring's bytes from position 0 (the rest
// zero).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ringroute/event/event.hpp"
#include "ringroute/ring/ring.hpp"
#include "ringroute/ring/segment.hpp"

namespace {

using namespace ringroute;

constexpr std::uint64_t kCapacity = 4096;

const std::string& ring_name() {
  static const std::string name = [] {
    std::string made = "rr-fuzz-framing-" + std::to_string(::getpid());
    ring::SegmentOptions options;
    options.capacity_bytes = kCapacity;
    options.mode = 0600;
    (void)ring::Segment::create_or_attach(made, options);
    std::atexit([] { ring::Segment::remove("rr-fuzz-framing-" + std::to_string(::getpid())); });
    return made;
  }();
  return name;
}

std::uint64_t take64(const std::uint8_t*& data, std::size_t& size) {
  std::uint64_t v = 0;
  const std::size_t n = size < 8 ? size : 8;
  std::memcpy(&v, data, n);
  data += n;
  size -= n;
  return v;
}

// A ring position as a writer may set one, short of the 64-bit wrap: the
// positions count bytes from the ring's making and never come near 2^64
// (584 years at 1 GB/s), so the consumer compares them unsigned and does
// not release across the wrap. A writer that puts them there stalls its
// own ring (nothing is released again), as holding a claim does; it reads
// and writes nothing outside the ring, which the rounds below still check
// for every other value.
std::uint64_t take_position(const std::uint8_t*& data, std::size_t& size) {
  return take64(data, size) & ((std::uint64_t{1} << 62) - 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ring::Segment segment;
  if (ring::Segment::attach(ring_name(), segment, nullptr) != ring::Status::ok) std::abort();
  ring::SegmentHeader& header = segment.header();
  std::byte* const ring_bytes = segment.data();
  header.head.store(take_position(data, size));
  header.tail.store(take_position(data, size));
  header.releasing_to.store(take_position(data, size));
  header.head_cache.store(header.head.load());
  header.framing_jump_count.store(take64(data, size) % 64);
  for (auto& jump : header.framing_jumps) {
    jump.from.store(take_position(data, size));
    jump.to.store(take_position(data, size));
  }
  std::memset(ring_bytes, 0, kCapacity);
  std::memcpy(ring_bytes, data, size < kCapacity ? size : kCapacity);
  header.consumer_pid.store(0);

  // A claim judged dead at once: the walk over a dead claim (its length as
  // the writer left it, checked against the room claimed) runs here too.
  ring::Consumer consumer(std::move(segment), ring::ConsumerOptions{std::chrono::milliseconds(0)});
  const std::byte* const begin = consumer.segment().data();
  const std::byte* const end = begin + kCapacity;
  event::EventView view;
  auto check = [&](std::span<const std::byte> record, std::uint64_t record_end) {
    if (record.data() < begin || record.data() + record.size() > end) std::abort();
    if (record_end > consumer.read_position()) std::abort();
    (void)event::decode(record, view);  // the router decodes every record it is handed
  };
  // A ring holds at most kCapacity / 8 records, each round reads some or
  // ends the walk; a position that stalls is polled on until the consumer
  // reads the clock and judges the claim there (every 64th poll of it).
  int stalled_rounds = 0;
  for (int round = 0; round < 64 + 80 && stalled_rounds < 80; ++round) {
    const std::uint64_t released = consumer.released_position();
    const std::uint64_t before = consumer.read_position();
    const std::size_t polled = consumer.poll(check, 16);
    const std::uint64_t read_to = consumer.read_position();
    // What a backend behind reads back: the same records again.
    (void)consumer.reread(released, read_to, check, 1024);
    consumer.release(read_to);
    if (consumer.released_position() > read_to) std::abort();
    stalled_rounds = polled == 0 && read_to == before ? stalled_rounds + 1 : 0;
  }
  return 0;
}
