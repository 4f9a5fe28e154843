// The stackproc subcommands. Each prints its result to stdout and returns the process exit code
// (0 on success); failures return a Status whose message main prints as one line.
#pragma once

#include "absl/status/statusor.h"
#include "client/client.h"
#include "core/tools/cli_args.h"

namespace stackproc::client {

absl::StatusOr<int> RunCommand(const std::string& command, const core::CliArgs& args,
                               Client& client);

// Whether `command` is one of stackproc's.
bool IsCommand(const std::string& command);

// InvalidArgument naming a flag `command` does not take (before anything is sent).
absl::Status CheckFlags(const std::string& command, const core::CliArgs& args);

// The flags that take no value, for parsing.
const std::vector<std::string>& Switches();

}  // namespace stackproc::client
