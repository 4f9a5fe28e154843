#include "client/resume_record.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "core/base/file.h"
#include "core/base/status_macros.h"

namespace stackproc::client {

namespace {

using Json = nlohmann::ordered_json;
constexpr absl::string_view kSuffix = ".json";

// Whether `id` is a job's id as the server makes them: a file name of its own.
bool IsJobId(absl::string_view id) {
  return !id.empty() && id.size() <= 64 &&
         id.find_first_not_of(
             "abcdefghijklmnopqrstuvwxyz"
             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == absl::string_view::npos;
}

absl::Status MakeFolder(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) == 0 || errno == EEXIST) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(path, ": cannot make the folder (", std::strerror(errno), ")"));
}

// The jobs `folder` holds records of.
std::vector<std::string> RecordedJobs(const std::string& folder) {
  std::vector<std::string> jobs;
  core::UniqueFd dir(::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return jobs;
  for (const std::string& name :
       core::ListDirectory(dir.get()).value_or(std::vector<std::string>{})) {
    absl::string_view id = name;
    if (absl::ConsumeSuffix(&id, kSuffix) && IsJobId(id)) jobs.emplace_back(id);
  }
  return jobs;
}

}  // namespace

absl::StatusOr<std::string> ResumeFolder() {
  std::string state;
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg != nullptr && xdg[0] == '/') {
    state = xdg;
  } else if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') {
    state = absl::StrCat(home, "/.local");
    STACKPROC_RETURN_IF_ERROR(MakeFolder(state));
    state += "/state";
  } else {
    return absl::FailedPreconditionError("neither XDG_STATE_HOME nor HOME is set");
  }
  STACKPROC_RETURN_IF_ERROR(MakeFolder(state));
  const std::string folder = state + "/stackproc";
  STACKPROC_RETURN_IF_ERROR(MakeFolder(folder));
  const std::string streams = folder + "/streams";
  STACKPROC_RETURN_IF_ERROR(MakeFolder(streams));
  // The user's alone: its records hold resume tokens.
  struct stat st;
  if (::lstat(streams.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() ||
      ((st.st_mode & 077) != 0 && ::chmod(streams.c_str(), 0700) != 0)) {
    return absl::FailedPreconditionError(
        absl::StrCat(streams, ": not a folder of this user's own"));
  }
  return streams;
}

std::string BootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return std::string(absl::StripAsciiWhitespace(id));
}

std::string HostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

bool BeingWritten(const ResumeRecord& record) {
  absl::StatusOr<core::OutputTarget> target = core::OutputTarget::ForPath(record.output);
  if (!target.ok()) return false;
  core::UniqueFd fd(::openat(target->dir(), record.output_at.temp.c_str(),
                             O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  return fd && ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
}

absl::Status WriteResumeRecord(const std::string& folder, const ResumeRecord& record) {
  if (!IsJobId(record.job_id)) {
    return absl::InvalidArgumentError(absl::StrCat("'", record.job_id, "' is not a job's id"));
  }
  const Json json = {
      {"job", record.job_id},
      {"server", record.server},
      {"resume_token", record.resume_token},
      {"input", record.input},
      {"channels", record.channels},
      {"input_bytes", record.input_bytes},
      {"input_mtime_ns", record.input_mtime_ns},
      {"output", record.output},
      {"compression", record.compression},
      {"overwrite", record.overwrite},
      {"wire_compression", record.wire_compression},
      {"boot", record.boot},
      {"host", record.host},
      {"output_temp", record.output_at.temp},
      {"output_pages", record.output_at.pages},
      {"output_end", record.output_at.end},
  };
  const std::string text = json.dump(2) + "\n";
  core::UniqueFd dir(::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) {
    return absl::FailedPreconditionError(
        absl::StrCat(folder, ": cannot open (", std::strerror(errno), ")"));
  }
  const std::string name = absl::StrCat(record.job_id, kSuffix);
  return core::WriteFileAt(dir.get(), name, text.data(), text.size(), folder + "/" + name, 0600);
}

absl::StatusOr<ResumeRecord> ReadResumeRecord(const std::string& folder,
                                              const std::string& job_id) {
  const std::string path = absl::StrCat(folder, "/", job_id, kSuffix);
  std::ifstream in;
  if (IsJobId(job_id)) in.open(path);
  if (!in) {
    const std::vector<std::string> jobs = RecordedJobs(folder);
    return absl::NotFoundError(absl::StrCat(
        "no record of a streamed job ", job_id, " in ", folder, " (",
        jobs.empty() ? "it has none" : absl::StrCat("it has ", absl::StrJoin(jobs, ", ")), ")"));
  }
  const std::string text{std::istreambuf_iterator<char>(in), {}};
  try {
    const Json json = Json::parse(text);
    ResumeRecord r;
    r.job_id = json.at("job").get<std::string>();
    r.server = json.at("server").get<std::string>();
    r.resume_token = json.at("resume_token").get<std::string>();
    r.input = json.at("input").get<std::string>();
    r.channels = json.at("channels").get<std::vector<int64_t>>();
    r.input_bytes = json.at("input_bytes").get<uint64_t>();
    r.input_mtime_ns = json.at("input_mtime_ns").get<int64_t>();
    r.output = json.at("output").get<std::string>();
    r.compression = json.at("compression").get<std::string>();
    r.overwrite = json.at("overwrite").get<bool>();
    r.wire_compression = json.at("wire_compression").get<std::string>();
    r.boot = json.at("boot").get<std::string>();
    r.host = json.value("host", "");
    r.output_at.temp = json.at("output_temp").get<std::string>();
    r.output_at.pages = json.at("output_pages").get<int64_t>();
    r.output_at.end = json.at("output_end").get<uint64_t>();
    if (r.job_id != job_id ||
        !core::IsTempNameOf(r.output_at.temp,
                            std::filesystem::path(r.output).filename().string())) {
      return absl::DataLossError(absl::StrCat(path, ": not the record of job ", job_id,
                                              " and its output's temporary file"));
    }
    return r;
  } catch (const Json::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": not a resume record (", e.what(), ")"));
  }
}

void RemoveResumeRecord(const std::string& folder, const std::string& job_id) {
  if (!IsJobId(job_id)) return;
  ::unlink(absl::StrCat(folder, "/", job_id, kSuffix).c_str());
}

void RemoveResumeLeftovers(const std::string& folder, const ResumeRecord& record) {
  if (absl::StatusOr<core::OutputTarget> target = core::OutputTarget::ForPath(record.output);
      target.ok()) {
    ::unlinkat(target->dir(), record.output_at.temp.c_str(), 0);
  }
  RemoveResumeRecord(folder, record.job_id);
}

int SweepResumeRecords(const std::string& folder) {
  const std::string boot = BootId();
  const std::string host = HostName();
  if (boot.empty() || host.empty()) return 0;  // cannot tell an earlier boot from this one
  int removed = 0;
  for (const std::string& id : RecordedJobs(folder)) {
    absl::StatusOr<ResumeRecord> record = ReadResumeRecord(folder, id);
    if (record.ok() && record->host == host && record->boot != boot && !BeingWritten(*record)) {
      RemoveResumeLeftovers(folder, *record);
      ++removed;
    }
  }
  return removed;
}

}  // namespace stackproc::client
