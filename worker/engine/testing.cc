#include "worker/engine/testing.h"

#include <simdjson.h>

#include <cstdio>
#include <random>

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

std::vector<std::string> RandomEvents(uint64_t seed, int n, int users) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> out;
  int64_t t = 1'700'000'000'000;
  const char* pages[] = {"/home", "/search", "/item", "/cart", "/checkout"};
  const char* countries[] = {"DE", "FR", "US"};
  for (int i = 0; i < n; ++i) {
    t += static_cast<int64_t>(rng() % 20'000);
    int64_t ts = t - static_cast<int64_t>(rng() % 40'000);
    if (rng() % 40 == 0) ts -= 300'000;  // far behind: late
    std::string user = "u" + std::to_string(rng() % static_cast<uint64_t>(users));
    if (rng() % 50 == 0) {  // malformed: a dead letter
      out.push_back("{\"user\":\"" + user + "\",\"ts\":");
      continue;
    }
    char extra[160];
    std::snprintf(extra, sizeof(extra), "\"page\":\"%s\",\"amount\":%d,\"country\":\"%s\"",
                  pages[rng() % 5], static_cast<int>(rng() % 8000), countries[rng() % 3]);
    out.push_back(Event(user, ts, extra));
  }
  return out;
}

proto::JobSpec SessionJob() {
  proto::JobSpec spec = BaseSpec("sessions");
  spec.mutable_source()->set_max_out_of_orderness_ms(30'000);
  spec.mutable_window()->set_session_gap_ms(60'000);
  spec.mutable_window()->set_allowed_lateness_ms(20'000);
  using F = proto::AggregateSpec;
  *spec.add_aggregates() = Agg("events", F::COUNT);
  *spec.add_aggregates() = Agg("pages", F::COUNT_DISTINCT, "page");
  *spec.add_aggregates() = Agg("first_page", F::FIRST, "page");
  *spec.add_aggregates() = Agg("last_page", F::LAST, "page");
  *spec.add_aggregates() = Agg("revenue", F::SUM, "amount");
  return spec;
}

proto::JobSpec RuleJob() {
  proto::JobSpec spec = BaseSpec("fraud");
  spec.mutable_source()->set_max_out_of_orderness_ms(30'000);
  proto::RuleSpec* big = spec.add_rules();
  big->set_name("large_amount");
  big->set_when("amount > 7000");
  proto::RuleSpec* velocity = spec.add_rules();
  velocity->set_name("velocity");
  velocity->mutable_window()->set_rolling_ms(300'000);
  *velocity->add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  velocity->set_when("n > 3");
  proto::RuleSpec* country = spec.add_rules();
  country->set_name("new_country");
  country->mutable_window()->set_rolling_ms(3'600'000);
  *country->add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  country->set_when("n > 1 && new_value(country)");
  return spec;
}

proto::JobSpec TumblingCountSpec(const std::string& name) {
  proto::JobSpec spec = BaseSpec(name);
  spec.mutable_window()->set_tumbling_ms(1000);
  *spec.add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  return spec;
}

std::map<std::string, std::string> ReadAll(const StateStore& store) {
  std::map<std::string, std::string> out;
  const Status s = store.Scan("", [&](std::string_view k, std::string_view v) {
    out.emplace(std::string(k), std::string(v));
    return Status::Ok();
  });
  SLUICE_CHECK(s.ok()) << s.ToString();
  return out;
}

std::shared_ptr<const JobPlan> MustCompile(const proto::JobSpec& spec) {
  auto plan = JobPlan::Compile(spec);
  SLUICE_CHECK(plan.ok()) << plan.status().ToString();
  return *plan;
}

std::string Event(const std::string& user, int64_t ts, const std::string& extra) {
  std::string s = "{\"user\":\"" + user + "\",\"ts\":" + std::to_string(ts);
  if (!extra.empty()) s += "," + extra;
  return s + "}";
}

Harness::Harness(const proto::JobSpec& spec, int64_t now_ms) : clock_(now_ms) {
  plan_ = MustCompile(spec);
  task_ = std::make_unique<TaskProcessor>(plan_, clock_, sink_);
}

void Harness::Feed(const std::string& payload) {
  SourceRecord r{payload, "", SourcePosition{"events", 0, next_offset_++}};
  task_->ProcessBatch(std::span<const SourceRecord>(&r, 1));
}

void Harness::Feed(const std::vector<std::string>& payloads) {
  for (const std::string& p : payloads) Feed(p);
}

void Harness::FeedBatch(std::span<const std::string> payloads) {
  std::vector<SourceRecord> batch;
  for (const std::string& p : payloads) {
    batch.push_back(SourceRecord{p, "", SourcePosition{"events", 0, next_offset_++}});
  }
  task_->ProcessBatch(batch);
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
