#pragma once

// What the daemons (worker, coordinator) share on their command line:
// --log-level, --metrics-port and --metrics-address, usage on a bad flag, and
// starting the metrics endpoint when asked for.

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "common/http_server.h"
#include "common/status.h"

namespace sluice {

struct DaemonFlags {
  std::string log_level = "info";
  int metrics_port = -1;  // -1: no metrics endpoint
  std::string metrics_address = "0.0.0.0";
};

// Adds --metrics-port (what it serves: `metrics_help`), --metrics-address
// and --log-level to `app`, and makes a bad flag print the error and the
// usage.
void AddDaemonFlags(CLI::App& app, DaemonFlags* flags, const std::string& metrics_help);

// Serves /metrics and /healthz (read-only) at flags.metrics_address and
// flags.metrics_port, or returns nullptr when it is off. Logs the port.
Result<std::unique_ptr<HttpServer>> StartMetrics(const DaemonFlags& flags,
                                                 HttpServer::MetricsFn metrics,
                                                 HttpServer::HealthFn health = {});

}  // namespace sluice
