#pragma once

// CheckpointMeta: what a checkpoint records beside the task's state (the next
// input offset, the watermark, the epoch of the writer), and its text form,
// stored with every checkpoint and in exactly_once marker records.

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "common/status.h"

namespace sluice::worker {

struct CheckpointMeta {
  int64_t checkpoint_id = 0;  // set by Save: increases with every checkpoint
  int64_t next_offset = -1;   // the first input offset not in the state
  int64_t watermark = std::numeric_limits<int64_t>::min();
  int64_t epoch = 0;       // the assignment epoch of the task that wrote it
  int64_t created_ms = 0;  // processing time when taken (from the Clock)
  std::string job;
  int32_t partition = 0;
  // Written under delivery: exactly_once: it counts only once the Kafka
  // transaction naming it (in a marker record) has committed.
  bool transactional = false;

  bool operator==(const CheckpointMeta&) const = default;
};

// The metadata as stored with a checkpoint (and in exactly_once markers):
// "key=value" lines, with a format line first; checkpoint_id (when set) and
// transactional (when true) are optional lines. Decoding ignores unknown keys
// (written by newer versions) and fails with Corruption on a missing or
// malformed one.
std::string EncodeCheckpointMeta(const CheckpointMeta& meta);
Result<CheckpointMeta> DecodeCheckpointMeta(const std::string& text);

// True if `text` is a whole decimal integer that fits, stored in `out`.
bool ParseInt64(std::string_view text, int64_t& out);

}  // namespace sluice::worker
