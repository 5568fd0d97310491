#include "tools/devbroker/mock_cluster.h"

#include <librdkafka/rdkafka.h>
// rdkafka_mock.h must follow rdkafka.h.
#include <librdkafka/rdkafka_mock.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <string_view>

#include "tools/devbroker/socket_util.h"

namespace sluice::devbroker {

struct MockCluster::Handles {
  rd_kafka_t* rk = nullptr;
  rd_kafka_mock_cluster_t* mcluster = nullptr;

  ~Handles() {
    if (mcluster != nullptr) rd_kafka_mock_cluster_destroy(mcluster);
    if (rk != nullptr) rd_kafka_destroy(rk);
  }
};

namespace {

// Routes librdkafka's log lines (from its own threads) to spdlog.
void LogToSpdlog(const rd_kafka_t*, int level, const char* fac, const char* buf) {
  std::string_view text(buf);
  // The dummy handle has no bootstrap.servers by design.
  if (std::string_view(fac) == "CONFWARN" &&
      text.find("bootstrap.servers") != std::string_view::npos) {
    spdlog::debug("rdkafka {}: {}", fac, text);
    return;
  }
  if (level <= 3) {
    spdlog::error("rdkafka {}: {}", fac, text);
  } else if (level == 4) {
    spdlog::warn("rdkafka {}: {}", fac, text);
  } else if (level <= 6) {
    spdlog::info("rdkafka {}: {}", fac, text);
  } else {
    spdlog::debug("rdkafka {}: {}", fac, text);
  }
}

Status FromKafka(rd_kafka_resp_err_t err, const std::string& what) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return Status::Ok();
  std::string msg = what + ": " + rd_kafka_err2str(err);
  switch (err) {
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
      return Status::AlreadyExists(msg);
    case RD_KAFKA_RESP_ERR__UNKNOWN_BROKER:
      return Status::NotFound(msg);
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
      return Status::InvalidArgument(msg);
    default:
      return Status::Internal(msg);
  }
}

}  // namespace

bool IsValidTopicName(const std::string& name) {
  if (name.empty() || name.size() > 249 || name == "." || name == "..") return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<std::unique_ptr<MockCluster>> MockCluster::Create(int broker_count,
                                                         const std::string& rdkafka_debug) {
  if (broker_count < 1) return Status::InvalidArgument("need at least one broker");
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, LogToSpdlog);
  // The handle only hosts the mock cluster; it never produces.
  if (rd_kafka_conf_set(conf, "client.id", "sluice-devbroker", errstr, sizeof(errstr)) !=
          RD_KAFKA_CONF_OK ||
      (!rdkafka_debug.empty() && rd_kafka_conf_set(conf, "debug", rdkafka_debug.c_str(), errstr,
                                                   sizeof(errstr)) != RD_KAFKA_CONF_OK)) {
    rd_kafka_conf_destroy(conf);
    return Status::InvalidArgument(std::string("librdkafka config: ") + errstr);
  }
  auto handles = std::make_unique<Handles>();
  handles->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (handles->rk == nullptr) {
    rd_kafka_conf_destroy(conf);  // rd_kafka_new owns conf only on success
    return Status::Internal(std::string("rd_kafka_new: ") + errstr);
  }
  handles->mcluster = rd_kafka_mock_cluster_new(handles->rk, broker_count);
  if (handles->mcluster == nullptr) {
    return Status::Internal("rd_kafka_mock_cluster_new failed (see rdkafka log above)");
  }
  return std::unique_ptr<MockCluster>(new MockCluster(std::move(handles), broker_count));
}

template <typename F>
auto MockCluster::Call(F&& f) {
  {
    std::lock_guard lock(mu_);
    ++in_flight_;
  }
  cv_.notify_all();
  auto result = f();
  {
    std::lock_guard lock(mu_);
    --in_flight_;
  }
  return result;
}

MockCluster::MockCluster(std::unique_ptr<Handles> handles, int broker_count)
    : handles_(std::move(handles)),
      broker_count_(broker_count),
      bootstraps_(rd_kafka_mock_cluster_bootstraps(handles_->mcluster)) {
  for (size_t start = 0; start <= bootstraps_.size();) {
    size_t comma = bootstraps_.find(',', start);
    if (comma == std::string::npos) comma = bootstraps_.size();
    if (comma > start) broker_addresses_.push_back(bootstraps_.substr(start, comma - start));
    start = comma + 1;
  }
  waker_ = std::thread([this] { WakerLoop(); });
}

MockCluster::~MockCluster() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  waker_.join();
  // handles_ goes next: the mock cluster, then its rd_kafka_t. This can take
  // up to a second when it comes right after startup (librdkafka's internal
  // broker thread notices termination on its next 1 s tick).
}

void MockCluster::WakerLoop() {
  using namespace std::chrono_literals;
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (in_flight_ == 0) {
      cv_.wait(lock, [this] { return stop_ || in_flight_ > 0; });
      continue;
    }
    // A call normally returns in well under a millisecond.
    if (cv_.wait_for(lock, 20ms, [this] { return stop_ || in_flight_ == 0; })) continue;
    lock.unlock();
    spdlog::debug("mock call in flight for 20 ms: waking the mock thread");
    for (const std::string& addr : broker_addresses_) {
      // Brokers that are down refuse; any live listener will do.
      if (ConnectTcp(addr).ok()) break;
    }
    lock.lock();
  }
}

std::string MockCluster::FirstBroker() const {
  return bootstraps_.substr(0, bootstraps_.find(','));
}

Status MockCluster::CheckBroker(int32_t broker_id) const {
  if (broker_id < 1 || broker_id > broker_count_) {
    return Status::NotFound("no broker " + std::to_string(broker_id) + " (ids are 1.." +
                            std::to_string(broker_count_) + ")");
  }
  return Status::Ok();
}

Status MockCluster::CreateTopic(const std::string& name, int partitions) {
  if (!IsValidTopicName(name)) {
    return Status::InvalidArgument("bad topic name '" + name +
                                   "' (1..249 characters of [A-Za-z0-9._-])");
  }
  if (partitions < 1) return Status::InvalidArgument("partitions must be at least 1");
  return FromKafka(Call([&] {
                     return rd_kafka_mock_topic_create(handles_->mcluster, name.c_str(), partitions,
                                                       1);
                   }),
                   "create topic " + name);
}

Status MockCluster::SetBrokerDown(int32_t broker_id) {
  SLUICE_RETURN_IF_ERROR(CheckBroker(broker_id));
  return FromKafka(
      Call([&] { return rd_kafka_mock_broker_set_down(handles_->mcluster, broker_id); }),
      "broker down " + std::to_string(broker_id));
}

Status MockCluster::SetBrokerUp(int32_t broker_id) {
  SLUICE_RETURN_IF_ERROR(CheckBroker(broker_id));
  return FromKafka(Call([&] { return rd_kafka_mock_broker_set_up(handles_->mcluster, broker_id); }),
                   "broker up " + std::to_string(broker_id));
}

Status MockCluster::SetBrokerRtt(int32_t broker_id, int rtt_ms) {
  SLUICE_RETURN_IF_ERROR(CheckBroker(broker_id));
  if (rtt_ms < 0) return Status::InvalidArgument("rtt must be >= 0 ms");
  return FromKafka(
      Call([&] { return rd_kafka_mock_broker_set_rtt(handles_->mcluster, broker_id, rtt_ms); }),
      "broker rtt " + std::to_string(broker_id));
}

Status MockCluster::PushRequestErrors(int16_t api_key, int32_t error_code, size_t count) {
  if (api_key < 0) return Status::InvalidArgument("API key must be >= 0");
  if (count == 0) return Status::InvalidArgument("count must be at least 1");
  std::vector<rd_kafka_resp_err_t> errors(count, static_cast<rd_kafka_resp_err_t>(error_code));
  return Call([&] {
    rd_kafka_mock_push_request_errors_array(handles_->mcluster, api_key, count, errors.data());
    return Status::Ok();
  });
}

}  // namespace sluice::devbroker
