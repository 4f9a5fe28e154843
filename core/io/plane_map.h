// Another source's planes in another arrangement: the same planes in t, c, z order (an ImageJ
// hyperstack's CZT planes, for an OME-Zarr store, which holds t, c, z), or some of its channels
// only (--channels). Each plane is read from where it is: nothing is copied or held.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/exec/engine.h"

namespace stackproc::core {

class PlaneMapSource final : public SliceSource {
 public:
  // The planes of `source` in t, c, z order (z fastest); `source` itself when they are.
  // InvalidArgument for a source fed from outside, whose planes come in their own order.
  static absl::StatusOr<std::shared_ptr<SliceSource>> InZctOrder(
      std::shared_ptr<SliceSource> source);
  // Only `channels` of `source` (numbered from 0; in the order given, each once), its planes
  // otherwise in their order; the metadata says so (OME-XML channels, ImageJ channels=).
  // InvalidArgument for a channel the source lacks, a repeated one, or a fed source.
  static absl::StatusOr<std::shared_ptr<SliceSource>> Channels(
      std::shared_ptr<SliceSource> source, const std::vector<int64_t>& channels);

  // What the planes come from, before any PlaneMapSource chose or reordered them: the input as
  // it is (a run's record states it, beside the channels it chose).
  static const StackInfo& UnmappedInfo(const SliceSource& source);

  const StackInfo& info() const override { return info_; }
  SourceTraits traits() const override;
  uint8_t* Lend(int64_t z) override { return source_->Lend(Inner(z)); }
  bool lends_writable() const override { return false; }  // its planes are the source's
  absl::Status Start(std::shared_ptr<Waker> waker, int64_t window_slices) override {
    return source_->Start(std::move(waker), window_slices);
  }
  absl::Status Read(int64_t z, uint8_t* buffer) override { return source_->Read(Inner(z), buffer); }
  void Done(int64_t z) override { source_->Done(Inner(z)); }

 private:
  PlaneMapSource(std::shared_ptr<SliceSource> source, std::vector<int64_t> planes, StackInfo info)
      : source_(std::move(source)), planes_(std::move(planes)), info_(std::move(info)) {}
  int64_t Inner(int64_t z) const { return planes_[static_cast<size_t>(z)]; }

  const std::shared_ptr<SliceSource> source_;
  const std::vector<int64_t> planes_;  // plane z is the source's planes_[z]
  const StackInfo info_;
};

}  // namespace stackproc::core
