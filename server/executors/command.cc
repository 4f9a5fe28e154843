#include "server/executors/command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/base/file.h"

extern char** environ;

namespace stackproc::server {
namespace {

constexpr size_t kMaxOutput = size_t{1} << 20;

// Reads what the pipes `fds` carry into `outputs` until both close or `deadline` passes.
bool Drain(std::array<core::UniqueFd, 2>& fds, std::array<std::string*, 2> outputs,
           absl::Time deadline) {
  std::array<bool, 2> open = {true, true};
  char buffer[65536];
  while (open[0] || open[1]) {
    std::array<pollfd, 2> polled{};
    for (int i = 0; i < 2; ++i) polled[i] = {open[i] ? fds[i].get() : -1, POLLIN, 0};
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) return false;
    if (::poll(polled.data(), 2, static_cast<int>(std::min<int64_t>(left, 1000))) < 0 &&
        errno != EINTR) {
      return false;
    }
    for (int i = 0; i < 2; ++i) {
      if (!open[i] || polled[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].get(), buffer, sizeof buffer);
      if (n > 0) {
        outputs[i]->append(buffer, std::min(static_cast<size_t>(n),
                                            kMaxOutput - std::min(kMaxOutput, outputs[i]->size())));
      } else if (n == 0 || errno != EINTR) {
        open[i] = false;
      }
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout) {
  std::array<int, 2> out{}, err{};
  if (::pipe2(out.data(), O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  if (::pipe2(err.data(), O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return absl::InternalError("pipe failed");
  }
  std::array<core::UniqueFd, 2> read_ends = {core::UniqueFd(out[0]), core::UniqueFd(err[0])};
  core::UniqueFd out_write(out[1]), err_write(err[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_write.get(), STDERR_FILENO);
  // The server blocks SIGTERM and SIGINT for its signal thread; the child must not inherit that.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = ::posix_spawnp(&pid, args[0], &actions, &attributes, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  out_write = core::UniqueFd();
  err_write = core::UniqueFd();
  if (spawned != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", argv[0], ": ", std::strerror(spawned)));
  }

  CommandResult result;
  const bool drained = Drain(read_ends, {&result.output, &result.errors}, absl::Now() + timeout);
  if (!drained) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!drained) {
    return absl::DeadlineExceededError(
        absl::StrCat(argv[0], " did not answer within ", absl::FormatDuration(timeout)));
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string CommandFailure(const std::vector<std::string>& argv, const CommandResult& result) {
  for (const std::string* text : {&result.errors, &result.output}) {
    absl::string_view trimmed = absl::StripAsciiWhitespace(*text);
    if (trimmed.empty()) continue;
    std::vector<absl::string_view> lines = absl::StrSplit(trimmed, '\n');
    return std::string(absl::StripAsciiWhitespace(lines.back()));
  }
  return absl::StrCat(argv[0], " exited with status ", result.exit_code);
}

}  // namespace stackproc::server
