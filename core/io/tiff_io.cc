#include "core/io/tiff_io.h"

#include <utility>

#include "core/base/status_macros.h"
#include "core/io/stack_io.h"

namespace stackproc::core {

absl::StatusOr<std::unique_ptr<TiffSource>> TiffSource::Open(const InputFile& file, TiffInfo info) {
  STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<TiffPageReader> reader,
                             TiffPageReader::Open(file, std::move(info)));
  return std::unique_ptr<TiffSource>(new TiffSource(std::move(reader)));
}

TiffSource::TiffSource(std::unique_ptr<TiffPageReader> reader)
    : reader_(std::move(reader)),
      info_{reader_->info().shape, reader_->info().pixel_type, reader_->info().metadata} {}

TiffSink::TiffSink(OutputTarget target, WriteOptions options)
    : target_(std::move(target)), options_(std::move(options)) {}

absl::Status TiffSink::Open(const StackInfo& output, int64_t window_slices,
                            std::function<void(int64_t)> release) {
  (void)release;
  STACKPROC_ASSIGN_OR_RETURN(writer_, TiffPageWriter::Create(target_, output.shape, output.type,
                                                             output.metadata, options_));
  encoded_.assign(static_cast<size_t>(window_slices), {});
  return absl::OkStatus();
}

absl::Status TiffSink::Encode(int64_t z, const uint8_t* data) {
  return writer_->Encode(data, SlotFor(z));
}

absl::Status TiffSink::Write(int64_t z, const uint8_t* data) {
  TiffPageWriter::EncodedPage& page = SlotFor(z);
  page.page = data;
  return writer_->WriteEncoded(page);
}

absl::StatusOr<Stack> ReadTiff(const std::string& path, const ReadOptions& options) {
  STACKPROC_ASSIGN_OR_RETURN(InputFile file, InputFile::Open(path));
  return ReadTiff(file, options);
}

absl::StatusOr<Stack> ReadTiff(const InputFile& file, const ReadOptions& options) {
  STACKPROC_ASSIGN_OR_RETURN(TiffInfo info, ProbeTiff(file, options.limits));
  STACKPROC_ASSIGN_OR_RETURN(std::unique_ptr<TiffSource> source,
                             TiffSource::Open(file, std::move(info)));
  Pipeline none;
  StackSink sink;
  RunOptions run;
  run.arena = options.arena;
  run.cancel = options.cancel;
  STACKPROC_RETURN_IF_ERROR(Run(*source, none, sink, run));
  return sink.Take();
}

absl::Status WriteTiff(const std::string& path, const Stack& stack, const WriteOptions& options) {
  if (stack.empty()) return absl::InvalidArgumentError("cannot write an empty stack");
  STACKPROC_ASSIGN_OR_RETURN(OutputTarget target, OutputTarget::ForPath(path));
  return WriteTiff(target, stack, options);
}

absl::Status WriteTiff(const OutputTarget& target, const Stack& stack,
                       const WriteOptions& options) {
  if (stack.empty()) return absl::InvalidArgumentError("cannot write an empty stack");
  StackSource source(stack);
  Pipeline none;
  TiffSink sink(target, options);
  RunOptions run;
  run.arena = options.arena;
  run.cancel = options.cancel;
  return Run(source, none, sink, run);
}

}  // namespace stackproc::core
