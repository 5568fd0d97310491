#include "tools/devbroker/control_server.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

namespace sluice::devbroker {

namespace {
// A line longer than this is not a command; the client is dropped.
constexpr size_t kMaxLine = 4096;

struct Client {
  UniqueFd fd;
  std::string buffer;  // bytes read, not yet a full line
};
}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::Start(
    uint16_t port, std::unique_ptr<ControlCommands> commands) {
  SLUICE_ASSIGN_OR_RETURN(UniqueFd listener, ListenLoopback(port));
  SLUICE_ASSIGN_OR_RETURN(uint16_t bound, LocalPort(listener.get()));
  SLUICE_ASSIGN_OR_RETURN(WakePipe wake, WakePipe::Create());
  std::unique_ptr<ControlServer> server(
      new ControlServer(std::move(listener), bound, std::move(wake), std::move(commands)));
  server->thread_ = std::thread([s = server.get()] { s->Run(); });
  return server;
}

ControlServer::ControlServer(UniqueFd listener, uint16_t port, WakePipe wake,
                             std::unique_ptr<ControlCommands> commands)
    : listener_(std::move(listener)),
      port_(port),
      wake_(std::move(wake)),
      commands_(std::move(commands)) {}

ControlServer::~ControlServer() { Stop(); }

void ControlServer::Stop() {
  if (!thread_.joinable()) return;
  wake_.Notify();
  thread_.join();
}

void ControlServer::Run() {
  std::vector<Client> clients;
  std::vector<pollfd> fds;
  for (;;) {
    int timeout_ms = -1;
    if (auto deadline = commands_->NextDeadline()) {
      auto left =
          std::chrono::ceil<std::chrono::milliseconds>(*deadline - ControlCommands::Clock::now());
      timeout_ms = static_cast<int>(std::clamp<int64_t>(left.count(), 0, 60'000));
    }
    fds.clear();
    fds.push_back({wake_.read_fd(), POLLIN, 0});
    fds.push_back({listener_.get(), POLLIN, 0});
    for (const Client& c : clients) fds.push_back({c.fd.get(), POLLIN, 0});
    int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) {
      spdlog::error("control: poll failed: {}", std::strerror(errno));
      return;
    }
    commands_->RunDue(ControlCommands::Clock::now());
    if (n <= 0) continue;
    if (fds[0].revents != 0) return;  // Stop()

    // Serve clients first: `fds` indexes match `clients` before new ones are added.
    std::vector<bool> drop(clients.size(), false);
    for (size_t i = 0; i < clients.size(); ++i) {
      if (fds[i + 2].revents == 0) continue;
      Client& c = clients[i];
      char buf[1024];
      ssize_t got = ::recv(c.fd.get(), buf, sizeof(buf), 0);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        drop[i] = true;
        continue;
      }
      c.buffer.append(buf, static_cast<size_t>(got));
      size_t nl;
      while (!drop[i] && (nl = c.buffer.find('\n')) != std::string::npos) {
        std::string line = c.buffer.substr(0, nl);
        c.buffer.erase(0, nl + 1);
        std::string reply = commands_->Execute(line, ControlCommands::Clock::now()) + "\n";
        if (!WriteAll(c.fd.get(), reply.data(), reply.size()).ok()) drop[i] = true;
      }
      if (c.buffer.size() > kMaxLine) {
        static constexpr char kTooLong[] = "error line too long\n";
        WriteAll(c.fd.get(), kTooLong, sizeof(kTooLong) - 1).IgnoreError();
        drop[i] = true;
      }
    }
    for (size_t i = clients.size(); i-- > 0;) {
      if (drop[i]) clients.erase(clients.begin() + static_cast<ptrdiff_t>(i));
    }

    if (fds[1].revents & POLLIN) {
      UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (fd.valid()) {
        clients.push_back(Client{std::move(fd), {}});
      } else if (errno != EINTR && errno != EAGAIN) {
        spdlog::warn("control: accept failed: {}", std::strerror(errno));
      }
    }
  }
}

}  // namespace sluice::devbroker
