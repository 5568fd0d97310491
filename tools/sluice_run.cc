// sluice-run: runs one job in one process, through the same engine the
// workers run, over events from a file, stdin or the built-in generator, and
// prints what the job emits. For trying a job file and for bounded replays.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "jobspec/job_loader.h"
#include "tools/event_generator.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/record.h"
#include "worker/engine/task_processor.h"

namespace {

using sluice::engine::OutputStream;

// Prints records as "<topic> <json>" lines, up to a limit per stream.
class PrintingSink final : public sluice::engine::RecordSink {
 public:
  PrintingSink(const sluice::proto::SinkSpec& sinks, int64_t max_print)
      : sinks_(sinks), max_print_(max_print) {}

  void Emit(OutputStream stream, std::string_view, std::string_view value) override {
    int64_t& n = printed_[static_cast<int>(stream)];
    if (max_print_ >= 0 && n >= max_print_) return;
    ++n;
    const std::string& topic = stream == OutputStream::kOutput ? sinks_.output()
                               : stream == OutputStream::kLate ? sinks_.late()
                                                               : sinks_.dead_letter();
    std::cout << topic << " " << value << "\n";
  }

 private:
  const sluice::proto::SinkSpec& sinks_;
  int64_t max_print_;
  int64_t printed_[3] = {0, 0, 0};
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sluice-run: run one Sluice job in one process over events from a file, stdin or the "
      "built-in generator, and print what it emits (\"<sink topic> <record>\" per line) and a "
      "summary. Windows still open at the end are emitted (drain)."};
  std::string job_file;
  std::string input;
  int64_t generate = 0;
  uint64_t seed = 1;
  int users = 1000;
  std::string kind = "auto";
  int64_t max_print = -1;
  double malformed = 0.0;
  double out_of_order = 0.0;
  bool positions = false;
  app.add_option("--job", job_file, "Job file (YAML, see examples/jobs/)")->required();
  app.add_option("--input", input,
                 "Events, one JSON object per line; '-' for stdin. Event time is judged "
                 "against the wall clock (max_future, max_past)");
  app.add_option("--generate", generate,
                 "Instead of --input, generate this many events (processing time follows "
                 "their event time)");
  app.add_option("--seed", seed, "Generator seed")->default_val(1);
  app.add_option("--users", users, "Generator: number of users")->default_val(1000);
  app.add_option("--kind", kind,
                 "Generator: payments, clicks, or auto (payments for rule jobs, clicks for "
                 "window jobs)")
      ->check(CLI::IsMember({"auto", "payments", "clicks"}))
      ->default_val("auto");
  app.add_option("--malformed", malformed, "Generator: share of malformed records (0..1)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--out-of-order", out_of_order,
                 "Generator: share of events up to 2 min out of order (0..1)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_flag("--positions", positions,
               "Input lines are PARTITION<TAB>OFFSET<TAB>JSON (a dump of the source topic): each "
               "partition runs as its own task, as on a worker, so alert ids and results match "
               "the cluster's");
  app.add_option("--max-print", max_print, "Print at most this many records per sink (-1: all)");
  app.failure_message(CLI::FailureMessage::help);
  CLI11_PARSE(app, argc, argv);

  if (input.empty() == (generate == 0)) {
    std::cerr << "sluice-run: give exactly one of --input or --generate\n" << app.help();
    return 2;
  }
  auto spec = sluice::jobspec::LoadJobFile(job_file);
  if (!spec.ok()) {
    std::cerr << "sluice-run: " << spec.status().message() << "\n";
    return 1;
  }
  auto plan = sluice::engine::JobPlan::Compile(*spec);
  if (!plan.ok()) {
    std::cerr << "sluice-run: " << job_file << ": " << plan.status().message() << "\n";
    return 1;
  }

  sluice::SystemClock system_clock;
  sluice::ManualClock sim_clock;
  const sluice::Clock& clock =
      generate > 0 ? static_cast<const sluice::Clock&>(sim_clock) : system_clock;
  PrintingSink sink(spec->sinks(), max_print);
  // One task per partition, created as partitions appear.
  std::map<int32_t, std::unique_ptr<sluice::engine::TaskProcessor>> tasks;
  const std::string& topic = spec->source().topic();
  int64_t offset = 0;

  auto feed_at = [&](int32_t partition, int64_t at, std::string_view payload,
                     std::string_view key) {
    auto& task = tasks[partition];
    if (!task) task = std::make_unique<sluice::engine::TaskProcessor>(*plan, clock, sink);
    sluice::engine::SourceRecord rec{payload, key, {topic, partition, at}};
    task->ProcessBatch(std::span<const sluice::engine::SourceRecord>(&rec, 1));
  };
  auto feed = [&](const std::string& payload, std::string_view key) {
    feed_at(0, offset++, payload, key);
  };

  if (generate > 0) {
    sluice::tools::GeneratorOptions opts;
    opts.seed = seed;
    opts.users = users;
    opts.kind = kind == "clicks" || (kind == "auto" && !(*plan)->is_rule_job())
                    ? sluice::tools::EventKind::kClicks
                    : sluice::tools::EventKind::kPayments;
    // A realistic pace: a user pays every half hour or clicks every 3 minutes
    // on average; the generated stream ends now.
    opts.step_ms = std::max<int64_t>(
        1, (opts.kind == sluice::tools::EventKind::kPayments ? 1'800'000 : 180'000) / users);
    opts.start_ms = system_clock.NowMillis() - generate * opts.step_ms;
    opts.fraud_every = 500;
    opts.malformed_share = malformed;
    opts.out_of_order_share = out_of_order;
    opts.disorder_ms = 120'000;
    sluice::tools::EventGenerator gen(opts);
    std::string payload;
    for (int64_t i = 0; i < generate; ++i) {
      gen.Next(&payload);
      sim_clock.Set(gen.now_ms());
      feed(payload, gen.last_key());
    }
  } else {
    std::ifstream file;
    std::istream* in = &std::cin;
    if (input != "-") {
      file.open(input);
      if (!file) {
        std::cerr << "sluice-run: cannot read " << input << "\n";
        return 1;
      }
      in = &file;
    }
    std::string line;
    int64_t line_no = 0;
    while (std::getline(*in, line)) {
      ++line_no;
      if (!positions) {
        if (!line.empty()) feed(line, "");
        continue;
      }
      size_t t1 = line.find('\t');
      size_t t2 = t1 == std::string::npos ? t1 : line.find('\t', t1 + 1);
      if (t2 == std::string::npos) {
        std::cerr << "sluice-run: " << input << ":" << line_no
                  << ": expected PARTITION<TAB>OFFSET<TAB>JSON\n";
        return 1;
      }
      feed_at(static_cast<int32_t>(std::stol(line.substr(0, t1))),
              std::stoll(line.substr(t1 + 1, t2 - t1 - 1)), std::string_view(line).substr(t2 + 1),
              "");
    }
  }
  sluice::engine::TaskCounters c;
  for (auto& [partition, task] : tasks) {
    task->Drain();
    const auto& tc = task->counters();
    c.consumed += tc.consumed;
    c.processed += tc.processed;
    c.filtered += tc.filtered;
    c.deduplicated += tc.deduplicated;
    c.type_mismatches += tc.type_mismatches;
    c.late += tc.late;
    c.dead_lettered += tc.dead_lettered;
    c.alerts += tc.alerts;
    c.window_results += tc.window_results;
  }

  std::cerr << "summary: job=" << spec->name() << " consumed=" << c.consumed
            << " processed=" << c.processed << " filtered=" << c.filtered
            << " deduplicated=" << c.deduplicated << " type_mismatches=" << c.type_mismatches
            << " late=" << c.late << " dead_lettered=" << c.dead_lettered << " alerts=" << c.alerts
            << " window_results=" << c.window_results << "\n";
  return c.consumed == c.processed + c.late + c.dead_lettered ? 0 : 3;
}
