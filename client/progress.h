// Progress display for `submit --wait` and `watch`: a live bar on a terminal, plain key=value
// lines otherwise (logs, pipelines).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/time/time.h"
#include "client/client.h"
#include "stackproc/v1/service.pb.h"

namespace stackproc::client {

class ProgressDisplay {
 public:
  // `terminal`: draw a bar that redraws in place.
  ProgressDisplay(std::FILE* out, bool terminal) : out_(out), terminal_(terminal) {}
  // A streamed job's: each update shows the link's rate up and down too (bytes on the wire per
  // second since the last update).
  void ShowLink(const Client::WireCounts* counts) { link_ = counts; }
  void Update(const v1::Job& job);
  // Ends the bar's line.
  void Done();

 private:
  // " up 118 MB/s down 117 MB/s" (terminal) or " up_mb_per_s=118 down_mb_per_s=117".
  std::string LinkRates();

  std::FILE* out_;
  bool terminal_;
  const Client::WireCounts* link_ = nullptr;
  absl::Time link_at_ = absl::InfinitePast();
  int64_t link_sent_ = 0, link_received_ = 0;
  double up_ = 0, down_ = 0;  // MB/s
  std::string last_line_;
  bool drawn_ = false;
};

}  // namespace stackproc::client
