// Generations: publishing compiled matchers while readers keep matching.
// The threaded test is run under TSan (label "threaded") and ASan: a reader
// that touched a freed generation, or a publish that raced a reader's reads,
// is reported by the sanitizer; the test itself checks that every generation
// a reader sees is whole (its backend names, count and match results agree
// with the generation number it carries) and that generations only move
// forward.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "backends.hpp"
#include "json_event.hpp"
#include "ringroute/matcher/generations.hpp"
#include "ringroute/matcher/matcher.hpp"

namespace ringroute::matcher {
namespace {

// A generation whose lifetime the test can watch.
struct Tracked {
  explicit Tracked(int id_, std::atomic<int>& alive_) : id(id_), alive(alive_) { ++alive; }
  ~Tracked() { --alive; }
  Tracked(const Tracked&) = delete;
  Tracked& operator=(const Tracked&) = delete;
  int id;
  std::atomic<int>& alive;
};

TEST(MatcherGenerations, EnterBeforeAnyPublishIsNull) {
  Generations<Matcher> generations(2);
  EXPECT_EQ(generations.enter(0), nullptr);
  generations.leave(0);
  {
    Generations<Matcher>::Pin pin(generations, 1);
    EXPECT_EQ(pin.get(), nullptr);
  }
  EXPECT_EQ(generations.reclaim(), 0u);
}

TEST(MatcherGenerations, UnpinnedOldGenerationIsFreedByPublish) {
  std::atomic<int> alive{0};
  {
    Generations<Tracked> generations(1);
    generations.publish(std::make_unique<const Tracked>(1, alive));
    generations.publish(std::make_unique<const Tracked>(2, alive));
    // No reader held 1, so publish freed it at once.
    EXPECT_EQ(alive.load(), 1);
    EXPECT_EQ(generations.reclaim(), 0u);
    Generations<Tracked>::Pin pin(generations, 0);
    ASSERT_NE(pin.get(), nullptr);
    EXPECT_EQ(pin->id, 2);
  }
  // The destructor frees the current generation too.
  EXPECT_EQ(alive.load(), 0);
}

TEST(MatcherGenerations, PinnedGenerationSurvivesPublishUntilLeave) {
  std::atomic<int> alive{0};
  Generations<Tracked> generations(2);
  generations.publish(std::make_unique<const Tracked>(1, alive));
  const Tracked* first = generations.enter(0);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->id, 1);

  generations.publish(std::make_unique<const Tracked>(2, alive));
  // Reader 0 still holds 1: retired, not freed, and reclaim keeps it.
  EXPECT_EQ(alive.load(), 2);
  EXPECT_EQ(generations.reclaim(), 1u);
  EXPECT_EQ(first->id, 1);  // still readable (ASan would catch a free)

  // A second reader pins 2, then 3 is published: both old ones wait.
  const Tracked* second = generations.enter(1);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->id, 2);
  generations.publish(std::make_unique<const Tracked>(3, alive));
  EXPECT_EQ(generations.reclaim(), 2u);
  EXPECT_EQ(alive.load(), 3);

  generations.leave(0);
  EXPECT_EQ(generations.reclaim(), 1u);  // 1 goes, 2 is still held
  EXPECT_EQ(alive.load(), 2);
  EXPECT_EQ(second->id, 2);
  generations.leave(1);
  EXPECT_EQ(generations.reclaim(), 0u);
  EXPECT_EQ(alive.load(), 1);  // only the current one, 3

  // A reader entering now gets the newest.
  {
    Generations<Tracked>::Pin pin(generations, 0);
    EXPECT_EQ(pin->id, 3);
  }
}

TEST(MatcherGenerations, PinnedMatcherStillMatchesAfterPublish) {
  Generations<Matcher> generations(1);
  generations.publish(Matcher::compile(testing::backends_from_json(R"([{"name": "old", "bindings": [{}]}])")));
  testing::JsonEvent ev;
  const event::EventView& view = ev("{}");
  MatchScratch scratch;
  {
    Generations<Matcher>::Pin pin(generations, 0);
    generations.publish(Matcher::compile(testing::backends_from_json(R"([{"name": "new", "bindings": []}])")));
    EXPECT_EQ(generations.reclaim(), 1u);
    // The pinned generation is whole: its names, its tables, its result.
    BackendSet set;
    set.resize(pin->backend_count());
    pin->match(view, scratch, set);
    ASSERT_EQ(set.size(), 1u);
    EXPECT_EQ(pin->backend_name(0), "old");
  }
  EXPECT_EQ(generations.reclaim(), 0u);
  Generations<Matcher>::Pin pin(generations, 0);
  EXPECT_EQ(pin->backend_name(0), "new");
}

// --- threaded ------------------------------------------------------------------

constexpr int kGenerations = 200;
constexpr int kReaders = 3;
constexpr int kBodies = 8;

// Generation g: backend "gen-g" matches only events whose body n is g % 8
// (a filter, so the filter tables are read too), and g % 4 more backends
// "gen-g-k" match every info event. A reader that sees backend "gen-g" can
// therefore predict the count, every name and every match result; a torn or
// freed generation disagrees somewhere.
std::string config_for(int g) {
  std::string json = R"([{"name": "gen-)" + std::to_string(g) + R"(", "bindings": [{"filter": "n = )" +
                     std::to_string(g % kBodies) + R"("}, {"account_id": "acct-)" + std::to_string(g) + R"("}]})";
  for (int k = 1; k <= g % 4; ++k) {
    json += R"(, {"name": "gen-)" + std::to_string(g) + "-" + std::to_string(k) + R"(", "bindings": [{}]})";
  }
  return json + "]";
}

TEST(MatcherGenerations, ReadersSeeWholeGenerationsWhileWriterPublishes) {
  Generations<Matcher> generations(kReaders);
  std::atomic<bool> done{false};
  std::atomic<int> newest_seen{-1};  // highest generation any reader has checked
  std::atomic<int> failures{0};
  std::vector<long> observations(kReaders, 0);
  std::vector<int> distinct(kReaders, 0);

  // Compile before starting, so the writer's loop is mostly publishing.
  std::vector<std::unique_ptr<const Matcher>> compiled;
  for (int g = 0; g < kGenerations; ++g) compiled.push_back(Matcher::compile(testing::backends_from_json(config_for(g))));

  auto reader = [&](int id) {
    // One event per body value; each JsonEvent keeps its own view alive.
    std::vector<std::unique_ptr<testing::JsonEvent>> parsers;
    std::vector<const event::EventView*> events;
    for (int n = 0; n < kBodies; ++n) {
      parsers.push_back(std::make_unique<testing::JsonEvent>());
      events.push_back(&(*parsers.back())(R"({"body": {"n": )" + std::to_string(n) + "}}"));
    }
    MatchScratch scratch;
    BackendSet set;
    int last = -1;
    auto fail = [&](const std::string& why) {
      if (failures.fetch_add(1) < 10) ADD_FAILURE() << "reader " << id << ": " << why;
    };
    for (;;) {
      const bool finishing = done.load(std::memory_order_acquire);
      {
        Generations<Matcher>::Pin pin(generations, static_cast<std::size_t>(id));
        const Matcher* m = pin.get();
        if (m != nullptr) {
          const std::string& head = m->backend_name(0);
          if (head.rfind("gen-", 0) != 0) {
            fail("first backend is " + head);
            return;
          }
          const int g = std::stoi(head.substr(4));
          if (g < last) fail("went back from generation " + std::to_string(last) + " to " + std::to_string(g));
          if (g != last) ++distinct[static_cast<std::size_t>(id)];
          last = g;
          if (m->backend_count() != static_cast<std::size_t>(1 + g % 4)) {
            fail("generation " + std::to_string(g) + " has " + std::to_string(m->backend_count()) + " backends");
          }
          for (std::uint32_t k = 1; k < m->backend_count(); ++k) {
            const std::string want = "gen-" + std::to_string(g) + "-" + std::to_string(k);
            if (m->backend_name(k) != want) fail("backend " + std::to_string(k) + " is " + m->backend_name(k) + ", not " + want);
          }
          set.resize(m->backend_count());
          for (int n = 0; n < kBodies; ++n) {
            set.clear();
            m->match(*events[static_cast<std::size_t>(n)], scratch, set);
            const std::size_t want = static_cast<std::size_t>(g % 4) + (n == g % kBodies ? 1 : 0);
            if (set.size() != want || (n == g % kBodies) != set.test(0)) {
              fail("generation " + std::to_string(g) + ", n=" + std::to_string(n) + ": " +
                   std::to_string(set.size()) + " backends matched, want " + std::to_string(want));
            }
            // Hold the pin across a yield now and then, so a publish often
            // lands while a reader still uses the old generation.
            if (n == 3 && (observations[static_cast<std::size_t>(id)] & 7) == 0) std::this_thread::yield();
          }
          ++observations[static_cast<std::size_t>(id)];
          for (int seen = newest_seen.load(); seen < g && !newest_seen.compare_exchange_weak(seen, g);) {
          }
        }
      }
      if (finishing) {
        // The writer finished before this pass began, so it saw the last one.
        if (last != kGenerations - 1) fail("finished on generation " + std::to_string(last));
        return;
      }
    }
  };

  std::vector<std::thread> readers;
  for (int id = 0; id < kReaders; ++id) readers.emplace_back(reader, id);
  std::thread writer([&] {
    for (int g = 0; g < kGenerations; ++g) {
      generations.publish(std::move(compiled[static_cast<std::size_t>(g)]));
      // Every other generation, wait until a reader has checked it, so
      // readers and the writer interleave on a busy two-core machine too.
      if (g % 2 == 0) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (newest_seen.load() < g && failures.load() == 0 && std::chrono::steady_clock::now() < deadline) {
          std::this_thread::yield();
        }
      }
    }
    done.store(true, std::memory_order_release);
  });
  writer.join();
  for (auto& t : readers) t.join();

  // Every reader has left: nothing retired may remain.
  EXPECT_EQ(generations.reclaim(), 0u);
  long total = 0;
  int seen = 0;
  for (int id = 0; id < kReaders; ++id) {
    total += observations[static_cast<std::size_t>(id)];
    seen += distinct[static_cast<std::size_t>(id)];
  }
  std::printf("%ld checked passes, %d generation changes seen by %d readers\n", total, seen, kReaders);
  EXPECT_GE(newest_seen.load(), kGenerations - 1);
  EXPECT_GT(seen, kGenerations / 2);  // the writer waited on every other one
}

}  // namespace
}  // namespace ringroute::matcher
