// sluice-state-bench: a task with more keys than its state memory budget
// holds. One TaskProcessor, one thread, a RocksDB spill store and checkpoint
// store as the worker opens them (StateBackend), no Kafka.
//
// The stream: KEYS users, each with --events-per-key events, round robin, so
// every key is used once per round and the next use of a key comes after all
// the others (the worst case for a cache of recent keys). Round r is minute r
// of event time, so with the tumbling job every key has one open window per
// round and they all end at the same moment. Events are made batch by batch
// while the task runs, so what the process holds is the task's state.
//
// The output is hashed record by record (DigestSink): a run under a budget
// and one without must print the same digest. Peak resident memory is the
// process's VmHWM. bench/run_state_bench.sh runs both and compares them.

#include <malloc.h>
#include <rocksdb/db.h>

#include <CLI/CLI.hpp>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/check.h"
#include "common/clock.h"
#include "common/memory.h"
#include "worker/engine/record.h"
#include "worker/engine/task_processor.h"
#include "worker/state/rocksdb_state_store.h"

namespace sluice::bench {
namespace {

constexpr int64_t kRoundMs = 60'000;
// Round 0 starts where a minute does, so round r is one tumbling window.
constexpr int64_t kNowMs = 1'700'000'000'000 / kRoundMs * kRoundMs;
constexpr size_t kBatch = 500;

// "VmHWM" or "VmRSS" of this process, in bytes.
int64_t ProcStatusBytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      return std::stoll(line.substr(field.size() + 1)) * 1024;  // "  1234 kB"
    }
  }
  return -1;
}

// The events of one batch, made in place.
class Stream {
 public:
  Stream(int64_t keys, int rounds) : keys_(keys), total_(keys * rounds) {}

  bool done() const { return next_ >= total_; }
  int64_t produced() const { return next_; }

  std::span<const engine::SourceRecord> NextBatch() {
    static constexpr std::array<const char*, 4> kCountries = {"DE", "FR", "US", "JP"};
    bytes_.clear();
    spans_.clear();
    records_.clear();
    for (size_t i = 0; i < kBatch && next_ < total_; ++i, ++next_) {
      const int64_t key = next_ % keys_;
      const int64_t round = next_ / keys_;
      // Spread the round's keys over its minute, in order.
      const int64_t ts = kNowMs + round * kRoundMs + key * (kRoundMs - 1) / keys_;
      const size_t at = bytes_.size();
      bytes_ += "{\"user_id\":\"u";
      bytes_ += std::to_string(key);
      bytes_ += "\",\"ts\":";
      bytes_ += std::to_string(ts);
      bytes_ += ",\"amount\":";
      bytes_ += std::to_string(10 + (key + round) % 90);
      bytes_ += ",\"country\":\"";
      bytes_ += kCountries[static_cast<size_t>(key + round) % kCountries.size()];
      bytes_ += "\",\"page\":\"/p";
      bytes_ += std::to_string((key + round) % 50);
      bytes_ += "\"}";
      spans_.emplace_back(at, bytes_.size() - at);
    }
    const int64_t first = next_ - static_cast<int64_t>(spans_.size());
    for (size_t i = 0; i < spans_.size(); ++i) {
      records_.push_back(engine::SourceRecord{
          std::string_view(bytes_).substr(spans_[i].first, spans_[i].second), "",
          engine::SourcePosition{topic_, 0, first + static_cast<int64_t>(i)}});
    }
    return records_;
  }

 private:
  const int64_t keys_;
  const int64_t total_;
  int64_t next_ = 0;
  const std::string topic_ = "events";
  std::string bytes_;
  std::vector<std::pair<size_t, size_t>> spans_;
  std::vector<engine::SourceRecord> records_;
};

proto::JobSpec JobNamed(const std::string& name) {
  if (name == "sliding") return SlidingJob();
  if (name == "sessions") return SessionJob();
  if (name == "fraud") return FraudJob();
  return TumblingJob();
}

// A RocksDB property of a store, in MiB.
double StoreMb(worker::RocksDbStateStore& store, const char* property) {
  uint64_t v = 0;
  if (store.db() == nullptr || !store.db()->GetIntProperty(property, &v)) return -1;
  return static_cast<double>(v) / (1 << 20);
}

template <typename T>
T OrDie(Result<T> r, const char* what) {
  SLUICE_CHECK(r.ok()) << what << ": " << r.status().ToString();
  return std::move(*r);
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{
      "sluice-state-bench: one task with more keys than its state memory budget holds, on a "
      "RocksDB spill store as the worker opens it. Prints the output's digest, the peak "
      "resident memory and the throughput; bench/run_state_bench.sh compares a run under a "
      "budget with one without."};
  int64_t keys = 5'000'000;
  int rounds = 2;
  std::string job = "tumbling";
  int64_t budget_mb = 0;
  std::string data_dir;
  int64_t checkpoint_every = 0;
  int64_t cache_mb = 16;
  int64_t write_buffer_mb = 32;
  int64_t trace_every = 0;
  app.add_option("--keys", keys, "Distinct keys (users)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{100'000'000}));
  app.add_option("--events-per-key", rounds,
                 "Events per key: one per round, each round one minute of event time")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--job", job,
                 "tumbling: 1-minute count() by user; sliding: 60 s count() every 10 s; "
                 "sessions: 30-minute sessions with 5 aggregates; fraud: the four rules of "
                 "JOBS.md (its keys leave memory only once a checkpoint holds them: use "
                 "--checkpoint-every)")
      ->capture_default_str()
      ->check(CLI::IsMember({"tumbling", "sliding", "sessions", "fraud"}));
  app.add_option("--state-memory-mb", budget_mb,
                 "The task's state memory budget in MiB, as the worker's flag (0: no bound)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  app.add_option("--data-dir", data_dir, "Where the spill and checkpoint stores go (emptied)")
      ->required();
  app.add_option("--checkpoint-every", checkpoint_every,
                 "Write a checkpoint to a RocksDB store every N events (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--block-cache-mb", cache_mb, "RocksDB block cache of the stores, MiB")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--write-buffer-mb", write_buffer_mb, "RocksDB memtable budget of the stores, MiB")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--trace", trace_every,
                 "Every N batches of 500 events, print where memory is: the budget's estimate, "
                 "malloc's bytes in use, resident memory, and the stores' memtables, table "
                 "readers and block cache (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  CLI11_PARSE(app, argc, argv);

  worker::StateOptions options;
  options.block_cache_bytes = static_cast<size_t>(cache_mb) << 20;
  options.write_buffer_bytes = static_cast<size_t>(write_buffer_mb) << 20;
  auto backend = OrDie(worker::StateBackend::Open(data_dir, options), "opening the state dir");
  auto spill = OrDie(backend->OpenScratch("task.spill"), "opening the spill store");
  auto checkpoints = OrDie(backend->OpenTask("task", /*wipe=*/true), "opening the checkpoints");

  const auto plan = Compile(JobNamed(job));
  ManualClock clock(kNowMs);
  DigestSink sink;
  engine::TaskProcessor task(plan, clock, sink);
  const size_t budget = static_cast<size_t>(budget_mb) << 20;
  task.SetStateSpill(spill.get(), budget);
  // As the worker under a budget: big buffers mapped on their own, and free
  // memory given back about every 10 s (every 1000 batches, 500K events).
  if (budget > 0) FixMmapThreshold();
  const int64_t rss_before = ProcStatusBytes("VmRSS");

  Stream stream(keys, rounds);
  const auto wall_start = std::chrono::steady_clock::now();
  const double cpu_start = ThreadCpuSeconds();
  int64_t next_checkpoint = checkpoint_every;
  size_t peak_resident_keys = 0;
  int64_t batches = 0;
  // Bytes malloc's main arena has handed out (the task's state, the spill
  // store's memtables and cache), sampled every 200 batches.
  int64_t peak_heap = 0;
  while (!stream.done()) {
    task.ProcessBatch(stream.NextBatch());
    if (checkpoint_every > 0 && stream.produced() >= next_checkpoint) {
      // As the worker's commit writes a checkpoint to the task's local state.
      engine::WriteBatch batch;
      Status s = task.Snapshot(*checkpoints, &batch);
      if (s.ok()) s = checkpoints->WriteInPieces(batch);
      SLUICE_CHECK(s.ok()) << "checkpoint: " << s.ToString();
      next_checkpoint += checkpoint_every;
    }
    peak_resident_keys = std::max(peak_resident_keys, task.state_memory().resident_keys);
    if (++batches % 200 == 0) {
      peak_heap = std::max(peak_heap, static_cast<int64_t>(mallinfo2().uordblks));
    }
    if (budget > 0 && batches % 1000 == 0) ReleaseFreeMemory();
    if (trace_every > 0 && batches % trace_every == 0) {
      const struct mallinfo2 m = mallinfo2();
      std::printf(
          "trace events %lld estimate_mb %.1f heap_in_use_mb %.1f heap_free_mb %.1f "
          "mmapped_mb %.1f rss_mb %.1f memtables_mb spill %.1f checkpoints %.1f table_readers_mb "
          "spill %.1f checkpoints %.1f block_cache_mb %.1f\n",
          static_cast<long long>(stream.produced()),
          static_cast<double>(task.state_memory().resident_bytes) / (1 << 20),
          static_cast<double>(m.uordblks) / (1 << 20), static_cast<double>(m.fordblks) / (1 << 20),
          static_cast<double>(m.hblkhd) / (1 << 20),
          static_cast<double>(ProcStatusBytes("VmRSS")) / (1 << 20),
          StoreMb(*spill, "rocksdb.cur-size-all-mem-tables"),
          StoreMb(*checkpoints, "rocksdb.cur-size-all-mem-tables"),
          StoreMb(*spill, "rocksdb.estimate-table-readers-mem"),
          StoreMb(*checkpoints, "rocksdb.estimate-table-readers-mem"),
          StoreMb(*spill, "rocksdb.block-cache-usage"));
    }
  }
  const engine::StateMemoryStats before_drain = task.state_memory();
  const int64_t peak_rss_before_drain = ProcStatusBytes("VmHWM");
  task.Drain();
  const double cpu = ThreadCpuSeconds() - cpu_start;
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  SLUICE_CHECK(task.status().ok()) << "spill store: " << task.status().ToString();
  SLUICE_CHECK(task.counters().dead_lettered == 0 && task.counters().late == 0)
      << "events dead-lettered or late";
  const engine::StateMemoryStats after = task.state_memory();

  const int64_t events = keys * rounds;
  std::printf("job %s keys %lld events %lld budget_mb %lld checkpoint_every %lld\n", job.c_str(),
              static_cast<long long>(keys), static_cast<long long>(events),
              static_cast<long long>(budget_mb), static_cast<long long>(checkpoint_every));
  std::printf("digest %016llx records %lld\n", static_cast<unsigned long long>(sink.digest()),
              static_cast<long long>(sink.records()));
  std::printf("cpu_s %.3f wall_s %.3f events_per_s %.0f\n", cpu, wall,
              static_cast<double>(events) / cpu);
  std::printf(
      "rss_start_mb %.1f peak_rss_mb %.1f peak_rss_before_drain_mb %.1f peak_heap_mb %.1f\n",
      static_cast<double>(rss_before) / (1 << 20),
      static_cast<double>(ProcStatusBytes("VmHWM")) / (1 << 20),
      static_cast<double>(peak_rss_before_drain) / (1 << 20),
      static_cast<double>(peak_heap) / (1 << 20));
  std::printf(
      "estimate_mb_before_drain %.1f resident_keys_before_drain %zu peak_resident_keys %zu "
      "spilled_keys_before_drain %zu "
      "evicted %lld loaded %lld spilled_keys_after %zu\n",
      static_cast<double>(before_drain.resident_bytes) / (1 << 20), before_drain.resident_keys,
      peak_resident_keys, before_drain.spilled_keys, static_cast<long long>(after.evicted),
      static_cast<long long>(after.loaded), after.spilled_keys);
  return 0;
}

}  // namespace sluice::bench

int main(int argc, char** argv) { return sluice::bench::Main(argc, argv); }
