#include "common/http_server.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>
#include <vector>

namespace sluice {
namespace {

// Sends `request` as is over a new connection; returns the whole response.
std::string Send(int port, const std::string& request) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
  // A server that never answers fails the test instead of hanging it.
  timeval timeout{5, 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  boost::asio::write(socket, boost::asio::buffer(request));
  std::string response;
  boost::system::error_code ec;
  char buf[4096];
  while (size_t n = socket.read_some(boost::asio::buffer(buf), ec)) response.append(buf, n);
  return response;
}

// A plain HTTP/1.0 GET; returns the whole response.
std::string Get(int port, const std::string& path) {
  return Send(port, "GET " + path + " HTTP/1.0\r\nHost: x\r\n\r\n");
}

TEST_CASE("the HTTP endpoint serves metrics and health, 404 otherwise") {
  int calls = 0;
  auto server = HttpServer::Start("127.0.0.1", 0, [&] {
    ++calls;
    std::string out;
    AppendMetric(&out, "sluice_test_total", {{"job", "fr\"aud"}, {"partition", "3"}}, 42);
    return out;
  });
  REQUIRE(server.ok());
  const int port = (*server)->port();
  REQUIRE(port > 0);
  std::string metrics = Get(port, "/metrics");
  REQUIRE(metrics.find("200 OK") != std::string::npos);
  REQUIRE(metrics.find("sluice_test_total{job=\"fr\\\"aud\",partition=\"3\"} 42\n") !=
          std::string::npos);
  REQUIRE(Get(port, "/healthz").find("\r\n\r\nok\n") != std::string::npos);
  REQUIRE(Get(port, "/nope").find("404") != std::string::npos);
  REQUIRE(calls == 1);
}

TEST_CASE("/healthz answers 503 with the reason while the health callback says not ready") {
  std::atomic<bool> healthy{false};
  auto server = HttpServer::Start(
      "127.0.0.1", 0, [] { return std::string(); },
      [&] { return healthy.load() ? Status::Ok() : Status::Unavailable("task fraud-3 FAILED"); });
  REQUIRE(server.ok());
  const int port = (*server)->port();
  const std::string sick = Get(port, "/healthz");
  CHECK(sick.find("503") != std::string::npos);
  CHECK(sick.find("\r\n\r\nnot ready: task fraud-3 FAILED\n") != std::string::npos);
  healthy.store(true);
  CHECK(Get(port, "/healthz").find("200 OK\r\n") != std::string::npos);
}

TEST_CASE("a malformed request gets 400, headers too large get 431, and the server goes on") {
  auto server = HttpServer::Start("127.0.0.1", 0, [] { return std::string(); });
  REQUIRE(server.ok());
  const int port = (*server)->port();
  CHECK(Send(port, "NOT HTTP AT ALL\r\n\r\n").find("HTTP/1.1 400 Bad Request") == 0);
  CHECK(Send(port, "GET /metrics HTTP/1.1\r\nHost x\r\n\r\n").find("400") != std::string::npos);
  const std::string huge =
      "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(16'000, 'a') + "\r\n\r\n";
  CHECK(Send(port, huge).find("HTTP/1.1 431 Request Header Fields Too Large") == 0);
  CHECK(Get(port, "/healthz").find("\r\n\r\nok\n") != std::string::npos);
}

TEST_CASE("a port in use is a clear error") {
  auto first = HttpServer::Start("127.0.0.1", 0, [] { return std::string(); });
  REQUIRE(first.ok());
  auto second = HttpServer::Start("127.0.0.1", (*first)->port(), [] { return std::string(); });
  REQUIRE_FALSE(second.ok());
  REQUIRE(second.status().message().find("cannot serve metrics on 127.0.0.1:") == 0);
}

TEST_CASE("the endpoint goes on serving after running out of file descriptors") {
  // The sanitizers' runtimes need descriptors too (UBSan probes memory through
  // a pipe, TSan starts its symbolizer), so nothing is logged while they are
  // gone: the logger is used once here, before the server's thread exists,
  // and silenced below.
  spdlog::warn("http_server_test: running this process out of file descriptors on purpose");
  auto server = HttpServer::Start("127.0.0.1", 0, [] { return std::string(); });
  REQUIRE(server.ok());
  const int port = (*server)->port();
  const int client = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(client >= 0);

  // No file descriptor left in this process: the limit at the highest one
  // open, and every free one below it taken.
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
  std::vector<int> fillers;
  int highest = client;
  for (int fd = 0; fd < 4096; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1) highest = fd;
  }
  rlimit tight = old;
  tight.rlim_cur = static_cast<rlim_t>(highest + 1);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &tight) == 0);
  const spdlog::level::level_enum level = spdlog::get_level();
  spdlog::set_level(spdlog::level::off);
  for (int fd; (fd = ::open("/dev/null", O_RDONLY)) >= 0;) fillers.push_back(fd);

  // A connection the kernel completes and the server cannot accept.
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((*server)->accept_errors() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const int64_t errors = (*server)->accept_errors();

  for (int fd : fillers) ::close(fd);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &old) == 0);
  spdlog::set_level(level);
  ::close(client);
  REQUIRE(errors > 0);
  // Descriptors are back: the server accepts again, and says what happened.
  REQUIRE(Get(port, "/healthz").find("\r\n\r\nok\n") != std::string::npos);
  const std::string metrics = Get(port, "/metrics");
  REQUIRE(metrics.find("sluice_http_accept_errors_total ") != std::string::npos);
  REQUIRE(metrics.find("sluice_http_accept_errors_total 0\n") == std::string::npos);
}

}  // namespace
}  // namespace sluice
