#include "services/gateway/json.h"

#include <gtest/gtest.h>

namespace taskgrid::gateway {
namespace {

TEST(EventToJsonTest, MatchesTheGenericPrinterByteForByte) {
  v1::TaskEvent e;
  e.set_cursor(42);
  e.set_type(v1::EVENT_TYPE_TASK_LOG);
  e.set_task_id("t1");
  e.mutable_output()->set_stream(v1::OUTPUT_STREAM_STDERR);
  e.mutable_output()->set_offset(7);
  std::string data;
  for (int i = 0; i < 70000; ++i) data.push_back(static_cast<char>(i * 31));
  e.mutable_output()->set_data(data);
  EXPECT_EQ(EventToJson(e), ToJson(e));
  e.mutable_output()->clear_data();
  EXPECT_EQ(EventToJson(e), ToJson(e));
}

TEST(ErrorResponseTest, TakesTheFieldFromTheMessage) {
  HttpResponse r = ErrorResponse(400, "invalid_argument", "spec.shell.command: is empty");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body,
            R"({"error":{"code":"invalid_argument","message":"spec.shell.command: is empty",)"
            R"("field":"spec.shell.command"}})");
}

}  // namespace
}  // namespace taskgrid::gateway
