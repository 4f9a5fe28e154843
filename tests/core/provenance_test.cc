// The provenance record in each kind of description: written where its readers keep it, taken
// out whole, the rest of the description as it was.
#include "core/stack/provenance.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/stack/metadata.h"
#include "tests/test_util/status_matchers.h"

namespace stackproc::core {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Provenance Record(std::string executor = "local") {
  Provenance p;
  p.version = "0.1.0";
  p.pipeline = {"gaussian:sigma=2", "clahe:clip=2,tiles=8,bins=256,channels=1"};
  p.channels = "1+0";
  p.compression = "deflate:level=3";
  p.input = {"in <&> \"x\".tif", 1, 2, 10, 64, 48, "uint16", 2 * 10 * 64 * 48 * 2};
  p.time = "2026-12-06T13:20:05Z";
  p.executor = std::move(executor);
  return p;
}

// `description` with the record, then taken out again: the record and the description back.
void RoundTrip(const std::string& description) {
  SCOPED_TRACE(description);
  std::string written = DescriptionWithProvenance(description, Record());
  EXPECT_NE(written, description);
  std::optional<Provenance> back = TakeProvenance(written);
  ASSERT_TRUE(back.has_value()) << written;
  EXPECT_EQ(*back, Record());
  const bool newline = !description.empty() && description.back() != '\n' &&
                       ClassifyDescription(description) != DescriptionKind::kOmeXml &&
                       ClassifyDescription(description) != DescriptionKind::kTifffileJson;
  EXPECT_EQ(written, newline ? description + "\n" : description);
}

TEST(ProvenanceTest, EachKindOfDescriptionTakesItAndGivesItBack) {
  RoundTrip("");
  RoundTrip("ImageJ=1.11a\nimages=20\nchannels=2\nslices=10\nhyperstack=true\n");
  RoundTrip("{\"shape\": [10, 64, 48]}");
  RoundTrip("{\"exposure\": 10}");  // JSON, but not tifffile's: a line
  RoundTrip("acquired with a microscope");
  RoundTrip(
      "<?xml version=\"1.0\"?><OME xmlns=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\">"
      "<Image ID=\"Image:0\"><Pixels ID=\"Pixels:0\"/><ROIRef ID=\"ROI:0\"/></Image>"
      "<ROI ID=\"ROI:0\"/></OME>");
  RoundTrip(
      "<ome:OME xmlns:ome=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\"><ome:Image "
      "ID=\"Image:0\"/><ome:StructuredAnnotations><ome:MapAnnotation ID=\"Annotation:1\" "
      "Namespace=\"openmicroscopy.org/omero/client/mapAnnotation\"/><ome:CommentAnnotation "
      "ID=\"Annotation:2\"><ome:Value>a</ome:Value></ome:CommentAnnotation>"
      "</ome:StructuredAnnotations></ome:OME>");
}

TEST(ProvenanceTest, WrittenWhereEachReaderLooks) {
  const std::string imagej = DescriptionWithProvenance("ImageJ=1.11a\nimages=3\n", Record());
  // One key=value line: '=' inside the record is escaped as JSON allows (tifffile splits a
  // line at every '=').
  EXPECT_THAT(imagej, HasSubstr("\nstackproc={\"version\":\"0.1.0\""));
  EXPECT_THAT(imagej, HasSubstr("gaussian:sigma\\u003d2"));
  const std::string ome = DescriptionWithProvenance(
      "<?xml version=\"1.0\"?><OME><Image ID=\"Image:0\"><ROIRef ID=\"ROI:0\"/></Image>"
      "<ROI ID=\"ROI:0\"/></OME>",
      Record());
  // Between the images and the ROIs, as OME orders its children; never inside the Image.
  EXPECT_THAT(ome, HasSubstr("</Image><StructuredAnnotations><MapAnnotation "
                             "ID=\"Annotation:stackproc\" Namespace=\"stackproc\"><Value><M "
                             "K=\"version\">0.1.0</M>"));
  EXPECT_THAT(ome, HasSubstr("<M K=\"executor\">local</M></Value></MapAnnotation>"
                             "</StructuredAnnotations><ROI ID=\"ROI:0\"/></OME>"));
  EXPECT_THAT(ome, HasSubstr("in &lt;&amp;&gt; \\&quot;x\\&quot;.tif"));
  EXPECT_EQ(DescriptionWithProvenance("{\"shape\": [3, 4, 5]}", Record()).substr(0, 35),
            "{\"shape\": [3, 4, 5], \"stackproc\": {");
}

TEST(ProvenanceTest, TheLastRecordThatParsesIsTakenAndNoneIsLeft) {
  // An output of an output: its input's record was taken when read; a record that does not
  // parse is left in place, and the one written after it is still found.
  std::string twice = DescriptionWithProvenance(
      DescriptionWithProvenance("ImageJ=1.11a\n", Record("first")), Record("second"));
  EXPECT_EQ(TakeProvenance(twice)->executor, "second");
  EXPECT_EQ(TakeProvenance(twice)->executor, "first");
  EXPECT_EQ(twice, "ImageJ=1.11a\n");
  std::string ome = DescriptionWithProvenance(
      DescriptionWithProvenance("<OME><Image ID=\"Image:0\"/></OME>", Record("first")),
      Record("second"));
  EXPECT_EQ(TakeProvenance(ome)->executor, "second");
  EXPECT_EQ(ome, "<OME><Image ID=\"Image:0\"/></OME>");
  std::string broken = "ImageJ=1.11a\nstackproc={\"version\":\n";
  EXPECT_FALSE(TakeProvenance(broken).has_value());
  EXPECT_EQ(broken, "ImageJ=1.11a\nstackproc={\"version\":\n");
  std::string none = "ImageJ=1.11a\nimages=3\n";
  EXPECT_FALSE(TakeProvenance(none).has_value());
}

TEST(ProvenanceTest, ANameThatIsNotUtf8IsWrittenNotThrown) {
  Provenance p = Record();
  p.input.name = "caf\xe9.tif";  // Latin-1, as a file name may be
  const std::string json = ProvenanceJson(p);
  EXPECT_THAT(json, Not(HasSubstr("\xe9")));
  ASSERT_OK_AND_ASSIGN(Provenance back, ParseProvenanceJson(json));
  EXPECT_EQ(back.input.name, "caf\xef\xbf\xbd.tif");  // U+FFFD in its place
  EXPECT_THAT(ParseProvenanceJson("{\"version\": 1}"),
              ::stackproc::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("not a stackproc provenance record")));
}

}  // namespace
}  // namespace stackproc::core
