// What `stackproc process` keeps of a streamed job while it runs, so that a process started after
// it ended (killed, crashed, its terminal closed) can take the job up: `stackproc process --resume
// JOB`. One JSON file per job in the user's state folder, written under a temporary name and
// renamed after each MiB of results; the folder is the user's alone (a record holds the job's
// resume token). The record is removed when the job's output is complete or the job is lost.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tiff/tiff_writer.h"

namespace stackproc::client {

struct ResumeRecord {
  std::string job_id;
  std::string server;        // the target the job was sent to
  std::string resume_token;  // StreamHeader.resume_token
  std::string input;         // absolute
  std::vector<int64_t> channels;
  // The input as it was: a changed input is not taken up.
  uint64_t input_bytes = 0;
  int64_t input_mtime_ns = 0;
  std::string output;       // absolute
  std::string compression;  // core::CompressionText
  bool overwrite = false;
  std::string wire_compression;  // wire::WireCompressionName
  // This machine's boot (/proc/sys/kernel/random/boot_id): pages the page cache had not written
  // before a restart may be gone, so a record from an earlier boot is not taken up.
  std::string boot;
  // This machine's name: a state folder shared between machines (an NFS home) holds records of
  // other machines' jobs, which only they can take up.
  std::string host;
  core::TiffPageWriter::Progress output_at;  // the output's temporary file, and its pages
};

// $XDG_STATE_HOME/stackproc/streams (default ~/.local/state/stackproc/streams), made (0700)
// unless it is there. FailedPrecondition when it cannot be.
absl::StatusOr<std::string> ResumeFolder();
// This boot's id ("" where the kernel does not say); this machine's name.
std::string BootId();
std::string HostName();
// Whether a process (the one that started the job, still running) writes the output's temporary
// file the record names: a writer holds a lock on it while it does (TiffPageWriter).
bool BeingWritten(const ResumeRecord& record);

absl::Status WriteResumeRecord(const std::string& folder, const ResumeRecord& record);
// NotFound, listing the jobs the folder has records of, when `job_id` is not among them;
// DataLoss for a record that is not one.
absl::StatusOr<ResumeRecord> ReadResumeRecord(const std::string& folder, const std::string& job_id);
void RemoveResumeRecord(const std::string& folder, const std::string& job_id);
// Removes a record and the output's temporary file it names (ReadResumeRecord checked the name).
void RemoveResumeLeftovers(const std::string& folder, const ResumeRecord& record);
// Removes what jobs of this machine's earlier boots left (their records and files, unless a
// process still writes them): none can be taken up. Returns how many.
int SweepResumeRecords(const std::string& folder);

}  // namespace stackproc::client
