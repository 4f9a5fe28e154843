// server/wire: the hand-made chunk encoding against protobuf's own, borrowed slices released
// exactly when gRPC lets go, and the copy-free chunk reader against protobuf's parser.
#include "proto/wire.h"

#include <blosc.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
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
    int64_t raw_size;
  } cases[] = {{0, 0, 1, 0},
               {0, 0, 3000, 0},
               {1, 0, 200, 0},
               {5, 1 << 20, 128, 0},
               {int64_t{1} << 40, 4097, 3000, 0},
               {0, 0, 100, 1},
               {2, 0, 3000, 1 << 20},
               {0, 0, 0, 7}};
  for (const auto& c : cases) {
    v1::ProcessStreamResponse stream;
    stream.mutable_chunk()->set_slice(c.slice);
    stream.mutable_chunk()->set_offset(c.offset);
    stream.mutable_chunk()->set_data(data.data(), c.size);
    stream.mutable_chunk()->set_raw_size(c.raw_size);
    EXPECT_EQ(Bytes(ChunkMessage(v1::ProcessStreamResponse::kChunkFieldNumber, c.slice, c.offset,
                                 grpc::Slice(data.data(), c.size), c.raw_size)),
              stream.SerializeAsString())
        << c.slice << " " << c.offset << " " << c.size << " " << c.raw_size;
    v1::ReadResultResponse read;
    *read.mutable_chunk() = stream.chunk();
    EXPECT_EQ(Bytes(ChunkMessage(v1::ReadResultResponse::kChunkFieldNumber, c.slice, c.offset,
                                 grpc::Slice(data.data(), c.size), c.raw_size)),
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
  request.mutable_chunk()->set_raw_size(123456);
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
    EXPECT_EQ(view->raw_size(), 123456);
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

// A 16-bit plane as microscopes make them: smooth structures (a few broad bumps) on a
// background, with Poisson-like noise (a normal of the same variance, rounded).
std::vector<uint8_t> MicroscopyPlane(int side) {
  std::mt19937 random(7);
  std::normal_distribution<double> unit(0, 1);
  std::vector<uint16_t> pixels(static_cast<size_t>(side) * side);
  for (int y = 0; y < side; ++y) {
    for (int x = 0; x < side; ++x) {
      const double bump =
          600 *
          std::exp(-((x - side / 3.0) * (x - side / 3.0) + (y - side / 2.0) * (y - side / 2.0)) /
                   (side * side / 16.0));
      const double mean = 100 + bump;
      pixels[static_cast<size_t>(y) * side + x] =
          static_cast<uint16_t>(std::max(0.0, std::round(mean + std::sqrt(mean) * unit(random))));
    }
  }
  std::vector<uint8_t> bytes(pixels.size() * 2);
  std::memcpy(bytes.data(), pixels.data(), bytes.size());
  return bytes;
}

TEST(WireTest, CompressedChunksAreShuffledBloscFramesThatRoundTrip) {
  const std::vector<uint8_t> plane = MicroscopyPlane(512);  // 512 KiB
  for (v1::WireCompression codec : {v1::WIRE_COMPRESSION_LZ4, v1::WIRE_COMPRESSION_ZSTD}) {
    SCOPED_TRACE(WireCompressionName(codec));
    std::vector<uint8_t> packed;
    ASSERT_TRUE(Compress(codec, plane.data(), plane.size(), 2, packed));
    // What makes 16-bit data compress: shuffled by the pixel's 2 bytes (blosc's own header
    // says so), lz4 or zstd inside; smaller by a third at least.
    size_t typesize = 0;
    int flags = 0;
    blosc_cbuffer_metainfo(packed.data(), &typesize, &flags);
    EXPECT_EQ(typesize, 2u);
    EXPECT_TRUE(flags & BLOSC_DOSHUFFLE);
    EXPECT_STREQ(blosc_cbuffer_complib(packed.data()),
                 codec == v1::WIRE_COMPRESSION_LZ4 ? "LZ4" : "Zstd");
    EXPECT_LT(packed.size() * 3, plane.size() * 2);
    EXPECT_LE(packed.size(), CompressedBound(plane.size()));

    std::vector<uint8_t> out(plane.size());
    ASSERT_OK(Decompress(packed.data(), packed.size(), out.data(), out.size()));
    EXPECT_EQ(out, plane);

    // Received in pieces, as a chunk message: unpacked through the scratch buffer.
    const std::string message = Bytes(ChunkMessage(
        2, 4, 0, grpc::Slice(packed.data(), packed.size()), static_cast<int64_t>(plane.size())));
    for (const std::vector<size_t>& cuts :
         std::vector<std::vector<size_t>>{{}, {10, 5000, message.size() - 3}}) {
      std::optional<ChunkView> view = ChunkView::Read(Received(message, cuts), 2);
      ASSERT_TRUE(view.has_value());
      std::vector<uint8_t> unpacked(plane.size()), scratch;
      ASSERT_OK(view->UnpackTo(unpacked.data(), scratch));
      EXPECT_EQ(unpacked, plane);
    }
  }
}

TEST(WireTest, WhatCompressionCannotShrinkGoesAsItIs) {
  std::vector<uint8_t> noise(1 << 16);
  std::mt19937 random(3);
  for (uint8_t& b : noise) b = static_cast<uint8_t>(random());
  std::vector<uint8_t> packed;
  EXPECT_FALSE(Compress(v1::WIRE_COMPRESSION_LZ4, noise.data(), noise.size(), 1, packed));
  EXPECT_FALSE(Compress(v1::WIRE_COMPRESSION_ZSTD, noise.data(), noise.size(), 1, packed));
  const std::vector<uint8_t> plane = MicroscopyPlane(64);
  EXPECT_FALSE(Compress(v1::WIRE_COMPRESSION_NONE, plane.data(), plane.size(), 2, packed));
  EXPECT_FALSE(Compress(v1::WIRE_COMPRESSION_UNSPECIFIED, plane.data(), plane.size(), 2, packed));
}

// A sender compresses while it pays: after a chunk that would not shrink by a tenth, the next
// kSkip go as they are untried, then it tries again.
TEST(WireTest, ChunkPackerStopsTryingWhatDoesNotCompress) {
  std::vector<uint8_t> noise(1 << 16);
  std::mt19937 random(5);
  for (uint8_t& b : noise) b = static_cast<uint8_t>(random());
  const std::vector<uint8_t> plane = MicroscopyPlane(128);
  ChunkPacker packer(v1::WIRE_COMPRESSION_LZ4, 2);
  std::vector<uint8_t> out;
  EXPECT_TRUE(packer.Pack(plane.data(), plane.size(), out));
  EXPECT_FALSE(packer.Pack(noise.data(), noise.size(), out));
  for (int i = 0; i < ChunkPacker::kSkip; ++i) {
    EXPECT_FALSE(packer.Pack(plane.data(), plane.size(), out)) << i;  // untried
  }
  EXPECT_TRUE(packer.Pack(plane.data(), plane.size(), out));
  // A chunk a little smaller compressed (a twentieth) goes as it is.
  std::vector<uint8_t> mostly_noise = noise;
  std::fill(mostly_noise.begin(), mostly_noise.begin() + mostly_noise.size() / 20, 0);
  EXPECT_FALSE(packer.Pack(mostly_noise.data(), mostly_noise.size(), out));
  ChunkPacker none(v1::WIRE_COMPRESSION_NONE, 2);
  EXPECT_FALSE(none.Pack(plane.data(), plane.size(), out));
}

TEST(WireTest, DecompressRefusesWhatIsNotOneFrameOfTheSizeSaid) {
  const std::vector<uint8_t> plane = MicroscopyPlane(128);
  std::vector<uint8_t> packed;
  ASSERT_TRUE(Compress(v1::WIRE_COMPRESSION_LZ4, plane.data(), plane.size(), 2, packed));
  std::vector<uint8_t> out(plane.size() * 2);
  // Another size than the frame holds, either way.
  EXPECT_THAT(Decompress(packed.data(), packed.size(), out.data(), plane.size() / 2),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("holds")));
  EXPECT_THAT(Decompress(packed.data(), packed.size(), out.data(), plane.size() * 2),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
  // Truncated; too short for a header; not blosc at all.
  EXPECT_THAT(Decompress(packed.data(), packed.size() - 1, out.data(), plane.size()),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
  EXPECT_THAT(Decompress(packed.data(), 8, out.data(), plane.size()),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
  EXPECT_THAT(Decompress(plane.data(), packed.size(), out.data(), plane.size()),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
}

// A chunk protobuf parsed (fields out of the usual order): the same pixels, compressed or not.
TEST(WireTest, UnpackToTakesAParsedChunkEitherWay) {
  const std::vector<uint8_t> plane = MicroscopyPlane(96);
  std::vector<uint8_t> packed;
  ASSERT_TRUE(Compress(v1::WIRE_COMPRESSION_ZSTD, plane.data(), plane.size(), 2, packed));
  v1::SliceChunk chunk;
  chunk.set_data(packed.data(), packed.size());
  chunk.set_raw_size(static_cast<int64_t>(plane.size()));
  std::vector<uint8_t> out(plane.size());
  ASSERT_OK(UnpackTo(chunk, out.data()));
  EXPECT_EQ(out, plane);
  chunk.set_data(plane.data(), plane.size());
  chunk.set_raw_size(0);
  std::fill(out.begin(), out.end(), 0);
  ASSERT_OK(UnpackTo(chunk, out.data()));
  EXPECT_EQ(out, plane);
  chunk.set_data(packed.data(), packed.size() / 2);  // truncated
  chunk.set_raw_size(static_cast<int64_t>(plane.size()));
  EXPECT_THAT(UnpackTo(chunk, out.data()), StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
}

TEST(WireTest, WireCompressionNames) {
  for (v1::WireCompression c : WireCompressions()) {
    ASSERT_OK_AND_ASSIGN(v1::WireCompression parsed, ParseWireCompression(WireCompressionName(c)));
    EXPECT_EQ(parsed, c);
  }
  EXPECT_EQ(WireCompressions().front(), v1::WIRE_COMPRESSION_NONE);
  EXPECT_THAT(ParseWireCompression("gzip"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("none, lz4, zstd")));
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
