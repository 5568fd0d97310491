#include "bench/bench_util.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "common/check.h"
#include "common/clock.h"
#include "worker/engine/event_decoder.h"
#include "worker/engine/task_processor.h"

namespace sluice::bench {

namespace {
using WallClock = std::chrono::steady_clock;

double Seconds(WallClock::time_point start, WallClock::time_point end) {
  return std::chrono::duration<double>(end - start).count();
}
}  // namespace

void EventSet::Add(std::string_view payload) {
  spans_.emplace_back(bytes_.size(), payload.size());
  bytes_ += payload;
}

void EventSet::Seal(std::string_view topic) {
  topic_ = std::make_unique<std::string>(topic);
  // Views are taken once the buffer has stopped growing.
  records_.clear();
  records_.reserve(spans_.size());
  for (size_t i = 0; i < spans_.size(); ++i) {
    records_.push_back(
        engine::SourceRecord{std::string_view(bytes_).substr(spans_[i].first, spans_[i].second), "",
                             engine::SourcePosition{*topic_, 0, static_cast<int64_t>(i)}});
  }
}

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

RunResult RunTask(const std::shared_ptr<const engine::JobPlan>& plan, const EventSet& events,
                  size_t batch, int64_t now_ms) {
  ManualClock clock(now_ms);
  CountingSink sink;
  auto task = std::make_unique<engine::TaskProcessor>(plan, clock, sink);
  const std::span<const engine::SourceRecord> all(events.records());

  const auto start = WallClock::now();
  const double cpu_start = ThreadCpuSeconds();
  for (size_t i = 0; i < all.size(); i += batch) {
    task->ProcessBatch(all.subspan(i, std::min(batch, all.size() - i)));
  }
  task->Drain();
  const double cpu_end = ThreadCpuSeconds();
  const auto end = WallClock::now();

  RunResult r;
  r.seconds = cpu_end - cpu_start;
  r.wall_seconds = Seconds(start, end);
  r.output = sink.count(engine::OutputStream::kOutput);
  r.late = sink.count(engine::OutputStream::kLate);
  r.dead_lettered = sink.count(engine::OutputStream::kDeadLetter);
  r.filtered = task->counters().filtered;
  SLUICE_CHECK(task->counters().consumed == static_cast<int64_t>(all.size()));
  return r;  // the task's state is freed here, outside the timed region
}

RunResult RunDecodeOnly(const engine::JobPlan& plan, const EventSet& events, int64_t now_ms) {
  engine::EventDecoder decoder(plan);
  engine::DecodedEvent decoded;
  std::string reason;
  int64_t ok = 0;
  int64_t bad = 0;
  uint64_t checksum = 0;

  const auto start = WallClock::now();
  const double cpu_start = ThreadCpuSeconds();
  for (const engine::SourceRecord& r : events.records()) {
    if (decoder.Decode(r.payload, now_ms, /*check_time_bounds=*/true, &decoded, &reason)) {
      ++ok;
      checksum += static_cast<uint64_t>(decoded.event_time) + decoded.key.size();
    } else {
      ++bad;
    }
  }
  const double cpu_end = ThreadCpuSeconds();
  const auto end = WallClock::now();
  // Keeps the loop's results observable, so the decoding is not optimized away.
  asm volatile("" : : "r"(checksum) : "memory");
  RunResult r;
  r.seconds = cpu_end - cpu_start;
  r.wall_seconds = Seconds(start, end);
  r.output = ok;
  r.dead_lettered = bad;
  return r;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    size_t begin = line.find_first_not_of(' ', colon + 1);
    return begin == std::string::npos ? "" : line.substr(begin);
  }
  return "unknown";
}

void PrintHeader(const char* program) {
  std::printf("%s\n", program);
  std::printf("  cpu:     %s (%u logical cores visible)\n", CpuModel().c_str(),
              std::thread::hardware_concurrency());
#ifdef NDEBUG
  std::printf("  build:   optimized, assertions off\n");
#else
  std::printf("  build:   ASSERTIONS ON (not a Release build; figures are not representative)\n");
#endif
}

proto::JobSpec BenchJob(const std::string& name, const std::string& topic) {
  proto::JobSpec spec;
  spec.set_name(name);
  proto::SourceSpec* src = spec.mutable_source();
  src->set_topic(topic);
  src->set_format("json");
  src->set_key("user_id");
  src->set_event_time("ts");
  src->set_idle_timeout_ms(0);
  src->set_max_future_ms(0);
  src->set_max_past_ms(0);
  spec.mutable_sinks()->set_output(name + "-out");
  spec.mutable_sinks()->set_late(name + "-late");
  spec.mutable_sinks()->set_dead_letter(name + "-dlq");
  spec.set_checkpoint_interval_ms(10'000);
  return spec;
}

}  // namespace sluice::bench
