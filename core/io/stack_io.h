// A stack in memory as a slice source (its slices lent, never copied) and as a slice sink (the
// result made straight in the sink's stack), and Execute, a run from one to the other.
#pragma once

#include <functional>

#include "absl/status/statusor.h"
#include "core/exec/engine.h"
#include "core/pipeline/pipeline.h"
#include "core/stack/stack.h"

namespace stackproc::core {

class StackSource final : public SliceSource {
 public:
  // `writable`: the run may write over the stack (it was handed over) and take its buffer.
  StackSource(Stack stack, bool writable);
  // Reads `stack`, which must outlive the source and is never written.
  explicit StackSource(const Stack& stack);

  const StackInfo& info() const override { return info_; }
  SourceTraits traits() const override { return {.in_memory = true}; }
  // From the buffer's address, so slices stay lent when the buffer moves on to a sink (Adopt).
  uint8_t* Lend(int64_t z) override { return base_ + slice_bytes_ * static_cast<size_t>(z); }
  bool lends_writable() const override { return writable_; }
  const Stack* stack() const override { return stack_; }
  Stack* writable_stack() override { return writable_ ? &owned_ : nullptr; }
  absl::Status Read(int64_t z, uint8_t* buffer) override;

 private:
  Stack owned_;
  const Stack* stack_;
  uint8_t* base_;
  size_t slice_bytes_;
  bool writable_;
  StackInfo info_;
};

// Keeps the result in one stack, allocated when the run opens the sink (or adopted: in place).
class StackSink final : public SliceSink {
 public:
  SinkTraits traits() const override { return {.in_memory = true}; }
  void Adopt(Stack& stack) override { adopted_ = std::move(stack); }
  absl::Status Open(const StackInfo& output, int64_t window_slices,
                    std::function<void(int64_t)> release) override;
  uint8_t* Buffer(int64_t z) override { return stack_.slice_data(z); }
  absl::Status Write(int64_t z, const uint8_t* data) override;
  absl::Status Close() override { return absl::OkStatus(); }

  // The result, with the output's metadata (after a successful run).
  Stack Take() { return std::move(stack_); }

 private:
  Stack adopted_;
  Stack stack_;
};

// Runs `pipeline` over a stack held in memory (StackSource -> Run -> StackSink). When no step
// changes the slice format the result is made in place and the returned stack is `input`'s
// buffer; otherwise one output stack is allocated. Errors as Run's; on error an in-place run
// may have changed some slices of the consumed input.
absl::StatusOr<Stack> Execute(Stack input, Pipeline& pipeline, const RunOptions& options = {});

}  // namespace stackproc::core
