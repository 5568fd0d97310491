#pragma once

// Fault points: places on the checkpoint and transaction path where a test
// can kill the process, to check what a crash at exactly that step leaves
// behind. The environment variable SLUICE_FAULT_POINT=NAME[:N], read once, at
// the first call, kills the process with SIGKILL the N-th time (default: the
// first) the point NAME is reached. Without the variable a point costs one
// predictable branch.
//
// The points (worker/task.cc): after_produce, after_barrier,
// after_checkpoint, after_marker, after_commit, during_restore.

#include <string_view>

namespace sluice {

void FaultPoint(std::string_view name);

}  // namespace sluice
