// HostSampler against fake /proc files: CPU from the delta between two
// readings (not since boot), memory, load and the process's own RSS.
#include "services/agent/host_sampler.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace taskgrid {
namespace {

class HostSamplerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(proc_ / "self");
    Write("meminfo",
          "MemTotal:        8000000 kB\nMemFree:         1000000 kB\n"
          "MemAvailable:    2000000 kB\nBuffers:           10000 kB\n");
    Write("loadavg", "1.50 0.75 0.25 2/345 6789\n");
    Write("self/status", "Name:\ttaskgrid-agent\nVmPeak:\t  90000 kB\nVmRSS:\t   51200 kB\n");
    Cpu(1000, 9000);  // Since boot: 10% busy.
  }
  void TearDown() override { std::filesystem::remove_all(proc_); }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(proc_ / name) << text;
  }
  // Busy and idle jiffies split over the fields /proc/stat has, on 2 CPUs.
  void Cpu(uint64_t busy, uint64_t idle) {
    Write("stat", absl::StrCat("cpu  ", busy / 2, " 0 ", busy / 4, " ", idle, " 0 0 ",
                               busy - busy / 2 - busy / 4, " 0 0 0\n",
                               "cpu0 1 0 1 1 0 0 0 0 0 0\ncpu1 1 0 1 1 0 0 0 0 0 0\n",
                               "intr 12345\nctxt 999\n"));
  }

  const std::filesystem::path proc_ =
      std::filesystem::temp_directory_path() / absl::StrCat("tg_proc_", getpid());
};

TEST_F(HostSamplerTest, CpuIsTheBusyShareSinceTheLastSampleNotSinceBoot) {
  HostSampler sampler(proc_.string(), proc_.string());
  Cpu(1000 + 900, 9000 + 100);  // 900 busy of the next 1000: 90%.
  v1::HostMetrics m = sampler.Sample();
  EXPECT_DOUBLE_EQ(m.cpu_percent(), 90);
  EXPECT_EQ(m.cpus(), 2u);
  Cpu(1900 + 250, 9100 + 750);  // Then 25%.
  EXPECT_DOUBLE_EQ(sampler.Sample().cpu_percent(), 25);
  EXPECT_DOUBLE_EQ(sampler.Sample().cpu_percent(), 0) << "no time passed: no busy share";
}

TEST_F(HostSamplerTest, MemoryLoadProcessAndDisk) {
  HostSampler sampler(proc_.string(), proc_.string());
  const v1::HostMetrics m = sampler.Sample();
  EXPECT_EQ(m.memory_total_bytes(), 8'000'000 * 1024LL);
  EXPECT_EQ(m.memory_available_bytes(), 2'000'000 * 1024LL);
  EXPECT_EQ(m.memory_used_bytes(), 6'000'000 * 1024LL);
  EXPECT_DOUBLE_EQ(m.memory_percent(), 75);
  EXPECT_DOUBLE_EQ(m.load1(), 1.5);
  EXPECT_DOUBLE_EQ(m.load5(), 0.75);
  EXPECT_DOUBLE_EQ(m.load15(), 0.25);
  EXPECT_EQ(m.process_rss_bytes(), 51200 * 1024LL);
  EXPECT_GT(m.disk_total_bytes(), 0);
  EXPECT_GE(m.disk_used_bytes(), 0);
  EXPECT_GE(m.disk_percent(), 0);
  EXPECT_LE(m.disk_percent(), 100);
  EXPECT_EQ(m.disk_path(), proc_.string());
}

TEST_F(HostSamplerTest, UnreadableFilesLeaveZeros) {
  HostSampler sampler("/nonexistent/proc", "/nonexistent/dir");
  const v1::HostMetrics m = sampler.Sample();
  EXPECT_EQ(m.cpu_percent(), 0);
  EXPECT_EQ(m.memory_total_bytes(), 0);
  EXPECT_EQ(m.memory_percent(), 0);
  EXPECT_EQ(m.disk_total_bytes(), 0);
}

}  // namespace
}  // namespace taskgrid
