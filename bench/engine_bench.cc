// sluice-engine-bench: the engine micro-benchmark. One thread, one
// TaskProcessor, no Kafka and no storage: pre-encoded JSON events from the
// generator sit in memory and go through ProcessBatch in batches; a sink counts
// what comes out. A decode-only run (EventDecoder alone over the tumbling
// events) shows what JSON decoding costs by itself.
//
// Events are generated before timing. The timed region is the ProcessBatch
// loop plus the final Drain (which fires every open window and queued rule
// evaluation). Each scenario runs --runs times on a fresh TaskProcessor; the
// best run is reported. See BENCHMARKS.md for figures and bench/README.md for
// how to run it.

#include <malloc.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "common/check.h"
#include "common/clock.h"
#include "proto/sluice.pb.h"
#include "tools/event_generator.h"
#include "worker/engine/event_decoder.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/record.h"
#include "worker/engine/task_processor.h"
#include "worker/engine/testing.h"

namespace sluice::bench {
namespace {

using engine::SourceRecord;

// Processing time for every run. With idle_timeout 0 and max_future/max_past
// 0 the engine never compares it with event time, so its value does not matter.
constexpr int64_t kNowMs = 1'700'000'000'000;
constexpr double kTargetEventsPerSecond = 2'000'000;  // ARCHITECTURE.md, tumbling count

// ---- Input ------------------------------------------------------------------

// `events_per_ms` > 0: event time follows a live stream of that many events
// per millisecond (options.step_ms should be 0) instead of step_ms per event.
EventSet Generate(const tools::GeneratorOptions& options, int64_t n, int64_t events_per_ms = 0) {
  tools::EventGenerator gen(options);
  EventSet set;
  std::string one;
  for (int64_t i = 0; i < n; ++i) {
    if (events_per_ms > 0) gen.SyncTime(options.start_ms + i / events_per_ms);
    gen.Next(&one);
    set.Add(one);
  }
  set.Seal("events");
  return set;
}

tools::GeneratorOptions Payments(uint64_t seed, int64_t step_ms, int fraud_every, int users) {
  tools::GeneratorOptions o;
  o.kind = tools::EventKind::kPayments;
  o.seed = seed;
  o.step_ms = step_ms;
  o.users = users;
  o.fraud_every = fraud_every;
  return o;
}

tools::GeneratorOptions Clicks(uint64_t seed, int64_t step_ms, int users) {
  tools::GeneratorOptions o;
  o.kind = tools::EventKind::kClicks;
  o.seed = seed;
  o.step_ms = step_ms;
  o.users = users;
  return o;
}

// ---- Runs -------------------------------------------------------------------

// One untimed run with a DigestSink: the digest of everything the task emits.
std::pair<uint64_t, int64_t> OutputDigest(const std::shared_ptr<const engine::JobPlan>& plan,
                                          const EventSet& events, size_t batch) {
  ManualClock clock(kNowMs);
  DigestSink sink;
  engine::TaskProcessor task(plan, clock, sink);
  const std::span<const SourceRecord> all(events.records());
  for (size_t i = 0; i < all.size(); i += batch) {
    task.ProcessBatch(all.subspan(i, std::min(batch, all.size() - i)));
  }
  task.Drain();
  return {sink.digest(), sink.records()};
}

// ---- State memory -----------------------------------------------------------

// Bytes the allocator has handed out and not taken back (glibc): from its
// heaps, and in blocks mapped on their own (large vectors: the hash index, a
// time's timers), which uordblks does not count.
int64_t HeapBytesInUse() {
  const struct mallinfo2 m = mallinfo2();
  return static_cast<int64_t>(m.uordblks + m.hblkhd);
}

struct MemoryRow {
  std::string job;
  int64_t keys = 0;
  size_t open_windows = 0;
  int64_t bytes = 0;
};

// Feeds `keys` users `per_key` events each (round robin, all in the first
// second of event time, so no window closes and every rolling rule keeps
// every event) and measures the heap the task's state takes: what the
// allocator holds after, less before the task was created. The events
// themselves are built before.
MemoryRow MeasureState(const proto::JobSpec& spec, int64_t keys, int per_key) {
  EventSet events;
  std::string one;
  static constexpr std::array<const char*, 4> kCountries = {"DE", "FR", "US", "JP"};
  for (int e = 0; e < per_key; ++e) {
    for (int64_t k = 0; k < keys; ++k) {
      one = "{\"user_id\":\"u" + std::to_string(k) +
            "\",\"ts\":" + std::to_string(kNowMs + (k * per_key + e) % 1000) +
            ",\"amount\":" + std::to_string(10 + (k + e) % 90) + ",\"country\":\"" +
            kCountries[static_cast<size_t>(k + e) % kCountries.size()] + "\",\"page\":\"/p" +
            std::to_string((k + e) % 50) + "\"}";
      events.Add(one);
    }
  }
  events.Seal("events");
  auto plan = Compile(spec);
  ManualClock clock(kNowMs);
  CountingSink sink;
  malloc_trim(0);
  const int64_t before = HeapBytesInUse();
  auto task = std::make_unique<engine::TaskProcessor>(plan, clock, sink);
  const std::span<const SourceRecord> all(events.records());
  for (size_t i = 0; i < all.size(); i += 500) {
    task->ProcessBatch(all.subspan(i, std::min<size_t>(500, all.size() - i)));
  }
  MemoryRow row{spec.name(), keys, task->open_windows(), HeapBytesInUse() - before};
  SLUICE_CHECK(task->counters().dead_lettered == 0) << spec.name() << ": events dead-lettered";
  return row;
}

int RunMemory(int64_t keys, int per_key) {
  PrintHeader("sluice-engine-bench --memory");
  std::printf("  keys:    %lld, %d events each, all in the first second of event time\n\n",
              static_cast<long long>(keys), per_key);
  std::vector<MemoryRow> rows;
  for (const proto::JobSpec& spec : {TumblingJob(), SlidingJob(), SessionJob(), FraudJob()}) {
    rows.push_back(MeasureState(spec, keys, per_key));
  }
  std::printf(
      "| job | keys | open windows | state heap MB | bytes per key | bytes per open window |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (const MemoryRow& r : rows) {
    std::string per_window = "-";
    if (r.open_windows > 0) {
      per_window = std::to_string(r.bytes / static_cast<int64_t>(r.open_windows));
    }
    std::printf("| %s | %lld | %zu | %.1f | %lld | %s |\n", r.job.c_str(),
                static_cast<long long>(r.keys), r.open_windows, static_cast<double>(r.bytes) / 1e6,
                static_cast<long long>(r.bytes / r.keys), per_window.c_str());
  }
  return 0;
}

// ---- Report -----------------------------------------------------------------

struct Row {
  std::string scenario;
  int64_t events = 0;
  RunResult best;
};

constexpr std::array<std::string_view, 5> kScenarios = {"decode", "tumbling", "tumbling-live",
                                                        "sessions", "fraud"};

// tumbling-live: event time as a live stream of 1M events/s would give it.
constexpr int64_t kLiveEventsPerMs = 1000;

std::string_view Describe(std::string_view scenario) {
  if (scenario == "decode") return "EventDecoder alone over the tumbling events";
  if (scenario == "tumbling") return "payments, 1m tumbling count() by user_id";
  if (scenario == "tumbling-live") return "the same job, event time at 1000 events per ms";
  if (scenario == "sessions") return "clicks, 30m sessions, 5 aggregates";
  return "payments (fraud_every=1000), 4 rules, 5s out-of-orderness";
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{
      "sluice-engine-bench: single-threaded engine throughput over in-memory JSON events "
      "(no Kafka, no storage). Prints the best of --runs runs per scenario."};
  std::vector<std::string> scenarios;
  int64_t n = 2'000'000;
  uint64_t seed = 1;
  int64_t step_ms = 10;
  size_t batch = 500;
  int runs = 3;
  int users = 100'000;
  app.add_option("--scenario", scenarios,
                 "Scenarios to run, comma separated or repeated (default: all). "
                 "decode: EventDecoder alone over the tumbling events (the baseline); "
                 "tumbling: 1-minute tumbling count() over --users users (payments); "
                 "tumbling-live: the same job with event time advancing 1 ms per 1000 events "
                 "(a live stream at 1M events/s; ignores --step-ms), so windows hold many "
                 "events; "
                 "sessions: 30-minute sessions with count, count_distinct(page), first(page), "
                 "last(page), sum(amount) over --users users (clicks); "
                 "fraud: the four JOBS.md rules over payments with fraud_every=1000, "
                 "max_out_of_orderness 5s")
      ->delimiter(',')
      ->check(CLI::IsMember({"all", "decode", "tumbling", "tumbling-live", "sessions", "fraud"}));
  app.add_option("--events", n, "Events per scenario, generated before timing")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, std::numeric_limits<int64_t>::max()));
  app.add_option("--seed", seed, "Event generator seed; the same seed gives the same events")
      ->capture_default_str();
  app.add_option("--step-ms", step_ms,
                 "Mean event-time gap between consecutive events, in ms (event-time rate of "
                 "the stream; fewer ms means more events per key and window)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}));
  app.add_option("--users", users,
                 "Distinct users (keys) of the generated events; fewer keys keep the state in "
                 "cache, which shows what memory access costs")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000'000));
  app.add_option("--batch", batch, "Records per ProcessBatch call")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--runs", runs, "Timed runs per scenario; the fastest is reported")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bool digest = false;
  app.add_flag("--digest", digest,
               "After the timed runs, run each scenario once more and print a hash of its "
               "output records, to check that a change keeps the output byte-identical");
  int64_t memory_keys = 0;
  int per_key = 2;
  app.add_option("--memory", memory_keys,
                 "Instead of throughput: the heap that the state of KEYS keys takes, per key and "
                 "per open window, for the tumbling, sliding (60s every 10s), sessions and fraud "
                 "jobs")
      ->check(CLI::Range(int64_t{1}, int64_t{100'000'000}));
  app.add_option("--events-per-key", per_key, "With --memory: events per key")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  CLI11_PARSE(app, argc, argv);
  if (memory_keys > 0) return RunMemory(memory_keys, per_key);

  auto wanted = [&](std::string_view s) {
    return scenarios.empty() ||
           std::find(scenarios.begin(), scenarios.end(), "all") != scenarios.end() ||
           std::find(scenarios.begin(), scenarios.end(), s) != scenarios.end();
  };

  PrintHeader("sluice-engine-bench");
  std::printf("  events:  %lld per scenario, seed %llu, batch %zu, best of %d runs, 1 thread\n",
              static_cast<long long>(n), static_cast<unsigned long long>(seed), batch, runs);
  std::printf("  users:   %d (skewed), event-time step %lld ms mean\n\n", users,
              static_cast<long long>(step_ms));
  std::fflush(stdout);

  const auto tumbling_plan = Compile(TumblingJob());
  std::vector<Row> rows;
  std::optional<EventSet> payments;  // shared by decode and tumbling

  for (std::string_view scenario : kScenarios) {
    if (!wanted(scenario)) continue;
    std::printf("  %-9s %s ...", std::string(scenario).c_str(),
                std::string(Describe(scenario)).c_str());
    std::fflush(stdout);

    std::optional<EventSet> own;
    const EventSet* events = nullptr;
    std::shared_ptr<const engine::JobPlan> plan = tumbling_plan;
    if (scenario == "decode" || scenario == "tumbling") {
      if (!payments) payments = Generate(Payments(seed, step_ms, 0, users), n);
      events = &*payments;
    } else if (scenario == "tumbling-live") {
      own = Generate(Payments(seed, /*step_ms=*/0, 0, users), n, kLiveEventsPerMs);
      events = &*own;
    } else if (scenario == "sessions") {
      own = Generate(Clicks(seed, step_ms, users), n);
      events = &*own;
      plan = Compile(SessionJob());
    } else {
      own = Generate(Payments(seed, step_ms, 1000, users), n);
      events = &*own;
      plan = Compile(FraudJob());
    }

    Row row{std::string(scenario), n, {}};
    for (int i = 0; i < runs; ++i) {
      RunResult r = scenario == "decode" ? RunDecodeOnly(*plan, *events, kNowMs)
                                         : RunTask(plan, *events, batch, kNowMs);
      if (i == 0 || r.seconds < row.best.seconds) row.best = r;
    }
    rows.push_back(row);
    std::printf(" %.3f s\n", row.best.seconds);
    if (digest && scenario != "decode") {
      const auto [hash, records] = OutputDigest(plan, *events, batch);
      std::printf("    digest %016llx over %lld records\n", static_cast<unsigned long long>(hash),
                  static_cast<long long>(records));
    }
    std::fflush(stdout);
  }

  const Row* decode = nullptr;
  for (const Row& r : rows) {
    if (r.scenario == "decode") decode = &r;
  }

  std::printf("\n| scenario | events | seconds | events/s | output records | vs decode-only |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    const double rate = static_cast<double>(r.events) / r.best.seconds;
    std::string ratio = "-";
    if (decode != nullptr) {
      // How many times the time decoding alone takes for as many events.
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.2fx", r.best.seconds / decode->best.seconds);
      ratio = buf;
    }
    std::printf("| %s | %lld | %.3f | %.0f | %lld | %s |\n", r.scenario.c_str(),
                static_cast<long long>(r.events), r.best.seconds, rate,
                static_cast<long long>(r.best.output), ratio.c_str());
  }
  for (const Row& r : rows) {
    if (r.best.late > 0 || r.best.dead_lettered > 0) {
      std::printf("note: %s had %lld late and %lld dead-lettered records\n", r.scenario.c_str(),
                  static_cast<long long>(r.best.late),
                  static_cast<long long>(r.best.dead_lettered));
    }
  }
  for (const Row& r : rows) {
    if (r.scenario != "tumbling" && r.scenario != "tumbling-live") continue;
    const double rate = static_cast<double>(r.events) / r.best.seconds;
    std::printf(
        "\ntarget: %.1fM events/s per core for the tumbling count incl. JSON decoding; "
        "%s reached %.2fM (%.0f%%)\n",
        kTargetEventsPerSecond / 1e6, r.scenario.c_str(), rate / 1e6,
        100 * rate / kTargetEventsPerSecond);
  }
  return 0;
}

}  // namespace sluice::bench

int main(int argc, char** argv) { return sluice::bench::Main(argc, argv); }
