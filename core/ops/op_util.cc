#include "core/ops/op_util.h"

#include "absl/strings/str_cat.h"

namespace stackproc::core::ops {

absl::Status ParamError(const OperationInfo& info, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(info.name, ": ", message));
}

absl::Status CheckOdd(const OperationInfo& info, const std::string& param, int value) {
  if (value % 2 == 1) return absl::OkStatus();
  return ParamError(info, absl::StrCat(param, "=", value, " must be odd"));
}

}  // namespace stackproc::core::ops
