// stackproc-local's commands on what made an output (core/stack/provenance.h): `info` prints
// it, `rerun` runs it again.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "core/process/process_file.h"
#include "core/tools/cli_args.h"

namespace stackproc::core {

// What runs this process, for the record: "slurm array 3456" in a task of a SLURM job array
// ("slurm job 3456" in any other SLURM job), "kubernetes indexed job" in one, else "local".
std::string ExecutorOfEnvironment();

// `info PATH [--json]`: what an output (any format stackproc reads) holds, and what made it: its
// record, or that it has none.
absl::Status Info(const CliArgs& args);

// `rerun OUTPUT --output NEW [--input IN]`: the request OUTPUT's record describes (its pipeline,
// channels, z-range and write options), over its input (IN, or the name recorded) into NEW.
// FailedPrecondition when OUTPUT records nothing, or when the input is not the one recorded (its
// axes, size or type differ): a run on another input would not make the same bytes.
absl::StatusOr<ProcessRequest> RerunRequest(const CliArgs& args);

}  // namespace stackproc::core
