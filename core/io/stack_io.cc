#include "core/io/stack_io.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace stackproc::core {

StackSource::StackSource(Stack stack, bool writable)
    : owned_(std::move(stack)),
      stack_(&owned_),
      base_(owned_.data()),
      slice_bytes_(owned_.slice_bytes()),
      writable_(writable),
      info_{owned_.shape(), owned_.pixel_type(), owned_.metadata()} {}

StackSource::StackSource(const Stack& stack)
    : stack_(&stack),
      base_(const_cast<uint8_t*>(stack.data())),  // lent read-only: lends_writable() is false
      slice_bytes_(stack.slice_bytes()),
      writable_(false),
      info_{stack.shape(), stack.pixel_type(), stack.metadata()} {}

absl::Status StackSource::Read(int64_t z, uint8_t* buffer) {
  std::memcpy(buffer, Lend(z), slice_bytes_);
  return absl::OkStatus();
}

absl::Status StackSink::Open(const StackInfo& output, int64_t window_slices,
                             std::function<void(int64_t)> release) {
  (void)window_slices, (void)release;
  if (!adopted_.empty() && adopted_.shape() == output.shape &&
      adopted_.pixel_type() == output.type) {
    stack_ = std::move(adopted_);
  } else {
    adopted_ = Stack();
    STACKPROC_ASSIGN_OR_RETURN(stack_, Stack::Allocate(output.shape, output.type));
  }
  stack_.metadata() = output.metadata;
  return absl::OkStatus();
}

absl::Status StackSink::Write(int64_t z, const uint8_t* data) {
  // The engine makes every slice in Buffer(z): nothing to copy.
  if (data != stack_.slice_data(z)) {
    return absl::InternalError(absl::StrCat("slice ", z, " was not made in the sink's stack"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Stack> Execute(Stack input, Pipeline& pipeline, const RunOptions& options) {
  if (input.empty()) return absl::InvalidArgumentError("cannot run a pipeline on an empty stack");
  StackSource source(std::move(input), /*writable=*/true);
  StackSink sink;
  STACKPROC_RETURN_IF_ERROR(Run(source, pipeline, sink, options));
  return sink.Take();
}

}  // namespace stackproc::core
