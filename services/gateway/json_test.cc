#include "services/gateway/json.h"
#include "services/gateway/event_stream.h"

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

TEST(SseFrameTest, AMarkerOfDroppedBytesSaysWhichBytes) {
  v1::TaskEvent e;
  e.set_cursor(7);
  e.set_type(v1::EVENT_TYPE_TASK_LOG);
  e.mutable_output()->set_offset(600);
  e.mutable_output()->set_dropped_bytes(4400);
  const std::string frame = SseFrame(e);
  EXPECT_NE(frame.find("event: task:log\n"), std::string::npos) << frame;
  EXPECT_NE(frame.find(R"("offset":"600")"), std::string::npos) << frame;
  EXPECT_NE(frame.find(R"("droppedBytes":"4400")"), std::string::npos) << frame;
}

TEST(CheckJsonNestingTest, CountsArraysAndObjectsNotBracketsInStrings) {
  EXPECT_TRUE(CheckJsonNesting("[[[]]]", 3).ok());
  EXPECT_FALSE(CheckJsonNesting("[[[[]]]]", 3).ok());
  EXPECT_FALSE(CheckJsonNesting(R"({"a":{"b":[{}]}})", 3).ok());
  EXPECT_TRUE(CheckJsonNesting(R"([{}, {}, [], {"a":[]}])", 3).ok());  // Siblings do not add up.
  EXPECT_TRUE(CheckJsonNesting(R"(["[[[[", "{{{{", "\"[[[["])", 1).ok());
  EXPECT_TRUE(CheckJsonNesting(R"(["\\", "[[[["])", 1).ok());  // An escaped backslash ends.
  EXPECT_EQ(CheckJsonNesting(std::string(100, '['), 32).message(),
            "body: nested deeper than 32 levels");
  EXPECT_TRUE(CheckJsonNesting("", 1).ok());
  // Single quotes delimit strings for protobuf too: a '"' inside them opens none.
  EXPECT_FALSE(CheckJsonNesting(R"(['"', [[[[]]]], '"'])", 3).ok());
  EXPECT_TRUE(CheckJsonNesting(R"(['[[[[', "'[[[["])", 1).ok());
  // Closing more than was opened does not buy depth for later.
  EXPECT_FALSE(CheckJsonNesting("]]]]]][[[[", 3).ok());
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
