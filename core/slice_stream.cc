#include "core/slice_stream.h"

#include <algorithm>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/stack_io.h"
#include "core/status_macros.h"

namespace stackproc::core {
absl::StatusOr<std::unique_ptr<SliceStream>> SliceStream::Create(Pipeline pipeline,
                                                                 const StackShape& shape,
                                                                 PixelType type,
                                                                 StackMetadata metadata,
                                                                 SliceStreamOptions options) {
  if (options.arena == nullptr) return absl::InvalidArgumentError("SliceStream needs an arena");
  STACKPROC_RETURN_IF_ERROR(StackBytes(shape, type).status());
  const SliceFormat input{static_cast<int>(shape.height), static_cast<int>(shape.width), type};
  STACKPROC_ASSIGN_OR_RETURN(std::vector<SliceFormat> formats, pipeline.Plan(input));
  UseOnlyTheEnginesThreads();
  return std::unique_ptr<SliceStream>(new SliceStream(
      std::move(pipeline), std::move(formats), shape, std::move(metadata), std::move(options)));
}

SliceStream::SliceStream(Pipeline pipeline, std::vector<SliceFormat> formats,
                         const StackShape& shape, StackMetadata metadata,
                         SliceStreamOptions options)
    : pipeline_(std::move(pipeline)),
      formats_(std::move(formats)),
      input_shape_(shape),
      input_metadata_(std::move(metadata)),
      options_(std::move(options)),
      in_bytes_(formats_.front().bytes()),
      out_bytes_(formats_.back().bytes()),
      whole_stack_(pipeline_.NeedsWholeStack()) {
  output_shape_ = {shape.depth, formats_.back().height, formats_.back().width};
  output_metadata_ = UpdateMetadata(input_metadata_, output_shape_, formats_.front().type,
                                    formats_.back().type, pipeline_.Geometry(formats_.front()));
  if (whole_stack_) {
    window_ = shape.depth;
    memory_bytes_ = StackPeakBytes(shape, formats_).value_or(0);
    return;
  }
  const bool in_place = formats_.front() == formats_.back();
  const uint64_t slot_bytes = in_bytes_ + (in_place ? 0 : out_bytes_);
  // Every thread busy, plus the slice arriving and the one leaving.
  const int64_t most = std::min<int64_t>(
      shape.depth, int64_t{kSlicesPerThread} * options_.arena->max_concurrency() + 2);
  window_ = std::clamp<int64_t>(static_cast<int64_t>(options_.window_bytes / slot_bytes), 1, most);
  uint64_t scratch = 0;  // per thread: one intermediate slice per step
  for (size_t i = 1; i < formats_.size(); ++i) scratch += formats_[i].bytes();
  memory_bytes_ = static_cast<uint64_t>(window_) * slot_bytes +
                  scratch * static_cast<uint64_t>(options_.arena->max_concurrency());
  slots_.resize(static_cast<size_t>(window_));
  runner_.emplace(pipeline_, formats_, 0, pipeline_.size());
}

SliceStream::~SliceStream() {
  Cancel();
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [&] { return running_ == 0; });
}

bool SliceStream::CanAccept(int64_t z) const {
  std::lock_guard lock(mutex_);
  return whole_stack_ || SlotFor(z).state == SlotState::kFree;
}

absl::StatusOr<uint8_t*> SliceStream::InputSlice(int64_t z) {
  std::lock_guard lock(mutex_);
  if (z != received_ || z >= input_shape_.depth) {
    return absl::InvalidArgumentError(
        absl::StrCat("slice ", z, " is not the next slice (", received_, ")"));
  }
  if (whole_stack_) {
    if (stack_.empty()) {
      STACKPROC_ASSIGN_OR_RETURN(stack_, Stack::Allocate(input_shape_, input_type()));
      stack_.metadata() = input_metadata_;
    }
    return stack_.slice_data(z);
  }
  Slot& slot = SlotFor(z);
  if (slot.state != SlotState::kFree) return nullptr;
  if (slot.in.empty()) {
    try {
      slot.in = MakeMat(formats_.front());
      slot.out = formats_.front() == formats_.back() ? slot.in : MakeMat(formats_.back());
    } catch (const std::exception&) {
      slot.in.release();
      return absl::ResourceExhaustedError(absl::StrCat("cannot allocate the buffers of slice ", z,
                                                       " (", in_bytes_ + out_bytes_, " bytes)"));
    }
  }
  slot.state = SlotState::kFilling;
  return slot.in.data;
}

void SliceStream::SliceComplete(int64_t z) {
  std::lock_guard lock(mutex_);
  if (z != received_) return;
  ++received_;
  if (whole_stack_) {
    if (received_ == input_shape_.depth) Spawn([this] { ProcessWholeStack(); });
    return;
  }
  SlotFor(z).state = SlotState::kProcessing;
  Spawn([this, z] { Process(z); });
}

void SliceStream::Spawn(std::function<void()> work) {
  // Called with mutex_ held.
  ++running_;
  options_.arena->enqueue([this, work = std::move(work)] {
    work();
    std::lock_guard lock(mutex_);
    if (--running_ == 0) idle_.notify_all();
  });
}

void SliceStream::Process(int64_t z) {
  absl::Status status = cancel_.IsCancelled() ? absl::CancelledError("cancelled") : [&] {
    Slot& slot = SlotFor(z);
    return runner_->Run(z, slot.in, slot.out);
  }();
  if (!status.ok()) return Fail(std::move(status));
  {
    std::lock_guard lock(mutex_);
    SlotFor(z).state = SlotState::kDone;
    ++processed_;
  }
  if (options_.on_change) options_.on_change();
}

void SliceStream::ProcessWholeStack() {
  Stack input;
  {
    std::lock_guard lock(mutex_);
    input = std::move(stack_);
  }
  RunOptions execute;  // the current arena: this task runs in options_.arena
  execute.cancel = &cancel_;
  absl::StatusOr<Stack> result = Execute(std::move(input), pipeline_, execute);
  if (!result.ok()) return Fail(result.status());
  {
    std::lock_guard lock(mutex_);
    stack_ = *std::move(result);
    stack_done_ = true;
    processed_ = input_shape_.depth;
  }
  if (options_.on_change) options_.on_change();
}

void SliceStream::Fail(absl::Status status) {
  {
    std::lock_guard lock(mutex_);
    if (!status_.ok()) return;
    status_ = std::move(status);
  }
  cancel_.Cancel();
  if (options_.on_change) options_.on_change();
}

const uint8_t* SliceStream::Result(int64_t z) const {
  std::lock_guard lock(mutex_);
  if (!status_.ok() || z < 0 || z >= input_shape_.depth) return nullptr;
  if (whole_stack_) return stack_done_ ? stack_.slice_data(z) : nullptr;
  const Slot& slot = SlotFor(z);
  // The slot holds slice z (not z +- window) when z is within the received window.
  if (z >= received_ || slot.state != SlotState::kDone) return nullptr;
  return slot.out.data;
}

void SliceStream::Release(int64_t z) {
  std::lock_guard lock(mutex_);
  if (whole_stack_ || z < 0 || z >= received_) return;
  Slot& slot = SlotFor(z);
  if (slot.state == SlotState::kDone) slot.state = SlotState::kFree;
}

void SliceStream::ReleaseLater(int64_t z) {
  std::lock_guard lock(mutex_);
  Spawn([this, z] {
    Release(z);
    if (options_.on_change) options_.on_change();
  });
}

absl::Status SliceStream::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

int64_t SliceStream::slices_processed() const {
  std::lock_guard lock(mutex_);
  return processed_;
}

void SliceStream::Cancel() {
  {
    std::lock_guard lock(mutex_);
    if (status_.ok()) status_ = absl::CancelledError("cancelled");
  }
  cancel_.Cancel();
}

}  // namespace stackproc::core
