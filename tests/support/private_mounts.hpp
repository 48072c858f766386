#pragma once
// A child process with a mount namespace of its own, for tests that need the
// system to look different: an /etc/hosts of their choosing, a /dev/shm too
// small for a ring.

#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

// <linux/fs.h>'s macro, by way of <sys/mount.h>: moodycamel's queue has a
// member of that name.
#undef BLOCK_SIZE

#include <fstream>
#include <functional>
#include <string>

namespace ringroute::testing {

// What a child returns where this host gives a process no mount namespace
// of its own (not root, and no user namespaces), or the mount it asked for
// failed: the test skips.
inline constexpr int kNoPrivateMounts = 77;

// Runs `body` in a child process with a mount namespace of its own (mounts
// it makes are its alone, and go with it). The child's exit status (body's
// result; 128 + a signal when one killed it, as a 10 s alarm does a body
// that hangs), or kNoPrivateMounts.
inline int run_in_private_mounts(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::alarm(10);
    if (::unshare(CLONE_NEWNS) != 0) {
      // Not root: be root of a user namespace, which may have mounts.
      const uid_t uid = ::getuid();
      const gid_t gid = ::getgid();
      if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) ::_exit(kNoPrivateMounts);
      std::ofstream("/proc/self/setgroups") << "deny";
      std::ofstream("/proc/self/uid_map") << "0 " << uid << " 1";
      std::ofstream("/proc/self/gid_map") << "0 " << gid << " 1";
    }
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(kNoPrivateMounts);
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// run_in_private_mounts() with the file `hosts` as the child's /etc/hosts,
// so a name resolves to the addresses a test chooses.
inline int run_with_hosts_file(const std::string& hosts, const std::function<int()>& body) {
  return run_in_private_mounts([&] {
    if (::mount(hosts.c_str(), "/etc/hosts", nullptr, MS_BIND, nullptr) != 0) return kNoPrivateMounts;
    return body();
  });
}

// run_in_private_mounts() with a tmpfs of `bytes` on /dev/shm.
inline int run_with_small_dev_shm(std::size_t bytes, const std::function<int()>& body) {
  return run_in_private_mounts([&] {
    const std::string options = "size=" + std::to_string(bytes);
    if (::mount("tmpfs", "/dev/shm", "tmpfs", 0, options.c_str()) != 0) return kNoPrivateMounts;
    return body();
  });
}

}  // namespace ringroute::testing
