#include "services/coordinator/output_buffer.h"

#include <gtest/gtest.h>

namespace taskgrid {
namespace {

std::string Pattern(size_t n, size_t start = 0) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + (start + i) % 26));
  return s;
}

TEST(OutputBufferTest, KeepsEverythingUnderTheCap) {
  OutputBuffer b(100);
  b.Append(Pattern(60));
  b.Append(Pattern(40, 60));
  EXPECT_EQ(b.total(), 100);
  EXPECT_EQ(b.dropped(), 0);
  auto s = b.Read(0, 1000);
  EXPECT_EQ(s.offset, 0);
  EXPECT_EQ(s.data, Pattern(100));
  EXPECT_EQ(b.Read(30, 10).data, Pattern(10, 30));
}

TEST(OutputBufferTest, KeepsHeadAndTailAndCountsTheDrop) {
  OutputBuffer b(100);
  for (int i = 0; i < 10; ++i) b.Append(Pattern(100, i * 100));
  EXPECT_EQ(b.total(), 1000);
  EXPECT_EQ(b.dropped(), 900);
  auto head = b.Read(0, 1000);
  EXPECT_EQ(head.offset, 0);
  EXPECT_EQ(head.data, Pattern(50));  // Stops at the gap.
  auto tail = b.Read(50, 1000);
  EXPECT_EQ(tail.offset, 950);  // Jumps over the dropped middle.
  EXPECT_EQ(tail.data, Pattern(50, 950));
  EXPECT_EQ(b.Read(1000, 10).data, "");
}

TEST(OutputBufferTest, ManySmallAppendsStayCorrect) {
  OutputBuffer b(64);
  std::string all;
  for (int i = 0; i < 1000; ++i) {
    std::string piece = Pattern(i % 7 + 1, all.size());
    all += piece;
    b.Append(piece);
  }
  EXPECT_EQ(b.total(), static_cast<int64_t>(all.size()));
  auto tail = b.Read(32, 1000);
  EXPECT_EQ(tail.offset, static_cast<int64_t>(all.size()) - 32);
  EXPECT_EQ(tail.data, all.substr(all.size() - 32));
}

}  // namespace
}  // namespace taskgrid
