#include "ringroute/sinks/file_sink.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "ringroute/perf/block.hpp"

namespace ringroute::sinks {

bool same_file(const std::string& a, const std::string& b) {
  if (file_identity(a) == file_identity(b)) return true;
  struct stat sa {}, sb {};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

std::string unwritable_file_type(mode_t mode) {
  if (S_ISREG(mode) || S_ISCHR(mode) || S_ISFIFO(mode)) return {};
  const char* kind = S_ISDIR(mode)    ? "a directory"
                     : S_ISBLK(mode)  ? "a block device"
                     : S_ISSOCK(mode) ? "a socket"
                                      : "no regular file";
  return std::string("is ") + kind + ", not a file a file backend can append to";
}

std::string file_identity(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::path absolute = fs::absolute(path, error);
  if (error) return fs::path(path).lexically_normal().string();
  // Walked a part at a time, each symbolic link followed whether or not
  // what it names exists: weakly_canonical stops at the first part that
  // does not exist, and left a dangling link (`a.log` -> `b.log`, neither
  // written yet) as itself, so two backends opened one file through it.
  // The parts still to walk, the next one last.
  std::vector<std::string> rest;
  const auto walk_before_rest = [&rest](const fs::path& p) {
    std::vector<std::string> parts;
    for (const fs::path& part : p.relative_path()) parts.push_back(part.string());
    rest.insert(rest.end(), parts.rbegin(), parts.rend());
  };
  walk_before_rest(absolute);
  fs::path resolved = "/";
  int links = 0;
  while (!rest.empty()) {
    const std::string part = std::move(rest.back());
    rest.pop_back();
    if (part.empty() || part == ".") continue;
    if (part == "..") {  // of a part resolved already, or (past one not made yet) as written
      resolved = resolved.parent_path();
      continue;
    }
    fs::path next = resolved / part;
    struct stat st {};
    // Not made yet, or a directory we may not search: as written.
    if (::lstat(next.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) {
      resolved = std::move(next);
      continue;
    }
    char target[PATH_MAX];
    const ssize_t length = ++links <= 40 ? ::readlink(next.c_str(), target, sizeof target) : -1;  // 40: SYMLOOP_MAX
    if (length <= 0 || static_cast<std::size_t>(length) == sizeof target) {
      resolved = std::move(next);  // a loop, or unreadable: as written
      continue;
    }
    const fs::path link(std::string(target, static_cast<std::size_t>(length)));
    if (link.is_absolute()) resolved = "/";
    walk_before_rest(link);
  }
  return resolved.lexically_normal().string();
}

struct FileSink::Uring {
  io_uring ring{};
  bool ready = false;
  explicit Uring(const std::string& path) {
    const int rc = io_uring_queue_init(4, &ring, 0);
    if (rc < 0) {
      throw std::runtime_error("file sink " + path + ": io_uring is not available here (" + std::strerror(-rc) +
                               "); set options.io to \"write\"");
    }
    ready = true;
  }
  ~Uring() {
    if (ready) io_uring_queue_exit(&ring);
  }
  // Drops the ring, and with it an entry that was never submitted, and
  // makes a new one (or tries again at the next write).
  void reset() {
    if (ready) io_uring_queue_exit(&ring);
    ring = {};
    ready = io_uring_queue_init(4, &ring, 0) == 0;
  }
  // One write at the file's position (the file is O_APPEND); the result as write(2) gives it.
  ssize_t write(int fd, const char* data, std::size_t size) {
    if (!ready) {
      reset();
      if (!ready) return -EAGAIN;
    }
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    if (sqe == nullptr) return -EBUSY;
    io_uring_prep_write(sqe, fd, data, static_cast<unsigned>(std::min<std::size_t>(size, 1u << 30)),
                        static_cast<__u64>(-1));
    // The entry is in the ring from here on. A submit interrupted or refused
    // for the moment (no memory) submits it again; a second entry would
    // write the bytes twice and leave a completion for the next write to
    // take as its own while its own write still runs.
    int rc;
    for (int tries = 0;; ++tries) {
      rc = io_uring_submit(&ring);
      if (rc > 0) break;
      if ((rc == -EINTR || rc == -EAGAIN || rc == -EBUSY || rc == 0) && tries < 1000) {
        if (rc != -EINTR) std::this_thread::sleep_for(std::chrono::microseconds(100));
        continue;
      }
      reset();  // never submitted: it goes with the ring
      return rc < 0 ? rc : -EAGAIN;
    }
    io_uring_cqe* cqe = nullptr;
    do {
      rc = io_uring_wait_cqe(&ring, &cqe);
    } while (rc == -EINTR || rc == -EAGAIN);
    if (rc < 0) {
      // The ring itself failed with the write in flight; a new ring keeps
      // its completion from being read as a later write's.
      reset();
      return rc;
    }
    const ssize_t result = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    return result;
  }
};

namespace {

std::string errno_text(int e) { return std::strerror(e); }

// How long the host has been suspended since it booted: CLOCK_BOOTTIME
// counts a suspend, CLOCK_MONOTONIC (steady_clock, which the runner's
// ticks are on) does not. Age rotation adds what was suspended since the
// file's open, or a file's hours asleep were not part of its age.
std::chrono::nanoseconds time_suspended() noexcept {
  timespec boot{}, monotonic{};
  ::clock_gettime(CLOCK_BOOTTIME, &boot);
  ::clock_gettime(CLOCK_MONOTONIC, &monotonic);
  return std::chrono::seconds(boot.tv_sec - monotonic.tv_sec) +
         std::chrono::nanoseconds(boot.tv_nsec - monotonic.tv_nsec);
}

// Closes the descriptors of files a rotation dropped, on a thread of its
// own at a lower priority, freeing their pages a step at a time where it
// may (release()). The last close of an unlinked file frees its pages: 7-22
// ms for 64 MiB on tmpfs here, far more for the gigabytes a
// production rotation drops, all of it time the sink thread stood still
// while its queue filled and, under `block`, the ring with it. A file is
// opened, then unlinked (only its name goes), then handed over. One for the
// process, made on first use and never destroyed: a descriptor still queued
// at exit is closed by the kernel.
class DroppedFileCloser {
 public:
  static void close_later(int fd) noexcept {
    static DroppedFileCloser* const closer = make();
    // No thread to be had, or it is behind (the files it holds keep their
    // memory): the sink thread closes, as it used to.
    bool queued = false;
    if (closer != nullptr) {
      try {
        std::lock_guard lock(closer->mutex_);
        if (closer->fds_.size() < kMostQueued) {
          closer->fds_.push_back(fd);
          closer->waiting_.store(closer->fds_.size(), std::memory_order_relaxed);
          queued = true;
        }
      } catch (const std::exception&) {
      }
    }
    if (!queued) {
      ::close(fd);
      return;
    }
    closer->wake_.notify_one();
  }

 private:
  static constexpr std::size_t kMostQueued = 16;
  static DroppedFileCloser* make() noexcept {
    try {
      auto closer = std::make_unique<DroppedFileCloser>();
      std::thread([closer = closer.get()] { closer->run(); }).detach();
      return closer.release();
    } catch (const std::exception&) {
      return nullptr;
    }
  }
  void run() {
    // Ten nice levels below the process: the router's threads come first,
    // yet on a host busy for good the pages are still freed (SCHED_IDLE
    // could starve it, and the dropped files would hold their memory).
    const auto tid = static_cast<id_t>(::gettid());
    errno = 0;
    const int nice = ::getpriority(PRIO_PROCESS, tid);
    if (errno == 0) ::setpriority(PRIO_PROCESS, tid, std::min(nice + 10, 19));
    ::pthread_setname_np(::pthread_self(), "rr-file-closer");
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return !fds_.empty(); });
      const int fd = fds_.front();  // the oldest first: it has held its memory longest
      fds_.erase(fds_.begin());
      waiting_.store(fds_.size(), std::memory_order_relaxed);
      lock.unlock();
      release(fd, waiting_);
      lock.lock();
    }
  }
  // Behind (half its room taken), files are closed whole, the faster way
  // to free what they hold; the backends' rotations come a few at once, so
  // one or two waiting is not behind. Judged again at each step: stepping
  // through gigabytes, the closer can fall behind meanwhile.
  static bool behind(const std::atomic<std::size_t>& waiting) noexcept {
    return waiting.load(std::memory_order_relaxed) >= kMostQueued / 2;  // a hint; nothing pairs with it
  }
  // Frees the file's pages a few MiB at a time where nothing else holds
  // it, then closes it. A close frees them all at once, in stretches of 2-3
  // ms that the kernel does not preempt (64 MiB on tmpfs here), and router
  // threads queued on that vCPU wait them out. Nothing else holds it when
  // it has no name left (no hard link kept it, say as an archive) and no
  // other descriptor is open on it, this process's included: a write lease
  // is granted only then. The lease is held while the steps run, and one
  // who opens the file meanwhile (through /proc: it has no name) breaks it;
  // the steps stop there, and the opener finds the file as far as they
  // went. A file someone still reads (a log shipper finishing it) keeps
  // its lines: it is closed whole, and the reader's close frees them. Only
  // on local file systems whose leases see every opener.
  static void release(int fd, const std::atomic<std::size_t>& waiting) noexcept {
    // A descriptor for writing of our own, opened once the file has no name
    // (the one handed over reads only: nothing was opened for writing under
    // the file's name). The handed-over one is closed before the lease is
    // asked for, which it would count as another open.
    off_t size = 0;
    const int writable = behind(waiting) ? -1 : writable_copy(fd, size);
    ::close(fd);
    if (writable < 0) return;
    free_in_steps(writable, size, waiting);
    ::close(writable);
  }
  // -1 where the file may not be freed in steps; else `size` is its size.
  static int writable_copy(int fd, off_t& size) noexcept {
    struct stat st {};
    struct statfs fs {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 0 || st.st_uid != ::geteuid() ||
        ::fstatfs(fd, &fs) != 0 || !leases_see_every_opener(fs)) {
      return -1;
    }
    size = st.st_size;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return ::open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  }
  static void free_in_steps(int fd, off_t size, const std::atomic<std::size_t>& waiting) noexcept {
    // A lease break signals its holder, SIGIO by default, which would end
    // the router; SIGURG is ignored unless handled.
    if (::fcntl(fd, F_SETSIG, SIGURG) != 0 || ::fcntl(fd, F_SETLEASE, F_WRLCK) != 0) return;
    while (size > 0) {
      const off_t next = size > kFreeStep ? size - kFreeStep : 0;
      if (::ftruncate(fd, next) != 0) break;
      size = next;
      ::sched_yield();
      if (::fcntl(fd, F_GETLEASE) != F_WRLCK) break;  // someone opens it: let them
      if (behind(waiting)) break;                      // the close frees the rest
    }
    // A count for tests; nothing pairs with it.
    if (size == 0) freed_in_steps.fetch_add(1, std::memory_order_relaxed);
    ::fcntl(fd, F_SETLEASE, F_UNLCK);
  }
  static bool leases_see_every_opener(const struct statfs& fs) noexcept {
    // Local file systems; not FUSE or overlayfs (a lease on the overlay does
    // not see a reader of the layer below), nor NFS (an open file unlinked
    // there keeps a name anyway).
    switch (static_cast<unsigned long>(fs.f_type)) {
      case 0x01021994UL:  // tmpfs
      case 0xEF53UL:      // ext2, ext3, ext4
      case 0x58465342UL:  // xfs
      case 0x9123683EUL:  // btrfs
        return true;
      default:
        return false;
    }
  }
  static constexpr off_t kFreeStep = off_t{2} << 20;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<int> fds_;
  std::atomic<std::size_t> waiting_{0};  // fds_.size(), for the steps to read without the mutex

 public:
  static inline std::atomic<std::uint64_t> freed_in_steps{0};
};

}  // namespace

std::uint64_t dropped_files_freed_in_steps() noexcept {
  return DroppedFileCloser::freed_in_steps.load(std::memory_order_relaxed);
}

namespace {

// Unlinks `name`, its pages freed later by DroppedFileCloser; false with
// errno as unlink() leaves it.
bool drop_file(const std::string& name) {
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (::unlink(name.c_str()) != 0) {
    const int e = errno;
    if (fd >= 0) ::close(fd);
    errno = e;
    return false;
  }
  if (fd >= 0) DroppedFileCloser::close_later(fd);
  return true;
}

}  // namespace

FileSink::FileSink(FileSinkOptions options) : options_(std::move(options)) {
  if (options_.io == FileIo::uring) uring_ = std::make_unique<Uring>(options_.path);
  // Opened now so the file exists from the start (a failure is retried by
  // write()); opened again and its tail checked at the first write, since a
  // runner this sink replaces on reload may still be appending to the same
  // file, and may rotate it.
  std::string ignored;
  open_file(ignored);
}

namespace {

// The file's bytes read backwards a chunk at a time, for cut_torn_tail().
class BackwardReader {
 public:
  explicit BackwardReader(int fd) : fd_(fd), chunk_(64 * 1024) {}
  // The position of the last '\n' before `before`; -1 when there is none,
  // -2 when the file could not be read.
  std::int64_t newline_before(std::uint64_t before) {
    while (before > 0) {
      if (before <= from_ || before > from_ + size_) {
        from_ = before > chunk_.size() ? before - chunk_.size() : 0;
        const ssize_t n = ::pread(fd_, chunk_.data(), static_cast<std::size_t>(before - from_), static_cast<off_t>(from_));
        // Short only if the file shrank meanwhile: then nothing is cut.
        if (n <= 0 || static_cast<std::uint64_t>(n) != before - from_) return -2;
        size_ = static_cast<std::uint64_t>(n);
      }
      for (std::uint64_t i = before; i > from_; --i) {
        if (chunk_[static_cast<std::size_t>(i - 1 - from_)] == '\n') return static_cast<std::int64_t>(i - 1);
      }
      before = from_;
    }
    return -1;
  }
  // Up to `n` bytes at `at` (n at most 2).
  std::string bytes_at(std::uint64_t at, std::size_t n) {
    char text[2];
    const ssize_t got = ::pread(fd_, text, n, static_cast<off_t>(at));
    return got <= 0 ? std::string() : std::string(text, static_cast<std::size_t>(got));
  }

 private:
  int fd_;
  std::vector<char> chunk_;
  std::uint64_t from_ = 0, size_ = 0;
};

}  // namespace

void FileSink::cut_torn_tail() {
  // A router killed in the middle of a write(2) can leave half a batch, the
  // last line cut short. That batch was never marked written, so the next
  // start writes it again: cut back to the last whole line first, or the
  // file would hold a line that does not parse. With `pretty` a document
  // spans lines, so a crash can also leave whole lines of a document that
  // is not whole: cut back to the last whole document.
  if (file_bytes_ == 0) return;
  BackwardReader reader(fd_);
  // The tail can't be read: whether it is cut off is not known, so the
  // batch starts on a line of its own.
  const auto unreadable = [&] {
    line_open_ = true;
    say("%s: could not read its end (a read failed, or the file shrank meanwhile) to "
        "look for a cut-off last line; the next batch starts on a new line", options_.path.c_str());
  };
  const std::int64_t last_newline = reader.newline_before(file_bytes_);
  if (last_newline == -2) return unreadable();
  std::uint64_t end = static_cast<std::uint64_t>(last_newline + 1);  // 0 when not one whole line
  // An end that is not ours to cut: kept, and the next batch starts on a
  // line of its own.
  const auto keep_end = [&](const char* because) {
    line_open_ = true;
    say("%s ends in %llu bytes without a newline%s; kept, and the next batch starts on a new line",
        options_.path.c_str(), static_cast<unsigned long long>(file_bytes_ - end), because);
  };
  if (!options_.last_write_may_be_torn) {
    // No write of this backend's was cut short: an end without a newline
    // is another program's (a file the path was pointed at, a link to
    // one), and cutting it back destroyed what was never ours.
    if (end != file_bytes_) keep_end(", and no write of this backend's was cut short");
    return;
  }
  // Only a line this sink could have begun is cut: the json formatter's
  // start with '{', and a pretty document's lines with '{', '}' or its
  // indent. A file it did not write (another program's log that ends
  // without a newline, one that has none) was cut back, even to nothing.
  const std::string first = end == file_bytes_ ? std::string("{") : reader.bytes_at(end, 1);
  if (first.empty()) return unreadable();
  if (first != "{" && !(options_.pretty && (first == "}" || first == " "))) {
    return keep_end(" that are no line of this sink's");
  }
  if (options_.pretty) {
    // The whole lines from the last back: a "{" line or one indented by two
    // spaces is inside a document, whose "{" line is where it starts; a "}"
    // line (or a one-line document) ends the whole documents.
    std::uint64_t line_end = end;  // just past the line's '\n'
    while (line_end > 0) {
      const std::int64_t before = reader.newline_before(line_end - 1);
      if (before == -2) return unreadable();
      const auto line_start = static_cast<std::uint64_t>(before + 1);
      const std::string head = reader.bytes_at(line_start, std::min<std::uint64_t>(2, line_end - 1 - line_start));
      if (line_end - 1 - line_start == 1 && head == "{") {
        end = line_start;
        break;
      }
      if (head != "  ") break;
      // A file that starts inside a document was not written by this
      // sink's crash: what stays is left as it is.
      if (line_start == 0) break;
      line_end = line_start;
    }
  }
  if (end == file_bytes_) return;
  if (::ftruncate(fd_, static_cast<off_t>(end)) == 0) {
    say("%s ended in a cut-off %s (the router stopped mid-write); removed its %llu bytes, the batch is written again",
        options_.path.c_str(), options_.pretty ? "document" : "line",
        static_cast<unsigned long long>(file_bytes_ - end));
    file_bytes_ = end;
  } else {
    const int e = errno;
    line_open_ = true;
    say("%s ended in a cut-off %s that could not be removed (ftruncate: %s); the batch is written again on a new line",
        options_.path.c_str(), options_.pretty ? "document" : "line", errno_text(e).c_str());
  }
}

FileSink::~FileSink() {
  // A failed last sync is counted and said, as any other (the saying may
  // want memory: a destructor throws nothing).
  try {
    if (fd_ >= 0 && dirty_ && options_.fsync != FsyncPolicy::never) sync_or_report("the last sync, at close");
  } catch (const std::bad_alloc&) {
  }
  close_file();
}

namespace {
// fsync of a directory, so the entries made in it last a power loss; the
// reason it failed, or empty. EINVAL: a file system that can't sync a
// directory (it syncs nothing there to lose). EACCES: a directory the
// router may write but not read, which it wrote to before this sync was
// made; not a reason to stop writing there.
std::string sync_directory(const std::filesystem::path& directory) {
  const int dir = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if ((dir < 0 && errno != EACCES) || (dir >= 0 && ::fsync(dir) != 0 && errno != EINVAL)) {
    const int e = errno;
    if (dir >= 0) ::close(dir);
    return "fsync of " + directory.string() + ": " + errno_text(e);
  }
  if (dir >= 0) ::close(dir);
  return {};
}
}  // namespace

bool FileSink::open_file(std::string& why) {
  close_file();
  // Missing directories are made 0750 (the files are 0640), whatever the
  // umask: std::filesystem's 0777 made them world-writable under umask 0,
  // where anyone could put a symlink at the path. Existing ones are left
  // as they are.
  const std::filesystem::path path(options_.path);
  std::string directory_failed;  // a directory that could not be made, and why
  if (path.has_parent_path()) {
    std::filesystem::path prefix;
    for (const auto& part : path.parent_path()) {
      prefix /= part;
      if (::mkdir(prefix.c_str(), 0750) == 0) {
        // mkdir's mode is narrowed by the umask. By descriptor, not by
        // name: a symlink swapped in meanwhile is not followed (chmod by
        // name would have set 0750 on wherever it pointed).
        if (const int dir = ::open(prefix.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC); dir >= 0) {
          ::fchmod(dir, 0750);
          ::close(dir);
        }
        // The new directory's own entry is on disk only once its parent
        // is synced: without it, a power loss could take the directory,
        // and every batch synced into it since.
        if (options_.fsync != FsyncPolicy::never) {
          const std::filesystem::path parent = prefix.has_parent_path() ? prefix.parent_path() : ".";
          if (std::string failed = sync_directory(parent); !failed.empty()) {
            // Removed again (it is empty), so the retry makes it and syncs
            // its parent then: left, it would exist and never be synced.
            ::rmdir(prefix.c_str());
            why = failed + " (the parent of " + prefix.string() + ", made for " + options_.path + ")";
            return false;
          }
        }
      } else if (errno != EEXIST) {
        // open() below fails too, and says "no such file": the directory
        // it could not make, and why, is the news.
        const int e = errno;  // before anything below may set it
        directory_failed = "cannot create directory " + prefix.string() + ": " + errno_text(e);
        break;
      }
    }
  }
  // Read access only so a start can find a cut-off last line (cut_torn_tail).
  fd_ = ::open(options_.path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd_ < 0) {
    const int e = errno;
    why = e == ENOENT && !directory_failed.empty() ? directory_failed + " (for " + options_.path + ")"
                                                    : "cannot open " + options_.path + ": " + errno_text(e);
    return false;
  }
  // A file just made (or renamed away by a rotation) is on disk only once
  // its directory is: under `fsync` a batch reported synced could vanish
  // with the file's entry at a power loss. Once an open, and opens are
  // rare (start, rotation, reopen).
  if (options_.fsync != FsyncPolicy::never) {
    const std::filesystem::path directory = path.has_parent_path() ? path.parent_path() : ".";
    if (std::string failed = sync_directory(directory); !failed.empty()) {
      why = failed + " (the directory of " + options_.path + ")";
      close_file();
      return false;
    }
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int e = errno;
    why = "cannot stat " + options_.path + ": " + errno_text(e);
    close_file();
    return false;
  }
  // Checked on what was opened, not on the name before.
  if (std::string wrong = unwritable_file_type(st.st_mode); !wrong.empty()) {
    why = options_.path + " " + wrong;
    close_file();
    return false;
  }
  if (S_ISFIFO(st.st_mode)) {
    // A pipe: written only while something reads it (`/dev/stdout` piped
    // to a log collector). Opened for reading and writing, which never
    // waits, a FIFO no one reads (anyone who can write the directory can
    // put one there) took batches as sent, and then held the sink in
    // write() for good. A write-only open without waiting fails (ENXIO)
    // where no reader has it open: then it is a retried failure, said.
    close_file();
    fd_ = ::open(options_.path.c_str(), O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);
    if (fd_ < 0) {
      const int e = errno;
      why = e == ENXIO ? options_.path + " is a FIFO that nothing reads"
                       : "cannot open " + options_.path + ": " + errno_text(e);
      return false;
    }
    // Then blocking, as a file's writes are: a slow reader slows the sink.
    const int flags = ::fcntl(fd_, F_GETFL);
    if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK) != 0 || ::fstat(fd_, &st) != 0 ||
        !S_ISFIFO(st.st_mode)) {
      const int e = errno;
      why = "cannot open " + options_.path + " as the FIFO it was: " + errno_text(e);
      close_file();
      return false;
    }
  }
  file_bytes_ = static_cast<std::uint64_t>(st.st_size);
  const auto now = std::chrono::steady_clock::now();
  // Age rotation counts from the file's birth, not from this open: a
  // reload, a reopen or a restart each open the file again, and a file
  // reopened at least once every `rotate_seconds` would never rotate. Where
  // the file system keeps no birth time, or one ahead of the wall clock
  // (set back since the file was made: each reopen took its age for 0, and
  // it never rotated while the clock was behind), the same file keeps the
  // age it had.
  struct statx sx {};
  std::int64_t age_ns = -1;
  if (::statx(fd_, "", AT_EMPTY_PATH, STATX_BTIME, &sx) == 0 && (sx.stx_mask & STATX_BTIME) != 0) {
    timespec real{};
    ::clock_gettime(CLOCK_REALTIME, &real);
    age_ns = (static_cast<std::int64_t>(real.tv_sec) - sx.stx_btime.tv_sec) * 1'000'000'000 +
             (real.tv_nsec - static_cast<std::int64_t>(sx.stx_btime.tv_nsec));
  }
  if (age_ns >= 0) {
    opened_at_ = now - std::chrono::nanoseconds(age_ns);
    suspended_at_open_ = time_suspended();
  } else if (st.st_dev != file_dev_ || st.st_ino != file_ino_) {
    opened_at_ = now;
    suspended_at_open_ = time_suspended();
  }
  // Another file, or one emptied: no fragment of ours ends it.
  if (st.st_dev != file_dev_ || st.st_ino != file_ino_ || st.st_size == 0) line_open_ = false;
  file_dev_ = st.st_dev;
  file_ino_ = st.st_ino;
  last_fsync_ = now;
  return true;
}

void FileSink::close_file() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

// Under `interval` (and before a rotation or reopen) a failed sync cannot
// send lines back to be written: their ring space is released already, and
// after an error Linux may have marked their pages clean, so a second sync
// would report success. Counted and said, at most once a second.
void FileSink::sync_or_report(const char* since) {
  if (::fdatasync(fd_) == 0) return;
  const int e = errno;
  if (counters_) counters_->failures.add(1);
  const auto now = std::chrono::steady_clock::now();
  if (now - last_sync_report_ < std::chrono::seconds(1)) return;
  last_sync_report_ = now;
  say("%s: fdatasync failed: %s; lines written since %s may not be on disk",
      options_.path.c_str(), errno_text(e).c_str(), since);
}

// Files numbered past `keep`, left by a config that kept more, as far as
// they run without a gap (as the shift goes): a few at each rotation, the
// highest first so the run stays unbroken for the next. Each last close
// of a big file frees its pages; dropping a hundred at once would hold
// the sink thread for seconds once the closer thread is behind. One that
// can't be dropped stays, said at most once a minute: the new file is what
// the rotation is for.
void FileSink::drop_files_past_keep() {
  constexpr std::uint32_t kMostDroppedAtOnce = 4;
  const std::string& base = options_.path;
  // The run's end is looked for once a sink: its rotations never make a
  // file past keep, so it only moves down as they drop (a scan at each
  // rotation of a run of thousands was thousands of calls each time).
  if (past_keep_end_ == 0) {
    past_keep_end_ = options_.keep + 1;
    while (past_keep_end_ != 0 && ::access((base + "." + std::to_string(past_keep_end_)).c_str(), F_OK) == 0) {
      ++past_keep_end_;
    }
  }
  std::uint32_t& end = past_keep_end_;
  for (std::uint32_t dropped = 0; end > options_.keep + 1 && dropped < kMostDroppedAtOnce; ++dropped) {
    const std::string name = base + "." + std::to_string(--end);
    if (drop_file(name) || errno == ENOENT) continue;
    ++end;  // still there: tried again at the next rotation
    const int e = errno;
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_drop_report_) {
      next_drop_report_ = now + std::chrono::minutes(1);
      say("%s: cannot remove %s, past keep %u: %s", base.c_str(), name.c_str(), options_.keep, errno_text(e).c_str());
    }
    return;
  }
}

bool FileSink::rotate(std::string& why) {
  if (fd_ >= 0 && options_.fsync != FsyncPolicy::never) sync_or_report("the last sync, before a rotation");
  close_file();
  // path.keep is dropped, the rest shift up by one, path becomes path.1.
  // Each step that fails (other than on a name already gone) ends the
  // rotation there, said: rename() replaces its target, so carrying on
  // after a failed shift would put path over a path.1 that is still kept,
  // and a failed unlink with a keep of 0 would "rotate" into the same full
  // file at every batch.
  const std::string& base = options_.path;
  const auto failed = [&](const char* what, const std::string& name) {
    const int e = errno;
    why = std::string("cannot rotate ") + base + ": " + what + " " + name + ": " + errno_text(e);
    return false;
  };
  if (options_.keep == 0) {
    if (!drop_file(base) && errno != ENOENT) return failed("unlink", base);
  } else {
    // The older files shift up only when path.1 is taken: after a rotation
    // whose last rename failed, path.1 is free already, and shifting again
    // at each retry would drop one more old file every time.
    // Only the files up to the first free number shift: with a `keep` of
    // thousands, renaming every number (most of them absent) took seconds
    // of the sink thread at each rotation. Past a gap (a file removed by
    // hand) the older ones stay as they are.
    const std::string first = base + ".1";
    if (::access(first.c_str(), F_OK) == 0) {
      std::uint32_t free_number = 2;
      while (free_number <= options_.keep &&
             ::access((base + "." + std::to_string(free_number)).c_str(), F_OK) == 0) {
        ++free_number;
      }
      // Nothing but files moves along the numbers: a directory someone
      // made at one was renamed up the numbers, rotation by rotation,
      // until its unlink failed at `keep`.
      for (std::uint32_t i = 1; i <= std::min(free_number, options_.keep); ++i) {
        const std::string name = base + "." + std::to_string(i);
        if (struct stat at {}; ::lstat(name.c_str(), &at) == 0 && S_ISDIR(at.st_mode)) {
          errno = EISDIR;
          return failed("shift", name);
        }
      }
      if (free_number > options_.keep) {
        free_number = options_.keep;
        const std::string oldest = base + "." + std::to_string(free_number);
        if (!drop_file(oldest) && errno != ENOENT) return failed("unlink", oldest);
      }
      for (std::uint32_t i = free_number; i > 1; --i) {
        const std::string from = base + "." + std::to_string(i - 1);
        if (::rename(from.c_str(), (base + "." + std::to_string(i)).c_str()) != 0 && errno != ENOENT) {
          return failed("rename", from);
        }
      }
    }
    if (::rename(base.c_str(), first.c_str()) != 0 && errno != ENOENT) return failed("rename", base);
  }
  drop_files_past_keep();
  if (counters_) counters_->rotations.add(1);
  return open_file(why);
}

bool FileSink::write_all(const char* data, std::size_t size, std::string& why) {
  while (size > 0) {
    const ssize_t n = uring_ ? uring_->write(fd_, data, size) : ::write(fd_, data, size);
    if (n < 0) {
      const int e = uring_ ? static_cast<int>(-n) : errno;
      // Not EAGAIN: a file descriptor never gives it, and from io_uring
      // it means no ring could be made or nothing submitted after many
      // tries; looping here would spin where the runner backs off, counts
      // and lets a stop through.
      if (e == EINTR) continue;
      why = "write to " + options_.path + ": " + errno_text(e);
      return false;
    }
    if (n == 0) {
      // No progress and no error (some FUSE file systems): a retry later,
      // not a loop here that a stop could not end.
      why = "write to " + options_.path + ": wrote nothing";
      return false;
    }
    // A short write (disk nearly full, a signal): the rest goes next round.
    data += n;
    size -= static_cast<std::size_t>(n);
    file_bytes_ += static_cast<std::uint64_t>(n);
  }
  return true;
}

bool FileSink::take_the_file(std::string& why) {
  // Opened again, not only looked at: the runner this sink replaces on a
  // reload may have rotated the file since (or logrotate renamed it), and
  // the descriptor opened when this sink was made then names the rotated
  // or an unlinked file.
  if (!open_file(why)) return false;
  tail_checked_ = true;
  cut_torn_tail();
  return true;
}

Outcome FileSink::write(const Batch& batch, std::string& why) {
  if (!tail_checked_) {
    if (!take_the_file(why)) return Outcome::retry;
  } else if (fd_ < 0 && !open_file(why)) {
    return Outcome::retry;
  }
  const auto crosses = [&] {
    return options_.rotate_bytes != 0 && file_bytes_ != 0 && file_bytes_ + batch.bytes.size() > options_.rotate_bytes;
  };
  if (crosses()) {
    look_at_size_again();
    const auto now = std::chrono::steady_clock::now();
    if (crosses() && now >= rotate_retry_at_ && !rotate_or_carry_on(now, why)) return Outcome::retry;
  }
  for (int attempt = 0;; ++attempt) {
    // Its own line, not glued to a fragment: that line stays broken, and
    // the batch's first event does not go down with it.
    if (line_open_) {
      // Not where the file ends a line already (a fragment that stopped
      // just past a newline, another writer's whole line after it): that
      // would be an empty line.
      struct stat st {};
      char last = 0;
      const bool ends_line = ::fstat(fd_, &st) == 0 &&
                             (st.st_size == 0 || (::pread(fd_, &last, 1, st.st_size - 1) == 1 && last == '\n'));
      if (!ends_line && !write_all("\n", 1, why)) return Outcome::retry;
      line_open_ = false;
    }
    const std::uint64_t before = file_bytes_;
    if (!write_all(batch.bytes.data(), batch.bytes.size(), why)) {
      // Part of the batch may be in the file: cut it back so a retry does
      // not leave a torn line.
      cut_back(before);
      return Outcome::retry;
    }
    dirty_ = true;
    // The file removed under us (`rm -r` of its directory) takes writes
    // without an error, and what goes there is lost: looked at after every
    // batch, so no batch counts as written into a file nobody can read. It
    // is written again into the file made anew at the path.
    struct stat st {};
    if (::fstat(fd_, &st) == 0) {
      if (st.st_nlink == 0) {
        say("%s: the file was removed while written; made again, the batch is written again there",
            options_.path.c_str());
        dirty_ = false;
        if (!open_file(why)) return Outcome::retry;
        if (counters_) counters_->reopens.add(1);
        if (attempt == 0) continue;
        // Removed again under the rewrite: never counted as written, but
        // left to the runner's backoff rather than looped on here.
        why = "the file " + options_.path + " was removed again while the batch was written";
        return Outcome::retry;
      }
      // Another writer (logrotate's copytruncate, a second backend on the
      // path) moves the end: sizes for rotation and cut-backs follow it.
      file_bytes_ = static_cast<std::uint64_t>(st.st_size);
    }
    if (options_.fsync == FsyncPolicy::batch) {
      if (::fdatasync(fd_) != 0) {
        const int e = errno;  // before the text's allocations
        why = "fdatasync " + options_.path + ": " + errno_text(e);
        // The batch is in the file but not known to be on disk, and Linux
        // may have marked its pages clean: cut it back so the retry writes
        // it again, once, and syncs it anew. It starts where the file now
        // ends less its bytes (`before` is this sink's view from the last
        // batch, which another writer or a copytruncate may have moved).
        cut_back(file_bytes_ - std::min<std::uint64_t>(file_bytes_, batch.bytes.size()));
        return Outcome::retry;
      }
      dirty_ = false;
    }
    return Outcome::ok;
  }
}

void FileSink::cut_back(std::uint64_t before) {
  if (file_bytes_ == before) return;
  // Only where the file ends just past what this sink wrote since `before`:
  // had another writer appended meanwhile (a second backend on the path, a
  // runner replaced on reload), or the file been truncated under us
  // (copytruncate), cutting to `before` would remove that writer's lines or
  // open a gap of zero bytes.
  struct stat st {};
  const bool stated = ::fstat(fd_, &st) == 0;
  if (stated && static_cast<std::uint64_t>(st.st_size) == file_bytes_ &&
      ::ftruncate(fd_, static_cast<off_t>(before)) == 0) {
    file_bytes_ = before;
    return;
  }
  const int e = errno;  // fstat's or ftruncate's, before anything else sets it
  line_open_ = true;
  say("%s: part of a batch that failed is in the file and could not be cut back (%s); "
      "the retry writes the batch whole on a line after it",
      options_.path.c_str(),
      stated && static_cast<std::uint64_t>(st.st_size) != file_bytes_ ? "another writer changed the file"
                                                                       : errno_text(e).c_str());
  // Only a size read now: a failed fstat leaves the one this sink counted.
  if (stated) file_bytes_ = static_cast<std::uint64_t>(st.st_size);
}

void FileSink::look_at_size_again() noexcept {
  if (struct stat st {}; fd_ >= 0 && ::fstat(fd_, &st) == 0) file_bytes_ = static_cast<std::uint64_t>(st.st_size);
}

// A rotation that fails (a rename refused) must not stop delivery: the
// lines go on into the file at the path, the failure is counted and said
// (at most once a minute), and the rotation is tried again a second later.
// False, with `why`, only when no file is open after it: then the batch is
// retried, and the runner counts and says that.
bool FileSink::rotate_or_carry_on(std::chrono::steady_clock::time_point now, std::string& why) {
  if (rotate(why)) return true;
  rotate_retry_at_ = now + std::chrono::seconds(1);
  if (fd_ < 0) {
    // The rename done and the new file refused, or the old one not to be
    // opened again: nothing to write on into.
    std::string open_why;
    if (!open_file(open_why)) {
      if (open_why != why) why += "; " + open_why;  // not the same refusal twice
      return false;
    }
  }
  if (counters_) counters_->failures.add(1);
  if (now >= next_rotate_report_) {
    next_rotate_report_ = now + std::chrono::minutes(1);
    say("%s: %s; writing on into it, the rotation is tried again each second", options_.path.c_str(), why.c_str());
  }
  return true;
}

void FileSink::say(const char* format, ...) const noexcept {
  char line[1024];
  va_list arguments;
  va_start(arguments, format);
  const int length = std::vsnprintf(line, sizeof line, format, arguments);
  va_end(arguments);
  if (length <= 0) return;
  remark(std::string_view(line, std::min<std::size_t>(static_cast<std::size_t>(length), sizeof line - 1)));
}

void FileSink::tick(std::chrono::steady_clock::time_point now) {
  if (fd_ < 0) return;
  if (options_.fsync == FsyncPolicy::interval && dirty_ && now - last_fsync_ >= options_.fsync_interval) {
    sync_or_report("the last interval");
    dirty_ = false;
    last_fsync_ = now;
  }
  // A quiet backend's file, after a restart or a reload that replaced its
  // runner, is as old as its birth says: taken now (its torn tail cut)
  // rather than at the next event, which went into a file long past its
  // age, rotated only then. The runner calls tick() once the runner it
  // replaces has stopped, so no other sink writes the file now.
  if (options_.rotate_seconds != 0 && !tail_checked_) {
    if (std::string why; !take_the_file(why)) {
      // Said once: with no file open, no tick comes here again.
      say("%s: %s (the next batch tries again)", options_.path.c_str(), why.c_str());
      return;
    }
  }
  if (options_.rotate_seconds != 0 && file_bytes_ != 0 && now >= rotate_retry_at_ &&
      now - opened_at_ + (time_suspended() - suspended_at_open_) >= std::chrono::seconds(options_.rotate_seconds)) {
    look_at_size_again();
    // No file open after it: the next batch opens one or is retried.
    std::string why;
    if (file_bytes_ != 0) (void)rotate_or_carry_on(now, why);
  }
  // Once a second: is our fd still the file at `path`? A rename by logrotate
  // without a HUP, or a directory removed under us, would otherwise send
  // every later event into an unlinked file.
  if (now - last_check_ >= std::chrono::seconds(1)) {
    last_check_ = now;
    // Only a path that names no file or another file: a stat that fails for
    // another reason (a directory on the way we may no longer search, no
    // memory) says nothing of ours, and reopening would close a descriptor
    // that still works for an open that fails too.
    struct stat at_path {}, ours {};
    const bool named = ::stat(options_.path.c_str(), &at_path) == 0;
    const bool gone = !named && (errno == ENOENT || errno == ENOTDIR);
    if (gone || (named && ::fstat(fd_, &ours) == 0 && (at_path.st_ino != ours.st_ino || at_path.st_dev != ours.st_dev))) {
      reopen();
    }
  }
}

void FileSink::reopen() {
  if (fd_ >= 0 && dirty_ && options_.fsync != FsyncPolicy::never) sync_or_report("the last sync, before a reopen");
  std::string why;
  if (open_file(why)) {
    if (counters_) counters_->reopens.add(1);
    return;
  }
  // The next batch opens it again, and says why; said now too, as a quiet
  // backend may have no batch for a long while.
  say("%s: reopen: %s (the next batch tries again)", options_.path.c_str(), why.c_str());
}

}  // namespace ringroute::sinks
