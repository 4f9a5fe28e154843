#include "server/path_resolver.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace stackproc::server {
namespace {

namespace fs = std::filesystem;

bool IsBeneath(const fs::path& root, const fs::path& path) {
  auto [r, p] = std::mismatch(root.begin(), root.end(), path.begin(), path.end());
  return r == root.end();
}

}  // namespace

absl::StatusOr<PathResolver> PathResolver::Create(const std::string& root) {
  std::error_code ec;
  fs::path canonical = fs::canonical(root, ec);
  if (ec || !fs::is_directory(canonical)) {
    return absl::InvalidArgumentError(absl::StrCat("data root ", root, " is not a directory"));
  }
  PathResolver resolver;
  resolver.root_ = canonical.string();
  return resolver;
}

absl::StatusOr<std::string> PathResolver::Beneath(const std::string& relative,
                                                  bool must_exist) const {
  if (relative.empty()) return absl::InvalidArgumentError("empty path");
  const fs::path rel(relative);
  if (rel.is_absolute()) {
    return absl::PermissionDeniedError(
        absl::StrCat(relative,
                     ": absolute paths are not allowed (paths are relative to the "
                     "data root)"));
  }
  const fs::path lexical = (fs::path(root_) / rel).lexically_normal();
  if (!IsBeneath(root_, lexical)) {
    return absl::PermissionDeniedError(absl::StrCat(relative, ": outside the data root"));
  }
  // Symlinks are followed here and the result checked again: a link that leads out is refused.
  // (A link swapped between this check and the open is issue 7's openat2 work.)
  std::error_code ec;
  fs::path real = must_exist ? fs::canonical(lexical, ec) : fs::weakly_canonical(lexical, ec);
  if (ec) {
    return absl::NotFoundError(absl::StrCat(relative, ": no such file in the data root"));
  }
  if (!IsBeneath(root_, real)) {
    return absl::PermissionDeniedError(
        absl::StrCat(relative, ": leads outside the data root (symlink)"));
  }
  return real.string();
}

absl::StatusOr<std::string> PathResolver::Input(const std::string& relative) const {
  absl::StatusOr<std::string> path = Beneath(relative, true);
  if (path.ok() && !fs::is_regular_file(*path)) {
    return absl::InvalidArgumentError(absl::StrCat(relative, ": not a regular file"));
  }
  return path;
}

absl::StatusOr<std::string> PathResolver::Output(const std::string& relative) const {
  const fs::path rel(relative);
  if (rel.filename().empty() || rel.filename() == "." || rel.filename() == "..") {
    return absl::InvalidArgumentError(absl::StrCat(relative, ": not a file name"));
  }
  const std::string parent = rel.parent_path().empty() ? "." : rel.parent_path().string();
  absl::StatusOr<std::string> dir = Beneath(parent, true);
  if (!dir.ok()) {
    if (absl::IsNotFound(dir.status())) {
      return absl::NotFoundError(
          absl::StrCat(relative, ": directory ", parent, " does not exist in the data root"));
    }
    return dir.status();
  }
  const fs::path target = fs::path(*dir) / rel.filename();
  std::error_code ec;
  if (fs::is_symlink(target, ec) || fs::is_directory(target, ec)) {
    return absl::PermissionDeniedError(
        absl::StrCat(relative, ": exists and is a symlink or a directory"));
  }
  return target.string();
}

}  // namespace stackproc::server
