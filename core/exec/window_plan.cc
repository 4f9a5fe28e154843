// The engine's planning, apart from running: what a run's output is (OutputInfoOf), how many
// slices a run keeps in flight and the memory a run holds (PlanWindow, StackPeakBytes,
// PlanRunMemory in engine.h).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "core/exec/engine.h"

namespace stackproc::core {

bool MakesOutputInPlace(const std::vector<SliceFormat>& formats) {
  return formats.front() == formats.back() && formats.size() != 2;
}

WindowPlan PlanWindow(const std::vector<SliceFormat>& formats, int64_t depth, uint64_t window_bytes,
                      int concurrency, SourceTraits source, SinkTraits sink,
                      const std::vector<int64_t>& halos) {
  concurrency = std::max(concurrency, 1);
  // A z-neighbourhood's ring: window + 2h planes of its step's input.
  uint64_t ring_per_slice = 0;
  uint64_t halo_bytes = 0;
  for (size_t i = 0; i < halos.size(); ++i) {
    if (halos[i] == 0) continue;
    ring_per_slice += formats[i].bytes();
    halo_bytes += static_cast<uint64_t>(2 * halos[i] + 1) * formats[i].bytes();
  }
  const bool in_place = MakesOutputInPlace(formats) && ring_per_slice == 0;
  const uint64_t in = formats.front().bytes();
  const uint64_t out = formats.back().bytes();
  // A slice in flight holds its input (unless lent, or read straight into the sink's buffer;
  // a fed source holds it in its ring, which has one slice more), its output (unless in place
  // or the sink's) and its compressed strips (the output's size at worst).
  const bool own_in = source.fed || (!source.in_memory && !(in_place && sink.in_memory));
  const bool own_out = !sink.in_memory && !in_place;
  const uint64_t slot =
      (own_in ? in : 0) + (own_out ? out : 0) + (sink.compressed ? out : 0) + ring_per_slice;
  const uint64_t fixed = halo_bytes - std::min(halo_bytes, ring_per_slice);  // the rings' 2h
  const int64_t most = std::min<int64_t>(
      std::max<int64_t>(depth, 1), int64_t{kSlicesPerThread} * concurrency + (sink.lends ? 1 : 0));
  const uint64_t fed = source.fed ? in : 0;
  WindowPlan plan;
  const uint64_t room = window_bytes - std::min(window_bytes, fixed);
  plan.window_slices =
      slot == 0 ? most : std::clamp<int64_t>(static_cast<int64_t>(room / slot), 1, most);
  plan.halo_bytes = halo_bytes;
  // Per thread: an intermediate slice for each step but the last; and a single step over a
  // stack made in place (an in-memory source whose stack the sink adopts) writes one that is
  // copied back.
  uint64_t scratch = 0;
  for (size_t i = 1; i + 1 < formats.size(); ++i) scratch += formats[i].bytes();
  if (formats.size() == 2 && formats[0] == formats[1] && source.in_memory && sink.in_memory) {
    scratch += formats[1].bytes();
  }
  // A chunked source holds the z-chunks the window's slices fall in: at most one more than
  // the window spans, and no more than the stack has.
  const int64_t chunk = std::max<int64_t>(source.chunk_slices, 1);
  const int64_t held_chunks = std::min((plan.window_slices - 1) / chunk + 2,
                                       (std::max<int64_t>(depth, 1) + chunk - 1) / chunk);
  const uint64_t chunks = chunk > 1 ? static_cast<uint64_t>(held_chunks * chunk) * in : 0;
  plan.memory_bytes = static_cast<uint64_t>(plan.window_slices) * slot + fixed + fed +
                      scratch * static_cast<uint64_t>(concurrency) + chunks +
                      static_cast<uint64_t>(std::max<int64_t>(sink.held_slices, 0)) * out;
  return plan;
}

absl::Status CheckHaloFits(const Pipeline& pipeline, const WindowPlan& plan,
                           uint64_t window_bytes) {
  if (plan.halo_bytes <= window_bytes) return absl::OkStatus();
  const auto mib = [](uint64_t bytes) { return absl::StrFormat("%.3g MiB", bytes / 1048576.0); };
  return absl::ResourceExhaustedError(absl::StrCat(
      pipeline.ToString(), ": its z-neighbourhoods hold ", mib(plan.halo_bytes),
      " of planes at least, more than the run's window of ", mib(window_bytes),
      ": give it a larger window (stackproc-local --window-mib, stackprocd --stream-window) or "
      "fewer planes around each"));
}

std::vector<std::pair<size_t, size_t>> PassesOf(const Pipeline& pipeline, bool stats_given) {
  std::vector<std::pair<size_t, size_t>> passes = {{0, pipeline.size()}};
  for (size_t i = 0; i < pipeline.size() && !stats_given; ++i) {
    if (!pipeline.step(i).op->NeedsWholeStack()) continue;
    passes.back().second = i;
    passes.push_back({i, pipeline.size()});
  }
  return passes;
}

absl::StatusOr<StackInfo> OutputInfoOf(const StackInfo& in, Pipeline& pipeline) {
  const SliceFormat input = SliceFormat::Of(in.shape, in.type);
  STACKPROC_ASSIGN_OR_RETURN(std::vector<SliceFormat> formats, pipeline.Plan(input));
  STACKPROC_RETURN_IF_ERROR(pipeline.Bind(in));
  StackInfo output;
  output.shape = {in.shape.depth, formats.back().height, formats.back().width};
  output.type = formats.back().type;
  output.metadata =
      UpdateMetadata(in.metadata, output.shape, in.type, output.type, pipeline.Geometry(input));
  return output;
}

absl::StatusOr<uint64_t> StackPeakBytes(const StackShape& shape,
                                        const std::vector<SliceFormat>& formats) {
  STACKPROC_ASSIGN_OR_RETURN(size_t in, StackBytes(shape, formats.front().type));
  uint64_t peak = in;
  for (size_t i = 1; i < formats.size(); ++i) {
    if (formats[i] == formats[0]) continue;
    STACKPROC_ASSIGN_OR_RETURN(
        size_t out,
        StackBytes({shape.depth, formats[i].height, formats[i].width}, formats[i].type));
    peak = std::max<uint64_t>(peak, in + out);
  }
  return peak;
}

absl::StatusOr<uint64_t> PlanRunMemory(const Pipeline& pipeline,
                                       const std::vector<SliceFormat>& formats, int64_t depth,
                                       uint64_t window_bytes, int concurrency, SourceTraits source,
                                       SinkTraits sink) {
  const auto passes = PassesOf(pipeline, /*stats_given=*/false);
  const auto window = [&](std::pair<size_t, size_t> pass, SourceTraits from, SinkTraits to,
                          bool rings) {
    const std::vector<SliceFormat> some(formats.begin() + static_cast<ptrdiff_t>(pass.first),
                                        formats.begin() + static_cast<ptrdiff_t>(pass.second) + 1);
    return PlanWindow(some, depth, window_bytes, concurrency, from, to,
                      rings ? pipeline.Halos(pass.first, pass.second) : std::vector<int64_t>{})
        .memory_bytes;
  };
  if (!pipeline.NeedsWholeStack()) return window(passes[0], source, sink, true);
  // The stacks kept, the window of the pass that fills the first of them, and the rings of the
  // z-neighbourhoods of the passes after it (their other buffers come and go with the stacks').
  const StackShape shape{depth, formats.front().height, formats.front().width};
  STACKPROC_ASSIGN_OR_RETURN(uint64_t stacks, StackPeakBytes(shape, formats));
  uint64_t rings = 0;
  for (size_t k = 1; k < passes.size(); ++k) {
    const SinkTraits to = k + 1 == passes.size() ? sink : SinkTraits{.in_memory = true};
    rings = std::max(rings, window(passes[k], {.in_memory = true}, to, true) -
                                window(passes[k], {.in_memory = true}, to, false));
  }
  return stacks + window(passes[0], source, {.in_memory = true}, true) + rings;
}

}  // namespace stackproc::core
