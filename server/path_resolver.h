// Resolves client paths beneath the server's data root.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace stackproc::server {

class PathResolver {
 public:
  // `root` must be an existing directory; it is made absolute and canonical.
  static absl::StatusOr<PathResolver> Create(const std::string& root);

  // An existing file under the root. Absolute paths, ".." that climbs out and symlinks that
  // lead out are PermissionDenied; a missing file is NotFound.
  absl::StatusOr<std::string> Input(const std::string& relative) const;
  // A file to create: its directory must exist under the root (same rules as Input); the file
  // itself may or may not exist, but must not be a symlink or a directory.
  absl::StatusOr<std::string> Output(const std::string& relative) const;

  const std::string& root() const { return root_; }

 private:
  absl::StatusOr<std::string> Beneath(const std::string& relative, bool must_exist) const;
  std::string root_;
};

}  // namespace stackproc::server
