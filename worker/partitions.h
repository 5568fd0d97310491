#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace sluice::worker {

// Parses "0-3,5,7" (or "all": empty) into sorted, distinct partition numbers.
Result<std::vector<int32_t>> ParsePartitions(const std::string& text);

}  // namespace sluice::worker
