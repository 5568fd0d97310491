#pragma once

// The state codec: how a task's state is named in its StateStore and how each
// value is encoded (with codec.h's Encoder and Decoder). One store per task:
//
//   m                 the task's metadata (TaskMeta): version, job, position,
//                     watermark, counters
//   p                 the queued rule events, in (time, offset) order: time,
//                     offset, key, payload each (the fields are decoded again
//                     from the payload on restore)
//   k/<key>           a key's windows, the number of its live rolling events,
//                     and its dedup values (only when it has any, so state
//                     without them reads as before)
//   r/<len><key><time><offset>
//                     a chunk of a key's rolling-rule events, named after its
//                     last event (see ChunkName)
//
// Version 2 (kStateVersion) keeps rolling events in chunks of their own;
// version 1 (kInlineRollingVersion) kept them inside `k/<key>`, and is still
// read. What the codec reads is what it wrote, byte for byte: state written
// by an earlier build of the same version decodes unchanged.
//
// Stateless apart from what it takes from the JobPlan; any thread.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "worker/engine/codec.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/key_state.h"
#include "worker/engine/rolling_rules.h"
#include "worker/engine/task_processor.h"

namespace sluice::engine {

inline constexpr uint64_t kStateVersion = 2;
inline constexpr uint64_t kInlineRollingVersion = 1;
inline constexpr std::string_view kMetaKey = "m";
inline constexpr std::string_view kPendingKey = "p";
inline constexpr std::string_view kKeyPrefix = "k/";
inline constexpr std::string_view kChunkPrefix = "r/";

// The store key of a key's entry: kKeyPrefix, then the key.
std::string KeyStateName(std::string_view key);

// The name of a chunk of `key`'s rolling events whose last event is at
// (time, offset): kChunkPrefix, the key's length (4 bytes, big-endian), the
// key, then the time and offset as big-endian numbers with the sign bit
// flipped (ordered as signed numbers), so that a scan lists a key's chunks
// together and in event order.
std::string ChunkName(std::string_view key, int64_t time, int64_t offset);
// The key of a chunk's name; false if `name` is not one.
bool ChunkKeyOf(std::string_view name, std::string_view* key);

// The task's metadata, `m`. The views point into what was encoded or decoded.
struct TaskMeta {
  uint64_t version = kStateVersion;
  std::string_view job;
  std::string_view topic;
  int32_t partition = 0;
  int64_t next_offset = -1;
  int64_t max_event_time = 0;
  int64_t watermark = 0;
  bool seen_event = false;
  int64_t last_event_proc_time = 0;
  // All but `redelivered`, which is not kept. Metadata written before
  // `deduplicated` and `type_mismatches` existed reads them as 0.
  TaskCounters counters;
};
// Replaces *out with `meta` (always of kStateVersion).
void EncodeTaskMeta(const TaskMeta& meta, std::string* out);
// Corruption if `in` is of an unknown version or does not decode;
// FailedPrecondition if it belongs to another job than `job`.
Status DecodeTaskMeta(std::string_view in, std::string_view job, TaskMeta* meta);

// A queued rule event as `p` holds it.
struct PendingRecord {
  int64_t time = 0;
  int64_t offset = 0;
  std::string_view key;
  std::string_view payload;
};
// Replaces *out with `events`, which are in (time, offset) order.
void EncodePending(std::span<const PendingEvent* const> events, std::string* out);
// Calls on_event for each event of `in`, in order, and stops at the first
// error it returns; Corruption if `in` does not decode.
Status DecodePending(std::string_view in,
                     const std::function<Status(const PendingRecord&)>& on_event);

// Keys' entries and chunks, which depend on the job: the number of aggregates
// of its windows, and the values a rolling event keeps
// (JobPlan::rolling_slots()).
class StateCodec {
 public:
  explicit StateCodec(const JobPlan& plan);

  // Replaces *out with the entry of a key: its windows, the number of its
  // rolling events (they live in chunks), its dedup values if any.
  void EncodeKey(const KeyState& ks, std::string* out) const;
  // Reads an entry of state of `version` into `ks` (empty). Version 2 gives
  // in `live` the number of rolling events the key's chunks hold that are
  // live; version 1 reads them into ks->rolling, as not yet saved in a chunk.
  // False if `in` does not decode or its windows have another number of
  // aggregates than the job.
  bool DecodeKey(std::string_view in, uint64_t version, KeyState* ks, uint64_t* live) const;

  // Replaces *out with a chunk of the events of `rs` from index `first` on.
  void EncodeChunk(const RollingState& rs, size_t first, std::string* out) const;
  // Appends the events of a chunk to `rs`. False if it does not decode or
  // holds no event.
  bool DecodeChunk(std::string_view in, RollingState& rs) const;

  // A rolling key's events as a spill store keeps them (state_spill.h):
  // with the marks of the chunks the checkpoint store holds them in and the
  // sequence number and the number not in a chunk yet, so that the key read
  // back (or a snapshot while it is out) writes and deletes the same chunks
  // as one that never left memory. Decode reads into `rs` (empty).
  void EncodeSpilledRolling(const RollingState& rs, std::string* out) const;
  bool DecodeSpilledRolling(std::string_view in, RollingState& rs) const;

 private:
  // Appends `n` events as EncodeChunk writes them (time, offset, values).
  void DecodeRollingEvents(Decoder& d, uint64_t n, RollingState& rs) const;

  const size_t num_aggregates_;
  const size_t stride_;  // values per rolling event
};

}  // namespace sluice::engine
