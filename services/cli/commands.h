// The CLI's commands, one file per group, and what they share. Private to
// the CLI's own files; cli.h is the interface.
#ifndef TASKGRID_SERVICES_CLI_COMMANDS_H_
#define TASKGRID_SERVICES_CLI_COMMANDS_H_

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/cli/args.h"
#include "services/cli/follow.h"
#include "taskgrid/v1/task_service.pb.h"

namespace taskgrid::cli {

// Each command: its parsed flags in, its exit code out.
int CmdRun(Context& ctx, const ParsedArgs& a);     // commands_run.cc
int CmdDocker(Context& ctx, const ParsedArgs& a);  // commands_run.cc
int CmdGet(Context& ctx, const ParsedArgs& a);     // commands_query.cc, through CmdAudit
int CmdList(Context& ctx, const ParsedArgs& a);
int CmdRuns(Context& ctx, const ParsedArgs& a);
int CmdCancel(Context& ctx, const ParsedArgs& a);
int CmdDelete(Context& ctx, const ParsedArgs& a);
int CmdLogs(Context& ctx, const ParsedArgs& a);
int CmdWatch(Context& ctx, const ParsedArgs& a);
int CmdAgents(Context& ctx, const ParsedArgs& a);
int CmdStats(Context& ctx, const ParsedArgs& a);
int CmdAudit(Context& ctx, const ParsedArgs& a);
int CmdKeys(Context& ctx, const ParsedArgs& a);  // commands_keys.cc

// Shared by the commands (cli.cc).
// Prints `what` and a hint on stderr; returns kExitUsage.
int Usage(const std::string& what);
std::string Lower(const std::string& enum_name, size_t prefix);
std::string PriorityName(v1::Priority p);
absl::StatusOr<v1::TaskStatus> ParseStatus(absl::string_view s);
absl::StatusOr<v1::Priority> ParsePriority(absl::string_view s);
// --flag's duration ("30s", "5m", or whole seconds).
absl::StatusOr<google::protobuf::Duration> ParseDurationFlag(const std::string& flag,
                                                             const std::string& value);
// --flag's byte size ("64m").
absl::StatusOr<int64_t> ParseBytes(const std::string& flag, const std::string& value);
// What a task runs, in one line.
std::string CommandLine(const v1::TaskSpec& spec);
// Local time to the millisecond; "-" for an unset time.
std::string FormatTime(const google::protobuf::Timestamp& t);
// A command's flags: `with_value` and `boolean` besides the global ones.
FlagSpec Spec(std::set<std::string> with_value, std::set<std::string> boolean = {});

}  // namespace taskgrid::cli

#endif  // TASKGRID_SERVICES_CLI_COMMANDS_H_
