#include "server/api/auth.h"

#include <sys/stat.h>

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace stackproc::server {
namespace {

constexpr size_t kMinTokenLength = 16;

// Takes as long for every token of the same length, whatever their bytes: the time of a
// rejection says nothing about how much of a guess was right.
bool SameToken(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

}  // namespace

std::string TokenAuth::ExposureWarning(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || (st.st_mode & (S_IROTH | S_IWOTH | S_IWGRP)) == 0) {
    return "";
  }
  return absl::StrFormat(
      "%s can be %s (mode %04o): chmod 600 it (640 for a group that must read it)", path,
      (st.st_mode & S_IROTH) != 0   ? "read by every user of this machine"
      : (st.st_mode & S_IWOTH) != 0 ? "changed by every user of this machine"
                                    : "changed by its group",
      st.st_mode & 07777);
}

absl::StatusOr<TokenAuth> TokenAuth::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read the token file"));
  TokenAuth auth;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || absl::StartsWith(text, "#")) continue;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", number, ": ", why));
    };
    if (fields.size() < 2 || fields.size() > 3 || (fields.size() == 3 && fields[2] != "admin")) {
      return bad("expected NAME TOKEN [admin]");
    }
    if (fields[1].size() < kMinTokenLength) {
      return bad(absl::StrCat("the token of ", fields[0], " is shorter than ", kMinTokenLength,
                              " characters"));
    }
    for (const Entry& entry : auth.callers_) {
      if (entry.caller.name == fields[0]) return bad(absl::StrCat(fields[0], " appears twice"));
      if (entry.token == fields[1]) return bad("a token given to two callers");
    }
    auth.callers_.push_back({{std::string(fields[0]), fields.size() == 3}, std::string(fields[1])});
  }
  if (auth.callers_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no callers (NAME TOKEN [admin])"));
  }
  return auth;
}

absl::StatusOr<Caller> TokenAuth::Authenticate(const grpc::ServerContextBase& context) const {
  const auto& metadata = context.client_metadata();
  const auto header = metadata.find("authorization");
  if (header == metadata.end()) {
    return absl::UnauthenticatedError(
        "this server needs a token (stackproc --token, or STACKPROC_TOKEN)");
  }
  return AuthenticateHeader(absl::string_view(header->second.data(), header->second.size()));
}

absl::StatusOr<Caller> TokenAuth::AuthenticateHeader(absl::string_view value) const {
  if (!absl::ConsumePrefix(&value, "Bearer ")) {
    return absl::UnauthenticatedError("the authorization is not 'Bearer TOKEN'");
  }
  const Entry* found = nullptr;
  for (const Entry& entry : callers_) {
    if (SameToken(entry.token, value)) found = &entry;
  }
  if (found == nullptr) return absl::UnauthenticatedError("unknown token");
  return found->caller;
}

absl::StatusOr<Caller> Access::Identify(const grpc::ServerContextBase& context) const {
  if (tokens != nullptr) return tokens->Authenticate(context);
  if (!certificates) return Caller{};
  // gRPC has verified the certificate against --tls-client-ca before any call is made.
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  const std::vector<grpc::string_ref> names =
      auth ? auth->FindPropertyValues("x509_common_name") : std::vector<grpc::string_ref>();
  if (names.empty() || names.front().empty()) {
    return absl::UnauthenticatedError("the client certificate has no common name");
  }
  Caller caller;
  caller.name.assign(names.front().data(), names.front().size());
  caller.admin = admins.count(caller.name) > 0;
  return caller;
}

}  // namespace stackproc::server
