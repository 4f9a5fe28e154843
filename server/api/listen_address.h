// The addresses the server listens on (--listen, --http-listen, --metrics-listen): checked before
// anything starts, and a listen that failed said in words a person can act on.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stackproc::server {

struct HostPort {
  std::string host;  // without an IPv6 address's brackets
  int port = 0;      // 0: any free port
};

// HOST:PORT, [IPV6]:PORT: InvalidArgument naming `flag` without a port or with one outside
// 0-65535 (gRPC would serve "localhost" on 443 and wrap 99999 to 34463).
absl::StatusOr<HostPort> ParseHostPort(absl::string_view flag, absl::string_view text);

// Why listening on `text` (for `flag`) failed, found by binding it once more: Unavailable
// saying its port is in use (another stackprocd?) or its host is not this machine's.
absl::Status ListenFailed(absl::string_view flag, absl::string_view text);

}  // namespace stackproc::server
