// A TIFF file as a slice source (pages decoded in the engine's parallel stage, a libtiff handle
// per worker over one descriptor) and as a slice sink (strips compressed in the parallel stage,
// pages appended in order to a temporary file renamed into place by Close).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/file.h"
#include "core/exec/engine.h"
#include "core/tiff/tiff_reader.h"
#include "core/tiff/tiff_writer.h"

namespace stackproc::core {

class TiffSource final : public SliceSource {
 public:
  // Over a file that ProbeTiff validated into `info`: its pages are not walked again (each page
  // is still checked as it is decoded).
  static absl::StatusOr<std::unique_ptr<TiffSource>> Open(const InputFile& file, TiffInfo info);

  const StackInfo& info() const override { return info_; }
  absl::Status Read(int64_t z, uint8_t* buffer) override { return reader_->ReadPage(z, buffer); }

 private:
  explicit TiffSource(std::unique_ptr<TiffPageReader> reader);
  std::unique_ptr<TiffPageReader> reader_;
  StackInfo info_;
};

class TiffSink final : public SliceSink {
 public:
  // Writes to `target` (its directory already open) with `options` when the run opens it.
  TiffSink(OutputTarget target, WriteOptions options);

  SinkTraits traits() const override {
    return {.compressed = CompressesTiff(options_.compression)};
  }
  absl::Status Open(const StackInfo& output, int64_t window_slices,
                    std::function<void(int64_t)> release) override;
  absl::Status Encode(int64_t z, const uint8_t* data) override;
  absl::Status Write(int64_t z, const uint8_t* data) override;
  absl::Status Close() override { return writer_->Commit(); }

 private:
  TiffPageWriter::EncodedPage& SlotFor(int64_t z) {
    return encoded_[static_cast<size_t>(z % std::ssize(encoded_))];
  }

  const OutputTarget target_;
  const WriteOptions options_;
  std::unique_ptr<TiffPageWriter> writer_;
  std::vector<TiffPageWriter::EncodedPage> encoded_;  // one per slice in flight
};

// Reads a whole file into one stack: probes every page before anything is allocated, then
// decodes pages in parallel straight into the stack's slices (a run with no steps into a
// StackSink). Returns no partial stack: any page error fails the read with the page named;
// Cancelled if `cancel` fired.
absl::StatusOr<Stack> ReadTiff(const std::string& path, const ReadOptions& options = {});
absl::StatusOr<Stack> ReadTiff(const InputFile& file, const ReadOptions& options = {});

// Writes `stack` and its metadata (a run with no steps from a StackSource into a TiffSink). The
// description is written to page 0 (an ImageJ description naming the stack depth when the
// stack has none). Errors: InvalidArgument for a bad path, AlreadyExists when the target exists
// and !overwrite, Cancelled, and Internal / ResourceExhausted (disk full) for I/O failures,
// with libtiff's reason. Nothing is left under the target's name on error.
absl::Status WriteTiff(const std::string& path, const Stack& stack,
                       const WriteOptions& options = {});
absl::Status WriteTiff(const OutputTarget& target, const Stack& stack,
                       const WriteOptions& options = {});

}  // namespace stackproc::core
