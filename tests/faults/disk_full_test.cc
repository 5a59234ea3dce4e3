// Disk full: the coordinator's data directory is a small tmpfs the test fills
// to the last byte. New submits are refused with a clear UNAVAILABLE, reads
// go on, nothing half-written is acknowledged, and once space returns the
// coordinator takes work again without a restart.
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "tests/faults/fault_cluster.h"

namespace taskgrid {
namespace {

class DiskFullTest : public FaultCluster {
 protected:
  void SetUp() override {
    FaultCluster::SetUp();
    data_ = dir_ / "data";
    std::filesystem::create_directories(data_);
    if (mount("tmpfs", data_.c_str(), "tmpfs", 0, "size=4m") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno)
                   << "); this test needs root";
    }
    mounted_ = true;
  }

  void TearDown() override {
    agents_.clear();
    coordinator_.reset();
    if (mounted_) umount2(data_.c_str(), MNT_DETACH);
    FaultCluster::TearDown();
  }

  // Writes until the filesystem refuses; returns the bytes written.
  int64_t Fill() {
    std::FILE* f = std::fopen((data_ / "filler").c_str(), "w");
    const std::string block(4096, 'f');
    int64_t n = 0;
    while (std::fwrite(block.data(), 1, block.size(), f) == block.size() && std::fflush(f) == 0) {
      n += static_cast<int64_t>(block.size());
    }
    std::fclose(f);
    return n;
  }

  grpc::Status TrySubmit(const std::string& key, v1::SubmitResponse* resp) {
    v1::SubmitRequest req;
    req.set_idempotency_key(key);
    req.mutable_spec()->mutable_shell()->set_command("echo " + key);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    return client_->stub().Submit(&ctx, req, resp);
  }

  std::filesystem::path data_;
  bool mounted_ = false;
};

TEST_F(DiskFullTest, RefusesSubmitsKeepsServingReadsAndRecovers) {
  StartCoordinator({"--data_dir=" + data_.string()});
  StartAgent("disk-a1", 2);
  ASSERT_TRUE(WaitAgents(1));
  const std::string before = Submit("echo before");
  ASSERT_EQ(WaitFinal(before).status(), v1::TASK_STATUS_SUCCEEDED);

  ASSERT_GT(Fill(), 0);
  // A submit caught by the full disk is never acknowledged while it cannot
  // be stored; the ones after it are refused at once, naming the cause.
  v1::SubmitResponse resp;
  grpc::Status caught = TrySubmit("caught", &resp);
  EXPECT_FALSE(caught.ok());
  grpc::Status refused;
  EXPECT_TRUE(WaitFor(
      [&] {
        refused = TrySubmit("refused", &resp);
        return refused.error_code() == grpc::StatusCode::UNAVAILABLE;
      },
      absl::Seconds(20)))
      << refused.error_message();
  EXPECT_NE(refused.error_message().find("full"), std::string::npos) << refused.error_message();

  v1::Task read;
  EXPECT_TRUE(client_->Get(before, &read).ok()) << "reads must go on while the disk is full";
  EXPECT_EQ(read.status(), v1::TASK_STATUS_SUCCEEDED);
  EXPECT_GE(client_->Unfinished(), 0);

  std::filesystem::remove(data_ / "filler");
  grpc::Status s;
  EXPECT_TRUE(WaitFor([&] { return (s = TrySubmit("after", &resp)).ok(); }, absl::Seconds(30)))
      << s.error_message();
  EXPECT_EQ(WaitFinal(resp.task().id()).status(), v1::TASK_STATUS_SUCCEEDED);
  // The caught submit, retried with its key, is one task that runs once.
  ASSERT_TRUE(TrySubmit("caught", &resp).ok());
  const v1::Task caught_task = WaitFinal(resp.task().id());
  EXPECT_EQ(caught_task.status(), v1::TASK_STATUS_SUCCEEDED);
  EXPECT_EQ(caught_task.attempt(), 1u);
}

}  // namespace
}  // namespace taskgrid
