// Runs a pipeline over a stack that arrives slice by slice and leaves slice by slice, with
// bounded memory: a producer fills input slices in order, each complete slice is processed on
// the arena at once (while later slices still arrive), and a consumer takes the results in
// slice order. At most `window` slices are held; the producer gets no buffer for slice z until
// the consumer has released slice z - window, so a slow consumer slows the producer instead of
// growing memory.
//
// A pipeline with a whole-stack step (normalize:scope=stack) cannot run on a window: the stream
// then assembles the whole stack, runs it with Execute once the last slice is in, and its
// memory is the whole stack's.
#pragma once

#include <tbb/task_arena.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "core/cancel.h"
#include "core/pipeline.h"
#include "core/slice_runner.h"
#include "core/stack.h"

namespace stackproc::core {

struct SliceStreamOptions {
  tbb::task_arena* arena = nullptr;  // required; processing runs here
  // Memory for the slices in flight (input and output buffers); at least one slice is held,
  // and no more than keep the arena's threads busy (kSlicesPerThread each, plus the slice
  // arriving and the one leaving).
  uint64_t window_bytes = uint64_t{256} << 20;
  // Called from worker threads after a slice is processed, after the whole stack is, and on a
  // processing error. It may run concurrently with itself and with the stream's other calls.
  std::function<void()> on_change;
};

// Thread-safe: one producer and one consumer (they may be different threads).
class SliceStream {
 public:
  // Plans the pipeline for `shape` / `type`: InvalidArgument when it cannot take the slices.
  // Allocates nothing; buffers are allocated as slices arrive.
  static absl::StatusOr<std::unique_ptr<SliceStream>> Create(Pipeline pipeline,
                                                             const StackShape& shape,
                                                             PixelType type, StackMetadata metadata,
                                                             SliceStreamOptions options);
  ~SliceStream();  // cancels and waits for running slices

  // The memory the stream holds at most (for admission), and how many slices that is.
  uint64_t memory_bytes() const { return memory_bytes_; }
  int64_t window_slices() const { return window_; }
  bool whole_stack() const { return whole_stack_; }

  const StackShape& input_shape() const { return input_shape_; }
  PixelType input_type() const { return formats_.front().type; }
  size_t input_slice_bytes() const { return in_bytes_; }
  const StackShape& output_shape() const { return output_shape_; }
  PixelType output_type() const { return formats_.back().type; }
  size_t output_slice_bytes() const { return out_bytes_; }
  // The input's metadata updated for the pipeline's geometry and type.
  const StackMetadata& output_metadata() const { return output_metadata_; }

  // Producer. Whether slice `z` has a buffer: false while the window is full, until the
  // consumer releases slice z - window.
  bool CanAccept(int64_t z) const;
  // The buffer to fill with input slice `z`, the next slice in order; nullptr while the window
  // is full. ResourceExhausted when the buffer cannot be allocated.
  absl::StatusOr<uint8_t*> InputSlice(int64_t z);
  // Slice `z` is filled: its processing starts.
  void SliceComplete(int64_t z);

  // Consumer. Result slice `z`, the next in order, once processed; nullptr until then.
  const uint8_t* Result(int64_t z) const;
  // The consumer is done with result slice `z`: its buffers take a later slice.
  void Release(int64_t z);
  // Release from any thread, also one inside a call that holds the consumer's own locks: the
  // release, then on_change, run on the arena.
  void ReleaseLater(int64_t z);

  // The first processing error (OK while none); Cancelled after Cancel().
  absl::Status status() const;
  int64_t slices_processed() const;
  // Starts no more processing; slices already running finish.
  void Cancel();

 private:
  enum class SlotState { kFree, kFilling, kProcessing, kDone };
  struct Slot {
    cv::Mat in, out;  // out aliases in when the pipeline keeps the format
    SlotState state = SlotState::kFree;
  };

  SliceStream(Pipeline pipeline, std::vector<SliceFormat> formats, const StackShape& shape,
              StackMetadata metadata, SliceStreamOptions options);
  void Process(int64_t z);
  void ProcessWholeStack();
  void Fail(absl::Status status);
  // Runs `work` on the arena, counted so the destructor can wait for it.
  void Spawn(std::function<void()> work);
  Slot& SlotFor(int64_t z) { return slots_[static_cast<size_t>(z % window_)]; }
  const Slot& SlotFor(int64_t z) const { return slots_[static_cast<size_t>(z % window_)]; }

  Pipeline pipeline_;
  const std::vector<SliceFormat> formats_;
  const StackShape input_shape_;
  StackShape output_shape_;
  StackMetadata input_metadata_;
  StackMetadata output_metadata_;
  const SliceStreamOptions options_;
  const size_t in_bytes_, out_bytes_;
  const bool whole_stack_;
  int64_t window_ = 1;
  uint64_t memory_bytes_ = 0;
  std::optional<SliceRunner> runner_;  // per-slice mode
  CancelToken cancel_;

  mutable std::mutex mutex_;
  std::condition_variable idle_;
  int running_ = 0;          // spawned work not yet finished
  std::vector<Slot> slots_;  // per-slice mode: a ring of window_ slots
  Stack stack_;              // whole-stack mode: the input, then the result
  int64_t received_ = 0;     // slices complete from the producer
  int64_t processed_ = 0;
  bool stack_done_ = false;  // whole-stack mode: the result is in stack_
  absl::Status status_;
};

}  // namespace stackproc::core
