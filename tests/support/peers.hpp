#pragma once
// Real peers for sink tests: rsyslog (and other daemons) started by the test
// on 127.0.0.1 or a unix socket in a temporary directory, stopped with it.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "private_mounts.hpp"

namespace ringroute::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& what)
      : path_("/tmp/rr-" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++)) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  static inline int counter_ = 0;
  std::string path_;
};

// This process's open file descriptors (with the one listing them took).
inline std::set<int> open_descriptors() {
  std::set<int> fds;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    fds.insert(std::stoi(entry.path().filename().string()));
  }
  return fds;
}

// Holds this process to `room` descriptors more than it has open: its
// limit just past the room-th free number (the lowest one counted free:
// listing the open ones took it for itself). For a forked child.
inline void leave_room_for_descriptors(int room) {
  std::set<int> open = open_descriptors();
  const int lowest_free = ::dup(0);
  ::close(lowest_free);
  open.erase(lowest_free);
  int free_seen = 0, limit = 0;
  while (free_seen < room) free_seen += open.count(limit++) == 0 ? 1 : 0;
  const rlimit nofile{static_cast<rlim_t>(limit), static_cast<rlim_t>(limit)};
  ::setrlimit(RLIMIT_NOFILE, &nofile);
}

// A socket bound to `ipv4` (127.0.0.1 unless said) on a free port
// (listening, for a stream), with `receive_buffer` bytes of SO_RCVBUF when
// not 0.
struct BoundSocket {
  int fd = -1;
  std::uint16_t port = 0;
};
inline BoundSocket bind_loopback(int type = SOCK_STREAM, int receive_buffer = 0, const char* ipv4 = "127.0.0.1") {
  BoundSocket bound;
  bound.fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (receive_buffer > 0) ::setsockopt(bound.fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  ::inet_pton(AF_INET, ipv4, &address.sin_addr);
  ::bind(bound.fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  if (type == SOCK_STREAM) ::listen(bound.fd, 64);
  socklen_t length = sizeof address;
  ::getsockname(bound.fd, reinterpret_cast<sockaddr*>(&address), &length);
  bound.port = ntohs(address.sin_port);
  return bound;
}

// A port nobody listens on now (bound to 0, then closed).
inline std::uint16_t free_port(int type = SOCK_STREAM) {
  const BoundSocket bound = bind_loopback(type);
  ::close(bound.fd);
  return bound.port;
}

inline bool tcp_accepts(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return ok;
}

inline std::string find_program(const std::string& name) {
  for (const char* dir : {"/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"}) {
    const std::string path = std::string(dir) + "/" + name;
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  return {};
}

// A name with two loopback addresses (a private /etc/hosts), so a test can
// listen on one and see the other refused.
inline constexpr const char* kTwoAddressName = "rr-two-addresses";

// Runs `body(second)` in a child that resolves kTwoAddressName to two
// loopback addresses, `second` (numeric) being the one getaddrinfo gives
// second: what a test listens on to see a sink get past a refused first
// one. As run_with_hosts_file(), and kNoPrivateMounts too where the name
// service does not read /etc/hosts (nscd, or systemd-resolved first).
inline int run_with_two_address_name(const std::function<int(const std::string& second)>& body) {
  TempDir dir("hosts");
  const std::string hosts = dir / "hosts";
  std::ofstream(hosts) << "127.0.0.1 localhost\n127.0.0.1 " << kTwoAddressName << "\n127.0.0.2 " << kTwoAddressName
                       << "\n";
  return run_with_hosts_file(hosts, [&] {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    std::vector<std::string> addresses;
    if (::getaddrinfo(kTwoAddressName, nullptr, &hints, &found) == 0) {
      for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
        char text[INET_ADDRSTRLEN] = {};
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr, text, sizeof text);
        addresses.emplace_back(text);
      }
      ::freeaddrinfo(found);
    }
    if (addresses.size() != 2) {
      std::fprintf(stderr, "%s resolves to %zu addresses, not 2\n", kTwoAddressName, addresses.size());
      return kNoPrivateMounts;
    }
    return body(addresses[1]);
  });
}

// A child process, killed (SIGTERM, then SIGKILL) when this goes.
class Child {
 public:
  Child() = default;
  explicit Child(const std::vector<std::string>& argv, const std::string& log_path = "/dev/null") { start(argv, log_path); }
  ~Child() { stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  void start(const std::vector<std::string>& argv, const std::string& log_path = "/dev/null") {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test binary killed by its timeout takes its peers with it
      const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (log >= 0) {
        ::dup2(log, 1);
        ::dup2(log, 2);
      }
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 200; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  [[nodiscard]] bool running() const { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// The file's whole lines: a last one without its newline yet (a receiver
// writing as we read) is left for the next read.
inline std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> lines;
  for (std::size_t start = 0, end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    lines.push_back(text.substr(start, end - start));
  }
  return lines;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Waits until `path` has at least `count` lines (or `limit` passes); the lines.
// The limit is generous: a passing test returns as soon as they are there,
// and a receiver on 2 loaded cores beside a sanitized sink may be slow.
inline std::vector<std::string> wait_for_lines(const std::string& path, std::size_t count,
                                               std::chrono::milliseconds limit = std::chrono::milliseconds(10000)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::vector<std::string> lines;
  for (;;) {
    lines = read_lines(path);
    if (lines.size() >= count || std::chrono::steady_clock::now() >= deadline) return lines;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// rsyslogd in the foreground with a config of its own: each input's messages
// go to `out.jsonl` in `dir`, one JSON object a line with rsyslog's own parse
// of the RFC 5424 fields (so the test checks what a real receiver understood).
class Rsyslog {
 public:
  static constexpr const char* kHostName = "rr-test-host";
  static std::string program() { return find_program("rsyslogd"); }

  Rsyslog(const TempDir& dir, const std::string& inputs) : dir_(dir) {
    const std::string config = dir / "rsyslog.conf";
    // A host name of its own for messages that carry none (imuxsock's): the
    // machine's would be cut at its first dot, or not, by rsyslog's rules.
    std::ofstream(config) << "global(workDirectory=\"" << dir.path()
                          << "\" maxMessageSize=\"64k\" localHostname=\"" << kHostName << "\")\n"
                          << "template(name=\"fields\" type=\"list\") {\n"
                             "  constant(value=\"{\")\n"
                             "  property(outname=\"pri\" name=\"pri\" format=\"jsonf\") constant(value=\",\")\n"
                             "  property(outname=\"version\" name=\"protocol-version\" format=\"jsonf\") constant(value=\",\")\n"
                             "  property(outname=\"timestamp\" name=\"timereported\" dateFormat=\"rfc3339\" format=\"jsonf\") constant(value=\",\")\n"
                             "  property(outname=\"hostname\" name=\"hostname\" format=\"jsonf\") constant(value=\",\")\n"
                             "  property(outname=\"app\" name=\"app-name\" format=\"jsonf\") constant(value=\",\")\n"
                             "  property(outname=\"procid\" name=\"procid\" format=\"jsonf\") constant(value=\",\")\n"
                             "  property(outname=\"msgid\" name=\"msgid\" format=\"jsonf\") constant(value=\",\")\n"
                             "  property(outname=\"sd\" name=\"structured-data\" format=\"jsonf\") constant(value=\",\")\n"
                             "  property(outname=\"msg\" name=\"msg\" format=\"jsonf\")\n"
                             "  constant(value=\"}\\n\")\n"
                             "}\n"
                             "ruleset(name=\"out\") { action(type=\"omfile\" file=\""
                          << (dir / "out.jsonl") << "\" template=\"fields\") }\n"
                          << inputs;
    child_.start({program(), "-n", "-f", config, "-i", dir / "rsyslog.pid"}, dir / "rsyslog.log");
  }

  // Waits until a TCP port of it accepts connections.
  [[nodiscard]] bool wait_tcp(std::uint16_t port) const {
    for (int i = 0; i < 1000; ++i) {
      if (tcp_accepts(port)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  // Waits until a path (a unix socket it listens on) exists.
  [[nodiscard]] bool wait_path(const std::string& path) const {
    for (int i = 0; i < 200; ++i) {
      if (std::filesystem::exists(path)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  [[nodiscard]] std::string output() const { return dir_ / "out.jsonl"; }
  [[nodiscard]] std::string log() const { return read_text(dir_ / "rsyslog.log"); }
  void stop() { child_.stop(); }
  [[nodiscard]] bool running() const { return child_.running(); }

 private:
  const TempDir& dir_;
  Child child_;
};

// A test PKI made with the openssl command: a CA, a server certificate it
// signed for localhost and 127.0.0.1, and a second CA that signed nothing
// (the "wrong CA"). Empty when openssl is missing or failed.
struct TestPki {
  std::string ca, server_cert, server_key, other_ca, client_cert, client_key;
  [[nodiscard]] bool ok() const { return !ca.empty(); }
};

inline TestPki make_test_pki(const TempDir& dir) {
  const std::string openssl = find_program("openssl");
  if (openssl.empty()) return {};
  std::ofstream(dir / "san.cnf") << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
  const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  // One group, so every command's output goes to the log (a redirect after
  // the last && took only the last one's; the others' chatter went into the
  // test output, and their errors nowhere the test's message shows).
  const std::string commands =
      "{ " + openssl + " req -x509" + ec + " -keyout " + (dir / "ca.key") + " -out " + (dir / "ca.crt") +
      " -days 2 -subj /CN=ringroute-test-ca && " +
      openssl + " req -x509" + ec + " -keyout " + (dir / "other.key") + " -out " + (dir / "other.crt") +
      " -days 2 -subj /CN=ringroute-other-ca && " +
      openssl + " req" + ec + " -keyout " + (dir / "server.key") + " -out " + (dir / "server.csr") +
      " -subj /CN=localhost && " +
      openssl + " x509 -req -in " + (dir / "server.csr") + " -CA " + (dir / "ca.crt") + " -CAkey " + (dir / "ca.key") +
      " -CAcreateserial -out " + (dir / "server.crt") + " -days 2 -extfile " + (dir / "san.cnf") + " && " +
      openssl + " req" + ec + " -keyout " + (dir / "client.key") + " -out " + (dir / "client.csr") +
      " -subj /CN=ringroute-client && " +
      openssl + " x509 -req -in " + (dir / "client.csr") + " -CA " + (dir / "ca.crt") + " -CAkey " + (dir / "ca.key") +
      " -CAcreateserial -out " + (dir / "client.crt") + " -days 2; } > " + (dir / "openssl.log") + " 2>&1";
  if (std::system(commands.c_str()) != 0) return {};
  return {dir / "ca.crt", dir / "server.crt", dir / "server.key", dir / "other.crt", dir / "client.crt",
          dir / "client.key"};
}

}  // namespace ringroute::testing
