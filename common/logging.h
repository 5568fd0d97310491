#pragma once

// Logging setup shared by the daemons: spdlog to stderr, one line per event
// with an ISO time and the level.

#include <string>
#include <vector>

namespace sluice {

// The levels --log-level accepts.
const std::vector<std::string>& LogLevels();

// Makes a stderr logger named `program` the default, at `level` (one of
// LogLevels()).
void SetUpLogging(const std::string& program, const std::string& level);

}  // namespace sluice
