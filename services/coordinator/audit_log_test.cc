#include "services/coordinator/audit_log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "services/common/proto_time.h"

namespace taskgrid {
namespace {

using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

std::vector<uint64_t> Seqs(const v1::ListAuditResponse& r) {
  std::vector<uint64_t> seqs;
  for (const v1::AuditEntry& e : r.entries()) seqs.push_back(e.seq());
  return seqs;
}

TEST(AuditLogTest, NewEntriesBoundEveryFieldTheCallerChose) {
  const v1::AuditEntry e = NewAuditEntry(std::string(1000, 'a'), "task.submit", "t1", "ipv4:1",
                                         absl::PermissionDeniedError("no"));
  EXPECT_EQ(e.actor().size(), 256u);
  EXPECT_EQ(e.outcome(), "PERMISSION_DENIED");
  EXPECT_EQ(e.detail(), "no");
  EXPECT_EQ(NewAuditEntry("a", "b", "c", "d", absl::OkStatus()).outcome(), "ok");
}

TEST(AuditLogTest, AppendNumbersAndTimesEntries) {
  AuditLog log;
  EXPECT_EQ(log.Append(NewAuditEntry("a", "x", "", "", absl::OkStatus()), kT0).seq(), 1u);
  const v1::AuditEntry& second =
      log.Append(NewAuditEntry("a", "x", "", "", absl::OkStatus()), kT0 + absl::Seconds(1));
  EXPECT_EQ(second.seq(), 2u);
  EXPECT_EQ(FromProto(second.time()), kT0 + absl::Seconds(1));
}

TEST(AuditLogTest, ListFiltersAndPages) {
  AuditLog log;
  for (int i = 0; i < 5; ++i) {
    log.Append(NewAuditEntry(i % 2 ? "bob" : "ann", "task.submit", "", "", absl::OkStatus()),
               kT0 + absl::Seconds(i));
  }
  v1::ListAuditRequest req;
  req.set_actor("ann");
  req.set_limit(2);
  auto page = log.List(req);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(Seqs(*page), (std::vector<uint64_t>{1, 3}));
  req.set_after_seq(page->next_after_seq());
  page = log.List(req);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(Seqs(*page), (std::vector<uint64_t>{5}));
  EXPECT_EQ(page->next_after_seq(), 0u);

  v1::ListAuditRequest recent;
  *recent.mutable_since() = ToProto(kT0 + absl::Seconds(3));
  EXPECT_EQ(Seqs(*log.List(recent)), (std::vector<uint64_t>{4, 5}));
}

TEST(AuditLogTest, ABadLimitNamesTheField) {
  AuditLog log;
  v1::ListAuditRequest req;
  req.set_limit(-1);
  EXPECT_EQ(log.List(req).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(log.List(req).status().message(), HasSubstr("limit"));
}

TEST(AuditLogTest, RestoreContinuesTheNumbering) {
  AuditLog log;
  std::vector<v1::AuditEntry> stored(2);
  stored[0].set_seq(7);
  stored[1].set_seq(9);
  log.Restore(std::move(stored));
  EXPECT_EQ(log.Append(NewAuditEntry("a", "x", "", "", absl::OkStatus()), kT0).seq(), 10u);
  EXPECT_EQ(Seqs(*log.List({})), (std::vector<uint64_t>{7, 9, 10}));
}

TEST(AuditLogTest, KeepsOnlyTheNewestInMemory) {
  AuditLog log;
  for (int i = 0; i < kAuditLoaded + 3; ++i) {
    log.Append(NewAuditEntry("a", "x", "", "", absl::OkStatus()), kT0);
  }
  v1::ListAuditRequest req;
  req.set_limit(1);
  EXPECT_EQ(Seqs(*log.List(req)), (std::vector<uint64_t>{4}));
}

}  // namespace
}  // namespace taskgrid
