// server/wire: the hand-made chunk encoding against protobuf's own, borrowed slices released
// exactly when gRPC lets go, and the copy-free chunk reader against protobuf's parser.
#include "proto/wire.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

#include "stackproc/v1/service.pb.h"
#include "tests/test_util/status_matchers.h"

namespace stackproc::wire {
namespace {

using ::stackproc::testing::StatusIs;
using ::testing::HasSubstr;

std::string Bytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// `bytes` as a received message would come: in slices cut at `cuts`.
grpc::ByteBuffer Received(const std::string& bytes, std::vector<size_t> cuts) {
  std::vector<grpc::Slice> slices;
  size_t from = 0;
  cuts.push_back(bytes.size());
  for (size_t to : cuts) {
    slices.emplace_back(bytes.data() + from, to - from);
    from = to;
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

std::vector<uint8_t> Pixels(size_t n) {
  std::vector<uint8_t> data(n);
  std::iota(data.begin(), data.end(), uint8_t{7});
  return data;
}

struct Counted {
  int* destroyed;
  explicit Counted(int* d) : destroyed(d) {}
  Counted(Counted&& other) noexcept : destroyed(std::exchange(other.destroyed, nullptr)) {}
  ~Counted() {
    if (destroyed != nullptr) ++*destroyed;
  }
};

TEST(WireTest, ChunkMessageIsWhatProtobufWrites) {
  const std::vector<uint8_t> data = Pixels(3000);
  const struct {
    int64_t slice, offset;
    size_t size;
  } cases[] = {
      {0, 0, 1}, {0, 0, 3000}, {1, 0, 200}, {5, 1 << 20, 128}, {int64_t{1} << 40, 4097, 3000}};
  for (const auto& c : cases) {
    v1::ProcessStreamResponse stream;
    stream.mutable_chunk()->set_slice(c.slice);
    stream.mutable_chunk()->set_offset(c.offset);
    stream.mutable_chunk()->set_data(data.data(), c.size);
    EXPECT_EQ(Bytes(ChunkMessage(v1::ProcessStreamResponse::kChunkFieldNumber, c.slice, c.offset,
                                 grpc::Slice(data.data(), c.size))),
              stream.SerializeAsString())
        << c.slice << " " << c.offset << " " << c.size;
    v1::ReadResultResponse read;
    *read.mutable_chunk() = stream.chunk();
    EXPECT_EQ(Bytes(ChunkMessage(v1::ReadResultResponse::kChunkFieldNumber, c.slice, c.offset,
                                 grpc::Slice(data.data(), c.size))),
              read.SerializeAsString());
  }
}

TEST(WireTest, BorrowedPixelsAreNotCopiedAndOutliveTheMessageUntilReleased) {
  const std::vector<uint8_t> data = Pixels(1 << 16);
  int destroyed = 0;
  grpc::ByteBuffer message =
      ChunkMessage(3, 2, 64, BorrowSlice(data.data() + 64, 1000, Counted(&destroyed)));
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(message.Dump(&slices).ok());
  ASSERT_EQ(slices.size(), 2u);
  EXPECT_EQ(slices[1].begin(), data.data() + 64);  // the pixels themselves, not a copy
  EXPECT_EQ(slices[1].size(), 1000u);

  grpc::ByteBuffer copy(message);  // as gRPC's transport would hold it
  message.Clear();
  EXPECT_EQ(destroyed, 0);
  copy.Clear();
  EXPECT_EQ(destroyed, 0);  // `slices` still refers to it
  slices.clear();
  EXPECT_EQ(destroyed, 1);
}

TEST(WireTest, ChunkViewReadsWhatProtobufWritesAcrossSliceBoundaries) {
  const std::vector<uint8_t> data = Pixels(5000);
  v1::ProcessStreamRequest request;
  request.mutable_chunk()->set_slice(300);
  request.mutable_chunk()->set_offset(1 << 20);
  request.mutable_chunk()->set_data(data.data(), data.size());
  const std::string bytes = request.SerializeAsString();
  // Whole; cut inside the tags and varints; cut inside the data many times.
  const std::vector<std::vector<size_t>> cuttings = {{},
                                                     {1, 2, 3, 4, 5, 6, 7},
                                                     {9, 100, 101, 2000, 4999},
                                                     {3, 8, 1000, 1001, 1002, bytes.size() - 1}};
  for (const std::vector<size_t>& cuts : cuttings) {
    std::optional<ChunkView> view =
        ChunkView::Read(Received(bytes, cuts), v1::ProcessStreamRequest::kChunkFieldNumber);
    ASSERT_TRUE(view.has_value()) << cuts.size();
    EXPECT_EQ(view->slice(), 300);
    EXPECT_EQ(view->offset(), 1 << 20);
    ASSERT_EQ(view->size(), data.size());
    std::vector<uint8_t> out(data.size());
    view->CopyTo(out.data());
    EXPECT_EQ(out, data);
  }
}

TEST(WireTest, ChunkViewLeavesEverythingElseToProtobuf) {
  const int field = v1::ProcessStreamRequest::kChunkFieldNumber;
  v1::ProcessStreamRequest header;
  header.mutable_header()->mutable_shape()->set_depth(3);
  EXPECT_FALSE(ChunkView::Read(Received(header.SerializeAsString(), {}), field).has_value());

  // SliceChunk{data = "ab", slice = 1}: fields out of order, valid protobuf.
  const std::string reordered(
      "\x12\x06\x1a\x02"
      "ab"
      "\x08\x01",
      8);
  EXPECT_FALSE(ChunkView::Read(Received(reordered, {}), field).has_value());
  v1::ProcessStreamRequest parsed;
  ASSERT_OK(Parse(Received(reordered, {}), parsed, "ProcessStreamRequest"));
  EXPECT_EQ(parsed.chunk().slice(), 1);
  EXPECT_EQ(parsed.chunk().data(), "ab");

  // Truncated: the data's length runs past the end.
  const std::string truncated(
      "\x12\x04\x1a\x05"
      "ab",
      6);
  EXPECT_FALSE(ChunkView::Read(Received(truncated, {}), field).has_value());
  EXPECT_THAT(
      Parse(Received(truncated, {}), parsed, "ProcessStreamRequest"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a ProcessStreamRequest")));
}

TEST(WireTest, SerializeRoundTrips) {
  v1::ProcessStreamResponse response;
  response.mutable_job()->set_id("abc");
  response.mutable_job()->set_memory_bytes(17);
  v1::ProcessStreamResponse back;
  ASSERT_OK(Parse(Serialize(response), back, "ProcessStreamResponse"));
  EXPECT_EQ(back.SerializeAsString(), response.SerializeAsString());
}

}  // namespace
}  // namespace stackproc::wire
