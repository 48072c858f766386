// `ringroute stat` reading a perf block that holds anything: the block is
// shared memory that every process allowed to write it (the router, or
// whoever else got the mode's write bit) can fill as it likes, and a
// router killed mid-write leaves whatever it had. Each input patches two
// blocks that start as a running router's (rings, backends, counters,
// latencies, a said line): stat's --json snapshot must parse, and its live
// view (the first table, and the second with rates against the first)
// must print, whatever the names, counts, histograms and lines hold. The
// first ring is there: a real segment, whose header (positions, counters,
// producer slots, the consumer's pid) every producer may write as well.
//
// Input: patches of [target byte][offset, 3 bytes][length byte][bytes]:
// a target whose top two bits are set patches the ring's header, the
// offset taken modulo its bytes; any other, the block its low bit names,
// the offset taken modulo the block.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include <unistd.h>

#include "ringroute/perf/block.hpp"
#include "ringroute/ring/layout.hpp"
#include "ringroute/ring/segment.hpp"
#include "stat_views.hpp"

namespace {

using ringroute::perf::Block;

void set_name(char* field, std::size_t size, const char* name) {
  std::memset(field, 0, size);
  std::memcpy(field, name, std::min(size, std::strlen(name)));
}

// The first ring: made once, its header as made kept to start each input
// from.
struct FuzzRing {
  std::string name = "rr-fuzz-stat-" + std::to_string(::getpid());
  ringroute::ring::Segment segment;
  std::unique_ptr<std::byte[]> header_as_made{new std::byte[ringroute::ring::kHeaderBytes]};
  FuzzRing() {
    ringroute::ring::SegmentOptions options;
    options.capacity_bytes = 1 << 16;
    options.mode = 0600;
    segment = ringroute::ring::Segment::create_or_attach(name, options);
    std::memcpy(header_as_made.get(), header_bytes(), ringroute::ring::kHeaderBytes);
  }
  ~FuzzRing() { (void)ringroute::ring::Segment::remove(name); }  // at exit, as the static goes
  [[nodiscard]] std::byte* header_bytes() const { return reinterpret_cast<std::byte*>(&segment.header()); }
  static FuzzRing& ring() {
    static FuzzRing made;
    return made;
  }
};

// A running router's block: two rings, the first there and the second named
// where no ring is (stat attaches by name), three backends with figures.
void make_block(Block& block, std::uint64_t scale) {
  std::memset(static_cast<void*>(&block), 0, sizeof block);
  block.header.magic = ringroute::perf::kBlockMagic;
  block.header.router_pid.store(0x7ffffff0, std::memory_order_relaxed);  // no such process
  block.header.router_started_ns.store(1795452928123456789, std::memory_order_relaxed);
  block.header.created_ns.store(1795452928000000000, std::memory_order_relaxed);
  block.header.ring_count.store(2, std::memory_order_relaxed);
  block.header.backend_count.store(3, std::memory_order_relaxed);
  set_name(block.rings[0].name, sizeof block.rings[0].name, FuzzRing::ring().name.c_str());
  set_name(block.rings[1].name, sizeof block.rings[1].name, "rr-fuzz-no-such-ring-b");
  block.rings[1].replayed.add(3 * scale);
  const char* names[] = {"files", "collector", "syslog"};
  const char* types[] = {"file", "http", "socket"};
  for (int b = 0; b < 3; ++b) {
    auto& slot = block.backends[b];
    set_name(slot.name, sizeof slot.name, names[b]);
    set_name(slot.type, sizeof slot.type, types[b]);
    slot.in_config.store(1, std::memory_order_relaxed);
    slot.worker[0].matched.add(1000 * scale);
    slot.sink.pending_base.add(ringroute::perf::kPendingBaseSet);
    slot.sink.sent.add(990 * scale);
    slot.sink.bytes.add(400000 * scale);
    slot.sink.batches.add(10 * scale);
    slot.sink.retries.add(scale);
    slot.sink.dropped_failed.add(10 * scale);
    for (std::size_t i = 20; i < 60; ++i) slot.latency.buckets[i].add(scale * (i % 7));
  }
  ringroute::perf::write_said(block.backends[1].said, "HTTP 503 from http://127.0.0.1:9/: busy", 1795452928000000000,
                              ringroute::perf::boot_seconds());
  block.header.version.store(ringroute::perf::kBlockVersion, std::memory_order_release);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Zeroed, then made: a Block is 1.5 MB of atomics (no constructor runs).
  static Block* const blocks = [] {
    std::freopen("/dev/null", "w", stdout);  // the tables: printed, not read
    return static_cast<Block*>(::operator new(2 * sizeof(Block), std::align_val_t{alignof(Block)}));
  }();
  make_block(blocks[0], 1);
  make_block(blocks[1], 2);
  const FuzzRing& ring = FuzzRing::ring();
  std::memcpy(ring.header_bytes(), ring.header_as_made.get(), ringroute::ring::kHeaderBytes);
  for (std::size_t at = 0; at + 5 <= size;) {
    const bool ring_header = (data[at] & 0xc0) == 0xc0;
    char* const target = ring_header ? reinterpret_cast<char*>(ring.header_bytes())
                                     : reinterpret_cast<char*>(&blocks[data[at] & 1]);
    const std::size_t bytes = ring_header ? ringroute::ring::kHeaderBytes : sizeof(Block);
    const std::size_t offset =
        ((std::size_t{data[at + 1]} << 16) | (std::size_t{data[at + 2]} << 8) | data[at + 3]) * 7 % bytes;
    const std::size_t length = std::min<std::size_t>({data[at + 4], size - at - 5, bytes - offset});
    std::memcpy(target + offset, data + at + 5, length);
    at += 5 + length;
  }
  // stat reads no block whose magic or version it does not know.
  if (ringroute::perf::unreadable_block(blocks[0]) || ringroute::perf::unreadable_block(blocks[1])) return 0;
  std::string json;
  ringroute::tools::stat_views_of_blocks(blocks[0], blocks[1], json);
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(json).get(root) != simdjson::SUCCESS) {
    std::fprintf(stderr, "not JSON: %s\n", json.c_str());
    std::abort();
  }
  return 0;
}
