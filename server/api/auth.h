// Who calls: bearer tokens (--auth-token-file) or client certificates (mutual TLS).
//
// The token file has one caller per line:
//
//   NAME TOKEN [admin]
//
// (blank lines and lines starting with # are ignored; tokens are at least 16 characters).
// Every call to the StackProcessor service carries the metadata "authorization: Bearer TOKEN";
// the health service needs none. A caller sees and cancels only the jobs it submitted, unless
// it is an admin.
#pragma once

#include <grpcpp/grpcpp.h>

#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace stackproc::server {

struct Caller {
  std::string name;   // recorded as the owner of the jobs it submits; "" without a token file
  bool admin = true;  // sees every job

  // Whether this caller may see (and cancel, read, delete) a job of `owner`.
  bool Sees(const std::string& owner) const { return admin || owner == name; }
};

class TokenAuth {
 public:
  // InvalidArgument naming the file and line for a malformed file, a short or repeated token.
  static absl::StatusOr<TokenAuth> Load(const std::string& path);
  // A warning when the file at `path` can be read or changed by every user of this machine
  // (as ssh warns of a key file), "" when it cannot: anyone could take its tokens or add one.
  static std::string ExposureWarning(const std::string& path);

  // The caller whose token `context` carries; Unauthenticated when it carries none or an
  // unknown one.
  absl::StatusOr<Caller> Authenticate(const grpc::ServerContextBase& context) const;
  // The caller of an "authorization" value "Bearer TOKEN" (the web page's calls).
  absl::StatusOr<Caller> AuthenticateHeader(absl::string_view value) const;

  size_t size() const { return callers_.size(); }

 private:
  struct Entry {
    Caller caller;
    std::string token;
  };
  std::vector<Entry> callers_;
};

// Who may call, and who each caller is.
struct Access {
  const TokenAuth* tokens = nullptr;  // callers by bearer token
  bool certificates = false;          // mutual TLS: callers by their certificate's common name
  std::set<std::string> admins;       // certificate callers who see every job

  // By token when there are tokens; else by certificate under mutual TLS (Unauthenticated for
  // a certificate without a common name); else the one anonymous admin.
  absl::StatusOr<Caller> Identify(const grpc::ServerContextBase& context) const;
};

}  // namespace stackproc::server
