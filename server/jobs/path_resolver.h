// Resolves client paths beneath the server's data root, by descriptor: the root is opened once,
// and an input is opened with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) on it, so no
// "..", absolute path or symlink can lead out, and what was checked is what is read (no
// check-then-open race). Where openat2 is missing (Linux < 5.6, or a seccomp profile that
// refuses it) the path is walked a component at a time with O_NOFOLLOW: every symlink is
// refused then.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/file.h"

namespace stackproc::server {

class PathResolver final : public core::Files {
 public:
  // kWalk: the component walk even where openat2 works (to test it).
  enum class Mode { kAuto, kWalk };
  // `root` must be an existing directory; it is made absolute and canonical.
  static absl::StatusOr<PathResolver> Create(const std::string& root, Mode mode = Mode::kAuto);

  // The file `relative` names under the root, open for reading; messages call it `relative`.
  // Absolute paths, ".." that climbs out and symlinks that lead out are PermissionDenied; a
  // missing file is NotFound; a directory or device is InvalidArgument.
  absl::StatusOr<core::InputFile> Input(const std::string& relative) const override;
  // A directory under the root (for a sequence of planes), found as Input finds a file.
  bool IsDirectory(const std::string& relative) const override;
  absl::StatusOr<std::vector<std::string>> List(const std::string& relative) const override;
  // A file to create (or, when `folder`, a folder: a plane sequence's, an OME-Zarr store's):
  // its directory must exist under the root (resolved as for Input, and kept open: the writer
  // works in it by descriptor); the file itself may or may not exist, but must not be a
  // symlink, nor a directory unless `folder`.
  absl::StatusOr<core::OutputTarget> Output(const std::string& relative, bool folder = false) const;

  const std::string& root() const { return root_; }

 private:
  // Opens `relative` beneath the root with `flags` (O_PATH | O_DIRECTORY for a directory).
  absl::StatusOr<core::UniqueFd> OpenBeneath(const std::string& relative, int flags) const;
  absl::StatusOr<core::UniqueFd> WalkBeneath(const std::string& relative, int flags) const;

  std::string root_;
  std::shared_ptr<const core::UniqueFd> root_fd_;
  Mode mode_ = Mode::kAuto;
};

}  // namespace stackproc::server
