#pragma once
// The file sink: appends batches to a file, through io_uring or write(2),
// with size and age rotation, logrotate-friendly reopening and fsync policy.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "ringroute/sinks/sink.hpp"

namespace ringroute::sinks {

enum class FileIo : std::uint8_t { write, uring };
enum class FsyncPolicy : std::uint8_t { never, batch, interval };

struct FileSinkOptions {
  std::string path;
  std::uint64_t rotate_bytes = 0;    // 0: never by size
  std::uint64_t rotate_seconds = 0;  // 0: never by age
  std::uint32_t keep = 5;            // rotated files kept: path.1 (newest) .. path.keep
  FsyncPolicy fsync = FsyncPolicy::never;
  std::chrono::milliseconds fsync_interval{1000};
  // On this 2-core VM buffered writes through io_uring go to kernel workers
  // and lose to write(2) (see the README's table), so write is the default.
  FileIo io = FileIo::write;
  // The json formatter's `pretty`: a document is a "{" line, lines indented
  // by two spaces and a "}" line, so a crash can leave whole lines of a
  // document that is not whole.
  bool pretty = false;
  // Whether a write of this backend's may have been cut short (a crash
  // mid-write: the router's perf block knows). Only then is a last line
  // without its end ours to cut back at the first write; otherwise the
  // file is another program's, or was left whole, and its end is kept.
  bool last_write_may_be_torn = true;
};

// What two file paths that name one file compare equal as, as far as the
// path and the directories on it tell: made absolute, with `.`, `..` and
// symbolic links resolved where they exist (`./a.log`, `/abs/a.log` and a
// link to it are one file). Hard links are not seen.
[[nodiscard]] std::string file_identity(const std::string& path);

// Whether two paths name one file: by file_identity(), or, where both
// exist, by device and inode (a hard link), as the config check compares
// backends' paths.
[[nodiscard]] bool same_file(const std::string& a, const std::string& b);

// What is wrong with writing events into a file of this type (st_mode), as
// words that follow the path ("is a directory, ..."); empty for a regular
// file, a character device (/dev/null) or a FIFO (written only while
// something reads it: see FileSink::open_file). A block device would be
// overwritten.
[[nodiscard]] std::string unwritable_file_type(mode_t mode);

// How many files dropped by rotation were freed a step at a time (the rest
// closed whole), in this process: for tests.
[[nodiscard]] std::uint64_t dropped_files_freed_in_steps() noexcept;

class FileSink final : public Sink {
 public:
  // Opens (creating parent directories) at once; a file that can't be opened
  // yet is not an error here: write() retries until it can.
  // Throws std::runtime_error when io=uring and the kernel refuses io_uring.
  explicit FileSink(FileSinkOptions options);
  ~FileSink() override;

  Outcome write(const Batch& batch, std::string& why) override;
  void tick(std::chrono::steady_clock::time_point now) override;
  void reopen() override;

  [[nodiscard]] const FileSinkOptions& options() const noexcept { return options_; }
  [[nodiscard]] std::string file_path() const override { return options_.path; }

 private:
  bool open_file(std::string& why);
  // The file as this sink first writes it: opened again, its torn tail cut.
  bool take_the_file(std::string& why);
  void cut_torn_tail();
  void drop_files_past_keep();
  // Past the run of files numbered past keep (drop_files_past_keep); 0:
  // not looked for yet.
  std::uint32_t past_keep_end_ = 0;
  void close_file();
  bool rotate(std::string& why);
  bool rotate_or_carry_on(std::chrono::steady_clock::time_point now, std::string& why);
  // file_bytes_ as the file is now, before a rotation that looks due:
  // logrotate's copytruncate may have emptied it since the last batch, and
  // rotating it then would drop the oldest kept file for an empty one.
  void look_at_size_again() noexcept;
  void cut_back(std::uint64_t before);
  void sync_or_report(const char* since);
  bool write_all(const char* data, std::size_t size, std::string& why);
  // A remark() formatted as printf does (cut at 1 KiB): the sink's own
  // lines, named by its backend's log.
  void say(const char* format, ...) const noexcept __attribute__((format(printf, 2, 3)));

  FileSinkOptions options_;
  int fd_ = -1;
  std::uint64_t file_bytes_ = 0;
  std::chrono::steady_clock::time_point opened_at_{};  // the file's birth, for age rotation
  std::chrono::nanoseconds suspended_at_open_{};      // the host's time suspended then (time_suspended())
  dev_t file_dev_ = 0;
  ino_t file_ino_ = 0;
  std::chrono::steady_clock::time_point rotate_retry_at_{};
  std::chrono::steady_clock::time_point next_rotate_report_{};
  std::chrono::steady_clock::time_point next_drop_report_{};
  std::chrono::steady_clock::time_point last_fsync_{};
  std::chrono::steady_clock::time_point last_sync_report_{};
  std::chrono::steady_clock::time_point last_check_{};
  bool dirty_ = false;
  bool tail_checked_ = false;  // a cut-off last line is looked for at the first write
  // The file may end inside a line that could not be cut back (a failed
  // write's part beside another writer's bytes, a torn tail that could not
  // be read or truncated): the next batch starts on a line of its own.
  bool line_open_ = false;
  struct Uring;
  std::unique_ptr<Uring> uring_;
};

}  // namespace ringroute::sinks
