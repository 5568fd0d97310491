#pragma once

// Small POSIX socket helpers for the devbroker's loopback listeners: an owning
// file descriptor, a listener bound to 127.0.0.1, and a blocking write of a
// whole buffer. Errors come back as Status; nothing here throws.

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace sluice::devbroker {

// Owns one file descriptor and closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release();
  void Reset();

 private:
  int fd_ = -1;
};

// A listening TCP socket on 127.0.0.1:`port` (0 picks an ephemeral port).
// SO_REUSEADDR is set, so a port left in TIME_WAIT can be reused but a port
// another process listens on fails with "address already in use".
Result<UniqueFd> ListenLoopback(uint16_t port);

// The local port a bound socket has.
Result<uint16_t> LocalPort(int fd);

// Connects to "host:port" (IPv4 literal or resolvable name), blocking.
Result<UniqueFd> ConnectTcp(const std::string& host_port);

// Writes all of `data`, retrying on short writes and EINTR. Never raises
// SIGPIPE. Fails once the peer is gone.
Status WriteAll(int fd, const char* data, size_t size);

// A pipe used to wake a poll() loop from another thread: poll read_fd(),
// call Notify() to wake it.
class WakePipe {
 public:
  static Result<WakePipe> Create();
  int read_fd() const { return read_.get(); }
  void Notify() const;

 private:
  UniqueFd read_;
  UniqueFd write_;
};

}  // namespace sluice::devbroker
