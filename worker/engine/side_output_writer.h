#pragma once

// SideOutputWriter: writes the records a task sends beside its results, on
// their own streams (OutputStream::kLate and kDeadLetter):
//
//   late         an event that reached no window or rule that still takes it
//                (behind the watermark): the job, "reason":"late", its key,
//                event time, the watermark, the event, its source position
//   dead letter  a record the task could not decode: the job, the reason,
//                its source position, and at most max_record_bytes of the
//                record, so that a dead letter always fits the sink: "raw"
//                when that prefix is UTF-8 (cut at a character boundary),
//                else "raw_base64" of a prefix whose encoding fits;
//                "raw_bytes" and "truncated" say when it was cut
//
// Window results and alerts are written by ResultWriter (result_writer.h).
// One per TaskProcessor, on its thread. A returned view stays valid until the
// next call.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "worker/engine/json_writer.h"

namespace sluice::engine {

class SideOutputWriter {
 public:
  // `job`: the job's name; `max_record_bytes`: the most of a record a dead
  // letter carries (source.max_record_bytes).
  SideOutputWriter(std::string_view job, int64_t max_record_bytes);

  // Where the task's records come from; call before the first record (and
  // again if it changes).
  void SetSource(std::string_view topic, int32_t partition);

  // A late record: `event` is the event as minified JSON, `offset` its
  // position in the source partition.
  std::string_view Late(std::string_view key, int64_t event_time, int64_t watermark,
                        std::string_view event, int64_t offset);

  // A dead letter of the record `payload` at `offset`, with why it is one.
  std::string_view DeadLetter(std::string_view reason, std::string_view payload, int64_t offset);

 private:
  void WriteSource(JsonWriter& w, int64_t offset) const;

  const std::string job_;
  const size_t max_record_bytes_;
  std::string topic_;
  int32_t partition_ = 0;
  std::string out_;  // the record; reused
  std::string b64_;  // a dead letter's raw_base64; reused
};

}  // namespace sluice::engine
