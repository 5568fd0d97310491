#pragma once

// Helpers shared by the librdkafka wrappers of this module (not for use
// outside kafka/).

#include <librdkafka/rdkafka.h>

#include <map>
#include <string>

#include "common/status.h"

namespace sluice::kafka {

// Sets every setting on `conf`; InvalidArgument names the one refused.
Status SetAll(rd_kafka_conf_t* conf, const std::map<std::string, std::string>& settings);

// `base` with the entries of `extra` added or replacing.
std::map<std::string, std::string> Merge(std::map<std::string, std::string> base,
                                         const std::map<std::string, std::string>& extra);

// Ok for NO_ERROR, else Unavailable("what: reason").
Status FromKafka(rd_kafka_resp_err_t err, const std::string& what);

// A new librdkafka client of `type` with `settings`, logging through
// LogToSpdlog, with `on_delivery` as its delivery report callback (producers,
// optional). InvalidArgument names `what` and the setting or error.
Result<rd_kafka_t*> NewClient(rd_kafka_type_t type,
                              const std::map<std::string, std::string>& settings,
                              const std::string& what,
                              void (*on_delivery)(rd_kafka_t*, const rd_kafka_message_t*,
                                                  void*) = nullptr);

// The message.max.bytes of client `rk` (librdkafka's default if unreadable).
int64_t MaxMessageBytes(rd_kafka_t* rk);

// librdkafka's log callback: levels 0-3 as errors, 4-5 as warnings, the rest
// as debug.
void LogToSpdlog(const rd_kafka_t* rk, int level, const char* fac, const char* buf);

}  // namespace sluice::kafka
