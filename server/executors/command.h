// Runs another program (the cluster's sbatch, squeue, scancel) and collects what it printed.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace stackproc::server {

struct CommandResult {
  int exit_code = 0;   // the program's exit status; 128 + N when signal N ended it
  std::string output;  // stdout
  std::string errors;  // stderr
};

// Runs `argv` (argv[0] found on PATH) with stdin from /dev/null and waits for it, at most
// `timeout`: then it is killed and the result is DeadlineExceeded. A program that cannot be
// started is FailedPrecondition naming it. Its output is kept up to 1 MiB per stream.
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout = absl::Seconds(60));

// "sbatch: error: ..." when the command failed, for messages: its last line of stderr, or else
// of stdout, or its exit code.
std::string CommandFailure(const std::vector<std::string>& argv, const CommandResult& result);

}  // namespace stackproc::server
