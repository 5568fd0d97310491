#include "kafka/rdkafka_util.h"

#include <spdlog/spdlog.h>

#include <cstdlib>

#include "kafka/topic_handles.h"

namespace sluice::kafka {

Status SetAll(rd_kafka_conf_t* conf, const std::map<std::string, std::string>& settings) {
  char errstr[512];
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
      return Status::InvalidArgument("kafka setting " + name + "=" + value + ": " + errstr);
    }
  }
  return Status::Ok();
}

std::map<std::string, std::string> Merge(std::map<std::string, std::string> base,
                                         const std::map<std::string, std::string>& extra) {
  for (const auto& [k, v] : extra) base[k] = v;
  return base;
}

Status FromKafka(rd_kafka_resp_err_t err, const std::string& what) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return Status::Ok();
  return Status::Unavailable(what + ": " + rd_kafka_err2str(err));
}

Result<rd_kafka_t*> NewClient(rd_kafka_type_t type,
                              const std::map<std::string, std::string>& settings,
                              const std::string& what,
                              void (*on_delivery)(rd_kafka_t*, const rd_kafka_message_t*, void*)) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (Status s = SetAll(conf, settings); !s.ok()) {
    rd_kafka_conf_destroy(conf);
    return s;
  }
  if (on_delivery != nullptr) rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_conf_set_log_cb(conf, LogToSpdlog);
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status::InvalidArgument(what + ": " + errstr);
  }
  return rk;
}

int64_t MaxMessageBytes(rd_kafka_t* rk) {
  char value[32];
  size_t size = sizeof(value);
  if (rd_kafka_conf_get(rd_kafka_conf(rk), "message.max.bytes", value, &size) == RD_KAFKA_CONF_OK) {
    char* end = nullptr;
    const long long parsed = std::strtoll(value, &end, 10);
    if (end != value && parsed > 0) return parsed;
  }
  return 1'000'000;
}

void LogToSpdlog(const rd_kafka_t*, int level, const char* fac, const char* buf) {
  if (level <= 3) {
    spdlog::error("kafka {}: {}", fac, buf);
  } else if (level <= 5) {
    spdlog::warn("kafka {}: {}", fac, buf);
  } else {
    spdlog::debug("kafka {}: {}", fac, buf);
  }
}

rd_kafka_topic_t* TopicHandles::Get(rd_kafka_t* rk, const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = topics_.find(name);
  if (it != topics_.end()) return it->second;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, name.c_str(), nullptr);
  topics_.emplace(name, rkt);
  return rkt;
}

void TopicHandles::DestroyAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, rkt] : topics_) rd_kafka_topic_destroy(rkt);
  topics_.clear();
}

}  // namespace sluice::kafka
