#pragma once

// TcpForwarder: accepts on 127.0.0.1:port and splices bytes both ways between
// each accepted connection and a fixed upstream (the mock's first broker).
//
// Why only the bootstrap needs it: a Kafka client's first connection fetches
// metadata, in which every broker advertises its own 127.0.0.1:ephemeral
// address; later connections go there directly. So a well-known port (9092)
// only has to reach one live broker.
//
// Threads: one accept thread, plus one thread per connection running a poll()
// loop over its two sockets. Stop() (or the destructor) wakes and joins all of
// them. If the upstream refuses (broker down), the client connection is closed
// and the client retries, as it would against a real broker.

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "tools/devbroker/socket_util.h"

namespace sluice::devbroker {

class TcpForwarder {
 public:
  // Binds 127.0.0.1:`port` and forwards to `upstream` ("host:port"). Fails
  // with a readable Status when the port is taken.
  static Result<std::unique_ptr<TcpForwarder>> Start(uint16_t port, std::string upstream);
  ~TcpForwarder();
  TcpForwarder(const TcpForwarder&) = delete;
  TcpForwarder& operator=(const TcpForwarder&) = delete;

  uint16_t port() const { return port_; }
  void Stop();

 private:
  // One forwarded connection. Its thread never closes the sockets; whoever
  // joins the thread does, so Stop() can shutdown() them without racing a
  // reused descriptor number.
  struct Connection {
    UniqueFd client;
    UniqueFd upstream;
    std::thread thread;
    std::atomic<bool> done{false};
  };

  TcpForwarder(UniqueFd listener, uint16_t port, WakePipe wake, std::string upstream);
  void AcceptLoop();
  void ReapFinished();
  static void Splice(Connection* conn);

  UniqueFd listener_;
  uint16_t port_;
  WakePipe wake_;
  std::string upstream_;
  std::thread accept_thread_;
  std::mutex mu_;  // guards connections_
  std::list<Connection> connections_;
};

}  // namespace sluice::devbroker
