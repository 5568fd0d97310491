#include "common/http_server.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <thread>

namespace sluice {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// One connection: read a request, answer it, until the peer closes. A request
// that does not parse gets 400 (431 for headers over Beast's 8 KB limit) and
// the connection is closed.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const HttpServer::MetricsFn& metrics,
          const HttpServer::HealthFn& health)
      : stream_(std::move(socket)), metrics_(metrics), health_(health) {}

  void Read() {
    request_ = {};
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(
        stream_, buffer_, request_, [self = shared_from_this()](beast::error_code ec, size_t) {
          if (!ec) {
            self->Answer();
          } else if (ec.category() == beast::error_code(http::error::end_of_stream).category() &&
                     ec != http::error::end_of_stream) {
            self->Refuse(ec == http::error::header_limit
                             ? http::status::request_header_fields_too_large
                             : http::status::bad_request);
          }
        });
  }

 private:
  void Refuse(http::status status) {
    auto response = std::make_shared<http::response<http::string_body>>(status, 11);
    response->keep_alive(false);
    response->body() =
        status == http::status::bad_request ? "bad request\n" : "request headers too large\n";
    response->prepare_payload();
    http::async_write(stream_, *response,
                      [self = shared_from_this(), response](beast::error_code, size_t) {
                        beast::error_code ignored;
                        self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
                      });
  }

  void Answer() {
    auto response = std::make_shared<http::response<http::string_body>>();
    response->version(request_.version());
    response->keep_alive(request_.keep_alive());
    const std::string target(request_.target());
    if (request_.method() != http::verb::get) {
      response->result(http::status::method_not_allowed);
      response->body() = "only GET\n";
    } else if (target == "/metrics") {
      response->result(http::status::ok);
      response->set(http::field::content_type, "text/plain; version=0.0.4");
      response->body() = metrics_();
    } else if (target == "/healthz") {
      const Status health = health_ ? health_() : Status::Ok();
      response->result(health.ok() ? http::status::ok : http::status::service_unavailable);
      response->body() = health.ok() ? "ok\n" : "not ready: " + health.message() + "\n";
    } else {
      response->result(http::status::not_found);
      response->body() = "not found: try /metrics or /healthz\n";
    }
    response->prepare_payload();
    http::async_write(stream_, *response,
                      [self = shared_from_this(), response](beast::error_code ec, size_t) {
                        if (!ec && response->keep_alive()) self->Read();
                      });
  }

  beast::tcp_stream stream_;
  const HttpServer::MetricsFn& metrics_;
  const HttpServer::HealthFn& health_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
};

}  // namespace

struct HttpServer::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  asio::steady_timer retry{io};
  MetricsFn metrics;  // the owner's samples, then the server's own
  HealthFn health;
  std::atomic<int64_t> accept_errors{0};
  std::thread thread;

  void Accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;  // closed
      if (ec) {
        // Out of file descriptors, or the like: the endpoint must outlive it.
        // Count it (in /metrics), say so, and accept again shortly (at once
        // would spin while the condition lasts).
        if (accept_errors.fetch_add(1) % 100 == 0) {
          spdlog::warn("metrics endpoint: accepting a connection failed ({}); retrying",
                       ec.message());
        }
        retry.expires_after(std::chrono::milliseconds(100));
        retry.async_wait([this](beast::error_code e) {
          if (!e) Accept();
        });
        return;
      }
      std::make_shared<Session>(std::move(socket), metrics, health)->Read();
      Accept();
    });
  }
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
  asio::post(impl_->io, [this] {
    beast::error_code ec;
    impl_->acceptor.close(ec);
    impl_->io.stop();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& host, int port,
                                                      MetricsFn metrics, HealthFn health) {
  auto impl = std::make_unique<Impl>();
  impl->health = std::move(health);
  impl->metrics = [user = std::move(metrics), errors = &impl->accept_errors] {
    std::string out = user();
    out +=
        "# HELP sluice_http_accept_errors_total Connections to this endpoint that could not be "
        "accepted (e.g. out of file descriptors)\n"
        "# TYPE sluice_http_accept_errors_total counter\n";
    AppendMetric(&out, "sluice_http_accept_errors_total", {}, static_cast<double>(errors->load()));
    return out;
  };
  beast::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) return Status::InvalidArgument("metrics address '" + host + "': " + ec.message());
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::Unavailable("cannot serve metrics on " + host + ":" + std::to_string(port) +
                               ": " + ec.message());
  }
  impl->Accept();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->io.run(); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

int HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

int64_t HttpServer::accept_errors() const { return impl_->accept_errors.load(); }

void AppendMetric(std::string* out, const std::string& name,
                  const std::vector<std::pair<std::string, std::string>>& labels, double value) {
  out->append(name);
  if (!labels.empty()) {
    out->push_back('{');
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i > 0) out->push_back(',');
      out->append(labels[i].first);
      out->append("=\"");
      for (char c : labels[i].second) {
        if (c == '"' || c == '\\') out->push_back('\\');
        if (c == '\n') {
          out->append("\\n");
          continue;
        }
        out->push_back(c);
      }
      out->push_back('"');
    }
    out->push_back('}');
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), " %.17g\n", value);
  out->append(buf);
}

}  // namespace sluice
