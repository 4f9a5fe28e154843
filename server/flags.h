// stackprocd's flags: one table, each row a flag, its value's form, what it does and where it
// goes in ServerOptions. The defaults shown are read from ServerOptions as constructed, the usage
// is made from the table, and every flag FOO-BAR can also be set by STACKPROC_FOO_BAR.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "server/api/server.h"

namespace stackproc::server {

// Parses argv[1..argc) and the environment. InvalidArgument naming the flag (or the usage, for
// --help or a stray argument).
absl::StatusOr<ServerOptions> ParseServerFlags(int argc, char** argv);

// "usage: stackprocd [flags]" and a paragraph per flag.
const std::string& ServerUsage();

// Whether only this machine can reach listen address `address` (HOST:PORT, or unix:PATH: whoever
// may open its file).
bool IsLoopback(const std::string& address);

}  // namespace stackproc::server
