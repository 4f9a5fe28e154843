#include "client/progress.h"

#include "absl/strings/str_format.h"
#include "proto/convert.h"

namespace stackproc::client {

std::string ProgressDisplay::LinkRates() {
  if (link_ == nullptr) return "";
  const absl::Time now = absl::Now();
  const int64_t sent = link_->sent_wire, received = link_->received_wire;
  if (const double seconds = absl::ToDoubleSeconds(now - link_at_); seconds >= 0.5) {
    if (link_at_ != absl::InfinitePast()) {
      up_ = static_cast<double>(sent - link_sent_) / seconds / 1e6;
      down_ = static_cast<double>(received - link_received_) / seconds / 1e6;
    }
    link_at_ = now;
    link_sent_ = sent;
    link_received_ = received;
  }
  return terminal_ ? absl::StrFormat("  up %.0f down %.0f MB/s", up_, down_)
                   : absl::StrFormat(" up_mb_per_s=%.0f down_mb_per_s=%.0f", up_, down_);
}

void ProgressDisplay::Update(const v1::Job& job) {
  const v1::Progress& p = job.progress();
  const double mbps = p.bytes_per_second() / 1e6;
  std::string eta = p.eta_seconds() >= 0 ? absl::StrFormat("%.1fs", p.eta_seconds()) : "?";
  if (terminal_) {
    constexpr int kWidth = 30;
    const int filled =
        p.slices_total() > 0 ? static_cast<int>(kWidth * p.slices_done() / p.slices_total()) : 0;
    std::string line =
        absl::StrFormat("\r%s %-10s [%s%s] %lld/%lld slices  %.0f MB/s  ETA %s%s ", job.id(),
                        p.stage(), std::string(filled, '#'), std::string(kWidth - filled, '.'),
                        p.slices_done(), p.slices_total(), mbps, eta, LinkRates());
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
      absl::StrFormat("job=%s state=%s stage=%s slices=%lld/%lld mb_per_s=%.0f eta_s=%s%s%s\n",
                      job.id(), convert::JobStateName(job.state()), p.stage(), p.slices_done(),
                      p.slices_total(), mbps, eta, shards, LinkRates());
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
