#pragma once

// HttpServer: the daemons' small HTTP endpoint (Boost.Beast on its own Asio
// io_context thread), serving GET /metrics in the Prometheus text format and
// GET /healthz. The metrics text and the health come from callbacks, called
// on the server thread for each request; they must be thread-safe. /healthz
// answers 200 "ok" when the health callback (if any) returns ok, else 503
// "not ready: <reason>".

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace sluice {

class HttpServer {
 public:
  using MetricsFn = std::function<std::string()>;
  using HealthFn = std::function<Status()>;

  ~HttpServer();

  // Listens on host:port (port 0: any free port) and serves until destroyed.
  static Result<std::unique_ptr<HttpServer>> Start(const std::string& host, int port,
                                                   MetricsFn metrics, HealthFn health = {});
  int port() const;
  // Connections that could not be accepted (e.g. out of file descriptors);
  // the server goes on accepting. Also in /metrics.
  int64_t accept_errors() const;

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Appends one Prometheus sample line: name{k="v",...} value.
void AppendMetric(std::string* out, const std::string& name,
                  const std::vector<std::pair<std::string, std::string>>& labels, double value);

}  // namespace sluice
