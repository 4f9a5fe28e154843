// Progress display for `submit --wait` and `watch`: a live bar on a terminal, plain key=value
// lines otherwise (logs, pipelines).
#pragma once

#include <cstdio>
#include <string>

#include "stackproc/v1/service.pb.h"

namespace stackproc::client {

class ProgressDisplay {
 public:
  // `terminal`: draw a bar that redraws in place.
  ProgressDisplay(std::FILE* out, bool terminal) : out_(out), terminal_(terminal) {}
  void Update(const v1::Job& job);
  // Ends the bar's line.
  void Done();

 private:
  std::FILE* out_;
  bool terminal_;
  std::string last_line_;
  bool drawn_ = false;
};

}  // namespace stackproc::client
