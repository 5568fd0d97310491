#include "reports/task_reports.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "common/http_server.h"
#include "worker/engine/json_writer.h"

namespace sluice::reports {

void WriteStatusFile(const std::string& path, const std::string& worker_id, int64_t now_ms,
                     const std::vector<proto::TaskReport>& reports) {
  if (path.empty()) return;
  std::string json;
  engine::JsonWriter w(&json);
  w.BeginObject();
  w.Key("worker");
  w.String(worker_id);
  w.Key("updated_ms");
  w.Int(now_ms);
  w.Key("tasks");
  w.BeginArray();
  for (const proto::TaskReport& r : reports) {
    w.BeginObject();
    w.Key("job");
    w.String(r.job());
    w.Key("partition");
    w.Int(r.partition());
    w.Key("state");
    w.String(proto::TaskReport::State_Name(r.state()));
    w.Key("epoch");
    w.Int(r.epoch());
    w.Key("version");
    w.Int(r.version());
    const std::pair<const char*, int64_t> fields[] = {
        {"next_offset", r.next_offset()},
        {"end_offset", r.end_offset()},
        {"watermark", r.watermark()},
        {"last_checkpoint_id", r.last_checkpoint_id()},
        {"last_checkpoint_ms", r.last_checkpoint_ms()},
        {"consumed", r.consumed()},
        {"processed", r.processed()},
        {"filtered", r.filtered()},
        {"late", r.late()},
        {"dead_lettered", r.dead_lettered()},
        {"alerts", r.alerts()},
        {"window_results", r.window_results()},
        {"open_windows", r.open_windows()},
        {"transactions_committed", r.transactions_committed()},
        {"transactions_aborted", r.transactions_aborted()},
        {"last_commit_ms", r.last_commit_ms()},
        {"commit_ms_total", r.commit_ms_total()},
        {"last_committed_checkpoint", r.last_committed_checkpoint()},
        {"failures", r.failures()},
        {"failing_since_ms", r.failing_since_ms()},
        {"deduplicated", r.deduplicated()},
        {"type_mismatches", r.type_mismatches()},
        {"lost", r.lost()},
        {"lost_from_offset", r.lost_from_offset()},
        {"lost_to_offset", r.lost_to_offset()},
        {"refused_outputs", r.refused_outputs()},
        {"paused", r.paused()},
        {"lag_ms", r.lag_ms()},
        {"state_memory_bytes", r.state_memory_bytes()},
        {"state_memory_budget_bytes", r.state_memory_budget_bytes()},
        {"keys_in_memory", r.keys_in_memory()},
        {"keys_spilled", r.keys_spilled()},
        {"keys_evicted", r.keys_evicted()},
        {"keys_read_back", r.keys_read_back()}};
    for (const auto& [name, value] : fields) {
      w.Key(name);
      w.Int(value);
    }
    w.Key("delivery");
    w.String(r.delivery());
    w.Key("error");
    w.String(r.error());
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return;
  bool ok = std::fwrite(json.data(), 1, json.size(), f) == json.size();
  ok = std::fclose(f) == 0 && ok;
  if (ok) std::rename(tmp.c_str(), path.c_str());
}

Status TaskHealth(const std::vector<proto::TaskReport>& reports, int64_t now_ms, int64_t grace_ms) {
  for (const proto::TaskReport& r : reports) {
    const bool failing =
        r.state() == proto::TaskReport::FAILED || r.state() == proto::TaskReport::RESTARTING;
    if (!failing || r.failing_since_ms() <= 0 || now_ms - r.failing_since_ms() < grace_ms) continue;
    return Status::Unavailable("task " + r.job() + "-" + std::to_string(r.partition()) + " " +
                               proto::TaskReport::State_Name(r.state()) + " for " +
                               std::to_string((now_ms - r.failing_since_ms()) / 1000) +
                               " s: " + r.error());
  }
  return Status::Ok();
}

std::string TaskMetrics(const std::vector<proto::TaskReport>& reports,
                        const std::vector<std::string>& workers, int64_t now_ms) {
  struct Family {
    const char* name;
    const char* type;
    const char* help;
    double (*value)(const proto::TaskReport&, int64_t now_ms);
  };
  static const Family kFamilies[] = {
      {"sluice_task_consumed_total", "counter", "Records consumed",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.consumed()); }},
      {"sluice_task_processed_total", "counter",
       "Records processed (filtered and deduplicated included); consumed = processed + late + "
       "dead_lettered",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.processed()); }},
      {"sluice_task_filtered_total", "counter", "Records the job's filter dropped",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.filtered()); }},
      {"sluice_task_deduplicated_total", "counter", "Records dropped by the job's dedup as repeats",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.deduplicated()); }},
      {"sluice_task_type_mismatches_total", "counter",
       "Comparisons or arithmetic that met a value of another type (a field's type drifted)",
       [](const proto::TaskReport& r, int64_t) {
         return static_cast<double>(r.type_mismatches());
       }},
      {"sluice_task_lost_total", "counter",
       "Records deleted by retention before the task read them (never consumed)",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.lost()); }},
      {"sluice_task_refused_outputs_total", "counter",
       "Output records the sink refused for good (too large, invalid), dead-lettered instead",
       [](const proto::TaskReport& r, int64_t) {
         return static_cast<double>(r.refused_outputs());
       }},
      {"sluice_task_paused_total", "counter",
       "Times the task paused its partition because its output fell behind (back-pressure)",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.paused()); }},
      {"sluice_task_late_total", "counter", "Records sent to the late topic",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.late()); }},
      {"sluice_task_dead_lettered_total", "counter", "Records sent to the dead-letter topic",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.dead_lettered()); }},
      {"sluice_task_alerts_total", "counter", "Rule alerts emitted",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.alerts()); }},
      {"sluice_task_window_results_total", "counter", "Window results emitted",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.window_results()); }},
      {"sluice_task_lag", "gauge", "Records in the partition not yet consumed",
       [](const proto::TaskReport& r, int64_t) {
         return r.end_offset() < 0
                    ? 0.0
                    : static_cast<double>(std::max<int64_t>(
                          0, r.end_offset() - std::max<int64_t>(0, r.next_offset())));
       }},
      {"sluice_task_lag_seconds", "gauge",
       "How old the oldest record not yet processed is; 0 when caught up",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.lag_ms()) / 1000; }},
      {"sluice_task_watermark_ms", "gauge", "Event-time watermark (ms since the epoch)",
       [](const proto::TaskReport& r, int64_t) {
         return r.watermark() <= INT64_MIN / 2 ? 0.0 : static_cast<double>(r.watermark());
       }},
      {"sluice_task_checkpoint_age_seconds", "gauge", "Seconds since the last checkpoint",
       [](const proto::TaskReport& r, int64_t now) {
         return r.last_checkpoint_ms() <= 0
                    ? 0.0
                    : static_cast<double>(now - r.last_checkpoint_ms()) / 1000;
       }},
      {"sluice_task_open_windows", "gauge", "Windows in the task's state",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.open_windows()); }},
      {"sluice_task_state_memory_bytes", "gauge",
       "Estimate of the keys' state in memory (held to the budget when there is one)",
       [](const proto::TaskReport& r, int64_t) {
         return static_cast<double>(r.state_memory_bytes());
       }},
      {"sluice_task_state_memory_budget_bytes", "gauge",
       "The task's share of the worker's --state-memory-mb (0: no bound)",
       [](const proto::TaskReport& r, int64_t) {
         return static_cast<double>(r.state_memory_budget_bytes());
       }},
      {"sluice_task_keys_in_memory", "gauge", "Keys whose state is in memory",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.keys_in_memory()); }},
      {"sluice_task_keys_spilled", "gauge", "Keys whose state is in the task's spill store",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.keys_spilled()); }},
      {"sluice_task_keys_evicted_total", "counter",
       "Keys moved out of memory to the spill store by the state memory budget",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.keys_evicted()); }},
      {"sluice_task_keys_read_back_total", "counter",
       "Keys read back from the spill store at an event or a due timer",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.keys_read_back()); }},
      {"sluice_task_failures_total", "counter",
       "Checkpoints or restarts of the task that failed (it restarts from its last checkpoint)",
       [](const proto::TaskReport& r, int64_t) { return static_cast<double>(r.failures()); }},
      {"sluice_task_failing", "gauge",
       "1 while the task is FAILED or RESTARTING (see its error in status)",
       [](const proto::TaskReport& r, int64_t) {
         return r.state() == proto::TaskReport::FAILED || r.state() == proto::TaskReport::RESTARTING
                    ? 1.0
                    : 0.0;
       }},
      {"sluice_task_exactly_once", "gauge",
       "1 if the task's output is transactional (delivery: exactly_once)",
       [](const proto::TaskReport& r, int64_t) {
         return r.delivery() == "exactly_once" ? 1.0 : 0.0;
       }},
      {"sluice_task_transactions_committed_total", "counter",
       "Transactions committed (exactly_once), one per checkpoint",
       [](const proto::TaskReport& r, int64_t) {
         return static_cast<double>(r.transactions_committed());
       }},
      {"sluice_task_transactions_aborted_total", "counter",
       "Transactions aborted (exactly_once); their output is produced again",
       [](const proto::TaskReport& r, int64_t) {
         return static_cast<double>(r.transactions_aborted());
       }},
      {"sluice_task_commit_seconds_total", "counter",
       "Time spent committing transactions; divided by the committed count: the mean",
       [](const proto::TaskReport& r, int64_t) {
         return static_cast<double>(r.commit_ms_total()) / 1000;
       }},
      {"sluice_task_last_commit_seconds", "gauge", "How long the last transaction commit took",
       [](const proto::TaskReport& r, int64_t) {
         return static_cast<double>(r.last_commit_ms()) / 1000;
       }},
  };
  std::string out;
  for (const Family& f : kFamilies) {
    out +=
        std::string("# HELP ") + f.name + " " + f.help + "\n# TYPE " + f.name + " " + f.type + "\n";
    for (size_t i = 0; i < reports.size(); ++i) {
      const proto::TaskReport& r = reports[i];
      AppendMetric(&out, f.name,
                   {{"job", r.job()},
                    {"partition", std::to_string(r.partition())},
                    {"worker", i < workers.size() ? workers[i] : ""}},
                   f.value(r, now_ms));
    }
  }
  return out;
}

}  // namespace sluice::reports
