// Internal to the job manager's files (job_manager.cc, job_admission.cc, job_workers.cc,
// job_recovery.cc): small helpers they share.
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/jobs/job.h"

namespace stackproc::server {

// "1.50 GiB", for messages about memory.
std::string Gib(uint64_t bytes);
// Why `s`, not ended, ends INTERRUPTED: the server shuts down, or was found to have stopped
// (crashed, killed) when it starts again; what can be done then (`kept`: the server has a job
// table, so ResumeJob can run it again).
std::string InterruptReason(const JobSnapshot& s, bool shutdown, bool kept);
// A quoted value for key=value logs.
std::string Quote(absl::string_view text);

// How often a running job's progress is written to the job store.
inline constexpr absl::Duration kStoreProgressEvery = absl::Seconds(2);

}  // namespace stackproc::server
