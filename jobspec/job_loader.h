#pragma once

// Job files: the YAML a user writes (see the design's JOBS.md) mapped onto
// proto::JobSpec, validated, with errors that name the file and the line.
//
// Contract:
//  - Every key of JOBS.md maps onto a JobSpec field; unknown or duplicate keys
//    are rejected at every level. Defaults are filled in, so a returned spec is
//    complete: format "json", max_out_of_orderness 0, idle_timeout 30s,
//    max_future 1h, max_past 0 (no limit), sinks.late "<name>-late",
//    sinks.dead_letter "<name>-dlq", sinks.markers "sluice-<name>-markers",
//    checkpoint_interval 10s, delivery at_least_once.
//  - A job is either a rule job (`rules`) or a window job (`window` +
//    `aggregate`, optional `having`), never both.
//  - Once the structure is valid, the job is compiled with
//    engine::JobPlan::Compile, so expressions and field references that do not
//    resolve are rejected here too, with the line of the offending key.
//  - Every error is Status::InvalidArgument (except file I/O in LoadJobFile)
//    and reads "FILE:LINE: what was expected", lines counting from 1. Rule and
//    aggregate indexes in messages ("rules[1]") count from 0, as in the proto.
//  - Nothing here throws; yaml-cpp exceptions are caught and reported.
//  - The returned spec keeps the submitted text in `source_yaml`.
//
// Thread safety: the functions are pure and may be called from any thread.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "proto/sluice.pb.h"

namespace sluice::jobspec {

// Parses a job file's text. `filename` is used in error messages only.
Result<proto::JobSpec> ParseJobYaml(std::string_view yaml_text, std::string_view filename);

// Reads and parses a job file. Errors name `path` as given. A missing file is
// NotFound, another read failure IoError.
Result<proto::JobSpec> LoadJobFile(const std::string& path);

// Parses a duration: decimal digits then one unit of ms, s, m, h or d
// ("250ms", "5s", "30m", "1h", "7d", "0s"). No sign, no fraction, no spaces,
// at most kMaxDurationMs. The error message reads "expected a duration like
// 250ms, 5s, 30m, 1h or 7d, got '...'".
Result<int64_t> ParseDurationMs(std::string_view text);

// The largest duration ParseDurationMs accepts: 36500d (about 100 years), so
// that event-time arithmetic on durations can never overflow.
inline constexpr int64_t kMaxDurationMs = int64_t{36500} * 24 * 60 * 60 * 1000;

// Formats milliseconds in the largest unit that represents them exactly
// ("7d", "5m", "1500ms"); zero is "0s". ParseDurationMs(FormatDurationMs(x))
// == x for every 0 <= x <= kMaxDurationMs.
std::string FormatDurationMs(int64_t ms);

}  // namespace sluice::jobspec
