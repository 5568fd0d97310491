#include "cli/format.h"

#include <google/protobuf/util/json_util.h>

#include <catch2/catch.hpp>
#include <limits>

namespace sluice::cli {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;  // 2023-11-14T22:13:20Z

TEST_CASE("Table aligns columns by their widest cell, without trailing spaces") {
  Table t({"NAME", "STATE", "N"});
  t.AddRow({"fraud", "RUNNING", "8"});
  t.AddRow({"sessions-long-name", "-", "12"});
  CHECK(t.Render() ==
        "NAME                STATE    N\n"
        "fraud               RUNNING  8\n"
        "sessions-long-name  -        12\n");
}

TEST_CASE("Table pads short rows and trims empty trailing cells") {
  Table t({"A", "B", "C"});
  t.AddRow({"x"});
  CHECK(t.rows() == 1);
  CHECK(t.Render() == "A  B  C\nx\n");
}

TEST_CASE("FormatDuration picks one or two units as kubectl does") {
  CHECK(FormatDuration(0) == "0s");
  CHECK(FormatDuration(999) == "0s");
  CHECK(FormatDuration(4'000) == "4s");
  CHECK(FormatDuration(119'999) == "119s");
  CHECK(FormatDuration(120'000) == "2m");
  CHECK(FormatDuration(125'000) == "2m5s");
  CHECK(FormatDuration(17 * 60'000 + 30'000) == "17m");
  CHECK(FormatDuration(3 * 3'600'000 + 20 * 60'000) == "3h20m");
  CHECK(FormatDuration(20 * 3'600'000) == "20h");
  CHECK(FormatDuration(2 * 86'400'000LL + 4 * 3'600'000) == "2d4h");
  CHECK(FormatDuration(30 * 86'400'000LL) == "30d");
  CHECK(FormatDuration(3 * 365 * 86'400'000LL) == "3y");
  CHECK(FormatDuration(-5) == "0s");
}

TEST_CASE("FormatAge is relative to the injected now") {
  CHECK(FormatAge(kNow - 4'000, kNow) == "4s ago");
  CHECK(FormatAge(kNow - 5 * 60'000, kNow) == "5m ago");
  CHECK(FormatAge(0, kNow) == "-");
  CHECK(FormatAge(kNow + 3'000, kNow) == "0s ago");  // clock skew
}

TEST_CASE("FormatRfc3339 and FormatWatermark") {
  CHECK(FormatRfc3339(0) == "1970-01-01T00:00:00Z");
  CHECK(FormatRfc3339(kNow) == "2023-11-14T22:13:20Z");
  CHECK(FormatRfc3339(1'709'294'400'250) == "2024-03-01T12:00:00.250Z");
  CHECK(FormatRfc3339(951'782'400'000) == "2000-02-29T00:00:00Z");
  CHECK(FormatRfc3339(-1) == "1969-12-31T23:59:59.999Z");
  CHECK(FormatWatermark(std::numeric_limits<int64_t>::min()) == "-");
  CHECK(FormatWatermark(std::numeric_limits<int64_t>::max()) == "end");
  CHECK(FormatWatermark(kNow) == "2023-11-14T22:13:20Z");
}

TEST_CASE("FormatLag") {
  proto::TaskReport r;
  r.set_next_offset(1200);
  r.set_end_offset(1234);
  CHECK(FormatLag(r) == "34");
  r.set_next_offset(-1);  // nothing consumed yet
  CHECK(FormatLag(r) == "1234");
  r.set_end_offset(-1);  // high watermark unknown
  CHECK(FormatLag(r) == "-");
  r.set_next_offset(50);
  r.set_end_offset(40);  // stale high watermark
  CHECK(FormatLag(r) == "0");
}

proto::JobInfo Job(const std::string& name, proto::JobState state, int partitions) {
  proto::JobInfo job;
  job.set_name(name);
  job.set_state(state);
  job.set_partitions(partitions);
  job.set_version(1);
  job.set_submitted_ms(kNow - 3 * 3'600'000);
  job.set_updated_ms(job.submitted_ms());
  return job;
}

TEST_CASE("FormatJobLine") {
  proto::JobInfo job = Job("fraud", proto::RUNNING, 8);
  CHECK(FormatJobLine(job, kNow) ==
        "job fraud: RUNNING, 8 partitions, version 1, submitted 3h ago");
  job.set_version(2);
  job.set_updated_ms(kNow - 5 * 60'000);
  job.set_partitions(1);
  job.set_state(proto::DRAINING);
  CHECK(FormatJobLine(job, kNow) ==
        "job fraud: DRAINING, 1 partition, version 2, submitted 3h ago, updated 5m ago");
  CHECK(FormatJobLine(proto::JobInfo(), kNow) == "job : -, 0 partitions, version 0");
}

TEST_CASE("FormatJobsTable") {
  proto::ListJobsResponse jobs;
  *jobs.add_jobs() = Job("fraud", proto::RUNNING, 8);
  *jobs.add_jobs() = Job("sessions", proto::STOPPED, 12);
  jobs.mutable_jobs(1)->set_version(3);
  jobs.mutable_jobs(1)->set_submitted_ms(kNow - 45'000);
  CHECK(FormatJobsTable(jobs, kNow) ==
        "NAME      STATE    PARTITIONS  VERSION  SUBMITTED\n"
        "fraud     RUNNING  8           1        3h ago\n"
        "sessions  STOPPED  12          3        45s ago\n");
  CHECK(FormatJobsTable(proto::ListJobsResponse(), kNow) == "no jobs\n");
}

proto::JobStatus SampleStatus() {
  proto::JobStatus st;
  *st.mutable_job() = Job("fraud", proto::RUNNING, 3);
  // Listed out of order: the table sorts by partition.
  {
    proto::TaskStatus* t = st.add_tasks();
    t->set_worker_id("worker-b");
    proto::TaskReport* r = t->mutable_report();
    r->set_job("fraud");
    r->set_partition(1);
    r->set_state(proto::TaskReport::STARTING);
    r->set_next_offset(-1);
    r->set_end_offset(-1);
    r->set_watermark(std::numeric_limits<int64_t>::min());
  }
  {
    proto::TaskStatus* t = st.add_tasks();
    t->set_worker_id("worker-a");
    proto::TaskReport* r = t->mutable_report();
    r->set_job("fraud");
    r->set_partition(0);
    r->set_epoch(4);
    r->set_state(proto::TaskReport::RUNNING);
    r->set_next_offset(1200);
    r->set_end_offset(1234);
    r->set_watermark(kNow - 6'000);
    r->set_last_checkpoint_id(17);
    r->set_last_checkpoint_ms(kNow - 4'000);
    r->set_consumed(1200);
    r->set_processed(1190);
    r->set_late(3);
    r->set_dead_lettered(7);
    r->set_alerts(12);
    r->set_window_results(0);
  }
  {
    proto::TaskStatus* t = st.add_tasks();  // not running anywhere now
    proto::TaskReport* r = t->mutable_report();
    r->set_partition(2);
    r->set_state(proto::TaskReport::FAILED);
    r->set_next_offset(-1);
    r->set_end_offset(500);
    r->set_watermark(std::numeric_limits<int64_t>::min());
    r->set_error("cannot open state: disk full");
  }
  return st;
}

TEST_CASE("FormatJobStatus: the job line, then one row per task") {
  CHECK(FormatJobStatus(SampleStatus(), kNow) ==
        "job fraud: RUNNING, 3 partitions, version 1, submitted 3h ago\n"
        "PARTITION  WORKER    STATE     OFFSET  LAG  LAG-TIME  WATERMARK             CHECKPOINT  "
        "CONSUMED  LATE  DLQ  ALERTS  WINDOWS\n"
        "0          worker-a  RUNNING   1200    34   0s        2023-11-14T22:13:14Z  4s ago      "
        "1200      3     7    12      0\n"
        "1          worker-b  STARTING  -       -    -         -                     -           "
        "0         0     0    0       0\n"
        "2          -         FAILED    -       500  0s        -                     -           "
        "0         0     0    0       0\n"
        "partition 2 (-): cannot open state: disk full\n");
}

TEST_CASE("FormatJobStatus of an exactly_once job shows its transactions") {
  proto::JobStatus st;
  *st.mutable_job() = Job("fraud", proto::RUNNING, 1);
  st.mutable_job()->mutable_spec()->set_delivery(proto::JobSpec::EXACTLY_ONCE);
  proto::TaskStatus* t = st.add_tasks();
  t->set_worker_id("worker-a");
  proto::TaskReport* r = t->mutable_report();
  r->set_state(proto::TaskReport::RUNNING);
  r->set_next_offset(10);
  r->set_end_offset(10);
  r->set_watermark(std::numeric_limits<int64_t>::min());
  r->set_delivery("exactly_once");
  r->set_transactions_committed(41);
  r->set_transactions_aborted(2);
  r->set_last_commit_ms(17);
  CHECK(FormatJobStatus(st, kNow) ==
        "job fraud: RUNNING, 1 partition, version 1, exactly_once, submitted 3h ago\n"
        "PARTITION  WORKER    STATE    OFFSET  LAG  LAG-TIME  WATERMARK  CHECKPOINT  CONSUMED  "
        "LATE  DLQ  ALERTS  WINDOWS  TXNS  COMMIT\n"
        "0          worker-a  RUNNING  10      0    0s        -          -           0         "
        "0     0    0       0        41/2  17 ms\n");
}

TEST_CASE("FormatJobStatus without tasks, and a task without a report") {
  proto::JobStatus st;
  *st.mutable_job() = Job("fraud", proto::STOPPED, 1);
  CHECK(FormatJobStatus(st, kNow) ==
        "job fraud: STOPPED, 1 partition, version 1, submitted 3h ago\nno tasks\n");
  st.add_tasks()->set_worker_id("worker-a");
  CHECK(FormatJobStatus(st, kNow) ==
        "job fraud: STOPPED, 1 partition, version 1, submitted 3h ago\n"
        "PARTITION  WORKER    STATE  OFFSET  LAG  LAG-TIME  WATERMARK  CHECKPOINT  CONSUMED  "
        "LATE  DLQ  ALERTS  WINDOWS\n"
        "-          worker-a  -      -       -    -         -          -           -         "
        "-     -    -       -\n");
}

TEST_CASE("FormatJobLine: a failed job's reason, and partitions added since submit") {
  proto::JobInfo job = Job("fraud", proto::FAILED, 8);
  job.set_initial_partitions(8);
  job.set_error("source topic payments no longer exists on kafka:9092");
  job.set_updated_ms(kNow - 5 * 60'000);
  CHECK(FormatJobLine(job, kNow) ==
        "job fraud: FAILED (source topic payments no longer exists on kafka:9092), 8 partitions, "
        "version 1, submitted 3h ago, updated 5m ago");
  CHECK(FormatAddedPartitionsNote(job).empty());

  job = Job("fraud", proto::RUNNING, 10);
  job.set_initial_partitions(8);
  CHECK(FormatJobLine(job, kNow) ==
        "job fraud: RUNNING, 10 partitions (8 at submit), version 1, submitted 3h ago");
  CHECK(FormatAddedPartitionsNote(job) ==
        "note: partitions 8-9 were added after submit; Kafka's partitioner now sends some keys "
        "there, and those keys start with fresh state there (their earlier events stay in the "
        "state of their old partition)");
  job.set_partitions(9);
  CHECK_THAT(FormatAddedPartitionsNote(job), Catch::StartsWith("note: partition 8 was added"));
  job.set_initial_partitions(0);  // a job stored before the count at submit was kept
  CHECK(FormatAddedPartitionsNote(job).empty());
  CHECK(FormatJobLine(job, kNow) ==
        "job fraud: RUNNING, 9 partitions, version 1, submitted 3h ago");

  job.mutable_spec()->mutable_source()->set_start(proto::SourceSpec::LATEST);
  CHECK(FormatJobLine(job, kNow) ==
        "job fraud: RUNNING, 9 partitions, version 1, started at the latest offsets, submitted 3h "
        "ago");
  job.mutable_spec()->mutable_source()->set_start(proto::SourceSpec::AT_TIME);
  job.mutable_spec()->mutable_source()->set_start_time_ms(1'709'294'400'250);
  CHECK(FormatJobLine(job, kNow) ==
        "job fraud: RUNNING, 9 partitions, version 1, started at 2024-03-01T12:00:00.250Z, "
        "submitted 3h ago");
}

TEST_CASE("FormatJobsTable says why a job failed") {
  proto::ListJobsResponse jobs;
  *jobs.add_jobs() = Job("fraud", proto::FAILED, 8);
  jobs.mutable_jobs(0)->set_error("source topic payments shrank from 8 to 4 partitions");
  *jobs.add_jobs() = Job("views", proto::RUNNING, 3);
  CHECK(FormatJobsTable(jobs, kNow) ==
        "NAME   STATE    PARTITIONS  VERSION  SUBMITTED\n"
        "fraud  FAILED   8           1        3h ago\n"
        "views  RUNNING  3           1        3h ago\n"
        "job fraud FAILED: source topic payments shrank from 8 to 4 partitions\n");
}

TEST_CASE("FormatTaskNotes: lost records with their last gap, refused outputs, type mismatches") {
  proto::TaskReport r;
  CHECK(FormatTaskNotes(r).empty());
  r.set_lost(120);
  r.set_lost_from_offset(1000);
  r.set_lost_to_offset(1120);
  CHECK(FormatTaskNotes(r) ==
        "lost 120 records to retention before they were read (last gap: offsets 1000 to 1119)");
  r.set_refused_outputs(1);
  r.set_type_mismatches(5);
  CHECK(FormatTaskNotes(r) ==
        "lost 120 records to retention before they were read (last gap: offsets 1000 to 1119); "
        "1 output record refused by the sink, dead-lettered instead; 5 comparisons met a value "
        "of another type (check the producers' field types)");
}

proto::JobStatus AccountingStatus() {
  proto::JobStatus st;
  *st.mutable_job() = Job("fraud", proto::RUNNING, 3);
  st.mutable_job()->set_initial_partitions(2);
  st.mutable_job()->mutable_spec()->set_filter("amount > 0");
  st.mutable_job()->mutable_spec()->mutable_dedup()->set_field("transaction_id");
  for (int p = 0; p < 3; ++p) {
    proto::TaskStatus* t = st.add_tasks();
    t->set_worker_id("w1");
    proto::TaskReport* r = t->mutable_report();
    r->set_partition(p);
    r->set_state(proto::TaskReport::RUNNING);
    r->set_next_offset(100 * (p + 1));
    r->set_end_offset(100 * (p + 1) + 10 * p);
    r->set_watermark(std::numeric_limits<int64_t>::min());
    r->set_consumed(100);
    r->set_processed(90);
    r->set_filtered(5 + p);
    r->set_deduplicated(p);
    r->set_late(4);
    r->set_dead_lettered(6);
    r->set_lag_ms(p * 65'000);
  }
  proto::TaskReport* r0 = st.mutable_tasks(0)->mutable_report();
  r0->set_lost(20);
  r0->set_lost_from_offset(40);
  r0->set_lost_to_offset(60);
  r0->set_paused(3);
  st.mutable_tasks(2)->mutable_report()->set_type_mismatches(2);
  return st;
}

TEST_CASE("FormatJobStatus accounts for every event: filtered, dedup, lag in time, notes") {
  CHECK(FormatJobStatus(AccountingStatus(), kNow) ==
        "job fraud: RUNNING, 3 partitions (2 at submit), version 1, submitted 3h ago\n"
        "note: partition 2 was added after submit; Kafka's partitioner now sends some keys there, "
        "and those keys start with fresh state there (their earlier events stay in the state of "
        "their old partition)\n"
        "PARTITION  WORKER  STATE    OFFSET  LAG  LAG-TIME  WATERMARK  CHECKPOINT  CONSUMED  "
        "FILTERED  DEDUP  LATE  DLQ  ALERTS  WINDOWS  PAUSED\n"
        "0          w1      RUNNING  100     0    0s        -          -           100       "
        "5         0      4     6    0       0        3\n"
        "1          w1      RUNNING  200     10   65s       -          -           100       "
        "6         1      4     6    0       0        0\n"
        "2          w1      RUNNING  300     20   2m10s     -          -           100       "
        "7         2      4     6    0       0        0\n"
        "partition 0 (w1): lost 20 records to retention before they were read (last gap: "
        "offsets 40 to 59)\n"
        "partition 2 (w1): 2 comparisons met a value of another type (check the producers' "
        "field types)\n");
}

TEST_CASE("ToJsonLine carries every counter and the job's partitions, start and error") {
  proto::JobStatus st = AccountingStatus();
  st.mutable_job()->add_start_offsets(-2);
  st.mutable_job()->add_start_offsets(17);
  Result<std::string> json = ToJsonLine(st);
  REQUIRE(json.ok());
  for (const char* field :
       {"\"initial_partitions\":2", "\"start_offsets\":[\"-2\",\"17\"]", "\"error\":\"\"",
        "\"filtered\":\"5\"", "\"deduplicated\":\"0\"", "\"type_mismatches\":\"0\"",
        "\"lost\":\"20\"", "\"lost_from_offset\":\"40\"", "\"lost_to_offset\":\"60\"",
        "\"refused_outputs\":\"0\"", "\"paused\":\"3\"", "\"lag_ms\":\"130000\"",
        "\"type_mismatches\":\"2\""}) {
    INFO(field);
    CHECK(json->find(field) != std::string::npos);
  }
}

TEST_CASE("FormatWorkersTable") {
  proto::ListWorkersResponse ws;
  proto::WorkerInfo* a = ws.add_workers();
  a->set_worker_id("worker-a");
  a->set_host("10.0.0.5");
  a->set_threads(8);
  a->set_alive(true);
  a->set_tasks(5);
  a->set_last_heartbeat_ms(kNow - 1'000);
  proto::WorkerInfo* b = ws.add_workers();
  b->set_worker_id("worker-long-id");
  b->set_threads(2);
  b->set_last_heartbeat_ms(kNow - 10 * 60'000);
  CHECK(FormatWorkersTable(ws, kNow) ==
        "WORKER          HOST      THREADS  ALIVE  TASKS  LAST-HEARTBEAT\n"
        "worker-a        10.0.0.5  8        yes    5      1s ago\n"
        "worker-long-id  -         2        no     0      10m ago\n");
  CHECK(FormatWorkersTable(proto::ListWorkersResponse(), kNow) == "no workers\n");
}

TEST_CASE("ToJsonLine: one line, proto field names, defaults included") {
  proto::JobStatus st;
  *st.mutable_job() = Job("fraud", proto::RUNNING, 1);
  st.mutable_job()->clear_spec();
  proto::TaskStatus* t = st.add_tasks();
  t->set_worker_id("worker-a");
  t->mutable_report()->set_partition(0);
  t->mutable_report()->set_next_offset(-1);
  t->mutable_report()->set_state(proto::TaskReport::RUNNING);
  Result<std::string> json = ToJsonLine(st);
  REQUIRE(json.ok());
  CHECK(json->find('\n') == std::string::npos);
  CHECK(json->rfind("{\"job\":{\"name\":\"fraud\",\"state\":\"RUNNING\",\"partitions\":1,"
                    "\"version\":\"1\",\"submitted_ms\":\"1699989200000\"",
                    0) == 0);
  CHECK(json->find("\"tasks\":[{\"worker_id\":\"worker-a\",\"report\":{\"job\":\"\","
                   "\"partition\":0,\"epoch\":\"0\",\"version\":\"0\",\"state\":\"RUNNING\","
                   "\"next_offset\":\"-1\"") != std::string::npos);
  CHECK(json->find("\"dead_lettered\":\"0\"") != std::string::npos);
  CHECK(json->find("\"error\":\"\",") != std::string::npos);
  CHECK(json->find("\"delivery\":\"\"") != std::string::npos);

  // Round trip: what scripts parse is the message itself.
  proto::JobStatus back;
  REQUIRE(google::protobuf::util::JsonStringToMessage(*json, &back).ok());
  CHECK(back.SerializeAsString() == st.SerializeAsString());

  Result<std::string> empty = ToJsonLine(proto::ListWorkersResponse());
  REQUIRE(empty.ok());
  CHECK(*empty == "{\"workers\":[]}");
}

}  // namespace
}  // namespace sluice::cli
