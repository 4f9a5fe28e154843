#include "client/progress.h"

#include "absl/strings/str_format.h"
#include "proto/convert.h"

namespace stackproc::client {

void ProgressDisplay::Update(const v1::Job& job) {
  const v1::Progress& p = job.progress();
  const double mbps = p.bytes_per_second() / 1e6;
  std::string eta = p.eta_seconds() >= 0 ? absl::StrFormat("%.1fs", p.eta_seconds()) : "?";
  if (terminal_) {
    constexpr int kWidth = 30;
    const int filled =
        p.slices_total() > 0 ? static_cast<int>(kWidth * p.slices_done() / p.slices_total()) : 0;
    std::string line =
        absl::StrFormat("\r%s %-10s [%s%s] %lld/%lld slices  %.0f MB/s  ETA %s ", job.id(),
                        p.stage(), std::string(filled, '#'), std::string(kWidth - filled, '.'),
                        p.slices_done(), p.slices_total(), mbps, eta);
    std::fputs(line.c_str(), out_);
    std::fflush(out_);
    drawn_ = true;
    return;
  }
  const v1::Execution& e = job.execution();
  const std::string shards =
      e.executor() == v1::EXECUTOR_SLURM
          ? absl::StrFormat(" shards_done=%d/%d running=%d pending=%d failed=%d", e.shards_done(),
                            e.shards(), e.shards_running(), e.shards_pending(), e.shards_failed())
          : "";
  std::string line =
      absl::StrFormat("job=%s state=%s stage=%s slices=%lld/%lld mb_per_s=%.0f eta_s=%s%s\n",
                      job.id(), convert::JobStateName(job.state()), p.stage(), p.slices_done(),
                      p.slices_total(), mbps, eta, shards);
  if (line == last_line_) return;
  last_line_ = line;
  std::fputs(line.c_str(), out_);
  std::fflush(out_);
}

void ProgressDisplay::Done() {
  if (terminal_ && drawn_) std::fputc('\n', out_);
  drawn_ = false;
}

}  // namespace stackproc::client
