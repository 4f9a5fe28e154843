#include "core/base/file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"

namespace stackproc::core {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<InputFile> InputFile::Open(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not hang (it is refused as not a regular file).
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    }
    return absl::PermissionDeniedError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  return Adopt(std::move(fd), path);
}

absl::StatusOr<InputFile> InputFile::Adopt(UniqueFd fd, std::string name) {
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return absl::InternalError(absl::StrCat(name, ": fstat failed: ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not a regular file"));
  }
  return InputFile(std::make_shared<const UniqueFd>(std::move(fd)), std::move(name),
                   static_cast<uint64_t>(st.st_size));
}

absl::StatusOr<std::vector<std::string>> ListDirectory(int dir) {
  // A descriptor of its own: reading through a copy of `dir` would move `dir`'s position too.
  UniqueFd own(::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DIR* stream = own ? ::fdopendir(own.get()) : nullptr;
  if (stream == nullptr) {
    return absl::InternalError(absl::StrCat("cannot list a directory: ", std::strerror(errno)));
  }
  (void)own.release();  // the stream owns it now
  std::vector<std::string> names;
  while (const dirent* entry = ::readdir(stream)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(stream);
  return names;
}

namespace {

bool RemoveAt(int dir, const std::string& name, int depth) {
  if (::unlinkat(dir, name.c_str(), 0) == 0) return true;
  if ((errno != EISDIR && errno != EPERM) || depth < 0) return false;  // a folder: unlink says so
  UniqueFd folder(::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!folder) return false;
  if (absl::StatusOr<std::vector<std::string>> names = ListDirectory(folder.get()); names.ok()) {
    for (const std::string& entry : *names) RemoveAt(folder.get(), entry, depth - 1);
  }
  return ::unlinkat(dir, name.c_str(), AT_REMOVEDIR) == 0;
}

}  // namespace

bool RemoveEntry(int dir, const std::string& name) { return RemoveAt(dir, name, kMaxFolderDepth); }

bool LocalFiles::IsDirectory(const std::string& path) const {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

absl::StatusOr<std::vector<std::string>> LocalFiles::List(const std::string& path) const {
  std::error_code error;
  std::vector<std::string> names;
  for (std::filesystem::directory_iterator it(path, error), end; !error && it != end;
       it.increment(error)) {
    names.push_back(it->path().filename().string());
  }
  if (error) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot list: ", error.message()));
  }
  return names;
}

absl::StatusOr<OutputTarget> OutputTarget::ForPath(const std::string& path) {
  const std::filesystem::path target(path);
  const std::string name = target.filename().string();
  if (name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a file name"));
  }
  const std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    return absl::NotFoundError(
        absl::StrCat(path, ": directory ", dir, " cannot be opened (", std::strerror(errno), ")"));
  }
  return In(std::move(fd), name, path);
}

OutputTarget OutputTarget::In(UniqueFd dir, std::string name, std::string display) {
  return OutputTarget(std::make_shared<const UniqueFd>(std::move(dir)), std::move(name),
                      std::move(display));
}

bool OutputTarget::Exists() const {
  struct stat st;
  return ::fstatat(dir(), name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

absl::Status CheckPathText(const std::string& path, bool output) {
  constexpr size_t kShown = 80, kTempRoom = 48;
  const std::string shown =
      path.size() <= kShown ? path : absl::StrCat(path.substr(0, kShown), "... (cut)");
  for (const unsigned char c : path) {
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "path ", absl::CHexEscape(shown), ": control characters are not allowed in paths"));
    }
  }
  if (path.size() >= PATH_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("path ", shown, ": ", path.size(),
                                                   " bytes, longer than the ", PATH_MAX - 1,
                                                   " a path may have"));
  }
  std::vector<absl::string_view> names = absl::StrSplit(path, '/', absl::SkipEmpty());
  for (size_t i = 0; i < names.size(); ++i) {
    const bool own_name = output && i + 1 == names.size();
    const size_t most = own_name ? NAME_MAX - kTempRoom : NAME_MAX;
    if (names[i].size() > most) {
      return absl::InvalidArgumentError(absl::StrCat(
          "path ", shown, ": a name of ", names[i].size(), " bytes, longer than the ", most, " ",
          own_name ? "an output's name may have (room is kept for its temporary name)"
                   : "a file name may have"));
    }
  }
  return absl::OkStatus();
}

std::string TempPrefix(const std::string& name, const std::string& tag) {
  return absl::StrCat(".", name, ".tmp-", tag.empty() ? std::to_string(::getpid()) : tag, "-");
}

bool IsTempNameOf(absl::string_view temp, absl::string_view name) {
  return absl::StartsWith(temp, absl::StrCat(".", name, ".tmp-")) && !absl::StrContains(temp, '/');
}

std::string TempNameFor(const std::string& name, const std::string& tag) {
  std::random_device random;
  return absl::StrCat(TempPrefix(name, tag), random());
}

int RemoveTempFiles(const OutputTarget& target, const std::string& tag) {
  const std::string prefix = TempPrefix(target.name(), tag);
  absl::StatusOr<std::vector<std::string>> names = ListDirectory(target.dir());
  if (!names.ok()) return 0;
  int removed = 0;
  for (const std::string& name : *names) {
    if (!absl::StartsWith(name, prefix)) continue;
    removed += RemoveEntry(target.dir(), name);
  }
  return removed;
}

absl::StatusOr<TempFolder> TempFolder::Make(const OutputTarget& target, const std::string& tag,
                                            const std::string& what, bool replace) {
  if (!replace && target.Exists()) {
    return absl::AlreadyExistsError(absl::StrCat(
        target.display(), ": exists (overwrite not requested for this ", what, " output)"));
  }
  std::string temp = TempNameFor(target.name(), tag);
  if (::mkdirat(target.dir(), temp.c_str(), 0777) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        target.display(), ": cannot make a folder there (", std::strerror(errno), ")"));
  }
  UniqueFd fd(
      ::openat(target.dir(), temp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    const int error = errno;
    ::unlinkat(target.dir(), temp.c_str(), AT_REMOVEDIR);
    return absl::InternalError(absl::StrCat(
        target.display(), ": cannot open its temporary folder: ", std::strerror(error)));
  }
  return TempFolder(target, std::move(temp), std::move(fd), replace);
}

TempFolder::~TempFolder() {
  if (fd_) RemoveEntry(target_.dir(), temp_);
}

absl::Status TempFolder::Commit(bool sync) {
  if (sync && ::syncfs(fd_.get()) != 0) {
    return absl::InternalError(
        absl::StrCat(target_.display(), ": cannot sync what it holds: ", std::strerror(errno)));
  }
  STACKPROC_RETURN_IF_ERROR(MoveIntoPlace(target_.dir(), temp_, target_, replace_, sync));
  fd_ = UniqueFd();
  return absl::OkStatus();
}

absl::Status MoveIntoPlace(int from_dir, const std::string& from, const OutputTarget& target,
                           bool replace, bool sync) {
  const int dir = target.dir();
  const char* name = target.name().c_str();
  if (replace && ::renameat2(from_dir, from.c_str(), dir, name, RENAME_EXCHANGE) == 0) {
    // The old output now has the name `from`: it goes (a folder, or a file in its place).
    RemoveEntry(from_dir, from);
    if (sync) ::fsync(dir);
    return absl::OkStatus();
  }
  if (replace && errno != ENOENT) {
    return absl::InternalError(absl::StrCat(
        target.display(), ": cannot swap its folder into place: ", std::strerror(errno)));
  }
  if (::renameat2(from_dir, from.c_str(), dir, name, RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST || errno == ENOTEMPTY) {
      return absl::AlreadyExistsError(
          absl::StrCat(target.display(), ": appeared while it was being written"));
    }
    return absl::InternalError(absl::StrCat(
        target.display(), ": cannot rename its folder into place: ", std::strerror(errno)));
  }
  if (sync) ::fsync(dir);
  return absl::OkStatus();
}

namespace {

absl::Status FileError(const std::string& what, int error) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(error));
  return error == ENOSPC || error == EDQUOT || error == EFBIG
             ? absl::ResourceExhaustedError(message)
             : absl::InternalError(message);
}

}  // namespace

absl::StatusOr<std::vector<uint8_t>> ReadWholeFile(const InputFile& file, uint64_t most) {
  if (file.size() > most) {
    return absl::DataLossError(
        absl::StrCat(file.name(), ": ", file.size(), " bytes, more than it can hold (", most, ")"));
  }
  std::vector<uint8_t> bytes(file.size());
  STACKPROC_RETURN_IF_ERROR(ReadFileRange(file, 0, bytes.size(), bytes.data()));
  return bytes;
}

absl::Status ReadFileRange(const InputFile& file, uint64_t at, size_t size, uint8_t* out) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(file.fd(), out + done, size - done, static_cast<off_t>(at + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::DataLossError(absl::StrCat(
          file.name(), ": cannot read it: ", n == 0 ? "it ended early" : std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> MakeFolderAt(int dir, const std::string& name,
                                      const std::string& display) {
  if (::mkdirat(dir, name.c_str(), 0777) != 0 && errno != EEXIST) {
    return FileError(absl::StrCat(display, ": cannot make folder ", name), errno);
  }
  UniqueFd fd(::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return FileError(absl::StrCat(display, ": cannot open folder ", name), errno);
  return fd;
}

int PwriteFull(int fd, const void* data, size_t size, uint64_t at, size_t chunk) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t done = 0; done < size;) {
    const ssize_t n =
        ::pwrite(fd, p + done, std::min(size - done, chunk), static_cast<off_t>(at + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    done += static_cast<size_t>(n);
  }
  return 0;
}

absl::Status WriteFileAt(int dir, const std::string& name, const void* bytes, size_t size,
                         const std::string& display, mode_t mode) {
  const std::string temp = absl::StrCat(".", name, ".part");
  UniqueFd fd(
      ::openat(dir, temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) return FileError(absl::StrCat(display, ": cannot create it"), errno);
  if (const int error = PwriteFull(fd.get(), bytes, size, 0); error != 0) {
    return FileError(absl::StrCat(display, ": cannot write it"), error);
  }
  if (::close(fd.release()) != 0)
    return FileError(absl::StrCat(display, ": cannot write it"), errno);
  if (::renameat(dir, temp.c_str(), dir, name.c_str()) != 0) {
    return FileError(absl::StrCat(display, ": cannot rename it into place"), errno);
  }
  return absl::OkStatus();
}

}  // namespace stackproc::core
