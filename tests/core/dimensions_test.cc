#include "core/stack/dimensions.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/test_util/status_matchers.h"

namespace stackproc::core {
namespace {

using ::stackproc::testing::StatusIs;
using ::testing::HasSubstr;

// 2 time points x 3 channels x 4 z-slices: 24 planes.
Dimensions TwoByThree(const std::string& order) {
  Dimensions d;
  d.times = 2;
  d.channels = 3;
  d.order = order;
  return d;
}

TEST(DimensionsTest, PlanesFollowTheOrderFastestFirst) {
  // Worked out by hand: in ZCT order plane = (t * 3 + c) * 4 + z; in CZT plane = (t * 4 + z) * 3
  // + c; in TZC plane = (c * 4 + z) * 2 + t.
  EXPECT_EQ(TwoByThree("ZCT").PlaneOf({1, 2, 3}, 24), (1 * 3 + 2) * 4 + 3);
  EXPECT_EQ(TwoByThree("CZT").PlaneOf({1, 2, 3}, 24), (1 * 4 + 3) * 3 + 2);
  EXPECT_EQ(TwoByThree("TZC").PlaneOf({1, 2, 3}, 24), (2 * 4 + 3) * 2 + 1);
  EXPECT_EQ(TwoByThree("CZT").Of(5, 24), (PlaneIndex{0, 2, 1}));
  for (const char* order : {"ZCT", "ZTC", "CZT", "CTZ", "TZC", "TCZ"}) {
    const Dimensions d = TwoByThree(order);
    for (int64_t p = 0; p < 24; ++p) EXPECT_EQ(d.PlaneOf(d.Of(p, 24), 24), p) << order << p;
  }
}

TEST(DimensionsTest, SomePlanesOfAStackKeepTheirPlaces) {
  const Dimensions d = TwoByThree("ZCT");
  const Dimensions range = d.Range(10, 5, 24);  // planes 10-14 of 24
  EXPECT_EQ(range.Slices(5), 4);
  EXPECT_EQ(range.Of(0, 5), (PlaneIndex{0, 2, 2}));   // plane 10
  EXPECT_EQ(range.Of(4, 5), (PlaneIndex{1, 0, 2}));   // plane 14
  const Dimensions picked = range.Picked({1, 3}, 5);  // planes 11 and 13
  EXPECT_EQ(picked.Of(1, 2), (PlaneIndex{1, 0, 1}));
  EXPECT_TRUE(picked.Check(2).ok());
  EXPECT_THAT(d.Check(23), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("are not")));
  Dimensions huge;
  huge.times = huge.channels = int64_t{1} << 32;  // their product would overflow
  EXPECT_THAT(huge.Check(24), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("are not")));
}

TEST(DimensionsTest, DescriptionsSayWhatThePlanesAre) {
  ASSERT_OK_AND_ASSIGN(Dimensions imagej,
                       DimensionsOf("ImageJ=1.53t\nimages=24\nchannels=3\nslices=4\nframes=2\n"
                                    "hyperstack=true\n",
                                    24));
  EXPECT_EQ(imagej, TwoByThree("CZT"));
  // A plain ImageJ stack's stale images=/slices= say one z-stack (UpdateMetadata restates them).
  ASSERT_OK_AND_ASSIGN(Dimensions plain, DimensionsOf("ImageJ=1.53t\nimages=3\nslices=3\n", 6));
  EXPECT_TRUE(plain.single());
  EXPECT_THAT(DimensionsOf("ImageJ=1.53t\nchannels=5\nslices=4\n", 24),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the file has 24")));

  const std::string ome =
      "<?xml version=\"1.0\"?><OME xmlns=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\">"
      "<Image ID=\"Image:0\"><Pixels ID=\"Pixels:0\" DimensionOrder=\"XYZTC\" Type=\"uint8\" "
      "SizeX=\"4\" SizeY=\"4\" SizeZ=\"4\" SizeC=\"3\" SizeT=\"2\">"
      "<Channel ID=\"Channel:0:0\" Name=\"DAPI &amp; &quot;Hoechst&quot;\" Color=\"65535\"/>"
      "<Channel ID=\"Channel:0:1\" Name=\"GFP\"><LightPath/></Channel>"
      "<Channel ID=\"Channel:0:2\" Name=\"RFP\" EmissionWavelength=\"610\"/>"
      "<TiffData IFD=\"5\" FirstT=\"1\" FirstZ=\"1\" PlaneCount=\"1\"/>"
      "</Pixels></Image></OME>";
  ASSERT_OK_AND_ASSIGN(Dimensions d, DimensionsOf(ome, 24));
  EXPECT_EQ(d.order, "ZTC");
  EXPECT_EQ(d.times, 2);
  EXPECT_EQ(d.channels, 3);
  ASSERT_EQ(d.channel_info.size(), 3u);
  EXPECT_EQ(d.channel_info[1].name, "GFP");
  EXPECT_EQ(d.channel_info[0].name, "DAPI & \"Hoechst\"");  // XML's entities read back
  EXPECT_EQ(d.channel_info[0].rgba, 65535u);
  EXPECT_EQ(d.channel_info[2].emission_wavelength, 610);
  // (t=1, c=0, z=1) in ZTC order is plane 1 + 4 * 1 = 5 (the TiffData above), not 9.
  std::string moved = ome;
  moved.replace(moved.find("IFD=\"5\""), 7, "IFD=\"9\"");
  EXPECT_THAT(DimensionsOf(moved, 24),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("DimensionOrder")));
  EXPECT_THAT(DimensionsOf(ome, 23),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("(24 planes)")));
}

// Pages of several samples: sample s of page p is plane 3p + s, so the samples are channels
// stored fastest, and a page's own channels are channels too when they come fastest.
TEST(DimensionsTest, SamplesOfAPageAreChannelsStoredFastest) {
  ASSERT_OK_AND_ASSIGN(Dimensions rgb, DimensionsOf("", 4, 3));
  EXPECT_EQ(rgb.channels, 3);
  EXPECT_EQ(rgb.order, "CZT");
  EXPECT_EQ(rgb.Of(5, 12), (PlaneIndex{0, 2, 1}));  // page 1, blue
  // An ImageJ hyperstack of 2 channels x 2 slices in RGB pages: plane 7 is page 2's green; page
  // 2 is (c=0, z=1), so channel 0 x 3 + 1.
  ASSERT_OK_AND_ASSIGN(Dimensions ij,
                       DimensionsOf("ImageJ=1.11a\nimages=4\nchannels=2\nslices=2\n", 4, 3));
  EXPECT_EQ(ij.channels, 6);
  EXPECT_EQ(ij.order, "CZT");
  EXPECT_EQ(ij.Of(7, 12), (PlaneIndex{0, 1, 1}));
  EXPECT_EQ(ij.Of(11, 12), (PlaneIndex{0, 5, 1}));
  // OME's SizeC counts samples: SizeC=6 over RGB pages is 2 page channels.
  auto ome = [](const char* order, int size_c) {
    return absl::StrCat(
        "<?xml version=\"1.0\"?><OME xmlns=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\">"
        "<Image ID=\"Image:0\"><Pixels ID=\"Pixels:0\" DimensionOrder=\"",
        order, "\" Type=\"uint8\" SizeX=\"4\" SizeY=\"4\" SizeZ=\"2\" SizeC=\"", size_c,
        "\" SizeT=\"1\"><TiffData IFD=\"0\" PlaneCount=\"4\"/></Pixels></Image></OME>");
  };
  ASSERT_OK_AND_ASSIGN(Dimensions xyczt, DimensionsOf(ome("XYCZT", 6), 4, 3));
  EXPECT_EQ(xyczt.channels, 6);
  EXPECT_EQ(xyczt.Slices(12), 2);
  EXPECT_EQ(xyczt.Of(9, 12), (PlaneIndex{0, 3, 1}));  // page 3 = (c=1, z=1), red
  EXPECT_THAT(DimensionsOf(ome("XYZCT", 6), 4, 3),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not stored fastest")));
  EXPECT_THAT(DimensionsOf(ome("XYCZT", 2), 4, 3),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("SizeC=2")));
  // One page channel in Z-fastest order is still fine: the samples go first.
  ASSERT_OK_AND_ASSIGN(Dimensions zct, DimensionsOf(ome("XYZCT", 3), 2, 3));
  EXPECT_EQ(zct.order, "CZT");
  EXPECT_EQ(zct.Of(4, 6), (PlaneIndex{0, 1, 1}));
}

TEST(DimensionsTest, ChannelListsAreNumbersFromZeroEachOnce) {
  ASSERT_OK_AND_ASSIGN(std::vector<int64_t> channels, ParseChannelList("2+0"));
  EXPECT_EQ(channels, (std::vector<int64_t>{2, 0}));
  for (const char* bad : {"", "1,2", "-1", "1+1", "a"}) {
    EXPECT_THAT(ParseChannelList(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not valid")))
        << bad;
  }
}

}  // namespace
}  // namespace stackproc::core
