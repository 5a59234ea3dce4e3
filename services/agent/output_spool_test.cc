#include "services/agent/output_spool.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace taskgrid {
namespace {

std::string Bytes(int64_t from, int64_t n) {
  std::string s;
  for (int64_t i = from; i < from + n; ++i) s.push_back(static_cast<char>('a' + i % 26));
  return s;
}

TEST(OutputSpoolTest, KeepsTheOldestInMemoryAndTheRestOnDisk) {
  OutputSpool spool(std::filesystem::temp_directory_path().string(), 100);
  for (int i = 0; i < 10; ++i) spool.Append(Bytes(i * 40, 40));
  EXPECT_EQ(spool.size(), 400);
  EXPECT_GT(spool.file_bytes(), 0);
  // Reads cross from memory into the file in order.
  std::string all;
  while (static_cast<int64_t>(all.size()) < spool.size()) {
    all += spool.Read(static_cast<int64_t>(all.size()), 64);
  }
  EXPECT_EQ(all, Bytes(0, 400));
  spool.Drop(250);  // Into the file, 150 bytes left: more than half the memory.
  EXPECT_EQ(spool.start(), 250);
  EXPECT_GT(spool.file_bytes(), 0);
  EXPECT_EQ(spool.Read(250, 1000), Bytes(250, 150));
  spool.Drop(360);  // 40 left: back to memory, the file is emptied.
  EXPECT_EQ(spool.file_bytes(), 0);
  EXPECT_EQ(spool.Read(360, 1000), Bytes(360, 40));
  spool.Drop(400);
  EXPECT_EQ(spool.size(), 0);
  spool.Append(Bytes(400, 30));  // Back to memory.
  EXPECT_EQ(spool.file_bytes(), 0);
  EXPECT_EQ(spool.Read(400, 100), Bytes(400, 30));
}

TEST(OutputSpoolTest, PartialAcknowledgementsTrimMemory) {
  OutputSpool spool(std::filesystem::temp_directory_path().string(), 1000);
  spool.Append("hello ");
  spool.Append("world");
  spool.Drop(3);
  EXPECT_EQ(spool.Read(3, 100), "lo world");
  EXPECT_EQ(spool.Read(7, 2), "or");
  spool.Clear();
  EXPECT_EQ(spool.size(), 0);
  EXPECT_EQ(spool.start(), 11);
}

TEST(OutputSpoolTest, WithoutAUsableDirectoryEverythingStaysInMemory) {
  OutputSpool spool("/nonexistent/spool", 10);
  spool.Append(Bytes(0, 25));
  spool.Append(Bytes(25, 25));
  EXPECT_EQ(spool.file_bytes(), 0);
  EXPECT_EQ(spool.Read(0, 100), Bytes(0, 50));
}

}  // namespace
}  // namespace taskgrid
