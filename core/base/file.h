// Files by descriptor. Whoever opens a file decides how its path is resolved (the server:
// beneath its data root, with openat2); from then on the file is used through its descriptor
// and no path is looked up again, so a link swapped in later changes nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace stackproc::core {

// An open file descriptor, closed on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  ~UniqueFd();

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  // Gives up ownership: the caller closes the descriptor.
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

// A regular file open for reading, shared by every libtiff handle over it: they read with
// pread at offsets of their own, so one descriptor serves every thread. Copies share it.
class InputFile {
 public:
  // Opens `path`: NotFound when it does not exist, InvalidArgument when it is not a regular
  // file.
  static absl::StatusOr<InputFile> Open(const std::string& path);
  // Takes `fd`, open for reading; `name` is what messages call the file.
  static absl::StatusOr<InputFile> Adopt(UniqueFd fd, std::string name);

  int fd() const { return fd_->get(); }
  const std::string& name() const { return name_; }
  uint64_t size() const { return size_; }

 private:
  InputFile(std::shared_ptr<const UniqueFd> fd, std::string name, uint64_t size)
      : fd_(std::move(fd)), name_(std::move(name)), size_(size) {}

  std::shared_ptr<const UniqueFd> fd_;
  std::string name_;
  uint64_t size_;
};

// The whole of `file`, read with pread; DataLoss when it holds more than `most` bytes or cannot
// be read to its end.
absl::StatusOr<std::vector<uint8_t>> ReadWholeFile(const InputFile& file, uint64_t most);
// `size` bytes of `file` from offset `at` into `out`, with pread; DataLoss when they are not all
// there.
absl::Status ReadFileRange(const InputFile& file, uint64_t at, size_t size, uint8_t* out);

// Folder `name` in directory `dir`, made unless it is there, opened (never through a link).
// `display` names the place in messages.
absl::StatusOr<UniqueFd> MakeFolderAt(int dir, const std::string& name, const std::string& display);

// Writes `size` bytes to `name` in directory `dir` under a temporary name (".NAME.part"), then
// renames it: a reader sees the file whole or not at all. ResourceExhausted for a full disk or
// quota, Internal for other failures; `display` names the file in messages.
// Writes all `size` bytes at file offset `at`, retrying short writes and EINTR, in calls of at
// most `chunk` bytes: on this project's VM 2 MiB pwrites cost the kernel 3x as much as 512 KiB
// ones (a 1 GiB TIFF of 2 MiB planes onto ext4, the page cache dropped before each run, medians
// of 7: 1.69 s against 0.54 s).
// 0, or the errno of the failed call (EIO for a write that wrote nothing).
inline constexpr size_t kWriteChunk = size_t{512} << 10;
int PwriteFull(int fd, const void* data, size_t size, uint64_t at, size_t chunk = kWriteChunk);

absl::Status WriteFileAt(int dir, const std::string& name, const void* bytes, size_t size,
                         const std::string& display, mode_t mode = 0666);

// The names in the directory open as `dir` ("." and ".." left out), in no order; `dir` stays
// the caller's.
absl::StatusOr<std::vector<std::string>> ListDirectory(int dir);
// Removes `name` from directory `dir`: a file or a link (never followed), or a folder (what the
// writers make: a folder of planes, an OME-Zarr store) with what it holds, folders to
// kMaxFolderDepth levels (a cluster job's work folder, its store, a level, Zarr v3's "c", t, c,
// z and y: 9). Whether it is gone.
inline constexpr int kMaxFolderDepth = 12;
bool RemoveEntry(int dir, const std::string& name);

// How a program reaches the files it reads: by path as given (LocalFiles), or beneath a data
// root (the server's). Inputs that are many files (a folder of planes) list and open them here.
class Files {
 public:
  virtual ~Files() = default;
  // As InputFile::Open.
  virtual absl::StatusOr<InputFile> Input(const std::string& path) const = 0;
  // Whether `path` names a directory (false when it does not exist).
  virtual bool IsDirectory(const std::string& path) const = 0;
  // The names in directory `path`, "." and ".." left out, in no order.
  virtual absl::StatusOr<std::vector<std::string>> List(const std::string& path) const = 0;
};

class LocalFiles final : public Files {
 public:
  absl::StatusOr<InputFile> Input(const std::string& path) const override {
    return InputFile::Open(path);
  }
  bool IsDirectory(const std::string& path) const override;
  absl::StatusOr<std::vector<std::string>> List(const std::string& path) const override;
};

// Where a file is to be created: its directory, open by descriptor, and its name there. The
// writer creates its temporary file, syncs, renames and cleans up relative to the descriptor,
// so a directory swapped for a link after it was checked changes nothing. Copies share it.
class OutputTarget {
 public:
  // The directory of `path`, opened now (NotFound when it does not exist), and its last
  // component (InvalidArgument when that is not a file name).
  static absl::StatusOr<OutputTarget> ForPath(const std::string& path);
  // `dir` open with O_RDONLY | O_DIRECTORY; `name` one path component; `display` is what
  // messages call the file.
  static OutputTarget In(UniqueFd dir, std::string name, std::string display);

  int dir() const { return dir_->get(); }
  const std::string& name() const { return name_; }
  const std::string& display() const { return display_; }
  // Whether something (a file, a link, a directory) has the name already.
  bool Exists() const;

 private:
  OutputTarget(std::shared_ptr<const UniqueFd> dir, std::string name, std::string display)
      : dir_(std::move(dir)), name_(std::move(name)), display_(std::move(display)) {}

  std::shared_ptr<const UniqueFd> dir_;
  std::string name_;
  std::string display_;
};

// A path as a caller gives it, before it meets the filesystem: InvalidArgument for a control
// character (a NUL would cut the name the system sees short of the one recorded), a path
// longer than PATH_MAX or a name in it longer than NAME_MAX; an output's own name (`output`)
// must leave room for its temporary name (TempNameFor), 48 bytes less. The message shows a long
// path cut short.
absl::Status CheckPathText(const std::string& path, bool output = false);

// ".NAME.tmp-TAG-": how every temporary name for NAME tagged TAG begins (RemoveTempFiles
// removes what begins so).
std::string TempPrefix(const std::string& name, const std::string& tag);

// Whether `temp` is a temporary name of NAME's, of any tag: a name in NAME's own folder.
bool IsTempNameOf(absl::string_view temp, absl::string_view name);

// ".NAME.tmp-TAG-RANDOM": where a writer tagged TAG (the process id when empty) puts NAME
// while it writes it.
std::string TempNameFor(const std::string& name, const std::string& tag);

// Removes the temporary files that writers tagged `tag` (WriteOptions::temp_tag) left beside
// `target`, and the temporary folders of plane sequences and OME-Zarr stores: a process killed
// mid-write leaves one. Returns how many it removed.
int RemoveTempFiles(const OutputTarget& target, const std::string& tag);

// A folder that is written whole or not at all (a sequence of planes, an OME-Zarr store): made
// under a temporary name beside its final one (TempNameFor), renamed into place by Commit and
// never over something already there; removed with what is in it when not committed.
class TempFolder {
 public:
  // When `target` exists: AlreadyExists unless `replace`; with it, Commit replaces what is
  // there (the caller has checked it may). `what` ("OME-Zarr") names the output in messages.
  static absl::StatusOr<TempFolder> Make(const OutputTarget& target, const std::string& tag,
                                         const std::string& what, bool replace = false);
  TempFolder(TempFolder&&) = default;
  TempFolder& operator=(TempFolder&&) = default;
  ~TempFolder();

  int fd() const { return fd_.get(); }
  // Syncs what is in it (when `sync`), then renames it into place; one that replaces what was
  // there swaps the two in one step (RENAME_EXCHANGE), then removes the old one.
  absl::Status Commit(bool sync);

 private:
  TempFolder(OutputTarget target, std::string temp, UniqueFd fd, bool replace)
      : target_(std::move(target)), temp_(std::move(temp)), fd_(std::move(fd)), replace_(replace) {}

  OutputTarget target_;
  std::string temp_;
  UniqueFd fd_;  // closed once committed (or moved from)
  bool replace_ = false;
};

// Renames `from` in directory `from_dir` to `target`, never over something that appeared
// meanwhile; with `replace`, swaps the two in one step (RENAME_EXCHANGE) and removes the old one
// (TempFolder::Commit; a cluster job's OME-Zarr store, made in its work folder). Syncs the
// target's directory when `sync`.
absl::Status MoveIntoPlace(int from_dir, const std::string& from, const OutputTarget& target,
                           bool replace, bool sync);

}  // namespace stackproc::core
