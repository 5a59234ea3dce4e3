// Slow consumers: a Watch client and an SSE client that stop reading while a
// task writes 169 MB. Other clients are unaffected, the coordinator's and the
// gateway's memory stays bounded, and the stalled Watch client, when it reads
// again, is told what it missed (RESYNC) instead of silently skipping it.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/faults/fault_cluster.h"

namespace taskgrid {
namespace {

class SlowConsumerTest : public FaultCluster {
 protected:
  void SetUp() override {
    FaultCluster::SetUp();
    StartCoordinator({"--event_log_bytes=16777216"});
    StartAgent("slow-a1", 2);
    ASSERT_TRUE(WaitAgents(1));
    http_port_ = FreeLoopbackPort();
    gateway_ = std::make_unique<ChildProcess>(std::vector<std::string>{
        TASKGRID_GATEWAY_BIN, "--coordinator=" + address_,
        absl::StrCat("--http_address=127.0.0.1:", http_port_), "--metrics_address=",
        "--log_level=warn", "--max_stream_queue_bytes=1048576"});
    ASSERT_TRUE(gateway_->Start());
  }

  void TearDown() override {
    gateway_.reset();
    FaultCluster::TearDown();
  }

  // An SSE client that sends its request and then never reads; -1 if the
  // gateway did not accept it within 10 s.
  int OpenStalledSse() {
    const sockaddr_in addr = LoopbackAddress(http_port_);
    int fd = -1;
    WaitFor([&] {
      fd = socket(AF_INET, SOCK_STREAM, 0);
      const int small = 4096;
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
      if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) return true;
      close(fd);  // A failed connect leaves the socket unusable.
      fd = -1;
      return false;
    });
    if (fd < 0) return -1;
    const std::string req =
        "GET /api/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n";
    return write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size()) ? fd : -1;
  }

  int http_port_ = 0;
  std::unique_ptr<ChildProcess> gateway_;
};

TEST_F(SlowConsumerTest, StalledClientsDoNotHoldUpOthersOrMemory) {
  const int sse = OpenStalledSse();
  ASSERT_GE(sse, 0);

  // A Watch client that reads one message, then stalls until told to go on.
  grpc::ClientContext stalled_ctx;
  stalled_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(180));
  v1::WatchRequest all;
  all.set_after_cursor(0);
  auto stalled = client_->stub().Watch(&stalled_ctx, all);
  v1::WatchResponse first;
  ASSERT_TRUE(stalled->Read(&first));

  const int64_t coordinator_before = ResidentBytes(coordinator_->pid());
  const int64_t gateway_before = ResidentBytes(gateway_->pid());
  // seq 1 20000000 (168,888,897 bytes) in 80 bursts: the reading watcher
  // must keep within the event log (16 MiB) of the producer, which a
  // producer at full speed can outrun on a loaded 2-core machine.
  const std::string id = Submit(
      "for i in $(seq 0 79); do seq $((i * 250000 + 1)) $((i * 250000 + 250000)); "
      "sleep 0.15; done");
  int64_t coordinator_peak = 0, gateway_peak = 0;
  WatchedTask w;
  std::thread watcher([&] { w = Watch(id, absl::Seconds(120)); });
  WaitFor(
      [&] {
        coordinator_peak = std::max(coordinator_peak, ResidentBytes(coordinator_->pid()));
        gateway_peak = std::max(gateway_peak, ResidentBytes(gateway_->pid()));
        return IsFinalStatus(Get(id).status());
      },
      absl::Seconds(120));
  watcher.join();

  EXPECT_EQ(w.final_status, v1::TASK_STATUS_SUCCEEDED);
  EXPECT_TRUE(w.contiguous) << "the reading watcher missed output";
  EXPECT_EQ(w.out[0].size(), 168'888'897u);
  std::printf(
      "RSS before and at the peak with two stalled clients: coordinator %.1f -> %.1f MB, "
      "gateway %.1f -> %.1f MB\n",
      coordinator_before / 1e6, coordinator_peak / 1e6, gateway_before / 1e6, gateway_peak / 1e6);
  // What stays is bounded by the coordinator's event log (16 MiB), the
  // gateway's event ring (64 MiB) and the per-client queue (1 MiB), plus
  // allocator slack; not by the 169 MB written.
  if (kResidentMemoryIsMeaningful) {
    EXPECT_LT(coordinator_peak - coordinator_before, 128 << 20);
    EXPECT_LT(gateway_peak - gateway_before, 160 << 20);
  }

  // The stalled watcher reads again: its cursors stay in order, and a gap
  // (the log moved past it) comes with a RESYNC.
  uint64_t cursor = first.events(first.events_size() - 1).cursor();
  bool resync = false, gap = false;
  v1::WatchResponse batch;
  while (!resync && stalled->Read(&batch)) {
    for (const v1::TaskEvent& e : batch.events()) {
      EXPECT_GT(e.cursor(), cursor);
      if (e.type() == v1::EVENT_TYPE_RESYNC) resync = true;
      if (!resync && e.cursor() != cursor + 1) gap = true;
      cursor = e.cursor();
    }
  }
  stalled_ctx.TryCancel();
  stalled->Finish().IgnoreError();
  EXPECT_TRUE(resync) << "16 MiB of events passed a stalled watcher without a RESYNC";
  EXPECT_FALSE(gap) << "events were skipped without a RESYNC";
  close(sse);
}

}  // namespace
}  // namespace taskgrid
