#include "server/jobs/path_resolver.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"

namespace stackproc::server {
namespace {

namespace fs = std::filesystem;

// openat2 went into Linux 5.6; glibc 2.36 has no wrapper for it.
int OpenAt2(int dir, const char* path, int flags, uint64_t resolve) {
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = resolve;
  return static_cast<int>(::syscall(SYS_openat2, dir, path, &how, sizeof how));
}

bool OpenAt2Missing(int error) {
  // ENOSYS: an older kernel; EPERM: a seccomp profile (older container runtimes) refusing it.
  return error == ENOSYS || error == EPERM;
}

absl::Status ErrorFor(const std::string& relative, int error) {
  switch (error) {
    case EXDEV:
      return absl::PermissionDeniedError(absl::StrCat(relative, ": leads outside the data root"));
    case ELOOP:
      return absl::PermissionDeniedError(
          absl::StrCat(relative, ": a symlink that cannot be followed here"));
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(absl::StrCat(relative, ": no such file in the data root"));
    case ENAMETOOLONG:  // CheckPathText's limits passed, the filesystem's are lower
      return absl::InvalidArgumentError(
          absl::StrCat(relative.substr(0, 80), ": a name too long for the filesystem"));
    case EACCES:
      return absl::PermissionDeniedError(absl::StrCat(relative, ": permission denied"));
    default:
      return absl::InternalError(absl::StrCat(relative, ": ", std::strerror(error)));
  }
}

}  // namespace

absl::StatusOr<PathResolver> PathResolver::Create(const std::string& root, Mode mode) {
  std::error_code ec;
  fs::path canonical = fs::canonical(root, ec);
  core::UniqueFd fd(ec ? -1 : ::open(canonical.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    return absl::InvalidArgumentError(absl::StrCat("data root ", root, " is not a directory"));
  }
  PathResolver resolver;
  resolver.root_ = canonical.string();
  resolver.mode_ = mode;
  resolver.root_fd_ = std::make_shared<const core::UniqueFd>(std::move(fd));
  return resolver;
}

absl::StatusOr<core::UniqueFd> PathResolver::OpenBeneath(const std::string& relative,
                                                         int flags) const {
  if (relative.empty()) return absl::InvalidArgumentError("empty path");
  STACKPROC_RETURN_IF_ERROR(core::CheckPathText(relative));
  if (relative.front() == '/') {
    return absl::PermissionDeniedError(absl::StrCat(
        relative, ": absolute paths are not allowed (paths are relative to the data root)"));
  }
  const fs::path lexical = fs::path(relative).lexically_normal();
  if (!lexical.empty() && *lexical.begin() == "..") {
    return absl::PermissionDeniedError(absl::StrCat(relative, ": outside the data root"));
  }
  if (mode_ == Mode::kWalk) return WalkBeneath(relative, flags);
  for (int attempt = 0;; ++attempt) {
    core::UniqueFd fd(
        OpenAt2(root_fd_->get(), relative.c_str(), flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS));
    if (fd) return fd;
    if (OpenAt2Missing(errno)) return WalkBeneath(relative, flags);
    if (errno == EAGAIN && attempt < 8) continue;  // a rename raced the lookup: look again
    return ErrorFor(relative, errno);
  }
}

absl::StatusOr<core::UniqueFd> PathResolver::WalkBeneath(const std::string& relative,
                                                         int flags) const {
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(relative, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") {
      if (parts.empty()) return ErrorFor(relative, EXDEV);
      parts.pop_back();
      continue;
    }
    parts.emplace_back(part);
  }
  if (parts.empty()) parts.emplace_back(".");  // the root itself
  int dir = root_fd_->get();
  core::UniqueFd held;  // the directory we are in, below the root
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool last = i + 1 == parts.size();
    const int step = last ? flags : O_PATH | O_DIRECTORY;
    core::UniqueFd next(::openat(dir, parts[i].c_str(), step | O_NOFOLLOW | O_CLOEXEC));
    if (!next) {
      const int error = errno;
      struct stat st;
      const bool link =
          ::fstatat(dir, parts[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
      return ErrorFor(relative, link ? ELOOP : error);
    }
    held = std::move(next);
    dir = held.get();
  }
  return held;
}

absl::StatusOr<core::InputFile> PathResolver::Input(const std::string& relative) const {
  // O_NONBLOCK: a FIFO planted under the root must not hang the open (it is refused below, as
  // is anything but a regular file).
  absl::StatusOr<core::UniqueFd> fd = OpenBeneath(relative, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  if (!fd.ok()) return fd.status();
  return core::InputFile::Adopt(*std::move(fd), relative);
}

bool PathResolver::IsDirectory(const std::string& relative) const {
  return OpenBeneath(relative, O_PATH | O_DIRECTORY).ok();
}

absl::StatusOr<std::vector<std::string>> PathResolver::List(const std::string& relative) const {
  STACKPROC_ASSIGN_OR_RETURN(core::UniqueFd fd, OpenBeneath(relative, O_RDONLY | O_DIRECTORY));
  return core::ListDirectory(fd.get());
}

absl::StatusOr<core::OutputTarget> PathResolver::Output(const std::string& relative,
                                                        bool folder) const {
  STACKPROC_RETURN_IF_ERROR(core::CheckPathText(relative, /*output=*/true));
  const fs::path rel(relative);
  if (rel.filename().empty() || rel.filename() == "." || rel.filename() == "..") {
    return absl::InvalidArgumentError(absl::StrCat(relative, ": not a file name"));
  }
  const std::string parent = rel.parent_path().empty() ? "." : rel.parent_path().string();
  absl::StatusOr<core::UniqueFd> dir = OpenBeneath(parent, O_RDONLY | O_DIRECTORY);
  if (!dir.ok()) {
    if (absl::IsNotFound(dir.status())) {
      return absl::NotFoundError(
          absl::StrCat(relative, ": directory ", parent, " does not exist in the data root"));
    }
    return dir.status();
  }
  struct stat st;
  if (::fstatat(dir->get(), rel.filename().c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      (S_ISLNK(st.st_mode) || (S_ISDIR(st.st_mode) && !folder))) {
    return absl::PermissionDeniedError(
        absl::StrCat(relative, ": exists and is a symlink or a directory"));
  }
  return core::OutputTarget::In(*std::move(dir), rel.filename().string(), relative);
}

}  // namespace stackproc::server
