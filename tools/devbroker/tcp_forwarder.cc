#include "tools/devbroker/tcp_forwarder.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sluice::devbroker {

Result<std::unique_ptr<TcpForwarder>> TcpForwarder::Start(uint16_t port, std::string upstream) {
  SLUICE_ASSIGN_OR_RETURN(UniqueFd listener, ListenLoopback(port));
  SLUICE_ASSIGN_OR_RETURN(uint16_t bound, LocalPort(listener.get()));
  SLUICE_ASSIGN_OR_RETURN(WakePipe wake, WakePipe::Create());
  std::unique_ptr<TcpForwarder> fwd(
      new TcpForwarder(std::move(listener), bound, std::move(wake), std::move(upstream)));
  fwd->accept_thread_ = std::thread([f = fwd.get()] { f->AcceptLoop(); });
  return fwd;
}

TcpForwarder::TcpForwarder(UniqueFd listener, uint16_t port, WakePipe wake, std::string upstream)
    : listener_(std::move(listener)),
      port_(port),
      wake_(std::move(wake)),
      upstream_(std::move(upstream)) {}

TcpForwarder::~TcpForwarder() { Stop(); }

void TcpForwarder::Stop() {
  if (!accept_thread_.joinable()) return;
  wake_.Notify();
  accept_thread_.join();
  // No new connections now. Wake every splice loop and blocked send().
  std::lock_guard lock(mu_);
  for (Connection& c : connections_) {
    ::shutdown(c.client.get(), SHUT_RDWR);
    ::shutdown(c.upstream.get(), SHUT_RDWR);
  }
  for (Connection& c : connections_) c.thread.join();
  connections_.clear();
}

void TcpForwarder::ReapFinished() {
  std::lock_guard lock(mu_);
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->done.load()) {
      it->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void TcpForwarder::AcceptLoop() {
  for (;;) {
    pollfd fds[2] = {{wake_.read_fd(), POLLIN, 0}, {listener_.get(), POLLIN, 0}};
    // Wakes now and then to close finished connections even when idle.
    int n = ::poll(fds, 2, 5000);
    if (n < 0 && errno != EINTR) {
      spdlog::error("forwarder: poll failed: {}", std::strerror(errno));
      return;
    }
    if (fds[0].revents != 0) return;  // Stop()
    ReapFinished();
    if (n <= 0 || !(fds[1].revents & POLLIN)) continue;
    UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client.valid()) {
      if (errno != EINTR && errno != EAGAIN) {
        spdlog::warn("forwarder: accept failed: {}", std::strerror(errno));
      }
      continue;
    }
    Result<UniqueFd> upstream = ConnectTcp(upstream_);
    if (!upstream.ok()) {
      spdlog::warn("forwarder: {} (closing client connection)", upstream.status().message());
      continue;
    }
    spdlog::debug("forwarder: connection on port {} -> {}", port_, upstream_);
    std::lock_guard lock(mu_);
    Connection& c = connections_.emplace_back();
    c.client = std::move(client);
    c.upstream = std::move(*upstream);
    c.thread = std::thread(&TcpForwarder::Splice, &c);
  }
}

void TcpForwarder::Splice(Connection* conn) {
  char buf[64 * 1024];
  pollfd fds[2] = {{conn->client.get(), POLLIN, 0}, {conn->upstream.get(), POLLIN, 0}};
  bool open = true;
  while (open) {
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2 && open; ++i) {
      if (fds[i].revents == 0) continue;
      ssize_t got = ::recv(fds[i].fd, buf, sizeof(buf), 0);
      if (got < 0 && errno == EINTR) continue;
      // EOF or error on either side ends both: Kafka clients do not half-close.
      if (got <= 0 || !WriteAll(fds[1 - i].fd, buf, static_cast<size_t>(got)).ok()) open = false;
    }
  }
  ::shutdown(conn->client.get(), SHUT_RDWR);
  ::shutdown(conn->upstream.get(), SHUT_RDWR);
  conn->done.store(true);
}

}  // namespace sluice::devbroker
