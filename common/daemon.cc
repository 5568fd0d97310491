#include "common/daemon.h"

#include <spdlog/spdlog.h>

#include "common/logging.h"

namespace sluice {

void AddDaemonFlags(CLI::App& app, DaemonFlags* flags, const std::string& metrics_help) {
  app.add_option("--metrics-port", flags->metrics_port,
                 "Serve /metrics (Prometheus: " + metrics_help +
                     ") and /healthz on this port, read-only (0: any free port; default: off)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--metrics-address", flags->metrics_address,
                 "The address --metrics-port listens on: 127.0.0.1 for this host only")
      ->default_val("0.0.0.0");
  app.add_option("--log-level", flags->log_level, "trace, debug, info, warn, error")
      ->default_val("info")
      ->check(CLI::IsMember(LogLevels()));
  app.failure_message(CLI::FailureMessage::help);
}

Result<std::unique_ptr<HttpServer>> StartMetrics(const DaemonFlags& flags,
                                                 HttpServer::MetricsFn metrics,
                                                 HttpServer::HealthFn health) {
  if (flags.metrics_port < 0) return std::unique_ptr<HttpServer>();
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<HttpServer> server,
                          HttpServer::Start(flags.metrics_address, flags.metrics_port,
                                            std::move(metrics), std::move(health)));
  spdlog::info("metrics on {}:{}", flags.metrics_address, server->port());
  return server;
}

}  // namespace sluice
