// sluice-devbroker: a Kafka broker for tests and one-machine demos, built on
// librdkafka's in-memory mock cluster. Prints its addresses, optionally
// forwards a fixed port (9092) to the first mock broker, serves a line-based
// fault-injection port, and runs until SIGTERM or SIGINT.
//
// Wiring only: MockCluster owns the cluster, TcpForwarder the fixed port,
// ControlServer + ControlCommands the control port. See README.md.

#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common/logging.h"
#include "common/status.h"
#include "common/stop_signals.h"
#include "tools/devbroker/control_commands.h"
#include "tools/devbroker/control_server.h"
#include "tools/devbroker/mock_cluster.h"
#include "tools/devbroker/tcp_forwarder.h"

namespace {

using sluice::Result;
using sluice::Status;
using sluice::devbroker::ControlCommands;
using sluice::devbroker::ControlServer;
using sluice::devbroker::MockCluster;
using sluice::devbroker::TcpForwarder;

struct TopicSpec {
  std::string name;
  int partitions = 0;
};

Result<TopicSpec> ParseTopicSpec(const std::string& spec) {
  size_t colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::InvalidArgument("--topic wants NAME:PARTITIONS, got '" + spec + "'");
  }
  TopicSpec t{spec.substr(0, colon), 0};
  const char* begin = spec.data() + colon + 1;
  const char* end = spec.data() + spec.size();
  auto [used, ec] = std::from_chars(begin, end, t.partitions);
  if (ec != std::errc() || used != end) {
    return Status::InvalidArgument("--topic " + spec + ": PARTITIONS must be an integer");
  }
  if (t.partitions < 1) {
    return Status::InvalidArgument("--topic " + spec + ": PARTITIONS must be at least 1");
  }
  return t;
}

// Writes `contents` to `path` atomically: readers see no file or all of it.
Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << contents;
    out.flush();
    if (!out) return Status::IoError("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::IoError("cannot rename " + tmp + " to " + path);
  }
  return Status::Ok();
}

constexpr char kFooter[] = R"(
Output (stdout, one line each, flushed; the same lines go to --bootstrap-file,
which appears only once everything is up):
  bootstrap=127.0.0.1:PORT[,127.0.0.1:PORT...]   bootstrap.servers of the mock brokers
  control=127.0.0.1:PORT                         the control port
  listening=127.0.0.1:P                          the fixed --port forwarder (if --port != 0)

Control port: connect with TCP, send one command per line, read one reply line,
"ok" or "error <reason>". Commands:
)"
                           "%COMMANDS%"
                           R"(
Topics: --topic and create-topic make topics with the given partitions.
Topics a client asks for in a metadata request (a producer sending to a new
topic) are auto-created with 4 partitions, the mock's fixed default (the
2.0.2 API has no setting for it, so there is no --default-partitions).

Known limits of the packaged mock (librdkafka 2.0.2):
  - in memory only; everything is lost on exit
  - keeps about 5 MB per partition; older batches are dropped, so stream
    rather than preload large volumes
  - does not store offsets sent with send_offsets_to_transaction
  - does not fence a second producer with the same transactional.id

Stops cleanly (exit 0) on SIGTERM or SIGINT.)";

std::string Footer() {
  std::string f = kFooter;
  f.replace(f.find("%COMMANDS%"), 10, ControlCommands::Usage());
  return f;
}

int Fail(const std::string& what, const Status& st) {
  std::cerr << "sluice-devbroker: " << what << ": " << st.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sluice-devbroker: an in-memory Kafka broker (librdkafka mock cluster) for tests and\n"
      "demos on one machine, with a control port for fault injection."};
  int brokers = 1;
  int port = 9092;
  int control_port = 0;
  std::vector<std::string> topic_flags;
  std::string bootstrap_file;
  std::string log_level = "info";
  std::string rdkafka_debug;
  app.add_option("--brokers", brokers, "Number of mock brokers (ids 1..N)")
      ->default_val(1)
      ->check(CLI::Range(1, 64));
  app.add_option("--port", port,
                 "Fixed bootstrap port on 127.0.0.1, forwarded to broker 1; 0 = none "
                 "(use the printed bootstrap address)")
      ->default_val(9092)
      ->check(CLI::Range(0, 65535));
  app.add_option("--topic", topic_flags,
                 "NAME:PARTITIONS, a topic to create at start (replication 1); repeatable")
      ->take_all();
  app.add_option("--control-port", control_port,
                 "Control port on 127.0.0.1 for fault injection; 0 = ephemeral (printed)")
      ->default_val(0)
      ->check(CLI::Range(0, 65535));
  app.add_option("--bootstrap-file", bootstrap_file,
                 "Write the output lines to FILE (via FILE.tmp + rename) once ready; "
                 "removed again on clean exit");
  app.add_option("--log-level", log_level, "stderr log level")
      ->default_val("info")
      ->check(CLI::IsMember(sluice::LogLevels()));
  app.add_option("--rdkafka-debug", rdkafka_debug,
                 "librdkafka debug contexts for the mock, e.g. mock,protocol (logged at debug)");
  app.footer(Footer());
  app.failure_message(CLI::FailureMessage::help);
  CLI11_PARSE(app, argc, argv);

  std::vector<TopicSpec> topics;
  for (const std::string& spec : topic_flags) {
    Result<TopicSpec> t = ParseTopicSpec(spec);
    if (!t.ok()) {
      std::cerr << "sluice-devbroker: " << t.status().message() << "\n\n" << app.help();
      return 2;
    }
    topics.push_back(*t);
  }

  sluice::SetUpLogging("devbroker", log_level);
  if (!rdkafka_debug.empty() && spdlog::get_level() > spdlog::level::debug) {
    spdlog::set_level(spdlog::level::debug);
  }

  // Block the stop signals before any thread starts (librdkafka's included),
  // so only the sigwait() below receives them. Peers hanging up must not kill us.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  if (!sluice::SigintIgnored()) sigaddset(&stop_signals, SIGINT);  // see stop_signals.h
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Result<std::unique_ptr<MockCluster>> cluster = MockCluster::Create(brokers, rdkafka_debug);
  if (!cluster.ok()) return Fail("starting the mock cluster", cluster.status());
  for (const TopicSpec& t : topics) {
    Status st = (*cluster)->CreateTopic(t.name, t.partitions);
    if (!st.ok()) return Fail("creating topic " + t.name, st);
    spdlog::info("topic {} with {} partition(s)", t.name, t.partitions);
  }

  std::unique_ptr<TcpForwarder> forwarder;
  if (port != 0) {
    Result<std::unique_ptr<TcpForwarder>> f =
        TcpForwarder::Start(static_cast<uint16_t>(port), (*cluster)->FirstBroker());
    if (!f.ok()) {
      return Fail("cannot listen on --port " + std::to_string(port) +
                      " (pass --port 0 for no fixed port, or another port)",
                  f.status());
    }
    forwarder = std::move(*f);
  }

  Result<std::unique_ptr<ControlServer>> control = ControlServer::Start(
      static_cast<uint16_t>(control_port), std::make_unique<ControlCommands>(**cluster));
  if (!control.ok()) {
    return Fail("cannot listen on --control-port " + std::to_string(control_port),
                control.status());
  }

  std::string lines = "bootstrap=" + (*cluster)->bootstraps() + "\n" +
                      "control=127.0.0.1:" + std::to_string((*control)->port()) + "\n";
  if (forwarder) lines += "listening=127.0.0.1:" + std::to_string(forwarder->port()) + "\n";
  std::cout << lines << std::flush;
  if (!bootstrap_file.empty()) {
    Status st = WriteFileAtomically(bootstrap_file, lines);
    if (!st.ok()) return Fail("writing --bootstrap-file", st);
  }
  spdlog::info("ready: {} broker(s) at {}, control port {}{}", brokers, (*cluster)->bootstraps(),
               (*control)->port(),
               forwarder ? ", forwarding 127.0.0.1:" + std::to_string(forwarder->port()) : "");

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  spdlog::info("signal {}: shutting down", sig);

  (*control)->Stop();
  if (forwarder) forwarder->Stop();
  cluster.value().reset();  // destroys the mock cluster and its handle
  if (!bootstrap_file.empty()) {
    std::error_code ec;
    std::filesystem::remove(bootstrap_file, ec);
  }
  spdlog::info("stopped");
  return 0;
}
