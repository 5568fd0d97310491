#pragma once

// What the engine-level benchmarks share: pre-encoded input, a sink that only
// counts, timed runs of one TaskProcessor (or of decoding alone), and the
// CPU model for the report.
//
// Time is the calling thread's CPU time: "per core" divides by the CPU a run
// actually used, so other processes on a shared machine do not inflate it.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proto/sluice.pb.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/record.h"

namespace sluice::bench {

// Pre-encoded events in one buffer, and the SourceRecords that view them with
// consecutive offsets from 0.
class EventSet {
 public:
  void Add(std::string_view payload);
  // Builds records() once every event is added.
  void Seal(std::string_view topic);
  const std::vector<engine::SourceRecord>& records() const { return records_; }
  size_t size() const { return spans_.size(); }

 private:
  std::string bytes_;
  // On the heap, so the records' views of it survive a move of the set (a
  // short string would move with the object).
  std::unique_ptr<std::string> topic_;
  std::vector<std::pair<size_t, size_t>> spans_;  // offset, length into bytes_
  std::vector<engine::SourceRecord> records_;
};

// A RecordSink that only counts.
class CountingSink final : public engine::RecordSink {
 public:
  void Emit(engine::OutputStream stream, std::string_view, std::string_view value) override {
    ++counts_[static_cast<size_t>(stream)];
    bytes_ += static_cast<int64_t>(value.size());
  }
  int64_t count(engine::OutputStream stream) const { return counts_[static_cast<size_t>(stream)]; }
  int64_t bytes() const { return bytes_; }

 private:
  std::array<int64_t, 3> counts_{};
  int64_t bytes_ = 0;
};

struct RunResult {
  double seconds = 0;       // CPU time of the running thread
  double wall_seconds = 0;  // elapsed; larger than `seconds` on a busy machine
  int64_t output = 0;       // output records (decode-only: decoded events)
  int64_t filtered = 0;
  int64_t late = 0;
  int64_t dead_lettered = 0;
};

// CPU time consumed by the calling thread, in seconds.
double ThreadCpuSeconds();

// Feeds every event to a new TaskProcessor in batches, then drains it.
RunResult RunTask(const std::shared_ptr<const engine::JobPlan>& plan, const EventSet& events,
                  size_t batch, int64_t now_ms);

// The decoding a task does first, and nothing else: the baseline.
RunResult RunDecodeOnly(const engine::JobPlan& plan, const EventSet& events, int64_t now_ms);

// "model name" from /proc/cpuinfo.
std::string CpuModel();

// Prints the program's name, the CPU and whether the build is optimized.
void PrintHeader(const char* program);

// A job over `topic` keyed by user_id with event time ts, without idle advance
// or time bounds (so the clock does not matter), checkpointing every 10 s.
proto::JobSpec BenchJob(const std::string& name, const std::string& topic);

}  // namespace sluice::bench
