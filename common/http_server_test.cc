#include "common/http_server.h"

#include <boost/asio.hpp>
#include <catch2/catch.hpp>

namespace sluice {
namespace {

// A plain HTTP/1.0 GET over a socket; returns the whole response.
std::string Get(int port, const std::string& path) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: x\r\n\r\n";
  boost::asio::write(socket, boost::asio::buffer(request));
  std::string response;
  boost::system::error_code ec;
  char buf[4096];
  while (size_t n = socket.read_some(boost::asio::buffer(buf), ec)) response.append(buf, n);
  return response;
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

TEST_CASE("a port in use is a clear error") {
  auto first = HttpServer::Start("127.0.0.1", 0, [] { return std::string(); });
  REQUIRE(first.ok());
  auto second = HttpServer::Start("127.0.0.1", (*first)->port(), [] { return std::string(); });
  REQUIRE_FALSE(second.ok());
  REQUIRE(second.status().message().find("cannot serve metrics on 127.0.0.1:") == 0);
}

}  // namespace
}  // namespace sluice
