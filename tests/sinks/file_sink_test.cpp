// The file sink on its own: both submission styles, rotation, reopen after a
// rename, a cut-off last line (looked for at the first write), and a full
// disk (/dev/full) as a retry.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <fstream>
#include <memory>
#include <string>

#include "ringroute/perf/block.hpp"
#include "ringroute/sinks/backend.hpp"
#include "ringroute/sinks/file_sink.hpp"
#include "private_mounts.hpp"

namespace ringroute::sinks {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() : path_("/tmp/rr-file-sink-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++)) {
    fs::remove_all(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  static inline int counter_ = 0;
  std::string path_;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Batch batch_of(const std::string& text) {
  Batch b;
  b.bytes.append(text);
  b.events = 1;
  return b;
}

// A sink's options for `path`, rotating past `rotate_bytes`, keeping `keep`.
FileSinkOptions rotating(const std::string& path, std::uint64_t rotate_bytes, std::uint32_t keep) {
  FileSinkOptions o;
  o.path = path;
  o.rotate_bytes = rotate_bytes;
  o.keep = keep;
  return o;
}

class FileSinkIo : public ::testing::TestWithParam<FileIo> {};

TEST_P(FileSinkIo, AppendsBatchesAndCreatesParentDirectories) {
  TempDir dir;
  FileSinkOptions o;
  o.path = dir / "a/b/out.ndjson";
  o.io = GetParam();
  FileSink sink(o);
  std::string why;
  ASSERT_EQ(sink.write(batch_of("{\"n\":1}\n"), why), Outcome::ok) << why;
  ASSERT_EQ(sink.write(batch_of("{\"n\":2}\n{\"n\":3}\n"), why), Outcome::ok) << why;
  EXPECT_EQ(slurp(o.path), "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
}

TEST_P(FileSinkIo, RotatesBySizeKeepingTheNewestFiles) {
  TempDir dir;
  FileSinkOptions o = rotating(dir / "out.ndjson", 20, 2);
  o.io = GetParam();
  FileSink sink(o);
  perf::BackendSinkShard counters;
  sink.attach_counters(&counters);
  std::string why;
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(sink.write(batch_of("line-" + std::to_string(i) + "-xxxxxxx\n"), why), Outcome::ok) << why;
  }
  // 15-byte lines, 20-byte limit: one line a file; keep 2 rotated.
  EXPECT_EQ(slurp(o.path), "line-4-xxxxxxx\n");
  EXPECT_EQ(slurp(o.path + ".1"), "line-3-xxxxxxx\n");
  EXPECT_EQ(slurp(o.path + ".2"), "line-2-xxxxxxx\n");
  EXPECT_FALSE(fs::exists(o.path + ".3"));
  EXPECT_EQ(counters.rotations.read(), 4u);
}

// out.ndjson holding "current-xxxxxx" beside the older files given (suffix,
// text), rotated once by a 20-byte limit with `keep`; returns its path.
std::string rotate_once(const TempDir& dir, std::uint32_t keep,
                        const std::vector<std::pair<std::string, std::string>>& older) {
  fs::create_directories(dir / "");
  FileSinkOptions o = rotating(dir / "out.ndjson", 20, keep);
  std::ofstream(o.path) << "current-xxxxxx\n";
  for (const auto& [suffix, text] : older) std::ofstream(o.path + suffix) << text;
  FileSink sink(o);
  std::string why;
  EXPECT_EQ(sink.write(batch_of("next-xxxxxxxxx\n"), why), Outcome::ok) << why;
  return o.path;
}

// A rotation whose last rename (path -> path.1) failed has shifted the
// older files already: its retry finds path.1 free and must not shift (and
// drop the oldest) again.
TEST(FileSink, ARotationRetriedAfterItsLastRenameFailedDropsNoOldFile) {
  TempDir dir;
  const std::string path = rotate_once(dir, 3, {{".2", "older\n"}, {".3", "oldest\n"}});
  EXPECT_EQ(slurp(path), "next-xxxxxxxxx\n");
  EXPECT_EQ(slurp(path + ".1"), "current-xxxxxx\n");
  EXPECT_EQ(slurp(path + ".2"), "older\n");
  EXPECT_EQ(slurp(path + ".3"), "oldest\n");
}

// A rotation shifts only the files up to the first free number: a file
// removed by hand (path.2 here) is a gap that the shift fills, and the ones
// past it stay. Renaming every number up to `keep` instead dropped path.3
// and, with a `keep` of thousands, took seconds of the sink thread at each
// rotation.
TEST(FileSink, ARotationShiftsOnlyUpToTheFirstFreeNumber) {
  TempDir dir;
  const std::string path = rotate_once(dir, 1'000'000, {{".1", "older\n"}, {".3", "oldest\n"}});
  EXPECT_EQ(slurp(path), "next-xxxxxxxxx\n");
  EXPECT_EQ(slurp(path + ".1"), "current-xxxxxx\n");
  EXPECT_EQ(slurp(path + ".2"), "older\n");
  EXPECT_EQ(slurp(path + ".3"), "oldest\n");
  EXPECT_FALSE(fs::exists(path + ".4"));
}

// A `keep` lowered since the files were made: the rotation drops the
// files numbered past it, as far as they run without a gap (a file past a
// gap is not one this sink's rotations made in turn), four at a time from
// the highest (each last close frees a file's pages on the sink thread).
TEST(FileSink, ARotationDropsTheFilesPastALoweredKeep) {
  TempDir lowered, none, gap, many;
  std::string path = rotate_once(lowered, 2,
                                 {{".1", "a\n"}, {".2", "b\n"}, {".3", "c\n"}, {".4", "d\n"}, {".5", "e\n"}});
  EXPECT_EQ(slurp(path), "next-xxxxxxxxx\n");
  EXPECT_EQ(slurp(path + ".1"), "current-xxxxxx\n");
  EXPECT_EQ(slurp(path + ".2"), "a\n");
  for (const char* gone : {".3", ".4", ".5"}) EXPECT_FALSE(fs::exists(path + gone)) << gone;
  // keep 0 drops them all.
  path = rotate_once(none, 0, {{".1", "a\n"}, {".2", "b\n"}});
  EXPECT_EQ(slurp(path), "next-xxxxxxxxx\n");
  EXPECT_FALSE(fs::exists(path + ".1"));
  EXPECT_FALSE(fs::exists(path + ".2"));
  path = rotate_once(gap, 1, {{".1", "a\n"}, {".2", "b\n"}, {".4", "d\n"}});
  EXPECT_EQ(slurp(path + ".1"), "current-xxxxxx\n");
  EXPECT_FALSE(fs::exists(path + ".2"));
  EXPECT_EQ(slurp(path + ".4"), "d\n");
  path = rotate_once(many, 1, {{".1", "1\n"}, {".2", "2\n"}, {".3", "3\n"}, {".4", "4\n"}, {".5", "5\n"},
                               {".6", "6\n"}, {".7", "7\n"}});
  EXPECT_EQ(slurp(path + ".2"), "2\n");
  EXPECT_EQ(slurp(path + ".3"), "3\n");
  for (const char* gone : {".4", ".5", ".6", ".7"}) EXPECT_FALSE(fs::exists(path + gone)) << gone;
  path = rotate_once(many, 1, {});
  for (const char* gone : {".2", ".3"}) EXPECT_FALSE(fs::exists(path + gone)) << gone;
}

// logrotate's copytruncate copies the file and empties it between two
// batches: the next batch does not cross rotate_bytes, and no rotation
// moves the empty file to path.1 (dropping the oldest kept one). The size
// the last batch left was taken as it was.
TEST(FileSink, AFileEmptiedUnderItIsNotRotatedForItsOldSize) {
  TempDir dir;  // made by the sink
  FileSinkOptions o = rotating(dir / "out.ndjson", 20, 2);
  FileSink sink(o);
  std::string why;
  ASSERT_EQ(sink.write(batch_of("first-xxxxxxx\n"), why), Outcome::ok) << why;
  fs::resize_file(o.path, 0);  // copytruncate
  ASSERT_EQ(sink.write(batch_of("second-xxxxxx\n"), why), Outcome::ok) << why;
  EXPECT_FALSE(fs::exists(o.path + ".1"));
  EXPECT_EQ(slurp(o.path), std::string("second-xxxxxx\n"));
  // Past the size for real, it rotates.
  ASSERT_EQ(sink.write(batch_of("third-xxxxxxx\n"), why), Outcome::ok) << why;
  EXPECT_EQ(slurp(o.path + ".1"), "second-xxxxxx\n");

  // Nor by age: an emptied file past its age waits for its next line.
  FileSinkOptions by_age;
  by_age.path = dir / "aged.ndjson";
  by_age.rotate_seconds = 1;
  FileSink aged(by_age);
  ASSERT_EQ(aged.write(batch_of("first\n"), why), Outcome::ok) << why;
  fs::resize_file(by_age.path, 0);
  aged.tick(std::chrono::steady_clock::now() + std::chrono::seconds(2));
  EXPECT_FALSE(fs::exists(by_age.path + ".1"));
}

// The once-a-second look at the path reopens the file only when the path
// names no file or another one. A directory on the way that the router may
// no longer search (a chmod) made it close the descriptor that still
// worked, and every batch after failed to open the file again.
TEST(FileSink, APathItMayNoLongerSearchKeepsTheFileItHasOpen) {
  TempDir dir;
  fs::create_directories(dir / "logs");
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown((dir / "logs").c_str(), 65534, 65534), 0);
  }
  const pid_t child = ::fork();
  if (child == 0) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(2);
    FileSinkOptions o;
    o.path = dir / "logs/out.ndjson";
    FileSink sink(o);
    std::string why;
    if (sink.write(batch_of("one\n"), why) != Outcome::ok) ::_exit(3);
    if (::chmod((dir / "logs").c_str(), 0600) != 0) ::_exit(4);  // no search: stat of the path is EACCES
    sink.tick(std::chrono::steady_clock::now() + std::chrono::seconds(2));
    const bool kept = sink.write(batch_of("two\n"), why) == Outcome::ok;
    if (!kept) std::fprintf(stderr, "why: %s\n", why.c_str());
    ::chmod((dir / "logs").c_str(), 0700);
    ::_exit(kept ? 0 : 1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(slurp(dir / "logs/out.ndjson"), "one\ntwo\n");
}

INSTANTIATE_TEST_SUITE_P(BothSubmissionStyles, FileSinkIo, ::testing::Values(FileIo::write, FileIo::uring),
                         [](const auto& p) { return p.param == FileIo::write ? "write" : "uring"; });

// Directories the sink makes are 0750 whatever the umask: under umask 0
// they were world-writable, where anyone could put a symlink at the path
// (and under 077, 0700: the group could not read the logs).
TEST(FileSink, DirectoriesItMakesAreNotWritableByOthersWhateverTheUmask) {
  TempDir dir;
  for (const mode_t umask : {mode_t{0}, mode_t{077}}) {
    FileSinkOptions o;
    o.path = dir / ("u" + std::to_string(umask) + "/b/out.ndjson");
    const mode_t old_umask = ::umask(umask);
    std::string why;
    {
      FileSink sink(o);
      EXPECT_EQ(sink.write(batch_of("x\n"), why), Outcome::ok) << why;
    }
    ::umask(old_umask);
    struct stat st {};
    ASSERT_EQ(::stat((dir / ("u" + std::to_string(umask) + "/b")).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0750u) << "umask " << umask;
    ASSERT_EQ(::stat((dir / ("u" + std::to_string(umask))).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0750u) << "umask " << umask;
    ASSERT_EQ(::stat(o.path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0640u & ~umask) << "umask " << umask;  // files: 0640, narrowed by the umask
  }
}

TEST(FileSink, ReopenAfterRenameWritesToANewFile) {
  TempDir dir;
  FileSinkOptions o;
  o.path = dir / "out.ndjson";
  FileSink sink(o);
  std::string why;
  ASSERT_EQ(sink.write(batch_of("old\n"), why), Outcome::ok);
  fs::rename(o.path, o.path + ".rotated");
  sink.reopen();
  ASSERT_EQ(sink.write(batch_of("new\n"), why), Outcome::ok);
  EXPECT_EQ(slurp(o.path + ".rotated"), "old\n");
  EXPECT_EQ(slurp(o.path), "new\n");
}

TEST(FileSink, NoticesAVanishedFileWithinASecondWithoutAHup) {
  TempDir dir;
  FileSinkOptions o;
  o.path = dir / "d/out.ndjson";
  FileSink sink(o);
  std::string why;
  ASSERT_EQ(sink.write(batch_of("before\n"), why), Outcome::ok);
  fs::remove_all(dir / "d");
  sink.tick(std::chrono::steady_clock::now() + std::chrono::seconds(2));
  ASSERT_EQ(sink.write(batch_of("after\n"), why), Outcome::ok) << why;
  EXPECT_EQ(slurp(o.path), "after\n");
}

// The file after a sink is made on a file holding `before`, another writer
// appends `meanwhile`, and the sink writes one batch of `line`.
std::string after_first_write(const std::string& before, const std::string& meanwhile, const std::string& line,
                              bool pretty = false) {
  TempDir dir;
  fs::create_directories(dir / "");
  FileSinkOptions o;
  o.path = dir / "out.ndjson";
  o.pretty = pretty;
  std::ofstream(o.path) << before;
  FileSink sink(o);
  std::ofstream(o.path, std::ios::app) << meanwhile;
  std::string why;
  EXPECT_EQ(sink.write(batch_of(line), why), Outcome::ok) << why;
  return slurp(o.path);
}

TEST(FileSink, CutsALineLeftHalfWrittenByACrash) {
  EXPECT_EQ(after_first_write("{\"a\":1}\n{\"b\":2}\n{\"c\":", "", "{\"c\":3}\n"), "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
}

// With `pretty` a document spans lines: a crash can leave whole lines of a
// document that is not whole, and the cut goes back to its "{" line.
TEST(FileSink, CutsADocumentLeftHalfWrittenByACrashUnderPretty) {
  const std::string whole = "{\n  \"a\": 1\n}\n{}\n";
  const std::string next = "{\n  \"d\": {\n    \"e\": 4\n  }\n}\n";
  // Cut after a whole line, inside the document.
  EXPECT_EQ(after_first_write(whole + "{\n  \"b\": 2,\n  \"c\": {\n", "", next, true), whole + next);
  // Cut inside a line.
  EXPECT_EQ(after_first_write(whole + "{\n  \"b\": 2,\n  \"c", "", next, true), whole + next);
  // Only the first line of the document.
  EXPECT_EQ(after_first_write(whole + "{\n", "", next, true), whole + next);
  // The torn document is the file's first.
  EXPECT_EQ(after_first_write("{\n  \"b\": 2,\n", "", next, true), next);
  // Whole documents stay as they are.
  EXPECT_EQ(after_first_write(whole, "", next, true), whole + next);
  // Without pretty the same bytes are lines, and a line of its own starts
  // with '{': an indented half line is none, and stays.
  EXPECT_EQ(after_first_write(whole + "{\n  \"b\"", "", "{\"d\":4}\n"), whole + "{\n  \"b\"\n{\"d\":4}\n");
  EXPECT_EQ(after_first_write(whole + "{\"b\"", "", "{\"d\":4}\n"), whole + "{\"d\":4}\n");
}

// A cut-off line is one this sink could have begun. A file it did not
// write that ends without a newline (another program's log, one line with
// none) was cut back to its last newline, or to nothing: kept now, and the
// batch starts on a line of its own.
TEST(FileSink, KeepsAnEndWithoutANewlineThatNoLineOfItsCouldBegin) {
  EXPECT_EQ(after_first_write("abc", "", "{\"d\":4}\n"), "abc\n{\"d\":4}\n");
  EXPECT_EQ(after_first_write("x=1\ny=2", "", "{\"d\":4}\n"), "x=1\ny=2\n{\"d\":4}\n");
  EXPECT_EQ(after_first_write("{\n  \"a\": 1\n}\nend", "", "{}\n", true), "{\n  \"a\": 1\n}\nend\n{}\n");
}

// make_sink tells the file sink whether documents span lines.
TEST(FileSink, MadeFromOptionsKnowsWhetherTheFormatterIsPretty) {
  TempDir dir;
  auto made = [&](const std::string& formatter) {
    const std::unique_ptr<Sink> sink = make_sink("file", R"({"path": ")" + dir / "out.ndjson" + "\"" + formatter + "}");
    return dynamic_cast<const FileSink&>(*sink).options().pretty;
  };
  EXPECT_FALSE(made(""));
  EXPECT_FALSE(made(R"(, "formatter": {"name": "json"})"));
  EXPECT_TRUE(made(R"(, "formatter": {"name": "json", "options": {"pretty": true}})"));
}

// Rotation by age cuts a crash's torn tail first, as the first write
// does (a tick with no write before it takes the file the same way):
// rotated before it, the torn line would go to path.1 uncut.
TEST(FileSink, RotatesByAgeOnlyAfterCuttingATornTail) {
  TempDir dir;
  fs::create_directories(dir / "");
  FileSinkOptions o;
  o.path = dir / "out.ndjson";
  o.rotate_seconds = 1;
  std::ofstream(o.path) << "{\"a\":1}\n{\"b\":";
  FileSink sink(o);
  const auto later = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  sink.tick(later);
  EXPECT_EQ(slurp(o.path + ".1"), "{\"a\":1}\n");
  std::string why;
  ASSERT_EQ(sink.write(batch_of("{\"b\":2}\n"), why), Outcome::ok) << why;
  EXPECT_EQ(slurp(o.path), "{\"b\":2}\n");
}

// On reload a new sink is made for a file the old one may still be
// appending to: a line cut off when the sink is made but finished before
// its first write is the old writer's, not a crash's.
TEST(FileSink, LooksForACutOffLineAtItsFirstWriteNotWhenMade) {
  EXPECT_EQ(after_first_write("{\"a\":1}\n{\"b\":", "2}\n", "{\"c\":3}\n"), "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
}

// A sink made on reload waits while the runner it replaces writes on, and
// that one may rotate the file meanwhile: the new sink's first write goes to
// the file now at the path, not to the rotated one it had opened (nor does
// it rotate again at once because that one was full).
TEST(FileSink, AFileRotatedBeforeItsFirstWriteIsNotWrittenTo) {
  TempDir dir;
  FileSinkOptions o = rotating(dir / "out.ndjson", 20, 1);
  FileSink old_sink(o);
  std::string why;
  ASSERT_EQ(old_sink.write(batch_of("old-1-xxxxxxxxx\n"), why), Outcome::ok) << why;
  FileSink new_sink(o);
  ASSERT_EQ(old_sink.write(batch_of("old-2-xxxxxxxxx\n"), why), Outcome::ok) << why;  // rotates
  ASSERT_EQ(new_sink.write(batch_of("new\n"), why), Outcome::ok) << why;
  EXPECT_EQ(slurp(o.path + ".1"), "old-1-xxxxxxxxx\n");
  EXPECT_EQ(slurp(o.path), "old-2-xxxxxxxxx\nnew\n");
}

// A file removed under the sink (its directory `rm -r`'d) takes writes
// without an error: the batch written there is written again into the file
// made anew, at once, not a second later when the path is next looked at.
TEST(FileSink, ABatchWrittenIntoAFileRemovedMeanwhileIsWrittenAgainAtThePath) {
  TempDir dir;
  FileSinkOptions o;
  o.path = dir / "d/out.ndjson";
  FileSink sink(o);
  std::string why;
  ASSERT_EQ(sink.write(batch_of("before\n"), why), Outcome::ok) << why;
  fs::remove_all(dir / "d");
  ASSERT_EQ(sink.write(batch_of("after\n"), why), Outcome::ok) << why;
  EXPECT_EQ(slurp(o.path), "after\n");
}

// A sink writes {"a":1}, another writer then appends `meanwhile`, and the
// sink's next batch fails partway: writes past RLIMIT_FSIZE (`limit`, with
// SIGXFSZ ignored) land in part, then fail, as on a full disk. The file
// must then be `expected`, or start with it (`prefix`); and, the limit
// lifted and the batch retried, `after_retry` when given. `second`: that
// batch. Run in a child, where the limit stays.
void check_a_write_that_fails_partway(std::uint64_t limit, const std::string& meanwhile, const std::string& expected,
                                      bool prefix, const std::string& after_retry = "",
                                      const std::string& second = "{\"b\":222222}\n") {
  TempDir dir;
  fs::create_directories(dir / "");
  auto attempt = [&]() -> int {
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit r{};
    r.rlim_cur = limit;
    r.rlim_max = RLIM_INFINITY;
    ::setrlimit(RLIMIT_FSIZE, &r);
    FileSinkOptions o;
    o.path = dir / "out.ndjson";
    FileSink sink(o);
    std::string why;
    if (sink.write(batch_of("{\"a\":1}\n"), why) != Outcome::ok) return 2;
    if (!meanwhile.empty()) std::ofstream(o.path, std::ios::app) << meanwhile;
    if (sink.write(batch_of(second), why) != Outcome::retry) return 3;
    const std::string text = slurp(o.path);
    if (!(prefix ? text.rfind(expected, 0) == 0 : text == expected)) return 4;
    if (after_retry.empty()) return 0;
    r.rlim_cur = RLIM_INFINITY;
    ::setrlimit(RLIMIT_FSIZE, &r);
    if (sink.write(batch_of(second), why) != Outcome::ok) return 5;
    return slurp(o.path) == after_retry ? 0 : 6;
  };
  // The child is this binary run again for this test alone: its own
  // TempDir, which std::exit would leave behind (four a run of the tests).
  auto child = [&] {
    const int code = attempt();
    std::error_code ignored;
    fs::remove_all(dir.path(), ignored);
    std::exit(code);
  };
  // Earlier tests leave DroppedFileCloser's thread running: a fork beside it
  // hung the child under ASan, so the child is this binary run afresh.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "");
}

TEST(FileSink, APartlyWrittenBatchIsCutBackBeforeItsRetry) {
  check_a_write_that_fails_partway(16, "", "{\"a\":1}\n", false);
}

// Cutting back to where this sink's write began would take another
// writer's lines with it (two backends on one path while a reload replaces
// one): the file is cut back only where it ends just past this sink's bytes.
TEST(FileSink, ACutBackNeverRemovesAnotherWritersLines) {
  check_a_write_that_fails_partway(32, "{\"other\":1}\n", "{\"a\":1}\n{\"other\":1}\n", true);
}

// The part that could not be cut back stays, and the retry starts on a
// line of its own: it was glued to the fragment, and its first event lost
// in a line that does not parse.
TEST(FileSink, ARetryAfterAFragmentThatStaysStartsOnANewLine) {
  check_a_write_that_fails_partway(30, "{\"other\":1}\n", "{\"a\":1}\n{\"other\":1}\n{\"b\":22222", false,
                                   "{\"a\":1}\n{\"other\":1}\n{\"b\":22222\n{\"b\":222222}\n");
  // A part that ends a line needs no newline before the retry.
  check_a_write_that_fails_partway(28, "{\"other\":1}\n", "{\"a\":1}\n{\"other\":1}\n{\"b\":1}\n", false,
                                   "{\"a\":1}\n{\"other\":1}\n{\"b\":1}\n{\"b\":1}\n{\"c\":2}\n",
                                   "{\"b\":1}\n{\"c\":2}\n");
}

// A rotation whose rename is refused does not stop delivery: the lines go
// on into the file at the path.
TEST(FileSink, ARotationThatFailsKeepsWritingToTheFile) {
  TempDir dir;
  fs::create_directories(dir / "out.ndjson.1/occupied");
  FileSinkOptions o = rotating(dir / "out.ndjson", 10, 1);
  FileSink sink(o);
  std::string why;
  ASSERT_EQ(sink.write(batch_of("first-line\n"), why), Outcome::ok) << why;
  ASSERT_EQ(sink.write(batch_of("second-line\n"), why), Outcome::ok) << why;
  ASSERT_EQ(sink.write(batch_of("third-line\n"), why), Outcome::ok) << why;
  EXPECT_EQ(slurp(o.path), "first-line\nsecond-line\nthird-line\n");
}

// A shift that fails ends the rotation there: rename() replaces its
// target, so going on to rename path over path.1 lost the kept path.1
// (here path.2 is a directory, so neither its unlink nor path.1's rename
// onto it can happen). The lines go on into the file, counted as a failure.
TEST(FileSink, AShiftThatFailsLeavesTheKeptFilesAlone) {
  TempDir dir;
  fs::create_directories(dir / "out.ndjson.2/occupied");
  std::ofstream(dir / "out.ndjson.1") << "older\n";
  FileSinkOptions o = rotating(dir / "out.ndjson", 10, 2);
  FileSink sink(o);
  perf::BackendSinkShard counters;
  sink.attach_counters(&counters);
  std::string why;
  ASSERT_EQ(sink.write(batch_of("first-line\n"), why), Outcome::ok) << why;
  ASSERT_EQ(sink.write(batch_of("second-line\n"), why), Outcome::ok) << why;
  EXPECT_EQ(slurp(o.path + ".1"), "older\n");
  EXPECT_EQ(slurp(o.path), "first-line\nsecond-line\n");
  EXPECT_EQ(counters.rotations.read(), 0u);
  EXPECT_EQ(counters.failures.read(), 1u);
}

// With a keep of 0 a rotation unlinks the file. An unlink refused (here
// the path is a mount point: EBUSY) was taken for a rotation: counted, and
// tried again at every batch into the same full file. It is a failure,
// tried again a second later.
TEST(FileSink, AnUnlinkRefusedWithAKeepOfZeroIsAFailureNotARotation) {
  TempDir dir;
  fs::create_directories(dir / "");
  const std::string path = dir / "out.ndjson";
  const std::string backing = dir / "backing";
  std::ofstream(path) << "";
  std::ofstream(backing) << "";
  const int status = testing::run_in_private_mounts([&] {
    if (::mount(backing.c_str(), path.c_str(), nullptr, MS_BIND, nullptr) != 0) return testing::kNoPrivateMounts;
    FileSinkOptions o = rotating(path, 10, 0);
    FileSink sink(o);
    perf::BackendSinkShard counters;
    sink.attach_counters(&counters);
    std::string why;
    for (const char* line : {"first-line\n", "second-line\n", "third-line\n"}) {
      if (sink.write(batch_of(line), why) != Outcome::ok) return 1;
    }
    if (slurp(path) != "first-line\nsecond-line\nthird-line\n") return 2;
    if (counters.rotations.read() != 0) return 3;
    if (counters.failures.read() != 1) return 4;
    return 0;
  });
  if (status == testing::kNoPrivateMounts) GTEST_SKIP() << "no mount namespace of our own here";
  EXPECT_EQ(status, 0) << "1: a write failed, 2: lines lost, 3: counted as a rotation, 4: failures not 1";
}

// Descriptors of this process that name a deleted file under `dir`.
int deleted_files_held(const std::string& dir) {
  int held = 0;
  for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::string target = fs::read_symlink(entry.path(), ec).string();
    if (!ec && target.rfind(dir, 0) == 0 && target.ends_with(" (deleted)")) ++held;
  }
  return held;
}

// deleted_files_held(dir) once it is `at_most`, or `within` has passed.
int deleted_files_held_within(const std::string& dir, int at_most, std::chrono::milliseconds within) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  int held = deleted_files_held(dir);
  while (held > at_most && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    held = deleted_files_held(dir);
  }
  return held;
}

// The file a rotation drops (path.keep, or path itself with a keep of 0)
// loses its name at once; its pages are freed when another thread closes
// it (a last close of 64 MiB on tmpfs took the sink thread 7-22 ms), and
// that close comes: no descriptor of a dropped file is left open.
TEST(FileSink, AFileARotationDropsIsGoneAndClosedSoon) {
  for (const std::uint32_t keep : {0u, 1u}) {
    TempDir dir;
    FileSinkOptions o = rotating(dir / "out.ndjson", 10, keep);
    FileSink sink(o);
    std::string why;
    for (const char* line : {"first-line\n", "second-line\n", "third-line\n"}) {
      ASSERT_EQ(sink.write(batch_of(line), why), Outcome::ok) << why;
    }
    EXPECT_EQ(slurp(o.path), "third-line\n");
    if (keep == 1) {
      EXPECT_EQ(slurp(o.path + ".1"), "second-line\n");
    }
    EXPECT_FALSE(fs::exists(o.path + ".2"));
    // As /proc/self/fd shows it: with the symlinks on the way resolved.
    const std::string prefix = fs::canonical(fs::path(o.path).parent_path()).string() + "/";
    EXPECT_EQ(deleted_files_held_within(prefix, 0, std::chrono::seconds(1)), 0) << "keep " << keep;
  }
}

// A dropped file's pages are freed a few MiB at a time, by truncating it,
// only where nobody else has it open: a reader still holding it (a log
// shipper finishing it) keeps every line, and its close frees them.
TEST(FileSink, AReaderOfAFileARotationDropsKeepsEveryLine) {
  // On tmpfs, where the closer frees in steps (on a file system it does
  // not trust, the reader would keep its lines whatever it did).
  struct ShmDir {
    std::string path = "/dev/shm/rr-file-sink-steps-" + std::to_string(::getpid());
    ShmDir() { fs::create_directories(path); }
    ~ShmDir() { fs::remove_all(path); }
    std::string operator/(const std::string& name) const { return path + "/" + name; }
  } dir;
  // Files earlier tests dropped are freed first: the closer's count is the
  // process's.
  (void)deleted_files_held_within("/tmp/rr-file-sink-", 0, std::chrono::seconds(2));
  FileSinkOptions o = rotating(dir / "out.ndjson", 1 << 20, 1);
  FileSink sink(o);
  std::string why;
  std::string first;
  while (first.size() < (5u << 20)) first += "a line of the first file, read by a shipper that is not done\n";
  const std::string second((2u << 20) - 1, 's');
  ASSERT_EQ(sink.write(batch_of(first), why), Outcome::ok) << why;
  ASSERT_EQ(sink.write(batch_of(second + "\n"), why), Outcome::ok) << why;  // `first` is out.ndjson.1
  const int reader = ::open((o.path + ".1").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  const std::uint64_t stepped = dropped_files_freed_in_steps();
  ASSERT_EQ(sink.write(batch_of("third\n"), why), Outcome::ok) << why;  // drops it
  EXPECT_TRUE(slurp(o.path + ".1") == second + "\n");
  EXPECT_EQ(slurp(o.path), "third\n");
  const std::string prefix = fs::canonical(fs::path(o.path).parent_path()).string() + "/";
  // The reader's alone: the closer is done.
  EXPECT_EQ(deleted_files_held_within(prefix, 1, std::chrono::seconds(1)), 1);
  std::string read_back(first.size() + 1, '\0');
  const ssize_t n = ::pread(reader, read_back.data(), read_back.size(), 0);
  ::close(reader);
  ASSERT_EQ(n, static_cast<ssize_t>(first.size()));
  read_back.resize(static_cast<std::size_t>(n));
  EXPECT_TRUE(read_back == first);

  // A hard link kept as an archive keeps it too.
  const std::string archive = dir / "archive.ndjson";
  fs::create_hard_link(o.path + ".1", archive);
  // A file rotates before a write that would take it past rotate_bytes.
  ASSERT_EQ(sink.write(batch_of(second + "\n"), why), Outcome::ok) << why;  // drops `second`, linked
  EXPECT_EQ(slurp(o.path + ".1"), "third\n");
  (void)deleted_files_held_within(prefix, 0, std::chrono::seconds(1));
  EXPECT_EQ(fs::file_size(archive), second.size() + 1);
  EXPECT_EQ(dropped_files_freed_in_steps(), stepped);  // neither was

  // Held by nothing: freed in steps, where leases see every opener.
  ASSERT_EQ(sink.write(batch_of(second + "\n"), why), Outcome::ok) << why;
  EXPECT_EQ(deleted_files_held_within(prefix, 0, std::chrono::seconds(1)), 0);
  EXPECT_EQ(dropped_files_freed_in_steps(), stepped + 1);
}

// Age rotation counts from the file's birth: a restart (or reload, or
// reopen) at least once every rotate_seconds used to keep it from ever
// rotating.
// A file of one line made just now, rotated every second; false where the
// file system keeps no birth times.
bool made_with_birth_time(const TempDir& dir, FileSinkOptions& o) {
  fs::create_directories(dir / "");
  o.path = dir / "out.ndjson";
  o.rotate_seconds = 1;
  std::ofstream(o.path) << "{\"a\":1}\n";
  struct statx sx {};
  return ::statx(AT_FDCWD, o.path.c_str(), 0, STATX_BTIME, &sx) == 0 && (sx.stx_mask & STATX_BTIME) != 0;
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
// The wall clock as this process reads it, moved by this much: a clock set
// back since a file was made, without setting the host's. (Sanitizers
// have their own clock_gettime interceptors: not stacked with this one.)
std::atomic<std::int64_t> realtime_shift_ns{0};
// And CLOCK_BOOTTIME moved ahead of CLOCK_MONOTONIC: the host suspended.
std::atomic<std::int64_t> boottime_shift_ns{0};
}  // namespace
}  // namespace ringroute::sinks
extern "C" int clock_gettime(clockid_t clock, timespec* time) noexcept {
  using Real = int (*)(clockid_t, timespec*);
  static const Real real = reinterpret_cast<Real>(::dlsym(RTLD_NEXT, "clock_gettime"));
  const int result = real(clock, time);
  const std::int64_t shift = clock == CLOCK_REALTIME   ? ringroute::sinks::realtime_shift_ns.load(std::memory_order_relaxed)
                             : clock == CLOCK_BOOTTIME ? ringroute::sinks::boottime_shift_ns.load(std::memory_order_relaxed)
                                                       : 0;
  if (result == 0 && shift != 0) {
    const std::int64_t ns = time->tv_sec * 1'000'000'000LL + time->tv_nsec + shift;
    time->tv_sec = ns / 1'000'000'000LL;
    time->tv_nsec = ns % 1'000'000'000LL;
  }
  return result;
}
namespace ringroute::sinks {
namespace {

// A clock set back since the file was made puts its birth ahead of now:
// each reopen (a SIGHUP, a reload) took its age for 0, and a file reopened
// more often than rotate_seconds never rotated while the clock was behind.
TEST(FileSink, AgeRotationGoesOnWhileTheWallClockIsBehindTheFilesBirth) {
  TempDir dir;
  FileSinkOptions o;
  if (!made_with_birth_time(dir, o)) GTEST_SKIP() << "no birth times on this file system";
  realtime_shift_ns = -3600'000'000'000LL;
  FileSink sink(o);
  std::string why;
  ASSERT_EQ(sink.write(batch_of("{\"b\":2}\n"), why), Outcome::ok) << why;
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  sink.reopen();  // 0.6 s into its life as the sink counts it
  sink.tick(std::chrono::steady_clock::now() + std::chrono::milliseconds(500));
  realtime_shift_ns = 0;
  EXPECT_EQ(slurp(o.path + ".1"), "{\"a\":1}\n{\"b\":2}\n");
}

// The router's ticks are on CLOCK_MONOTONIC, which a host's suspend stops:
// a file open across a night's sleep was hours younger than it was.
TEST(FileSink, AgeRotationCountsTheTimeTheHostWasSuspended) {
  TempDir dir;
  FileSinkOptions o;
  fs::create_directories(dir / "");
  o.path = dir / "out.ndjson";
  o.rotate_seconds = 3600;
  FileSink sink(o);
  std::string why;
  ASSERT_EQ(sink.write(batch_of("{\"a\":1}\n"), why), Outcome::ok) << why;
  sink.tick(std::chrono::steady_clock::now() + std::chrono::seconds(1));
  EXPECT_FALSE(fs::exists(o.path + ".1"));
  boottime_shift_ns = 3600'000'000'000LL;  // an hour asleep
  sink.tick(std::chrono::steady_clock::now() + std::chrono::seconds(1));
  boottime_shift_ns = 0;
  EXPECT_EQ(slurp(o.path + ".1"), "{\"a\":1}\n");
}
#endif

TEST(FileSink, AgeRotationCountsFromTheFilesBirthNotFromTheLastOpen) {
  TempDir dir;
  FileSinkOptions o;
  if (!made_with_birth_time(dir, o)) GTEST_SKIP() << "no birth times on this file system";
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  FileSink sink(o);  // a restart, 0.6 s into the file's life
  std::string why;
  ASSERT_EQ(sink.write(batch_of("{\"b\":2}\n"), why), Outcome::ok) << why;
  sink.reopen();
  sink.tick(std::chrono::steady_clock::now() + std::chrono::milliseconds(500));
  EXPECT_EQ(slurp(o.path + ".1"), "{\"a\":1}\n{\"b\":2}\n");
}

// A quiet backend's file is rotated on time after a restart (or a reload
// that replaced its runner) too: it was rotated only at the next event,
// which went into the file long past its age.
TEST(FileSink, AgeRotationAfterARestartNeedsNoEvent) {
  TempDir dir;
  FileSinkOptions o;
  if (!made_with_birth_time(dir, o)) GTEST_SKIP() << "no birth times on this file system";
  FileSink sink(o);  // a restart, no event since
  sink.tick(std::chrono::steady_clock::now() + std::chrono::milliseconds(1500));
  EXPECT_EQ(slurp(o.path + ".1"), "{\"a\":1}\n");
}

// A directory at a rotated name stops the rotation there, said and
// counted: it was renamed up the numbers, rotation by rotation.
TEST(FileSink, ADirectoryAtARotatedNameIsNeverMovedAlong) {
  TempDir dir;
  fs::create_directories(dir / "");
  FileSinkOptions o;
  o.path = dir / "out.ndjson";
  o.rotate_bytes = 4;
  o.keep = 4;
  std::ofstream(o.path + ".1") << "{\"old\":1}\n";
  fs::create_directories(o.path + ".2");
  std::ofstream(o.path + ".2/theirs") << "x";
  FileSink sink(o);
  std::string why;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(sink.write(batch_of("{\"n\":" + std::to_string(i) + "}\n"), why), Outcome::ok);
  EXPECT_TRUE(fs::is_directory(o.path + ".2"));
  EXPECT_EQ(slurp(o.path + ".2/theirs"), "x");
  EXPECT_FALSE(fs::exists(o.path + ".3"));
  EXPECT_EQ(slurp(o.path + ".1"), "{\"old\":1}\n");
}

// A reopen (SIGHUP) that fails says why at once: a quiet backend may have
// no batch to say it for a long while.
TEST(FileSink, AReopenThatFailsSaysWhyAtOnce) {
  FileSinkOptions o;
  o.path = "/dev/null/out.ndjson";  // a directory that is a device: never made
  FileSink sink(o);
  ::testing::internal::CaptureStderr();
  sink.reopen();
  const std::string said = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(said.find("ringroute: /dev/null/out.ndjson: reopen: "), std::string::npos) << said;
  EXPECT_NE(said.find("(the next batch tries again)"), std::string::npos) << said;
}

// A reopen whose open fails writes nothing more into the renamed file:
// logrotate may be compressing it and about to remove it. The batch is
// retried until the file at the path can be made.
TEST(FileSink, AReopenThatFailsLeavesTheRenamedFileAlone) {
  TempDir dir;
  fs::create_directories(dir / "logs");
  FileSinkOptions o;
  o.path = dir / "logs/out.ndjson";
  FileSink sink(o);
  std::string why;
  ASSERT_EQ(sink.write(batch_of("old\n"), why), Outcome::ok) << why;
  fs::rename(dir / "logs", dir / "logs.rotated");
  std::ofstream(dir / "logs") << "a file where the directory was";
  ::testing::internal::CaptureStderr();
  sink.reopen();
  (void)::testing::internal::GetCapturedStderr();
  EXPECT_EQ(sink.write(batch_of("new\n"), why), Outcome::retry);
  EXPECT_NE(why.find(o.path), std::string::npos) << why;
  fs::remove(dir / "logs");
  ASSERT_EQ(sink.write(batch_of("new\n"), why), Outcome::ok) << why;
  EXPECT_EQ(slurp(dir / "logs.rotated/out.ndjson"), "old\n");
  EXPECT_EQ(slurp(o.path), "new\n");
}

TEST(FileSink, FullDiskIsARetryNamingTheFile) {
  FileSinkOptions o;
  o.path = "/dev/full";
  FileSink sink(o);
  std::string why;
  EXPECT_EQ(sink.write(batch_of("x\n"), why), Outcome::retry);
  EXPECT_NE(why.find("/dev/full"), std::string::npos) << why;
  EXPECT_NE(why.find("No space left"), std::string::npos) << why;
}

// A FIFO at the path is written only while something reads it. One no one
// reads (anyone who can write the directory can put one there) took
// batches as sent into a pipe, and then held the sink in write() for good;
// one a reader has open (`/dev/stdout` piped to a log collector) is
// written as a file is.
TEST(FileSink, AFifoIsWrittenOnlyWhileSomethingReadsIt) {
  const std::string dir = "/tmp/rr-file-sink-fifo-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  FileSinkOptions o;
  o.path = dir + "/events.ndjson";
  ASSERT_EQ(::mkfifo(o.path.c_str(), 0600), 0);
  {
    FileSink sink(o);
    std::string why;
    // A pipe's buffer holds 64 KiB: a batch past it would block for good.
    const std::string big(1 << 20, 'x');
    EXPECT_EQ(sink.write(batch_of(big + "\n"), why), Outcome::retry);
    EXPECT_EQ(why, o.path + " is a FIFO that nothing reads");
  }
  const int reader = ::open(o.path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  FileSink sink(o);
  std::string why;
  EXPECT_EQ(sink.write(batch_of("{\"a\":1}\n"), why), Outcome::ok) << why;
  char got[64] = {};
  EXPECT_EQ(::read(reader, got, sizeof got), 8);
  EXPECT_EQ(std::string(got), "{\"a\":1}\n");
  ::close(reader);
  std::filesystem::remove_all(dir);
}

// A reload's runners on one file wait for each other; a hard link is one
// file too (the config check says so of two backends), which the router's
// check by path alone missed.
TEST(FileSink, SameFileSeesPathsLinksAndHardLinks) {
  const std::string dir = "/tmp/rr-file-sink-same-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/a.log") << "x";
  std::ofstream(dir + "/other.log") << "x";
  ASSERT_EQ(::link((dir + "/a.log").c_str(), (dir + "/hard.log").c_str()), 0);
  std::filesystem::create_symlink(dir + "/a.log", dir + "/soft.log");
  EXPECT_TRUE(same_file(dir + "/a.log", dir + "/./a.log"));
  EXPECT_TRUE(same_file(dir + "/a.log", dir + "/soft.log"));
  EXPECT_TRUE(same_file(dir + "/a.log", dir + "/hard.log"));
  EXPECT_FALSE(same_file(dir + "/a.log", dir + "/other.log"));
  EXPECT_FALSE(same_file(dir + "/a.log", dir + "/not-yet.log"));
  EXPECT_TRUE(same_file(dir + "/not-yet.log", dir + "/../" + std::filesystem::path(dir).filename().string() +
                                                  "/not-yet.log"));
  std::filesystem::remove_all(dir);
}

TEST(FileSink, UnopenableFileIsARetry) {
  FileSinkOptions o;
  o.path = "/proc/version/cannot/be/here.ndjson";
  FileSink sink(o);
  std::string why;
  EXPECT_EQ(sink.write(batch_of("x\n"), why), Outcome::retry);
  EXPECT_NE(why.find("cannot open"), std::string::npos) << why;
}

// A directory on the way that can't be made is named, with why: the open
// after it said only "No such file or directory" for the file, once a
// second, and the permission never showed.
TEST(FileSink, ADirectoryThatCannotBeMadeIsNamedWithWhy) {
  const std::string parent = "/tmp/rr-file-sink-nodir-" + std::to_string(::getpid());
  std::filesystem::remove_all(parent);
  ASSERT_EQ(::mkdir(parent.c_str(), 0555), 0);  // no one but root may make anything in it
  const pid_t child = ::fork();
  if (child == 0) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(2);
    FileSinkOptions o;
    o.path = parent + "/sub/x.ndjson";
    FileSink sink(o);
    std::string why;
    const bool said = sink.write(batch_of("x\n"), why) == Outcome::retry &&
                      why == "cannot create directory " + parent + "/sub: Permission denied (for " + o.path + ")";
    if (!said) std::fprintf(stderr, "why: %s\n", why.c_str());
    ::_exit(said ? 0 : 1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  std::filesystem::remove_all(parent);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace ringroute::sinks
