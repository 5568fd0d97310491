#pragma once

// ControlServer: a line-based TCP server on 127.0.0.1 that feeds each line to
// ControlCommands and writes back its reply line. Any number of clients may be
// connected; one thread runs a poll() loop over the listener, the clients and
// the ControlCommands deadline (so "down-for" never blocks the loop).
//
// Lifetime: Start() binds and spawns the thread; Stop() (or the destructor)
// wakes it and joins. The MockCluster behind `commands` must outlive Stop().

#include <cstdint>
#include <memory>
#include <thread>

#include "common/status.h"
#include "tools/devbroker/control_commands.h"
#include "tools/devbroker/socket_util.h"

namespace sluice::devbroker {

class ControlServer {
 public:
  // Binds 127.0.0.1:`port` (0: ephemeral) and starts serving `commands`.
  static Result<std::unique_ptr<ControlServer>> Start(uint16_t port,
                                                      std::unique_ptr<ControlCommands> commands);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  uint16_t port() const { return port_; }
  void Stop();

 private:
  ControlServer(UniqueFd listener, uint16_t port, WakePipe wake,
                std::unique_ptr<ControlCommands> commands);
  void Run();

  UniqueFd listener_;
  uint16_t port_;
  WakePipe wake_;
  std::unique_ptr<ControlCommands> commands_;
  std::thread thread_;
};

}  // namespace sluice::devbroker
