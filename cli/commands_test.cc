#include "cli/commands.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace sluice::cli {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;

// A JobService that records what it was asked and answers with `status` and
// the canned responses below. Shared with the test through a pointer, since
// Run owns the client it opens.
struct FakeCoordinator {
  Status status;
  proto::JobInfo job;
  proto::ListJobsResponse jobs;
  proto::JobStatus job_status;
  proto::ListWorkersResponse workers;

  std::vector<std::string> calls;
  proto::SubmitJobRequest submit;
  proto::UpdateJobRequest update;
  proto::StopJobRequest stop;
  proto::JobRef ref;
  std::string address;
  std::chrono::milliseconds timeout{0};
  ClientSecurityFlags security;
};

class FakeJobClient final : public JobClient {
 public:
  explicit FakeJobClient(FakeCoordinator* c) : c_(c) {}

  Status SubmitJob(const proto::SubmitJobRequest& request, proto::JobInfo* response) override {
    c_->calls.push_back("SubmitJob");
    c_->submit = request;
    return Answer(c_->job, response);
  }
  Status ListJobs(const proto::ListJobsRequest&, proto::ListJobsResponse* response) override {
    c_->calls.push_back("ListJobs");
    return Answer(c_->jobs, response);
  }
  Status GetJob(const proto::JobRef& request, proto::JobStatus* response) override {
    c_->calls.push_back("GetJob");
    c_->ref = request;
    return Answer(c_->job_status, response);
  }
  Status UpdateJob(const proto::UpdateJobRequest& request, proto::JobInfo* response) override {
    c_->calls.push_back("UpdateJob");
    c_->update = request;
    return Answer(c_->job, response);
  }
  Status StopJob(const proto::StopJobRequest& request, proto::JobInfo* response) override {
    c_->calls.push_back("StopJob");
    c_->stop = request;
    return Answer(c_->job, response);
  }
  Status CancelJob(const proto::JobRef& request, proto::JobInfo* response) override {
    c_->calls.push_back("CancelJob");
    c_->ref = request;
    return Answer(c_->job, response);
  }
  Status ListWorkers(const proto::ListWorkersRequest&,
                     proto::ListWorkersResponse* response) override {
    c_->calls.push_back("ListWorkers");
    return Answer(c_->workers, response);
  }

 private:
  template <typename M>
  Status Answer(const M& canned, M* response) {
    if (c_->status.ok()) *response = canned;
    return c_->status;
  }
  FakeCoordinator* c_;
};

// Runs sluicectl with `args` against a FakeCoordinator.
struct Harness {
  FakeCoordinator coordinator;
  ManualClock clock{kNow};
  std::ostringstream out;
  std::ostringstream err;
  std::string default_coordinator = kDefaultCoordinator;
  Status args_connect_error;  // what connect answers instead of a client

  Harness() {
    coordinator.job.set_name("fraud");
    coordinator.job.set_state(proto::RUNNING);
    coordinator.job.set_partitions(8);
    coordinator.job.set_version(1);
    coordinator.job.set_submitted_ms(kNow - 2'000);
    coordinator.job.set_updated_ms(kNow - 2'000);
  }

  int Run(std::vector<std::string> args) {
    args.insert(args.begin(), "sluicectl");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    Environment env;
    env.default_coordinator = default_coordinator;
    env.connect = [this](const ConnectOptions& options) -> Result<std::unique_ptr<JobClient>> {
      coordinator.address = options.address;
      coordinator.timeout = options.timeout;
      coordinator.security = options.security;
      if (!args_connect_error.ok()) return args_connect_error;
      return std::unique_ptr<JobClient>(std::make_unique<FakeJobClient>(&coordinator));
    };
    env.clock = &clock;
    env.out = &out;
    env.err = &err;
    return cli::Run(static_cast<int>(argv.size()), argv.data(), env);
  }
};

// A job file in the temporary directory, removed at the end of the test.
class TempFile {
 public:
  TempFile(const std::string& name, const std::string& text)
      : path_((std::filesystem::temp_directory_path() /
               ("sluicectl_test_" + std::to_string(::getpid()) + "_" + name))
                  .string()) {
    std::ofstream(path_) << text;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string Join(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) s += (s.empty() ? "" : " ") + a;
  return s;
}

constexpr const char* kJobYaml = "name: fraud\nsource:\n  topic: payments\n";

TEST_CASE("submit sends the file's text and the path as given, and prints the job") {
  Harness h;
  TempFile file("fraud.yaml", kJobYaml);
  REQUIRE(h.Run({"submit", file.path()}) == kExitOk);
  REQUIRE(h.coordinator.calls == std::vector<std::string>{"SubmitJob"});
  CHECK(h.coordinator.submit.yaml() == kJobYaml);
  CHECK(h.coordinator.submit.filename() == file.path());
  CHECK_FALSE(h.coordinator.submit.has_spec());
  CHECK(h.out.str() == "job fraud: RUNNING, 8 partitions, version 1, submitted 2s ago\n");
  CHECK(h.err.str().empty());
}

constexpr const char* kFullJobYaml =
    "name: fraud\nsource:\n  topic: payments\n  key: user_id\n  event_time: ts\n"
    "sinks:\n  output: alerts\nrules:\n  - name: large_amount\n    when: amount > 5000\n";

TEST_CASE("submit --start-at replaces the file's source.start and sends the spec") {
  struct Case {
    std::string value;
    proto::SourceSpec::Start start;
    int64_t time_ms;
  };
  for (const Case& c : std::vector<Case>{
           {"earliest", proto::SourceSpec::EARLIEST, 0},
           {"latest", proto::SourceSpec::LATEST, 0},
           {"2023-11-14T22:13:20Z", proto::SourceSpec::AT_TIME, 1'700'000'000'000},
           {"2023-11-14T23:13:20.250+01:00", proto::SourceSpec::AT_TIME, 1'700'000'000'250}}) {
    Harness h;
    TempFile file("start.yaml", kFullJobYaml);
    INFO("--start-at " << c.value);
    REQUIRE(h.Run({"submit", file.path(), "--start-at", c.value}) == kExitOk);
    REQUIRE(h.coordinator.calls == std::vector<std::string>{"SubmitJob"});
    const proto::SubmitJobRequest& sent = h.coordinator.submit;
    CHECK(sent.yaml().empty());
    CHECK(sent.filename() == file.path());
    CHECK(sent.spec().name() == "fraud");
    CHECK(sent.spec().source().topic() == "payments");
    CHECK(sent.spec().rules_size() == 1);
    CHECK(sent.spec().source().start() == c.start);
    CHECK(sent.spec().source().start_time_ms() == c.time_ms);
    CHECK(h.out.str() == "job fraud: RUNNING, 8 partitions, version 1, submitted 2s ago\n");
  }
}

TEST_CASE("submit --start-at with a bad value or a bad file sends nothing") {
  for (const std::string bad : {"yesterday", "", "2023-11-14", "1700000000000",
                                "1969-12-31T23:59:59Z", "2023-13-01T00:00:00Z"}) {
    Harness h;
    TempFile file("bad-start.yaml", kFullJobYaml);
    INFO("--start-at '" << bad << "'");
    CHECK(h.Run({"submit", file.path(), "--start-at", bad}) == kExitUsage);
    CHECK_THAT(h.err.str(),
               Catch::Contains("sluicectl: --start-at: expected earliest, latest or an RFC 3339 "
                               "time after 1970 like 2024-03-01T12:00:00Z, got '" +
                               bad + "'"));
    CHECK_THAT(h.err.str(), Catch::Contains("Usage: sluicectl submit"));
    CHECK(h.coordinator.calls.empty());
  }
  // The file is loaded here: a bad one is refused as the coordinator would (exit 1).
  Harness h;
  TempFile file("bad-job.yaml",
                "name: fraud\nsource:\n  topic: payments\n  max_out_of_orderness: five\n");
  CHECK(h.Run({"submit", file.path(), "--start-at", "latest"}) == kExitFailed);
  CHECK_THAT(h.err.str(), Catch::StartsWith("sluicectl: " + file.path() + ":"));
  CHECK(h.coordinator.calls.empty());
  CHECK(h.out.str().empty());
}

TEST_CASE("the coordinator address: default, environment, flag; and the timeout") {
  Harness h;
  REQUIRE(h.Run({"jobs"}) == kExitOk);
  CHECK(h.coordinator.address == "127.0.0.1:7070");
  CHECK(h.coordinator.timeout == std::chrono::seconds(10));

  h.default_coordinator = "coord.internal:9000";  // as from $SLUICE_COORDINATOR
  REQUIRE(h.Run({"jobs"}) == kExitOk);
  CHECK(h.coordinator.address == "coord.internal:9000");

  REQUIRE(h.Run({"--coordinator", "10.1.2.3:7070", "--timeout", "2.5", "jobs"}) == kExitOk);
  CHECK(h.coordinator.address == "10.1.2.3:7070");
  CHECK(h.coordinator.timeout == std::chrono::milliseconds(2500));
}

TEST_CASE("jobs prints a table") {
  Harness h;
  *h.coordinator.jobs.add_jobs() = h.coordinator.job;
  REQUIRE(h.Run({"jobs"}) == kExitOk);
  CHECK(h.coordinator.calls == std::vector<std::string>{"ListJobs"});
  CHECK(h.out.str() ==
        "NAME   STATE    PARTITIONS  VERSION  SUBMITTED\n"
        "fraud  RUNNING  8           1        2s ago\n");
}

TEST_CASE("status asks for the job by name and prints its tasks") {
  Harness h;
  *h.coordinator.job_status.mutable_job() = h.coordinator.job;
  proto::TaskStatus* t = h.coordinator.job_status.add_tasks();
  t->set_worker_id("w1");
  t->mutable_report()->set_partition(0);
  t->mutable_report()->set_state(proto::TaskReport::RUNNING);
  t->mutable_report()->set_next_offset(10);
  t->mutable_report()->set_end_offset(15);
  t->mutable_report()->set_watermark(0);
  t->mutable_report()->set_last_checkpoint_ms(kNow - 4'000);
  REQUIRE(h.Run({"status", "fraud"}) == kExitOk);
  CHECK(h.coordinator.calls == std::vector<std::string>{"GetJob"});
  CHECK(h.coordinator.ref.name() == "fraud");
  CHECK(h.out.str() ==
        "job fraud: RUNNING, 8 partitions, version 1, submitted 2s ago\n"
        "PARTITION  WORKER  STATE    OFFSET  LAG  LAG-TIME  WATERMARK             CHECKPOINT  "
        "CONSUMED  LATE  DLQ  ALERTS  WINDOWS\n"
        "0          w1      RUNNING  10      5    0s        1970-01-01T00:00:00Z  4s ago      "
        "0         0     0    0       0\n");
}

TEST_CASE("update sends name, text and path") {
  Harness h;
  TempFile file("fraud-v2.yaml", kJobYaml);
  REQUIRE(h.Run({"update", "fraud", file.path()}) == kExitOk);
  REQUIRE(h.coordinator.calls == std::vector<std::string>{"UpdateJob"});
  CHECK(h.coordinator.update.name() == "fraud");
  CHECK(h.coordinator.update.yaml() == kJobYaml);
  CHECK(h.coordinator.update.filename() == file.path());
}

TEST_CASE("stop, stop --drain and cancel") {
  Harness h;
  REQUIRE(h.Run({"stop", "fraud"}) == kExitOk);
  CHECK(h.coordinator.stop.name() == "fraud");
  CHECK_FALSE(h.coordinator.stop.drain());

  REQUIRE(h.Run({"stop", "--drain", "sessions"}) == kExitOk);
  CHECK(h.coordinator.stop.name() == "sessions");
  CHECK(h.coordinator.stop.drain());

  REQUIRE(h.Run({"stop", "fraud", "--drain"}) == kExitOk);
  CHECK(h.coordinator.stop.drain());

  REQUIRE(h.Run({"cancel", "fraud"}) == kExitOk);
  CHECK(h.coordinator.ref.name() == "fraud");
  CHECK(h.coordinator.calls ==
        std::vector<std::string>{"StopJob", "StopJob", "StopJob", "CancelJob"});
}

TEST_CASE("workers prints a table") {
  Harness h;
  proto::WorkerInfo* w = h.coordinator.workers.add_workers();
  w->set_worker_id("w1");
  w->set_host("host-1");
  w->set_threads(4);
  w->set_alive(true);
  w->set_tasks(2);
  w->set_last_heartbeat_ms(kNow - 1'500);
  REQUIRE(h.Run({"workers"}) == kExitOk);
  CHECK(h.out.str() ==
        "WORKER  HOST    THREADS  ALIVE  TASKS  LAST-HEARTBEAT\n"
        "w1      host-1  4        yes    2      1s ago\n");
}

TEST_CASE("--json prints the answer as one JSON object per line, before or after the command") {
  Harness h;
  REQUIRE(h.Run({"--json", "workers"}) == kExitOk);
  CHECK(h.out.str() == "{\"workers\":[]}\n");

  h.out.str("");
  REQUIRE(h.Run({"cancel", "fraud", "--json"}) == kExitOk);
  const std::string out = h.out.str();
  CHECK(out.rfind("{\"name\":\"fraud\",", 0) == 0);
  CHECK(out.find("\"state\":\"RUNNING\"") != std::string::npos);
  CHECK(out.find('\n') == out.size() - 1);
}

TEST_CASE("an error from the coordinator is printed as is, exit 1") {
  Harness h;
  h.coordinator.status =
      Status::InvalidArgument("fraud.yaml:7: expected a duration like 5s, got 'five'");
  TempFile file("fraud.yaml", kJobYaml);
  CHECK(h.Run({"submit", file.path()}) == kExitFailed);
  CHECK(h.err.str() == "sluicectl: fraud.yaml:7: expected a duration like 5s, got 'five'\n");
  CHECK(h.out.str().empty());

  h.err.str("");
  h.coordinator.status = Status::NotFound("no job named nope");
  CHECK(h.Run({"--json", "status", "nope"}) == kExitFailed);
  CHECK(h.err.str() == "sluicectl: no job named nope\n");
  CHECK(h.out.str().empty());
}

TEST_CASE("an unreachable coordinator, exit 1") {
  Harness h;
  h.coordinator.status = Status::Unavailable("failed to connect to all addresses");
  CHECK(h.Run({"--coordinator", "10.9.9.9:7070", "jobs"}) == kExitFailed);
  CHECK(h.err.str() ==
        "sluicectl: cannot reach the coordinator at 10.9.9.9:7070: failed to connect to all "
        "addresses\n");
  CHECK(h.out.str().empty());
}

TEST_CASE("bad usage prints the error and the usage, exit 2, and calls nobody") {
  struct Case {
    std::vector<std::string> args;
    std::string error;  // part of what stderr says
    std::string usage;  // part of the usage printed
  };
  const std::vector<Case> cases = {
      {{}, "A subcommand is required", "Usage: sluicectl [OPTIONS] SUBCOMMAND"},
      {{"frobnicate"}, "frobnicate", "Usage: sluicectl [OPTIONS] SUBCOMMAND"},
      {{"--bogus", "jobs"}, "--bogus", "Usage: sluicectl"},
      {{"status"}, "JOB is required", "Usage: sluicectl status [OPTIONS] JOB"},
      {{"update", "fraud"}, "FILE is required", "Usage: sluicectl update"},
      {{"stop", "--now", "fraud"}, "--now", "Usage: sluicectl stop"},
      {{"jobs", "extra"}, "extra", "Usage: sluicectl"},
      {{"--timeout", "0", "jobs"}, "--timeout", "Usage: sluicectl"},
      {{"jobs", "workers"}, "workers", "Usage: sluicectl"},
      {{"submit", "/nonexistent/fraud.yaml"},
       "sluicectl: cannot read /nonexistent/fraud.yaml: No such file or directory",
       "Usage: sluicectl submit [OPTIONS] FILE"},
      {{"submit", "/"}, "cannot read /: it is a directory", "Usage: sluicectl submit"},
      {{"submit", "/dev/zero"}, "/dev/zero: larger than 1 MiB", "Usage: sluicectl submit"},
      {{"--bogus"}, "unknown option '--bogus'", "Usage: sluicectl [OPTIONS] SUBCOMMAND"},
      {{"--timeout", "nan", "jobs"}, "--timeout", "Usage: sluicectl"},
      {{"--timeout", "1e308", "jobs"},
       "--timeout: expected seconds from 0.001 to 86400",
       "Usage: sluicectl"},
      {{"--coordinator", "127.0.0.1:99999", "jobs"},
       "--coordinator: expected HOST:PORT with a port from 1 to 65535, got '127.0.0.1:99999'",
       "Usage: sluicectl"},
      {{"--coordinator", "localhost", "jobs"},
       "--coordinator: expected HOST:PORT",
       "Usage: sluicectl"},
      {{"--coordinator", "localhost:7x", "jobs"},
       "--coordinator: expected HOST:PORT",
       "Usage: sluicectl"},
  };
  for (const auto& c : cases) {
    Harness h;
    INFO("args: " << Join(c.args));
    CHECK(h.Run(c.args) == kExitUsage);
    CHECK(h.err.str().find(c.error) != std::string::npos);
    CHECK(h.err.str().find(c.usage) != std::string::npos);
    CHECK(h.out.str().empty());
    CHECK(h.coordinator.calls.empty());
  }
}

TEST_CASE("a file that is no job file is refused before anything is sent") {
  const std::string dir =
      std::filesystem::temp_directory_path() / ("sluicectl-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  struct Case {
    std::string name;
    std::string content;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"empty.yaml", "", "the file is empty"},
      {"blank.yaml", " \n\t\n", "the file is empty"},
      {"utf16.yaml", std::string("\xff\xfen\0a\0m\0e\0", 10), "not UTF-8 text"},
      {"latin1.yaml", "name: caf\xe9\n", "not UTF-8 text"},
      {"huge.yaml", std::string((1 << 20) + 1, '#'), "larger than 1 MiB"},
  };
  for (const auto& c : cases) {
    const std::string path = dir + "/" + c.name;
    std::ofstream(path, std::ios::binary) << c.content;
    Harness h;
    INFO(c.name);
    CHECK(h.Run({"submit", path}) == kExitUsage);
    CHECK(h.err.str().find("sluicectl: " + path + ": " + c.error) != std::string::npos);
    CHECK(h.coordinator.calls.empty());
  }
  // Exactly at the limit, and UTF-8 beyond ASCII, are read.
  const std::string ok = dir + "/ok.yaml";
  std::ofstream(ok, std::ios::binary) << "name: caf\xc3\xa9\n" << std::string((1 << 20) - 12, '#');
  auto text = ReadJobFile(ok);
  INFO(text.status().ToString());
  CHECK(text.ok());
  std::filesystem::remove_all(dir);
}

TEST_CASE("--help on sluicectl and on every command, exit 0") {
  for (const std::string command :
       {"", "submit", "jobs", "status", "update", "stop", "cancel", "workers"}) {
    Harness h;
    std::vector<std::string> args;
    if (!command.empty()) args.push_back(command);
    args.push_back("--help");
    INFO("command: " << command);
    CHECK(h.Run(args) == kExitOk);
    CHECK(h.out.str().find("Usage: sluicectl" + (command.empty() ? "" : " " + command)) !=
          std::string::npos);
    CHECK(h.coordinator.calls.empty());
  }
  Harness h;
  REQUIRE(h.Run({"stop", "--help"}) == kExitOk);
  CHECK(h.out.str().find("--drain") != std::string::npos);
}

TEST_CASE("the TLS flags and the token reach the connection") {
  Harness h;
  REQUIRE(h.Run({"--tls-ca", "ca.pem", "--tls-cert", "me.pem", "--tls-key", "me.key",
                 "--token-file", "token.txt", "jobs"}) == kExitOk);
  CHECK(h.coordinator.security.tls_ca == "ca.pem");
  CHECK(h.coordinator.security.tls_cert == "me.pem");
  CHECK(h.coordinator.security.tls_key == "me.key");
  CHECK(h.coordinator.security.token_file == "token.txt");
  CHECK_FALSE(h.coordinator.security.insecure);

  Harness plain;
  REQUIRE(plain.Run({"jobs", "--insecure"}) == kExitOk);
  CHECK(plain.coordinator.security.insecure);
}

TEST_CASE("a connection that cannot be set up is bad usage, exit 2") {
  Harness h;
  h.args_connect_error = Status::InvalidArgument("give --tls-ca ..., or --insecure");
  CHECK(h.Run({"jobs"}) == kExitUsage);
  CHECK(h.err.str().find("sluicectl: give --tls-ca ..., or --insecure\n") == 0);
  CHECK(h.coordinator.calls.empty());
}

}  // namespace
}  // namespace sluice::cli
