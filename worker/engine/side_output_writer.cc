#include "worker/engine/side_output_writer.h"

#include <simdjson.h>

#include "worker/engine/base64.h"

namespace sluice::engine {

SideOutputWriter::SideOutputWriter(std::string_view job, int64_t max_record_bytes)
    : job_(job), max_record_bytes_(static_cast<size_t>(max_record_bytes)) {}

void SideOutputWriter::SetSource(std::string_view topic, int32_t partition) {
  topic_.assign(topic);
  partition_ = partition;
}

void SideOutputWriter::WriteSource(JsonWriter& w, int64_t offset) const {
  w.SafeKey("source");
  w.BeginObject();
  w.SafeKey("topic");
  w.String(topic_);
  w.SafeKey("partition");
  w.Int(partition_);
  w.SafeKey("offset");
  w.Int(offset);
  w.EndObject();
}

std::string_view SideOutputWriter::Late(std::string_view key, int64_t event_time, int64_t watermark,
                                        std::string_view event, int64_t offset) {
  out_.clear();
  JsonWriter w(&out_);
  w.BeginObject();
  w.SafeKey("job");
  w.String(job_);
  w.SafeKey("reason");
  w.SafeString("late");
  w.SafeKey("key");
  w.String(key);
  w.SafeKey("event_time");
  w.Int(event_time);
  w.SafeKey("watermark");
  w.Int(watermark);
  w.SafeKey("event");
  w.Raw(event);
  WriteSource(w, offset);
  w.EndObject();
  return out_;
}

std::string_view SideOutputWriter::DeadLetter(std::string_view reason, std::string_view payload,
                                              int64_t offset) {
  out_.clear();
  JsonWriter w(&out_);
  w.BeginObject();
  w.SafeKey("job");
  w.String(job_);
  w.SafeKey("reason");
  w.String(reason);
  WriteSource(w, offset);
  // At most max_record_bytes of the record: the prefix if it is UTF-8, cut
  // back by up to 3 bytes to a character boundary; else Base64 of a prefix
  // whose encoding (4 characters per 3 bytes) fits.
  const size_t limit = max_record_bytes_;
  std::string_view raw = payload.substr(0, limit);
  bool utf8 = simdjson::validate_utf8(raw.data(), raw.size());
  for (size_t cut = 1; !utf8 && raw.size() < payload.size() && cut <= 3; ++cut) {
    if (raw.size() < cut) break;
    const std::string_view shorter = raw.substr(0, raw.size() - cut);
    utf8 = simdjson::validate_utf8(shorter.data(), shorter.size());
    if (utf8) raw = shorter;
  }
  if (utf8) {
    w.SafeKey("raw");
    w.String(raw);
  } else {
    raw = payload.substr(0, limit / 4 * 3);
    w.SafeKey("raw_base64");
    b64_.clear();
    AppendBase64(&b64_, raw);
    w.String(b64_);
  }
  if (raw.size() < payload.size()) {
    w.SafeKey("raw_bytes");
    w.Int(static_cast<int64_t>(payload.size()));
    w.SafeKey("truncated");
    w.Bool(true);
  }
  w.EndObject();
  return out_;
}

}  // namespace sluice::engine
