#include "worker/engine/testing.h"

#include <simdjson.h>

#include "common/check.h"
#include "worker/engine/state_store.h"

namespace sluice::engine::testing {

proto::JobSpec BaseSpec(const std::string& name) {
  proto::JobSpec spec;
  spec.set_name(name);
  auto* src = spec.mutable_source();
  src->set_topic("events");
  src->set_format("json");
  src->set_key("user");
  src->set_event_time("ts");
  spec.mutable_sinks()->set_output(name + "-out");
  spec.mutable_sinks()->set_late(name + "-late");
  spec.mutable_sinks()->set_dead_letter(name + "-dlq");
  spec.set_checkpoint_interval_ms(10'000);
  return spec;
}

proto::AggregateSpec Agg(const std::string& name, proto::AggregateSpec::Function fn,
                         const std::string& field) {
  proto::AggregateSpec a;
  a.set_name(name);
  a.set_function(fn);
  a.set_field(field);
  return a;
}

std::string Event(const std::string& user, int64_t ts, const std::string& extra) {
  std::string s = "{\"user\":\"" + user + "\",\"ts\":" + std::to_string(ts);
  if (!extra.empty()) s += "," + extra;
  return s + "}";
}

Harness::Harness(const proto::JobSpec& spec, int64_t now_ms) : clock_(now_ms) {
  auto plan = JobPlan::Compile(spec);
  SLUICE_CHECK(plan.ok()) << plan.status().ToString();
  plan_ = *plan;
  task_ = std::make_unique<TaskProcessor>(plan_, clock_, sink_);
}

void Harness::Feed(const std::string& payload) {
  SourceRecord r{payload, "", SourcePosition{"events", 0, next_offset_++}};
  task_->ProcessBatch(std::span<const SourceRecord>(&r, 1));
}

void Harness::Feed(const std::vector<std::string>& payloads) {
  for (const std::string& p : payloads) Feed(p);
}

std::vector<std::string> Harness::Values(OutputStream stream) const {
  std::vector<std::string> out;
  for (const auto& r : sink_.records()) {
    if (r.stream == stream) out.push_back(r.value);
  }
  return out;
}

void Harness::RestoreFrom(const StateStore& store) {
  task_ = std::make_unique<TaskProcessor>(plan_, clock_, sink_);
  Status s = task_->Restore(store);
  SLUICE_CHECK(s.ok()) << s.ToString();
}

std::string Field(const std::string& json, const std::string& key) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(json).get(root)) return "<invalid json>";
  simdjson::dom::element v;
  if (root.at_key(key).get(v)) return "<missing>";
  if (v.is_string()) return std::string(std::string_view(v));
  return simdjson::to_string(v);
}

int64_t IntField(const std::string& json, const std::string& key) {
  return std::stoll(Field(json, key));
}

}  // namespace sluice::engine::testing
