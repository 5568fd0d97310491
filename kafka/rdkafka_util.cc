#include "kafka/rdkafka_util.h"

#include <spdlog/spdlog.h>

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

void LogToSpdlog(const rd_kafka_t*, int level, const char* fac, const char* buf) {
  if (level <= 3) {
    spdlog::error("kafka {}: {}", fac, buf);
  } else if (level <= 5) {
    spdlog::warn("kafka {}: {}", fac, buf);
  } else {
    spdlog::debug("kafka {}: {}", fac, buf);
  }
}

}  // namespace sluice::kafka
