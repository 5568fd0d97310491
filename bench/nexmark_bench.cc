// sluice-nexmark-bench: Nexmark queries through the engine, the way
// engine_bench.cc measures its scenarios. One thread, one TaskProcessor, no
// Kafka and no storage: Nexmark events (tools/nexmark_generator.h, pre-encoded
// JSON, generated before timing) go through ProcessBatch in batches; a sink
// counts what comes out. The jobs are the example job files
// examples/jobs/nexmark-q{0,1,2,11}.yaml, loaded with the job loader; the
// bench only turns off idle advance and the max_future/max_past checks (as
// engine_bench does) so processing time plays no part.
//
// Queries (see bench/results/nexmark.md for what fits Sluice's job model):
//   decode     EventDecoder alone over the mixed stream, with the q0 job's
//              fields (the baseline: what JSON decoding costs by itself)
//   q0         pass-through: a rule `when: true` over bids (mixed stream)
//   q1         currency conversion: a rule `when: true` over bids whose select
//              writes auction, bidder, price * 0.908 (as price) and date_time
//              into each alert (mixed stream)
//   q2         selection: bids with auction % 123 == 0 (mixed stream)
//   q11        user sessions, 10 s gap, count() by bidder, over the mixed
//              stream: persons and auctions have no bidder and are
//              dead-lettered (the key is read before the filter)
//   q11-bids   the same job over a stream of bids only (a bids topic)
//
// The timed region is the ProcessBatch loop plus the final Drain. Each query
// runs --runs times on a fresh TaskProcessor; the best run is reported.
// Events/s per core are input events (of every type) per second of this
// thread's CPU time (CLOCK_THREAD_CPUTIME_ID), as Nexmark's "throughput per
// core" divides by the CPU actually used; elapsed time is printed too (on an
// idle machine the two agree).

#include <time.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
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
#include "jobspec/job_loader.h"
#include "proto/sluice.pb.h"
#include "tools/nexmark_generator.h"
#include "worker/engine/event_decoder.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/record.h"
#include "worker/engine/task_processor.h"

#ifndef SLUICE_SOURCE_DIR
#define SLUICE_SOURCE_DIR "."
#endif

namespace sluice::bench {
namespace {

using engine::OutputStream;
using engine::SourceRecord;

// Processing time for every run; with idle advance and time bounds off its
// value does not matter.
constexpr int64_t kNowMs = 1'700'000'000'000;

// Flink 1.13, nexmark/nexmark README: events per second per core (8 task
// managers of 1 slot, datagen source, blackhole sink, RocksDB).
struct FlinkFigure {
  std::string_view query;
  double per_core;
};
constexpr std::array<FlinkFigure, 4> kFlink = {
    {{"q0", 155'020}, {"q1", 157'940}, {"q2", 175'210}, {"q11", 39'700}}};

// ---- Input ------------------------------------------------------------------

struct NexmarkEvents {
  EventSet set;
  int64_t bids = 0;
};

// `n` events of the mixed stream, or (bids_only) the first `n` bids of it.
NexmarkEvents Generate(const tools::NexmarkOptions& options, int64_t n, bool bids_only) {
  tools::NexmarkGenerator gen(options);
  NexmarkEvents out;
  std::string one;
  while (static_cast<int64_t>(out.set.size()) < n) {
    gen.Next(&one);
    const bool bid = gen.last_type() == tools::NexmarkEventType::kBid;
    if (bids_only && !bid) continue;
    out.bids += bid ? 1 : 0;
    out.set.Add(one);
  }
  out.set.Seal(bids_only ? "nexmark-bids" : "nexmark");
  return out;
}

// ---- Jobs -------------------------------------------------------------------

proto::JobSpec ForBench(proto::JobSpec spec) {
  proto::SourceSpec* src = spec.mutable_source();
  src->set_idle_timeout_ms(0);
  src->set_max_future_ms(0);
  src->set_max_past_ms(0);
  return spec;
}

std::shared_ptr<const engine::JobPlan> LoadPlan(const std::string& jobs_dir,
                                                std::string_view query) {
  std::string file(query == "q11-bids" ? "q11" : query);
  if (query == "decode") file = "q0";
  Result<proto::JobSpec> spec = jobspec::LoadJobFile(jobs_dir + "/nexmark-" + file + ".yaml");
  SLUICE_CHECK(spec.ok()) << query << ": " << spec.status().ToString();
  auto plan = engine::JobPlan::Compile(ForBench(*spec));
  SLUICE_CHECK(plan.ok()) << query << ": " << plan.status().ToString();
  return *plan;
}

// ---- Runs -------------------------------------------------------------------

// ---- Report -----------------------------------------------------------------

constexpr std::array<std::string_view, 6> kQueries = {"decode", "q0",  "q1",
                                                      "q2",     "q11", "q11-bids"};

std::string_view Describe(std::string_view q) {
  if (q == "decode") return "EventDecoder alone, mixed stream (baseline)";
  if (q == "q0") return "pass-through, rule when: true over bids";
  if (q == "q1") return "currency conversion, select price: price * 0.908 over bids";
  if (q == "q2") return "selection, when: auction % 123 == 0";
  if (q == "q11") return "sessions 10s by bidder, count(); mixed stream";
  return "sessions 10s by bidder, count(); bids-only stream";
}

std::optional<double> FlinkPerCore(std::string_view q) {
  if (q == "q11-bids") q = "q11";
  for (const FlinkFigure& f : kFlink) {
    if (f.query == q) return f.per_core;
  }
  return std::nullopt;
}

struct Row {
  std::string query;
  std::string stream;
  int64_t events = 0;
  RunResult best;
};

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{
      "sluice-nexmark-bench: Nexmark queries through one TaskProcessor on one thread, over "
      "in-memory JSON events (no Kafka, no storage). Prints the best of --runs runs per query."};
  std::vector<std::string> queries;
  int64_t n = 2'000'000;
  uint64_t seed = 1;
  int64_t rate = 10'000'000;
  size_t batch = 500;
  int runs = 3;
  std::string jobs_dir = std::string(SLUICE_SOURCE_DIR) + "/examples/jobs";
  app.add_option("--query", queries,
                 "Queries, comma separated or repeated (default: all). decode: EventDecoder "
                 "alone (baseline); q0: pass-through; q1: currency conversion (a select); "
                 "q2: selection; q11: user sessions over the mixed stream; q11-bids: user "
                 "sessions over bids only")
      ->delimiter(',')
      ->check(CLI::IsMember({"all", "decode", "q0", "q1", "q2", "q11", "q11-bids"}));
  app.add_option("--events", n, "Input events per query, generated before timing")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, std::numeric_limits<int64_t>::max()));
  app.add_option("--seed", seed, "Generator seed")->capture_default_str();
  app.add_option("--rate", rate,
                 "Event-time rate of the stream, events per second of event time (Nexmark's "
                 "published Flink runs: 10M)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1'000'000'000}));
  app.add_option("--batch", batch, "Records per ProcessBatch call")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--runs", runs, "Timed runs per query; the fastest is reported")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--jobs-dir", jobs_dir, "Where the nexmark-q*.yaml job files are")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto wanted = [&](std::string_view q) {
    return queries.empty() || std::find(queries.begin(), queries.end(), "all") != queries.end() ||
           std::find(queries.begin(), queries.end(), q) != queries.end();
  };

  tools::NexmarkOptions gen_options;
  gen_options.seed = seed;
  gen_options.events_per_second = rate;

  PrintHeader("sluice-nexmark-bench");
  std::printf("  events:  %lld per query, seed %llu, batch %zu, best of %d runs, 1 thread\n",
              static_cast<long long>(n), static_cast<unsigned long long>(seed), batch, runs);
  std::printf(
      "  stream:  Nexmark person:auction:bid 1:3:46, hot ratios 2/4/4, %lld events/s "
      "of event time (%.1f s of event time per %lld events)\n",
      static_cast<long long>(rate), static_cast<double>(n) / static_cast<double>(rate),
      static_cast<long long>(n));
  std::printf("  jobs:    %s/nexmark-q{0,1,2,11}.yaml\n\n", jobs_dir.c_str());
  std::fflush(stdout);

  std::vector<Row> rows;
  std::optional<NexmarkEvents> mixed;
  std::optional<NexmarkEvents> bids;

  for (std::string_view q : kQueries) {
    if (!wanted(q)) continue;
    std::printf("  %-9s %s ...", std::string(q).c_str(), std::string(Describe(q)).c_str());
    std::fflush(stdout);

    const bool bids_only = q == "q11-bids";
    std::optional<NexmarkEvents>& events = bids_only ? bids : mixed;
    if (!events) events = Generate(gen_options, n, bids_only);
    const EventSet& set = events->set;
    const auto plan = LoadPlan(jobs_dir, q);

    Row row{std::string(q), bids_only ? "bids only" : "mixed", n, {}};
    for (int i = 0; i < runs; ++i) {
      RunResult r =
          q == "decode" ? RunDecodeOnly(*plan, set, kNowMs) : RunTask(plan, set, batch, kNowMs);
      if (i == 0 || r.seconds < row.best.seconds) row.best = r;
    }
    rows.push_back(row);
    std::printf(" %.3f s CPU, %.3f s elapsed\n", row.best.seconds, row.best.wall_seconds);
    std::fflush(stdout);
  }

  const Row* decode = nullptr;
  for (const Row& r : rows) {
    if (r.query == "decode") decode = &r;
  }

  std::printf(
      "\n| query | stream | events | CPU s | elapsed s | events/s per core | output | "
      "filtered | dead letters | per event vs decode-only | Flink 1.13 per core | ratio |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    const double rate_per_s = static_cast<double>(r.events) / r.best.seconds;
    std::string vs_decode = "-";
    if (decode != nullptr && r.query != "decode") {
      const double per_event = r.best.seconds / static_cast<double>(r.events);
      const double decode_per_event = decode->best.seconds / static_cast<double>(decode->events);
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.2fx", per_event / decode_per_event);
      vs_decode = buf;
    }
    std::string flink = "-";
    std::string ratio = "-";
    if (auto f = FlinkPerCore(r.query)) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.1fK", *f / 1e3);
      flink = buf;
      std::snprintf(buf, sizeof(buf), "%.1fx", rate_per_s / *f);
      ratio = buf;
    }
    std::printf("| %s | %s | %lld | %.3f | %.3f | %.0f | %lld | %lld | %lld | %s | %s | %s |\n",
                r.query.c_str(), r.stream.c_str(), static_cast<long long>(r.events), r.best.seconds,
                r.best.wall_seconds, rate_per_s,
                static_cast<long long>(r.query == "decode" ? 0 : r.best.output),
                static_cast<long long>(r.best.filtered),
                static_cast<long long>(r.best.dead_lettered), vs_decode.c_str(), flink.c_str(),
                ratio.c_str());
  }
  std::printf(
      "\nFlink figures: nexmark/nexmark README (Flink 1.13, 8 x 1-slot TaskManagers, datagen "
      "source, blackhole sink,\nRocksDB, checkpoints). Not like for like: see "
      "bench/results/nexmark.md.\n");
  for (const Row& r : rows) {
    if (r.query != "q11" && r.query != "q11-bids") continue;
    const double rate_per_s = static_cast<double>(r.events) / r.best.seconds;
    std::printf("target: %s >= 10x Flink's q11 per core (%.0fK/s): reached %.1fx\n",
                r.query.c_str(), 10 * 39.7, rate_per_s / 39'700);
  }
  for (const Row& r : rows) {
    if (r.best.late > 0) {
      std::printf("note: %s had %lld late records\n", r.query.c_str(),
                  static_cast<long long>(r.best.late));
    }
  }
  return 0;
}

}  // namespace sluice::bench

int main(int argc, char** argv) { return sluice::bench::Main(argc, argv); }
