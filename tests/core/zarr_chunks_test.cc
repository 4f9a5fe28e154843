// Zarr v3's pieces, against values worked out by hand: CRC-32C's check value, a shard written
// whole or not at all with its index as the sharding spec lays it out, and the zarr.json that
// stackproc refuses to read.
#include "core/zarr/zarr_chunks.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/test_util/status_matchers.h"
#include "tests/test_util/test_util.h"

namespace stackproc::core {
namespace {

using ::stackproc::testing::StatusIs;
using ::stackproc::testing::TempDir;
using ::testing::HasSubstr;

TEST(Crc32cTest, IsTheCastagnoliChecksum) {
  const std::string check = "123456789";  // its CRC-32C is 0xE3069283 (RFC 3720, B.4)
  EXPECT_EQ(Crc32c(reinterpret_cast<const uint8_t*>(check.data()), check.size()), 0xE3069283u);
  EXPECT_EQ(Crc32c(nullptr, 0), 0u);
}

std::vector<uint8_t> FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(ShardWriterTest, WritesChunksThenTheirIndexAndItsCrc32cWholeOrNotAtAll) {
  TempDir dir;
  UniqueFd fd(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY));
  {
    ShardWriter left(fd.get(), "0", "left", 3);
    ASSERT_OK(left.Open());
    ASSERT_OK(left.Append(0, {1, 2, 3}));
  }  // never committed: nothing stays, not even its temporary file
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));

  ShardWriter shard(fd.get(), "0", "shard", 3);
  ASSERT_OK(shard.Open());
  ASSERT_OK(shard.Append(0, {1, 2, 3}));
  ASSERT_OK(shard.Append(2, {4, 5}));  // chunk 1 never written
  ASSERT_OK(shard.Commit());
  const std::vector<uint8_t> bytes = FileBytes(dir.File("0"));
  // 5 bytes of chunks, then (offset, nbytes) x 3 as little-endian uint64s, then the crc32c.
  ASSERT_EQ(bytes.size(), 5u + 48 + 4);
  const auto u64 = [&](size_t at) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | bytes[at + size_t(i)];
    return v;
  };
  EXPECT_EQ(std::vector<uint8_t>(bytes.begin(), bytes.begin() + 5),
            (std::vector<uint8_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(u64(5), 0u);
  EXPECT_EQ(u64(13), 3u);
  EXPECT_EQ(u64(21), ~uint64_t{0});
  EXPECT_EQ(u64(29), ~uint64_t{0});
  EXPECT_EQ(u64(37), 3u);
  EXPECT_EQ(u64(45), 2u);
  const uint32_t crc = bytes[53] | bytes[54] << 8 | bytes[55] << 16 | uint32_t{bytes[56]} << 24;
  EXPECT_EQ(crc, Crc32c(bytes.data() + 5, 48));

  // Read back through the array it belongs to: 3 inner chunks of 1 x 2 in a 1 x 6 shard.
  ZarrArrayMeta meta;
  meta.zarr_format = 3;
  meta.shape = {1, 6};
  meta.chunks = {1, 2};
  meta.shards = {1, 6};
  ASSERT_OK_AND_ASSIGN(InputFile file, InputFile::Open(dir.File("0")));
  ASSERT_OK_AND_ASSIGN(ShardIndex index, ReadShardIndex(file, meta));
  EXPECT_FALSE(index.missing(0));
  EXPECT_TRUE(index.missing(1));
  EXPECT_EQ(index.offset(2), 3u);
  EXPECT_EQ(index.nbytes(2), 2u);
}

TEST(ZarrJsonTest, RefusesWhatItDoesNotRead) {
  const auto array = [](const std::string& codecs, const std::string& type = "uint16") {
    return absl::StrCat(R"({"zarr_format": 3, "node_type": "array", "shape": [4, 8, 8],
      "data_type": ")",
                        type, R"(", "chunk_grid": {"name": "regular", "configuration":
      {"chunk_shape": [4, 8, 8]}}, "chunk_key_encoding": {"name": "default"}, "fill_value": 0,
      "codecs": )",
                        codecs, "}");
  };
  const std::string bytes = R"({"name": "bytes", "configuration": {"endian": "little"}})";
  ASSERT_OK_AND_ASSIGN(ZarrArrayMeta plain, ParseZarrJson(array("[" + bytes + "]"), "a"));
  EXPECT_TRUE(plain.key_prefix && plain.nested && plain.shards.empty());
  EXPECT_THAT(
      ParseZarrJson(array("[" + bytes + "]", "int32"), "a/zarr.json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("a/zarr.json: data_type \"int32\"")));
  const std::string inner = absl::StrCat(R"({"name": "sharding_indexed", "configuration":
      {"chunk_shape": [2, 3, 8], "codecs": [)",
                                         bytes, "]}}");
  EXPECT_THAT(ParseZarrJson(array("[" + inner + "]"), "b"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a multiple")));
  const std::string nested = absl::StrCat(R"({"name": "sharding_indexed", "configuration":
      {"chunk_shape": [2, 4, 8], "codecs": [{"name": "sharding_indexed", "configuration":
      {"chunk_shape": [1, 4, 8], "codecs": [)",
                                          bytes, "]}}]}}");
  EXPECT_THAT(ParseZarrJson(array("[" + nested + "]"), "c"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nested sharding")));
  EXPECT_THAT(ParseZarrJson(array(R"([{"name": "zstd"}, )" + bytes + "]"), "d"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot come")));
  // Fields of the wrong type are refused or taken as absent, never an exception that would end
  // the server: a number where a string belongs.
  EXPECT_THAT(ParseZarrJson(R"({"zarr_format": 3, "node_type": 1})", "e"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a Zarr v3 array")));
  ASSERT_OK_AND_ASSIGN(
      ZarrArrayMeta little,
      ParseZarrJson(array(R"([{"name": "bytes", "configuration": {"endian": 0}}])"), "f"));
  EXPECT_FALSE(little.big_endian);
  EXPECT_TRUE(ParseNgffAttributes(R"({"multiscales": [{"name": 7, "datasets": [{"path": "0",
      "coordinateTransformations": [{"type": 1, "scale": [1, 1, 1]}]}]}]})",
                                  "g")
                  .ok());
}

}  // namespace
}  // namespace stackproc::core
