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
#include "worker/engine/testing.h"

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

using engine::testing::Agg;
using F = proto::AggregateSpec;

proto::JobSpec TumblingJob() {
  proto::JobSpec spec = BenchJob("tumbling", "payments");
  spec.mutable_window()->set_tumbling_ms(60'000);
  *spec.add_aggregates() = Agg("events", F::COUNT);
  return spec;
}

proto::JobSpec SessionJob() {
  proto::JobSpec spec = BenchJob("sessions", "clicks");
  spec.mutable_window()->set_session_gap_ms(30 * 60'000);
  *spec.add_aggregates() = Agg("events", F::COUNT);
  *spec.add_aggregates() = Agg("pages", F::COUNT_DISTINCT, "page");
  *spec.add_aggregates() = Agg("first_page", F::FIRST, "page");
  *spec.add_aggregates() = Agg("last_page", F::LAST, "page");
  *spec.add_aggregates() = Agg("revenue", F::SUM, "amount");
  return spec;
}

proto::JobSpec SlidingJob() {
  proto::JobSpec spec = BenchJob("sliding", "payments");
  spec.mutable_window()->mutable_sliding()->set_size_ms(60'000);
  spec.mutable_window()->mutable_sliding()->set_every_ms(10'000);
  *spec.add_aggregates() = Agg("events", F::COUNT);
  return spec;
}

// The four rules of JOBS.md.
proto::JobSpec FraudJob() {
  proto::JobSpec spec = BenchJob("fraud", "payments");
  spec.mutable_source()->set_max_out_of_orderness_ms(5'000);
  proto::RuleSpec* large = spec.add_rules();
  large->set_name("large_amount");
  large->set_when("amount > 5000");
  proto::RuleSpec* velocity = spec.add_rules();
  velocity->set_name("velocity");
  velocity->mutable_window()->set_rolling_ms(5 * 60'000);
  *velocity->add_aggregates() = Agg("n", F::COUNT);
  velocity->set_when("n > 3");
  proto::RuleSpec* country = spec.add_rules();
  country->set_name("new_country");
  country->mutable_window()->set_rolling_ms(30LL * 24 * 3'600'000);
  *country->add_aggregates() = Agg("n", F::COUNT);
  country->set_when("n > 1 && new_value(country)");
  proto::RuleSpec* burst = spec.add_rules();
  burst->set_name("burst_spend");
  burst->mutable_window()->set_rolling_ms(3'600'000);
  *burst->add_aggregates() = Agg("total", F::SUM, "amount");
  burst->set_when("total > 10000");
  return spec;
}

std::shared_ptr<const engine::JobPlan> Compile(const proto::JobSpec& spec) {
  auto plan = engine::JobPlan::Compile(spec);
  SLUICE_CHECK(plan.ok()) << spec.name() << ": " << plan.status().ToString();
  return *plan;
}

}  // namespace sluice::bench
