#pragma once

// One worker process per data directory, and the identity that follows from
// it. The directory holds `worker.lock` (an flock held while the process
// lives: a second worker on the same directory is refused) and
// `worker.instance` (random, made once): the instance the worker registers
// with, so that the coordinator tells a restart of this worker (same
// instance) from another process claiming its id (refused while this one is
// alive).

#include <string>

#include "common/status.h"

namespace sluice::worker {

class DataDirClaim {
 public:
  // Creates `data_dir` if needed and takes its lock. FailedPrecondition if
  // another process holds it.
  static Result<DataDirClaim> Take(const std::string& data_dir);
  DataDirClaim(DataDirClaim&& other) noexcept;
  DataDirClaim& operator=(DataDirClaim&&) = delete;
  ~DataDirClaim();

  const std::string& instance() const { return instance_; }

 private:
  DataDirClaim(int fd, std::string instance) : fd_(fd), instance_(std::move(instance)) {}
  int fd_ = -1;
  std::string instance_;
};

// The id of a worker started without --worker-id: the host name and a stable
// suffix from the data directory's absolute path, so that two workers on one
// host differ and a restarted one keeps its id.
std::string DefaultWorkerId(const std::string& data_dir);

}  // namespace sluice::worker
