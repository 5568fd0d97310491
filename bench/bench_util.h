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

// Hashes every record (stream, key, value, in order) with 64-bit FNV-1a, so two
// builds can be checked for byte-identical output.
class DigestSink final : public engine::RecordSink {
 public:
  void Emit(engine::OutputStream stream, std::string_view key, std::string_view value) override {
    const auto s = static_cast<char>(stream);
    Add(std::string_view(&s, 1));
    AddLength(key.size());
    Add(key);
    AddLength(value.size());
    Add(value);
    ++records_;
  }
  uint64_t digest() const { return hash_; }
  int64_t records() const { return records_; }

 private:
  void AddLength(size_t n) {
    const auto len = static_cast<uint64_t>(n);
    Add(std::string_view(reinterpret_cast<const char*>(&len), sizeof(len)));
  }
  void Add(std::string_view bytes) {
    for (char c : bytes) {
      hash_ ^= static_cast<uint8_t>(c);
      hash_ *= 0x100000001b3ULL;
    }
  }

  uint64_t hash_ = 0xcbf29ce484222325ULL;
  int64_t records_ = 0;
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

// The jobs the engine benchmarks run: a 1-minute tumbling count() by user;
// 30-minute sessions with count, count_distinct(page), first(page),
// last(page) and sum(amount); a 60 s sliding count() every 10 s; the four
// fraud rules of JOBS.md with 5 s out-of-orderness.
proto::JobSpec TumblingJob();
proto::JobSpec SessionJob();
proto::JobSpec SlidingJob();
proto::JobSpec FraudJob();

// The job's plan; a job that does not compile stops the program.
std::shared_ptr<const engine::JobPlan> Compile(const proto::JobSpec& spec);

}  // namespace sluice::bench
