#pragma once

// EventDecoder: turns one JSON message into the values a job reads — its key,
// its event time and every field the job's expressions and aggregates use —
// or into a precise reason why it cannot (the dead-letter reason).
//
// One decoder per task thread. The decoded views point into the decoder's
// buffers and stay valid until the next Decode. Decode never throws and, once
// warmed up on messages of similar size, never allocates for a good event.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "worker/engine/job_plan.h"
#include "worker/engine/value.h"

namespace sluice::engine {

struct DecodedEvent {
  std::string_view key;
  int64_t event_time = 0;
  std::span<const Value> fields;  // by JobPlan field slot
};

class EventDecoder {
 public:
  explicit EventDecoder(const JobPlan& plan);
  ~EventDecoder();
  EventDecoder(const EventDecoder&) = delete;
  EventDecoder& operator=(const EventDecoder&) = delete;

  // Decodes `payload`. `now_ms` is processing time, for max_future/max_past;
  // `check_time_bounds = false` skips those checks and the declared fields'
  // (for re-decoding an event that was accepted earlier, perhaps under an
  // older version of the job).
  // On failure returns false and sets `*reason`, e.g.
  //   "invalid_json at byte 17: ..."   "missing key field user_id"
  //   "event_time 2031-01-01T00:00:00Z is 4y in the future"
  bool Decode(std::string_view payload, int64_t now_ms, bool check_time_bounds, DecodedEvent* out,
              std::string* reason);

  // Decode in two steps, so a filter can run in between: Parse checks the
  // JSON, fills fields() and (with `check_fields`) checks the declared fields
  // (source.fields); Extract then reads the key and event time of the parsed
  // message (and checks the time bounds).
  bool Parse(std::string_view payload, std::string* reason, bool check_fields = true);
  std::span<const Value> fields() const;
  // On failure out->event_time is the event's time if that was good (only the
  // key was not), else kMinTime.
  bool Extract(int64_t now_ms, bool check_time_bounds, DecodedEvent* out, std::string* reason);

  // `payload` without insignificant whitespace (for embedding in output).
  // Valid until the next call to Decode or Minify.
  std::string_view Minify(std::string_view payload);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::engine
