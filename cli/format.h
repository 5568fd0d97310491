#pragma once

// How sluicectl shows the coordinator's answers: aligned text tables for
// people and one-line JSON for scripts.
//
// Every function is pure: times are shown relative to `now_ms`, which the
// caller reads from its Clock, so the output of a test is exact.

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "proto/sluice.pb.h"

namespace sluice::cli {

// What a table shows for a value that is not known.
inline constexpr const char* kUnknown = "-";

// A text table: a header row and data rows, columns left-aligned and separated
// by two spaces, no trailing spaces, one line per row (kubectl style).
class Table {
 public:
  explicit Table(std::vector<std::string> header);

  // A row shorter than the header is padded with empty cells.
  void AddRow(std::vector<std::string> cells);
  size_t rows() const { return rows_.size(); }
  std::string Render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// A short human span of a non-negative duration: "0s", "45s", "2m5s", "17m",
// "3h20m", "20h", "2d4h", "30d", "3y" (as kubectl shows ages).
std::string FormatDuration(int64_t millis);

// How long before `now_ms` the instant `then_ms` was: "4s ago"; "-" when
// `then_ms` is 0 or less (never happened). Instants in the future (clock skew
// between machines) show as "0s ago".
std::string FormatAge(int64_t then_ms, int64_t now_ms);

// "2024-03-01T12:00:00Z", or "2024-03-01T12:00:00.250Z" with milliseconds.
std::string FormatRfc3339(int64_t millis);

// A task's event-time watermark: RFC 3339, "-" before the first event
// (INT64_MIN), "end" after a drain (INT64_MAX).
std::string FormatWatermark(int64_t millis);

// Records the task has yet to read: end_offset - next_offset, where a
// next_offset of -1 (nothing consumed yet) counts as 0; "-" when end_offset is
// unknown (-1). Never negative (a stale end_offset shows as 0).
std::string FormatLag(const proto::TaskReport& report);

// How old the oldest record the task has not processed yet is
// (TaskReport.lag_ms), as FormatDuration: "0s" when it is caught up; "-"
// when neither it nor the lag in records is known.
std::string FormatLagTime(const proto::TaskReport& report);

// "RUNNING", or "-" for the unspecified value.
std::string JobStateName(proto::JobState state);
std::string TaskStateName(proto::TaskReport::State state);

// One line about a job, without a newline:
// "job fraud: RUNNING, 8 partitions, version 2, submitted 3h ago, updated 5m ago";
// a failed job's reason follows its state ("FAILED (source topic payments no
// longer exists on ...)"), partitions added since submit show as
// "10 partitions (8 at submit)", and a source.start other than earliest as
// "started at the latest offsets" or "started at 2024-03-01T12:00:00Z".
std::string FormatJobLine(const proto::JobInfo& job, int64_t now_ms);

// For a job whose topic has more partitions than at submit: which ones were
// added and that keys Kafka now hashes to them start with fresh state there.
// Empty otherwise.
std::string FormatAddedPartitionsNote(const proto::JobInfo& job);

// What an operator must not miss about a task, or empty: records lost to
// retention (with the last gap's offsets), outputs the sink refused, and
// comparisons that met a value of another type.
std::string FormatTaskNotes(const proto::TaskReport& report);

// NAME STATE PARTITIONS VERSION SUBMITTED, then a line per FAILED job with its
// reason; "no jobs" when there are none.
std::string FormatJobsTable(const proto::ListJobsResponse& jobs, int64_t now_ms);

// The job line, the added-partitions note if any, then one row per task
// (sorted by partition): PARTITION WORKER STATE OFFSET LAG LAG-TIME WATERMARK
// CHECKPOINT CONSUMED [FILTERED] [DEDUP] LATE DLQ ALERTS WINDOWS [PAUSED]
// [TXNS COMMIT], then a line per task that reports an error and one per task
// with notes (FormatTaskNotes). FILTERED shows when the job has a filter,
// DEDUP when it de-duplicates, PAUSED when a task paused; each also whenever
// a task's count is not 0. TXNS and COMMIT show for exactly_once jobs.
std::string FormatJobStatus(const proto::JobStatus& status, int64_t now_ms);

// WORKER HOST THREADS ALIVE TASKS LAST-HEARTBEAT; "no workers" when there are none.
std::string FormatWorkersTable(const proto::ListWorkersResponse& workers, int64_t now_ms);

// The message as one line of JSON, proto field names preserved and fields at
// their default value included (so scripts see `"alive":false`, `"tasks":[]`).
// Enums are their names; 64-bit integers are strings, as proto3 JSON maps them.
Result<std::string> ToJsonLine(const google::protobuf::Message& message);

}  // namespace sluice::cli
