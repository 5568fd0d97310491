#pragma once

// ControlCommands: the devbroker's fault-injection language. One command per
// line in, one reply line out: "ok" or "error <reason>".
//
//   ping                                  -> ok
//   down BROKER_ID | up BROKER_ID         broker ids start at 1
//   down-for SECONDS                      all brokers down now, up again after SECONDS
//   create-topic NAME PARTITIONS          replication factor 1
//   error API_KEY ERROR_CODE COUNT        next COUNT requests of API_KEY fail with ERROR_CODE
//   rtt BROKER_ID MS                      added round-trip time for one broker
//
// Time is an input: Execute() and RunDue() take the current time, and
// NextDeadline() tells the caller when RunDue() next has work, so the caller's
// event loop never blocks on a "down-for". Not thread safe: one thread (the
// control server's) owns an instance.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "tools/devbroker/mock_cluster.h"

namespace sluice::devbroker {

class ControlCommands {
 public:
  using Clock = std::chrono::steady_clock;

  // `cluster` must outlive this object.
  explicit ControlCommands(MockCluster& cluster) : cluster_(cluster) {}

  // Runs one command line (without the newline) and returns the reply line
  // (without the newline). Never throws; bad input gives "error ...".
  std::string Execute(std::string_view line, Clock::time_point now);

  // When RunDue() next has something to do, if anything.
  std::optional<Clock::time_point> NextDeadline() const { return brokers_up_at_; }

  // Brings brokers back up when a "down-for" has elapsed.
  void RunDue(Clock::time_point now);

  // The command summary above, for --help.
  static const char* Usage();

 private:
  Status Dispatch(std::string_view line, Clock::time_point now);
  Status AllBrokers(bool up);

  MockCluster& cluster_;
  // Pending end of a "down-for"; a newer down-for moves it later, never earlier.
  std::optional<Clock::time_point> brokers_up_at_;
};

}  // namespace sluice::devbroker
