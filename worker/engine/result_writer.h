#pragma once

// ResultWriter: writes the records a task emits most — window results and
// rule alerts (JOBS.md "Output records") — into one reused buffer, without a
// generic JSON writer. What is the same for every record of the job (the job,
// rule and aggregate names, the source topic) is escaped once, up front; per
// record only the key is escaped and the numbers formatted. The bytes, and the
// deterministic `id`, are those the JsonWriter-based code wrote before;
// result_writer_test compares the two.
//
// One per TaskProcessor, on its thread. A returned view stays valid until the
// next call.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "worker/engine/job_plan.h"
#include "worker/engine/value.h"

namespace sluice::engine {

class ResultWriter {
 public:
  explicit ResultWriter(const JobPlan& plan);

  // Where the task's records come from, for alerts; call before the first
  // Alert (and again if it changes).
  void SetSource(std::string_view topic, int32_t partition);

  // A window result: `values` are the results of JobPlan::aggregates(), in
  // order; `revision` counts the updates emitted before this one.
  std::string_view Window(std::string_view key, int64_t start, int64_t end, uint32_t revision,
                          bool update, std::span<const Value> values);

  // An alert of JobPlan::rules()[rule]: `values` are the results of the
  // rule's aggregates, then of its selects (RuleDef::selects), in order, or
  // the first values.size() of them; `event` is the event as minified JSON;
  // `offset` its position in the source partition.
  std::string_view Alert(size_t rule, std::string_view key, int64_t event_time,
                         std::span<const Value> values, std::string_view event, int64_t offset);

 private:
  struct RuleParts {
    std::string id_prefix;                // the id's hashed bytes before the key
    std::string head;                     // `","job":"…","rule":"…","key":"`
    std::vector<std::string> value_keys;  // `,"name":` per aggregate, then per select
  };

  // At least `n` bytes at the start of the buffer.
  char* Reserve(size_t n);
  // `{"id":"` and the id, the XXH3-128 of `hashed` in hex; the caller's next
  // fragment closes the string.
  static char* WriteId(char* p, std::string_view hashed);

  std::string window_id_prefix_;
  std::string window_head_;  // `","job":"…","key":"`
  std::vector<std::string> window_agg_keys_;
  std::vector<RuleParts> rules_;
  std::string source_id_;    // the id's hashed bytes of the topic and partition
  std::string source_head_;  // `,"source":{"topic":"…","partition":N,"offset":`

  std::string buf_;  // the record; only grows
  std::string id_buf_;
};

}  // namespace sluice::engine
