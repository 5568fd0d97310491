#pragma once

// Writes the worker's task reports as JSON to a file, replaced atomically:
// {"worker":..,"updated_ms":..,"tasks":[{"job":..,"partition":..,"state":..,
//  "next_offset":..,"consumed":..,...}]}. For operators and tests.

#include <string>
#include <vector>

#include "proto/sluice.pb.h"

namespace sluice::worker {

void WriteStatusFile(const std::string& path, const std::string& worker_id, int64_t now_ms,
                     const std::vector<proto::TaskReport>& reports);

}  // namespace sluice::worker
