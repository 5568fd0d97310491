#include "cli/format.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <utility>

namespace sluice::cli {

namespace {

constexpr int64_t kSecond = 1000;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kYear = 365 * kDay;

std::string Num(int64_t v) { return std::to_string(v); }

// "3h20m", or "3h" when the smaller unit is 0.
std::string TwoUnits(int64_t big, const char* big_unit, int64_t small, const char* small_unit) {
  std::string s = Num(big) + big_unit;
  if (small != 0) s += Num(small) + small_unit;
  return s;
}

// Howard Hinnant's civil_from_days: days since 1970-01-01 to (y, m, d).
void CivilFromDays(int64_t days, int64_t* y, unsigned* m, unsigned* d) {
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(days - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2 ? 1 : 0);
}

}  // namespace

Table::Table(std::vector<std::string> header) : header_(std::move(header)) {}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(std::max(cells.size(), header_.size()));
  rows_.push_back(std::move(cells));
}

std::string Table::Render() const {
  std::vector<size_t> width(header_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    if (row.size() > width.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  };
  measure(header_);
  for (const auto& row : rows_) measure(row);

  std::string out;
  auto render = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i > 0) line += "  ";
      line += row[i];
      if (i + 1 < row.size()) line.append(width[i] - row[i].size(), ' ');
    }
    // Empty trailing cells would otherwise leave spaces at the end.
    line.erase(line.find_last_not_of(' ') + 1);
    out += line;
    out += '\n';
  };
  render(header_);
  for (const auto& row : rows_) render(row);
  return out;
}

std::string FormatDuration(int64_t millis) {
  const int64_t ms = std::max<int64_t>(millis, 0);
  const int64_t s = ms / kSecond;
  const int64_t m = ms / kMinute;
  const int64_t h = ms / kHour;
  const int64_t d = ms / kDay;
  if (s < 120) return Num(s) + "s";
  if (m < 10) return TwoUnits(m, "m", s % 60, "s");
  if (m < 3 * 60) return Num(m) + "m";
  if (h < 8) return TwoUnits(h, "h", m % 60, "m");
  if (h < 48) return Num(h) + "h";
  if (d < 8) return TwoUnits(d, "d", h % 24, "h");
  if (ms < 2 * kYear) return Num(d) + "d";
  return Num(ms / kYear) + "y";
}

std::string FormatAge(int64_t then_ms, int64_t now_ms) {
  if (then_ms <= 0) return kUnknown;
  return FormatDuration(now_ms - then_ms) + " ago";
}

std::string FormatRfc3339(int64_t millis) {
  // Floor division, so instants before 1970 format correctly too.
  int64_t days = millis / kDay;
  int64_t rem = millis % kDay;
  if (rem < 0) {
    rem += kDay;
    --days;
  }
  int64_t year;
  unsigned month, day;
  CivilFromDays(days, &year, &month, &day);
  const int64_t ms = rem % kSecond;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04" PRId64 "-%02u-%02uT%02d:%02d:%02d", year, month, day,
                static_cast<int>(rem / kHour), static_cast<int>(rem / kMinute % 60),
                static_cast<int>(rem / kSecond % 60));
  std::string out = buf;
  if (ms != 0) {
    std::snprintf(buf, sizeof(buf), ".%03d", static_cast<int>(ms));
    out += buf;
  }
  out += 'Z';
  return out;
}

std::string FormatWatermark(int64_t millis) {
  if (millis == std::numeric_limits<int64_t>::min()) return kUnknown;
  if (millis == std::numeric_limits<int64_t>::max()) return "end";
  return FormatRfc3339(millis);
}

std::string FormatLag(const proto::TaskReport& report) {
  if (report.end_offset() < 0 || report.next_offset() < -1) return kUnknown;
  const int64_t next = report.next_offset() == -1 ? 0 : report.next_offset();
  return Num(std::max<int64_t>(report.end_offset() - next, 0));
}

std::string JobStateName(proto::JobState state) {
  if (state == proto::JOB_STATE_UNSPECIFIED) return kUnknown;
  const std::string& name = proto::JobState_Name(state);
  return name.empty() ? Num(state) : name;
}

std::string TaskStateName(proto::TaskReport::State state) {
  if (state == proto::TaskReport::STATE_UNSPECIFIED) return kUnknown;
  const std::string& name = proto::TaskReport::State_Name(state);
  return name.empty() ? Num(state) : name;
}

std::string FormatLagTime(const proto::TaskReport& report) {
  if (report.lag_ms() <= 0 && FormatLag(report) == kUnknown) return kUnknown;
  return FormatDuration(report.lag_ms());
}

std::string FormatJobLine(const proto::JobInfo& job, int64_t now_ms) {
  std::string line = "job " + job.name() + ": " + JobStateName(job.state());
  if (job.state() == proto::FAILED) {
    line += " (" + (job.error().empty() ? std::string("no reason given") : job.error()) + ")";
  }
  line += ", " + Num(job.partitions()) + (job.partitions() == 1 ? " partition" : " partitions");
  if (job.initial_partitions() > 0 && job.initial_partitions() != job.partitions()) {
    line += " (" + Num(job.initial_partitions()) + " at submit)";
  }
  line += ", version " + Num(job.version());
  if (job.spec().delivery() == proto::JobSpec::EXACTLY_ONCE) line += ", exactly_once";
  switch (job.spec().source().start()) {
    case proto::SourceSpec::LATEST:
      line += ", started at the latest offsets";
      break;
    case proto::SourceSpec::AT_TIME:
      line += ", started at " + FormatRfc3339(job.spec().source().start_time_ms());
      break;
    default:
      break;
  }
  if (job.submitted_ms() > 0) line += ", submitted " + FormatAge(job.submitted_ms(), now_ms);
  if (job.updated_ms() > job.submitted_ms()) {
    line += ", updated " + FormatAge(job.updated_ms(), now_ms);
  }
  return line;
}

std::string FormatAddedPartitionsNote(const proto::JobInfo& job) {
  const int32_t first = job.initial_partitions();
  if (first <= 0 || job.partitions() <= first) return "";
  const std::string added = job.partitions() - first == 1 ? "partition " + Num(first) + " was"
                                                          : "partitions " + Num(first) + "-" +
                                                                Num(job.partitions() - 1) + " were";
  return "note: " + added +
         " added after submit; Kafka's partitioner now sends some keys there, and those keys "
         "start with fresh state there (their earlier events stay in the state of their old "
         "partition)";
}

std::string FormatTaskNotes(const proto::TaskReport& r) {
  std::vector<std::string> notes;
  if (r.lost() != 0) {
    std::string note = "lost " + Num(r.lost()) + (r.lost() == 1 ? " record" : " records") +
                       " to retention before they were read";
    if (r.lost_to_offset() > r.lost_from_offset()) {
      note += " (last gap: offsets " + Num(r.lost_from_offset()) + " to " +
              Num(r.lost_to_offset() - 1) + ")";
    }
    notes.push_back(note);
  }
  if (r.refused_outputs() != 0) {
    notes.push_back(Num(r.refused_outputs()) +
                    (r.refused_outputs() == 1 ? " output record" : " output records") +
                    " refused by the sink, dead-lettered instead");
  }
  if (r.type_mismatches() != 0) {
    notes.push_back(Num(r.type_mismatches()) +
                    (r.type_mismatches() == 1 ? " comparison" : " comparisons") +
                    " met a value of another type (check the producers' field types)");
  }
  std::string out;
  for (const std::string& note : notes) out += (out.empty() ? "" : "; ") + note;
  return out;
}

std::string FormatJobsTable(const proto::ListJobsResponse& jobs, int64_t now_ms) {
  if (jobs.jobs().empty()) return "no jobs\n";
  Table table({"NAME", "STATE", "PARTITIONS", "VERSION", "SUBMITTED"});
  std::string errors;
  for (const auto& job : jobs.jobs()) {
    table.AddRow({job.name(), JobStateName(job.state()), Num(job.partitions()), Num(job.version()),
                  FormatAge(job.submitted_ms(), now_ms)});
    if (job.state() == proto::FAILED) {
      errors += "job " + job.name() +
                " FAILED: " + (job.error().empty() ? std::string("no reason given") : job.error()) +
                "\n";
    }
  }
  return table.Render() + errors;
}

std::string FormatJobStatus(const proto::JobStatus& status, int64_t now_ms) {
  std::string out = FormatJobLine(status.job(), now_ms) + "\n";
  if (const std::string note = FormatAddedPartitionsNote(status.job()); !note.empty()) {
    out += note + "\n";
  }
  if (status.tasks().empty()) return out + "no tasks\n";

  std::vector<const proto::TaskStatus*> tasks;
  for (const auto& task : status.tasks()) tasks.push_back(&task);
  std::stable_sort(tasks.begin(), tasks.end(), [](const auto* a, const auto* b) {
    return a->report().partition() < b->report().partition();
  });

  // Columns a job cannot fill are left out while every task's count is 0:
  // FILTERED without a filter, DEDUP without dedup, PAUSED without back-pressure.
  const proto::JobSpec& spec = status.job().spec();
  auto any = [&](int64_t (proto::TaskReport::*counter)() const) {
    return std::any_of(tasks.begin(), tasks.end(),
                       [&](const auto* t) { return (t->report().*counter)() != 0; });
  };
  const bool filtered = !spec.filter().empty() || any(&proto::TaskReport::filtered);
  const bool deduplicated = spec.has_dedup() || any(&proto::TaskReport::deduplicated);
  const bool paused = any(&proto::TaskReport::paused);
  // exactly_once adds the transactions: committed/aborted, the last commit's time.
  const bool transactional = spec.delivery() == proto::JobSpec::EXACTLY_ONCE;

  std::vector<std::string> header = {"PARTITION", "WORKER",    "STATE",      "OFFSET",  "LAG",
                                     "LAG-TIME",  "WATERMARK", "CHECKPOINT", "CONSUMED"};
  if (filtered) header.push_back("FILTERED");
  if (deduplicated) header.push_back("DEDUP");
  for (const char* h : {"LATE", "DLQ", "ALERTS", "WINDOWS"}) header.push_back(h);
  if (paused) header.push_back("PAUSED");
  if (transactional) {
    header.push_back("TXNS");
    header.push_back("COMMIT");
  }
  Table table(header);
  std::string notes;
  for (const auto* task : tasks) {
    const proto::TaskReport& r = task->report();
    const std::string worker = task->worker_id().empty() ? kUnknown : task->worker_id();
    if (!task->has_report()) {
      // Not reported by any worker yet: nothing but the worker is known.
      std::vector<std::string> row(header.size(), kUnknown);
      row[1] = worker;
      table.AddRow(row);
      continue;
    }
    std::vector<std::string> row = {Num(r.partition()),
                                    worker,
                                    TaskStateName(r.state()),
                                    r.next_offset() >= 0 ? Num(r.next_offset()) : kUnknown,
                                    FormatLag(r),
                                    FormatLagTime(r),
                                    FormatWatermark(r.watermark()),
                                    FormatAge(r.last_checkpoint_ms(), now_ms),
                                    Num(r.consumed())};
    if (filtered) row.push_back(Num(r.filtered()));
    if (deduplicated) row.push_back(Num(r.deduplicated()));
    for (int64_t n : {r.late(), r.dead_lettered(), r.alerts(), r.window_results()}) {
      row.push_back(Num(n));
    }
    if (paused) row.push_back(Num(r.paused()));
    if (transactional) {
      row.push_back(Num(r.transactions_committed()) + "/" + Num(r.transactions_aborted()));
      row.push_back(r.transactions_committed() > 0 ? Num(r.last_commit_ms()) + " ms" : kUnknown);
    }
    table.AddRow(row);
    const std::string where = "partition " + Num(r.partition()) + " (" + worker + "): ";
    if (!r.error().empty()) notes += where + r.error() + "\n";
    if (const std::string n = FormatTaskNotes(r); !n.empty()) notes += where + n + "\n";
  }
  return out + table.Render() + notes;
}

std::string FormatWorkersTable(const proto::ListWorkersResponse& workers, int64_t now_ms) {
  if (workers.workers().empty()) return "no workers\n";
  Table table({"WORKER", "HOST", "THREADS", "ALIVE", "TASKS", "LAST-HEARTBEAT"});
  for (const auto& w : workers.workers()) {
    table.AddRow({w.worker_id(), w.host().empty() ? kUnknown : w.host(), Num(w.threads()),
                  w.alive() ? "yes" : "no", Num(w.tasks()),
                  FormatAge(w.last_heartbeat_ms(), now_ms)});
  }
  return table.Render();
}

Result<std::string> ToJsonLine(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  auto st = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!st.ok()) {
    return Status::Internal("cannot print the answer as JSON: " + std::string(st.message()));
  }
  return json;
}

}  // namespace sluice::cli
