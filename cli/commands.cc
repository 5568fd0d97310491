#include "cli/commands.h"

#include <simdjson.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ostream>
#include <sstream>

#include "cli/format.h"
#include "common/file_util.h"
#include "jobspec/job_loader.h"
#include "worker/engine/time_util.h"

namespace sluice::cli {

namespace {

// A job file is YAML of a few kilobytes; gRPC's default message limit is 4 MB.
constexpr size_t kMaxJobFileBytes = 1 << 20;
constexpr double kMaxTimeoutSeconds = 86'400;

// The parsed command line.
struct Args {
  std::string coordinator;
  bool json = false;
  double timeout_s = 10;
  std::string job;
  std::string file;
  bool drain = false;
  std::string start_at;  // submit --start-at (when given)
  ClientSecurityFlags security;
};

// Where one command prints, and how.
struct Output {
  std::ostream& out;
  std::ostream& err;
  const std::string& coordinator;
  bool json;
  int64_t now_ms;
};

int PrintError(const Status& status, const Output& o) {
  const std::string& detail = status.message().empty() ? status.ToString() : status.message();
  if (status.code() == StatusCode::kUnavailable) {
    o.err << "sluicectl: cannot reach the coordinator at " << o.coordinator << ": " << detail
          << "\n";
  } else {
    o.err << "sluicectl: " << detail << "\n";
  }
  return kExitFailed;
}

// Prints the answer to one call: the error, the message as JSON, or `text`.
template <typename Response, typename TextFn>
int Print(const Status& status, const Response& response, const Output& o, TextFn text) {
  if (!status.ok()) return PrintError(status, o);
  if (o.json) {
    Result<std::string> json = ToJsonLine(response);
    if (!json.ok()) return PrintError(json.status(), o);
    o.out << *json << "\n";
  } else {
    o.out << text(response, o.now_ms);
  }
  o.out.flush();
  return kExitOk;
}

std::string JobLine(const proto::JobInfo& job, int64_t now_ms) {
  return FormatJobLine(job, now_ms) + "\n";
}

// How a usage error reads: the error, then the usage of the command it is in
// (app->help() on sluicectl shows the help of the command being parsed, named
// "sluicectl status"). CLI::FailureMessage::help, but in sluicectl's voice
// rather than "ERROR: RequiredError: ...".
std::string UsageFailure(const CLI::App* app, const CLI::Error& e) {
  return std::string("sluicectl: ") + e.what() + "\n" + app->help();
}

// A usage error found after parsing.
int UsageError(const CLI::App& app, const std::string& message, std::ostream& err) {
  err << "sluicectl: " << message << "\n" << app.help();
  return kExitUsage;
}

}  // namespace

Result<std::string> ReadJobFile(const std::string& path) {
  // At most one byte past the limit: /dev/zero or a huge file stops there.
  Result<std::string> read = ReadFileUpTo(path, kMaxJobFileBytes + 1);
  if (!read.ok()) return Status::IoError("cannot read " + path + ": " + read.status().message());
  std::string text = std::move(read).value();
  if (text.size() > kMaxJobFileBytes) {
    return Status::InvalidArgument(path + ": larger than " +
                                   std::to_string(kMaxJobFileBytes >> 20) +
                                   " MiB; a job file is YAML of a few kilobytes");
  }
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
    return Status::InvalidArgument(path + ": the file is empty; a job file is YAML (JOBS.md)");
  }
  if (text.find('\0') != std::string::npos || !simdjson::validate_utf8(text.data(), text.size())) {
    return Status::InvalidArgument(path +
                                   ": not UTF-8 text (binary, or UTF-16?); a job file is YAML "
                                   "in UTF-8");
  }
  return text;
}

Status CheckCoordinatorAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  const std::string port = colon == std::string::npos ? "" : address.substr(colon + 1);
  const bool digits = !port.empty() && port.size() <= 5 &&
                      port.find_first_not_of("0123456789") == std::string::npos;
  if (colon == 0 || !digits || std::stoi(port) < 1 || std::stoi(port) > 65535) {
    return Status::InvalidArgument(
        "--coordinator: expected HOST:PORT with a port from 1 to "
        "65535, got '" +
        address + "'");
  }
  return Status::Ok();
}

Status ApplyStartAt(const std::string& value, proto::SourceSpec* source) {
  if (value == "earliest") {
    source->set_start(proto::SourceSpec::EARLIEST);
    source->set_start_time_ms(0);
    return Status::Ok();
  }
  if (value == "latest") {
    source->set_start(proto::SourceSpec::LATEST);
    source->set_start_time_ms(0);
    return Status::Ok();
  }
  const std::optional<int64_t> ms = engine::ParseRfc3339Millis(value);
  if (!ms.has_value() || *ms < 0) {
    return Status::InvalidArgument(
        "--start-at: expected earliest, latest or an RFC 3339 time after 1970 like "
        "2024-03-01T12:00:00Z, got '" +
        value + "'");
  }
  source->set_start(proto::SourceSpec::AT_TIME);
  source->set_start_time_ms(*ms);
  return Status::Ok();
}

Status CheckTimeout(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0.001 || seconds > kMaxTimeoutSeconds) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%g", seconds);
    return Status::InvalidArgument("--timeout: expected seconds from 0.001 to " +
                                   std::to_string(static_cast<int>(kMaxTimeoutSeconds)) + ", got " +
                                   buf);
  }
  return Status::Ok();
}

int Run(int argc, const char* const* argv, const Environment& env) {
  std::ostream& out = *env.out;
  std::ostream& err = *env.err;
  Args a;

  CLI::App app{
      "sluicectl: the command-line client of the Sluice coordinator. Submits, updates, stops "
      "and cancels jobs and shows jobs, tasks and workers. Exit codes: 0 done, 1 the "
      "coordinator refused or could not be reached, 2 bad usage.",
      "sluicectl"};
  app.failure_message(UsageFailure);
  // Global flags are also accepted after the command: `sluicectl jobs --json`.
  app.fallthrough();
  app.require_subcommand(1);
  app.add_option("--coordinator", a.coordinator,
                 "Coordinator address HOST:PORT (default: $SLUICE_COORDINATOR, else " +
                     std::string(kDefaultCoordinator) + ")")
      ->default_val(env.default_coordinator);
  app.add_flag("--json", a.json,
               "Print the coordinator's answer as JSON, one object per line, for scripts");
  app.add_option("--timeout", a.timeout_s, "Give up on the coordinator after SECONDS")
      ->check(CLI::PositiveNumber)
      ->default_val(10);
  AddClientSecurityFlags(app, &a.security);

  // Subcommands inherit the failure message and fallthrough, and get this footer.
  app.footer(
      "Global options go before or after the command: --coordinator ADDR, --json, "
      "--timeout SECONDS, --tls-ca FILE, --tls-cert FILE, --tls-key FILE, --insecure, "
      "--token-file FILE. Run 'sluicectl --help' for more.");

  CLI::App* submit =
      app.add_subcommand("submit", "Submit a job file (YAML, see JOBS.md) and print the job");
  submit->add_option("FILE", a.file, "The job file")->required();
  CLI::Option* start_at =
      submit->add_option("--start-at", a.start_at,
                         "Where the new job starts reading, instead of the file's source.start: "
                         "earliest, latest, or an RFC 3339 time (2024-03-01T12:00:00Z: the first "
                         "record at or after it, per partition)");

  CLI::App* jobs = app.add_subcommand("jobs", "List the jobs");

  CLI::App* status = app.add_subcommand(
      "status",
      "Show a job and each of its tasks (partition, worker, offsets, lag, watermark, "
      "last checkpoint, counters)");
  status->add_option("JOB", a.job, "The job's name")->required();

  CLI::App* update = app.add_subcommand(
      "update", "Replace a job's spec with a new job file; tasks restart from their checkpoints");
  update->add_option("JOB", a.job, "The job's name")->required();
  update->add_option("FILE", a.file, "The new job file (YAML)")->required();

  CLI::App* stop =
      app.add_subcommand("stop", "Stop a job: its tasks take a final checkpoint and stop");
  stop->add_flag("--drain", a.drain,
                 "First advance every task's watermark to the end of time and emit every open "
                 "window");
  stop->add_option("JOB", a.job, "The job's name")->required();

  CLI::App* cancel = app.add_subcommand(
      "cancel", "Cancel a job and print its state as the coordinator reports it");
  cancel->add_option("JOB", a.job, "The job's name")->required();

  CLI::App* workers = app.add_subcommand("workers", "List the workers");
  app.footer("");  // sluicectl's own help lists the global options already

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (app.get_subcommands().empty()) {
      // CLI11 would say "A subcommand is required" for `sluicectl frobnicate`.
      for (const std::string& arg : app.remaining()) {
        if (!arg.empty() && arg[0] != '-') {
          return UsageError(app, "unknown command '" + arg + "'", err);
        }
      }
      // ... and the same for `sluicectl --bogus`.
      for (const std::string& arg : app.remaining()) {
        if (arg.size() > 1 && arg[0] == '-') {
          return UsageError(app, "unknown option '" + arg + "'", err);
        }
      }
    }
    // --help prints to `out` and succeeds; any other error prints to `err`.
    return app.exit(e, out, err) == 0 ? kExitOk : kExitUsage;
  }

  for (const Status& s : {CheckCoordinatorAddress(a.coordinator), CheckTimeout(a.timeout_s)}) {
    if (!s.ok()) return UsageError(app, s.message(), err);
  }
  CLI::App* command = app.get_subcommands().front();
  std::string yaml;
  if (command == submit || command == update) {
    Result<std::string> text = ReadJobFile(a.file);
    if (!text.ok()) return UsageError(app, text.status().message(), err);
    yaml = std::move(text).value();
  }

  // --start-at: the file is loaded here and sent as a spec with its start
  // replaced. A bad value is bad usage; a bad file is refused as the
  // coordinator would refuse it. Nothing is sent in either case.
  std::optional<proto::JobSpec> spec;
  if (command == submit && start_at->count() > 0) {
    proto::SourceSpec start;
    if (Status s = ApplyStartAt(a.start_at, &start); !s.ok()) {
      return UsageError(app, s.message(), err);
    }
    Result<proto::JobSpec> loaded = jobspec::ParseJobYaml(yaml, a.file);
    if (!loaded.ok()) {
      err << "sluicectl: " << loaded.status().message() << "\n";
      return kExitFailed;
    }
    spec = std::move(loaded).value();
    spec->mutable_source()->set_start(start.start());
    spec->mutable_source()->set_start_time_ms(start.start_time_ms());
  }

  const auto timeout =
      std::chrono::milliseconds(std::max<int64_t>(1, std::llround(a.timeout_s * 1000)));
  if (a.security.token_file.empty()) a.security.token = env.default_token;
  Result<std::unique_ptr<JobClient>> connected =
      env.connect(ConnectOptions{a.coordinator, timeout, a.security});
  if (!connected.ok()) return UsageError(app, connected.status().message(), err);
  std::unique_ptr<JobClient> client = std::move(connected).value();
  const Output o{out, err, a.coordinator, a.json, env.clock->NowMillis()};

  if (command == submit) {
    proto::SubmitJobRequest request;
    if (spec.has_value()) {
      *request.mutable_spec() = *spec;
    } else {
      request.set_yaml(yaml);
    }
    request.set_filename(a.file);
    proto::JobInfo response;
    Status st = client->SubmitJob(request, &response);
    return Print(st, response, o, JobLine);
  }
  if (command == jobs) {
    proto::ListJobsResponse response;
    Status st = client->ListJobs(proto::ListJobsRequest(), &response);
    return Print(st, response, o, FormatJobsTable);
  }
  if (command == status) {
    proto::JobRef request;
    request.set_name(a.job);
    proto::JobStatus response;
    Status st = client->GetJob(request, &response);
    return Print(st, response, o, FormatJobStatus);
  }
  if (command == update) {
    proto::UpdateJobRequest request;
    request.set_name(a.job);
    request.set_yaml(yaml);
    request.set_filename(a.file);
    proto::JobInfo response;
    Status st = client->UpdateJob(request, &response);
    return Print(st, response, o, JobLine);
  }
  if (command == stop) {
    proto::StopJobRequest request;
    request.set_name(a.job);
    request.set_drain(a.drain);
    proto::JobInfo response;
    Status st = client->StopJob(request, &response);
    return Print(st, response, o, JobLine);
  }
  if (command == cancel) {
    proto::JobRef request;
    request.set_name(a.job);
    proto::JobInfo response;
    Status st = client->CancelJob(request, &response);
    return Print(st, response, o, JobLine);
  }
  if (command == workers) {
    proto::ListWorkersResponse response;
    Status st = client->ListWorkers(proto::ListWorkersRequest(), &response);
    return Print(st, response, o, FormatWorkersTable);
  }
  return UsageError(app, "unknown command " + command->get_name(), err);
}

}  // namespace sluice::cli
