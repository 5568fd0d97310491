#pragma once

// The commands of sluicectl, behind an abstract coordinator client so they run
// in tests without a server.
//
// Run() is all of sluicectl but the wiring: it parses the command line
// (CLI11), reads job files, makes one call to the coordinator through the
// JobClient that `connect` opens, and prints the answer as a table or as JSON.
// sluicectl.cc gives it a gRPC client, the system clock and std::cout/cerr;
// tests give it a fake client, a ManualClock and string streams.
//
// Exit codes: 0 done; 1 the coordinator refused the request or could not be
// reached; 2 bad usage (unknown command or flag, missing argument, a job file
// that cannot be read), printed with the usage.

#include <chrono>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/security_flags.h"
#include "common/status.h"
#include "proto/sluice.pb.h"

namespace sluice::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

inline constexpr const char* kDefaultCoordinator = "127.0.0.1:7070";

// The coordinator's JobService as sluicectl calls it: one method per RPC,
// filling `response` when the Status is OK.
//
// Status contract: kUnavailable means the coordinator could not be reached
// (connection refused, no answer before the deadline), its message the
// transport's detail. Any other non-OK Status is the coordinator's own answer,
// its message shown to the user as is ("fraud.yaml:7: expected a duration like
// 5s, got 'five'").
class JobClient {
 public:
  virtual ~JobClient() = default;
  virtual Status SubmitJob(const proto::SubmitJobRequest& request, proto::JobInfo* response) = 0;
  virtual Status ListJobs(const proto::ListJobsRequest& request,
                          proto::ListJobsResponse* response) = 0;
  virtual Status GetJob(const proto::JobRef& request, proto::JobStatus* response) = 0;
  virtual Status UpdateJob(const proto::UpdateJobRequest& request, proto::JobInfo* response) = 0;
  virtual Status StopJob(const proto::StopJobRequest& request, proto::JobInfo* response) = 0;
  virtual Status CancelJob(const proto::JobRef& request, proto::JobInfo* response) = 0;
  virtual Status ListWorkers(const proto::ListWorkersRequest& request,
                             proto::ListWorkersResponse* response) = 0;
};

// How to reach the coordinator, from the command line.
struct ConnectOptions {
  std::string address;
  std::chrono::milliseconds timeout{0};  // every call gives up after it
  ClientSecurityFlags security;          // TLS and the bearer token
};

// Opens a client for the coordinator. Called at most once per Run, after the
// command line parsed. An error (bad TLS flags, an unreadable certificate or
// token file) is bad usage: printed with the usage, exit 2.
using ConnectFn = std::function<Result<std::unique_ptr<JobClient>>(const ConnectOptions&)>;

// What Run needs from the process.
struct Environment {
  // The coordinator used without --coordinator: $SLUICE_COORDINATOR, or
  // kDefaultCoordinator when that is unset or empty.
  std::string default_coordinator = kDefaultCoordinator;
  // The bearer token used without --token-file: $SLUICE_TOKEN.
  std::string default_token;
  ConnectFn connect;
  const Clock* clock = nullptr;  // ages in tables are relative to its now
  std::ostream* out = nullptr;   // tables and JSON
  std::ostream* err = nullptr;   // errors and usage
};

// Runs `sluicectl` with argv[0..argc) (argv[0] is the program's name) and
// returns the process's exit code.
int Run(int argc, const char* const* argv, const Environment& env);

// The text of a job file, or an error naming the file and why it cannot be
// read or is no job file: larger than 1 MiB (read no further, so /dev/zero
// fails at once), empty, or not UTF-8 text.
Result<std::string> ReadJobFile(const std::string& path);

// `--coordinator`: HOST:PORT with a port from 1 to 65535.
Status CheckCoordinatorAddress(const std::string& address);
// `--timeout`: finite seconds from 0.001 to one day.
Status CheckTimeout(double seconds);

// `submit --start-at`: "earliest", "latest" or an RFC 3339 time (at or after
// 1970) set as `source`'s start (and start_time_ms); InvalidArgument says
// what is expected. With the flag, submit loads the job file itself
// (jobspec/), replaces its source.start and sends the spec.
Status ApplyStartAt(const std::string& value, proto::SourceSpec* source);

}  // namespace sluice::cli
