#include "server/api/listen_address.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace stackproc::server {

absl::StatusOr<HostPort> ParseHostPort(absl::string_view flag, absl::string_view text) {
  const size_t colon = text.rfind(':');
  HostPort out;
  const bool bracketed = !text.empty() && text.front() == '[';
  const bool port_follows =
      colon != absl::string_view::npos && (!bracketed || (colon > 0 && text[colon - 1] == ']'));
  if (!port_follows || colon == 0 || !absl::SimpleAtoi(text.substr(colon + 1), &out.port) ||
      out.port < 0 || out.port > 65535 ||
      text.substr(colon + 1).find_first_not_of("0123456789") != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " ", text,
                     ": give HOST:PORT with a port of 0-65535 (0: any free one), e.g. "
                     "127.0.0.1:50051 or [::1]:50051"));
  }
  out.host = std::string(text.substr(0, colon));
  if (bracketed) out.host = out.host.substr(1, out.host.size() - 2);
  return out;
}

absl::Status ListenFailed(absl::string_view flag, absl::string_view text) {
  const std::string prefix = absl::StrCat("cannot listen on ", text, " (--", flag, ")");
  absl::StatusOr<HostPort> address = ParseHostPort(flag, text);
  if (!address.ok()) return absl::UnavailableError(prefix);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = absl::StrCat(address->port);
  if (::getaddrinfo(address->host.c_str(), port.c_str(), &hints, &found) != 0 || !found) {
    return absl::UnavailableError(
        absl::StrCat(prefix, ": ", address->host, " is not a host name or address it knows"));
  }
  int error = 0;
  const int fd = ::socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, 0);
  if (fd >= 0 && ::bind(fd, found->ai_addr, found->ai_addrlen) != 0) error = errno;
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(found);
  if (error == EADDRINUSE) {
    return absl::UnavailableError(absl::StrCat(prefix, ": port ", address->port,
                                               " is in use (another stackprocd?); choose another"));
  }
  if (error == EADDRNOTAVAIL) {
    return absl::UnavailableError(
        absl::StrCat(prefix, ": ", address->host, " is not an address of this machine"));
  }
  return absl::UnavailableError(error != 0 ? absl::StrCat(prefix, ": ", std::strerror(error))
                                           : prefix);
}

}  // namespace stackproc::server
