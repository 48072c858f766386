#include "ringroute/sinks/file_sink.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>
#include <cstdio>

#include "ringroute/perf/block.hpp"

namespace ringroute::sinks {

struct FileSink::Uring {
  io_uring ring{};
  explicit Uring(const std::string& path) {
    const int rc = io_uring_queue_init(4, &ring, 0);
    if (rc < 0) {
      throw std::runtime_error("file sink " + path + ": io_uring is not available here (" + std::strerror(-rc) +
                               "); set options.io to \"write\"");
    }
  }
  ~Uring() { io_uring_queue_exit(&ring); }
  // One write at the file's position (the file is O_APPEND); the result as write(2) gives it.
  ssize_t write(int fd, const char* data, std::size_t size) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    if (sqe == nullptr) return -EBUSY;
    io_uring_prep_write(sqe, fd, data, static_cast<unsigned>(std::min<std::size_t>(size, 1u << 30)),
                        static_cast<__u64>(-1));
    int rc = io_uring_submit(&ring);
    if (rc < 0) return rc;
    io_uring_cqe* cqe = nullptr;
    do {
      rc = io_uring_wait_cqe(&ring, &cqe);
    } while (rc == -EINTR);
    if (rc < 0) return rc;
    const ssize_t result = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    return result;
  }
};

namespace {

std::string errno_text(int e) { return std::strerror(e); }

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

void FileSink::cut_torn_tail() {
  // A router killed in the middle of a write(2) can leave half a batch, the
  // last line cut short. That batch was never marked written, so the next
  // start writes it again: cut back to the last whole line first, or the
  // file would hold a line that does not parse.
  if (file_bytes_ == 0) return;
  char last = 0;
  if (::pread(fd_, &last, 1, static_cast<off_t>(file_bytes_ - 1)) != 1 || last == '\n') return;
  std::vector<char> chunk(64 * 1024);
  std::uint64_t end = file_bytes_;
  while (end > 0) {
    const std::uint64_t from = end > chunk.size() ? end - chunk.size() : 0;
    const ssize_t n = ::pread(fd_, chunk.data(), static_cast<std::size_t>(end - from), static_cast<off_t>(from));
    if (n <= 0) return;
    for (ssize_t i = n - 1; i >= 0; --i) {
      if (chunk[static_cast<std::size_t>(i)] == '\n') {
        end = from + static_cast<std::uint64_t>(i) + 1;
        goto found;
      }
    }
    end = from;
  }
found:
  if (::ftruncate(fd_, static_cast<off_t>(end)) == 0) {
    std::fprintf(stderr, "ringroute: %s ended in a cut-off line (the router stopped mid-write); removed its %llu bytes, the batch is written again\n",
                 options_.path.c_str(), static_cast<unsigned long long>(file_bytes_ - end));
    file_bytes_ = end;
  }
}

FileSink::~FileSink() {
  if (fd_ >= 0 && dirty_ && options_.fsync != FsyncPolicy::never) ::fdatasync(fd_);
  close_file();
}

bool FileSink::open_file(std::string& why) {
  close_file();
  std::error_code ec;
  const std::filesystem::path path(options_.path);
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  // Read access only so a start can find a cut-off last line (cut_torn_tail).
  fd_ = ::open(options_.path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd_ < 0) {
    why = "cannot open " + options_.path + ": " + errno_text(errno);
    return false;
  }
  struct stat st {};
  ::fstat(fd_, &st);
  file_bytes_ = static_cast<std::uint64_t>(st.st_size);
  opened_at_ = std::chrono::steady_clock::now();
  last_fsync_ = opened_at_;
  return true;
}

void FileSink::close_file() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool FileSink::rotate(std::string& why) {
  if (fd_ >= 0 && options_.fsync != FsyncPolicy::never) ::fdatasync(fd_);
  close_file();
  // path.keep is dropped, the rest shift up by one, path becomes path.1.
  const std::string& base = options_.path;
  if (options_.keep == 0) {
    ::unlink(base.c_str());
  } else {
    ::unlink((base + "." + std::to_string(options_.keep)).c_str());
    for (std::uint32_t i = options_.keep; i > 1; --i) {
      ::rename((base + "." + std::to_string(i - 1)).c_str(), (base + "." + std::to_string(i)).c_str());
    }
    if (::rename(base.c_str(), (base + ".1").c_str()) != 0 && errno != ENOENT) {
      why = "cannot rotate " + base + ": " + errno_text(errno);
      return false;
    }
  }
  if (counters_) counters_->rotations.add(1);
  return open_file(why);
}

bool FileSink::write_all(const char* data, std::size_t size, std::string& why) {
  while (size > 0) {
    const ssize_t n = uring_ ? uring_->write(fd_, data, size) : ::write(fd_, data, size);
    if (n < 0) {
      const int e = uring_ ? static_cast<int>(-n) : errno;
      if (e == EINTR || e == EAGAIN) continue;
      why = "write to " + options_.path + ": " + errno_text(e);
      return false;
    }
    // A short write (disk nearly full, a signal): the rest goes next round.
    data += n;
    size -= static_cast<std::size_t>(n);
    file_bytes_ += static_cast<std::uint64_t>(n);
  }
  return true;
}

Outcome FileSink::write(const Batch& batch, std::string& why) {
  if (!tail_checked_) {
    // Opened again, not only looked at: the runner this sink replaces on a
    // reload may have rotated the file since (or logrotate renamed it), and
    // the descriptor opened when this sink was made then names the rotated
    // or an unlinked file.
    if (!open_file(why)) return Outcome::retry;
    tail_checked_ = true;
    cut_torn_tail();
  } else if (fd_ < 0 && !open_file(why)) {
    return Outcome::retry;
  }
  if (options_.rotate_bytes != 0 && file_bytes_ != 0 && file_bytes_ + batch.bytes.size() > options_.rotate_bytes) {
    if (!rotate(why)) return Outcome::retry;
  }
  const std::uint64_t before = file_bytes_;
  if (!write_all(batch.bytes.data(), batch.bytes.size(), why)) {
    // Part of the batch may be in the file: cut it back so a retry does not
    // leave a torn line (best effort; O_APPEND writes land at the end).
    if (file_bytes_ != before && ::ftruncate(fd_, static_cast<off_t>(before)) == 0) file_bytes_ = before;
    return Outcome::retry;
  }
  dirty_ = true;
  if (options_.fsync == FsyncPolicy::batch) {
    if (::fdatasync(fd_) != 0) {
      why = "fdatasync " + options_.path + ": " + errno_text(errno);
      // The batch is in the file but not known to be on disk, and Linux may
      // have marked its pages clean: cut it back so the retry writes it
      // again, once, and syncs it anew.
      if (::ftruncate(fd_, static_cast<off_t>(before)) == 0) file_bytes_ = before;
      return Outcome::retry;
    }
    dirty_ = false;
  }
  return Outcome::ok;
}

void FileSink::tick(std::chrono::steady_clock::time_point now) {
  if (fd_ < 0) return;
  if (options_.fsync == FsyncPolicy::interval && dirty_ && now - last_fsync_ >= options_.fsync_interval) {
    ::fdatasync(fd_);
    dirty_ = false;
    last_fsync_ = now;
  }
  if (options_.rotate_seconds != 0 && file_bytes_ != 0 &&
      now - opened_at_ >= std::chrono::seconds(options_.rotate_seconds)) {
    std::string why;
    rotate(why);
  }
  // Once a second: is our fd still the file at `path`? A rename by logrotate
  // without a HUP, or a directory removed under us, would otherwise send
  // every later event into an unlinked file.
  if (now - last_check_ >= std::chrono::seconds(1)) {
    last_check_ = now;
    struct stat at_path {}, ours {};
    if (::stat(options_.path.c_str(), &at_path) != 0 || ::fstat(fd_, &ours) != 0 || at_path.st_ino != ours.st_ino ||
        at_path.st_dev != ours.st_dev) {
      reopen();
    }
  }
}

void FileSink::reopen() {
  if (fd_ >= 0 && dirty_ && options_.fsync != FsyncPolicy::never) ::fdatasync(fd_);
  std::string why;
  open_file(why);
  if (counters_) counters_->reopens.add(1);
}

}  // namespace ringroute::sinks
