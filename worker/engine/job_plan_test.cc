#include "worker/engine/job_plan.h"

#include <catch2/catch.hpp>

#include "worker/engine/testing.h"

namespace sluice::engine {
namespace {

using testing::Agg;
using testing::BaseSpec;

std::string CompileError(const proto::JobSpec& spec) {
  auto plan = JobPlan::Compile(spec);
  return plan.ok() ? "ok" : plan.status().message();
}

TEST_CASE("a plan resolves every field the job reads to a slot") {
  proto::JobSpec spec = BaseSpec();
  spec.set_filter("amount > 0 && user.tier == \"gold\"");
  proto::RuleSpec* r = spec.add_rules();
  r->set_name("big");
  r->mutable_window()->set_rolling_ms(60'000);
  *r->add_aggregates() = Agg("total", proto::AggregateSpec::SUM, "amount");
  r->set_when("total > 100 && new_value(country)");
  auto plan = JobPlan::Compile(spec);
  REQUIRE(plan.ok());
  const auto& names = (*plan)->field_names();
  REQUIRE(names == std::vector<std::string>{"user", "ts", "amount", "user.tier", "country"});
  REQUIRE((*plan)->field_paths()[3] == std::vector<std::string>{"user", "tier"});
  REQUIRE((*plan)->max_rolling_ms() == 60'000);
  REQUIRE((*plan)->rolling_slots() == std::vector<uint32_t>{2, 4});
}

TEST_CASE("compile errors are structured: the path of the element at fault, and what is wrong") {
  proto::JobSpec spec = BaseSpec();
  proto::RuleSpec* r = spec.add_rules();
  r->set_name("ok");
  r->set_when("true");
  r = spec.add_rules();
  r->set_name("second");
  r->set_when("amount >");
  PlanError error;
  auto plan = JobPlan::Compile(spec, &error);
  REQUIRE_FALSE(plan.ok());
  REQUIRE(error.path == "rules[1].when");
  REQUIRE(plan.status().message() == error.path + ": " + error.message);
  REQUIRE(error.message.rfind("column ", 0) == 0);

  spec = BaseSpec();
  spec.mutable_window()->set_tumbling_ms(0);
  error = PlanError();
  REQUIRE_FALSE(JobPlan::Compile(spec, &error).ok());
  REQUIRE(error.path == "window");
  REQUIRE(error.message == "tumbling size must be > 0");
}

TEST_CASE("an aggregate or select may not take a word of the language or an output field") {
  proto::JobSpec spec = BaseSpec();
  spec.mutable_window()->set_tumbling_ms(1000);
  *spec.add_aggregates() = Agg("key", proto::AggregateSpec::COUNT);
  PlanError error;
  REQUIRE_FALSE(JobPlan::Compile(spec, &error).ok());
  REQUIRE(error.path == "aggregates[0]");
  REQUIRE(error.message == "aggregate name 'key' is taken by a field of every output record");

  spec = BaseSpec();
  proto::RuleSpec* r = spec.add_rules();
  r->set_name("r");
  r->set_when("true");
  proto::SelectSpec* sel = r->add_select();
  sel->set_name("null");
  sel->set_expr("amount");
  REQUIRE(CompileError(spec) ==
          "rules[0].select[0]: select name 'null' is a word of the expression language");
}

TEST_CASE("compile errors name the part of the job at fault") {
  proto::JobSpec base = BaseSpec();
  proto::RuleSpec* r = base.add_rules();
  r->set_name("ok");
  r->set_when("true");

  proto::JobSpec spec = base;
  spec.set_filter("amount >");
  REQUIRE(CompileError(spec).rfind("filter: column", 0) == 0);

  spec = base;
  spec.mutable_rules(0)->set_when("n > 3");
  spec.mutable_rules(0)->mutable_window()->set_rolling_ms(1000);
  *spec.mutable_rules(0)->add_aggregates() = Agg("m", proto::AggregateSpec::COUNT);
  // Without aggregate n, n is a field: fine. new_value outside rolling is not.
  REQUIRE(CompileError(spec) == "ok");

  spec = base;
  spec.mutable_rules(0)->set_when("new_value(country)");
  REQUIRE(CompileError(spec).rfind("rules[0].when: column 1:", 0) == 0);

  spec = base;
  *spec.mutable_rules(0)->add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  REQUIRE(CompileError(spec) ==
          "rules[0]: an aggregate needs a rolling window, e.g. {rolling: 5m}");

  spec = base;
  *spec.add_rules() = spec.rules(0);
  REQUIRE(CompileError(spec) == "rules[1]: duplicate rule name 'ok'");

  spec = base;
  spec.mutable_rules(0)->mutable_window()->set_tumbling_ms(1000);
  REQUIRE(CompileError(spec) ==
          "rules[0].window: a rule's window must be rolling, e.g. {rolling: 5m}");

  spec = base;
  spec.mutable_window()->set_tumbling_ms(1000);
  REQUIRE(CompileError(spec) == "rules: a job has either rules or a window, not both");

  spec = BaseSpec();
  REQUIRE(CompileError(spec) == "rules: a job needs rules or a window");

  spec = BaseSpec();
  spec.mutable_window()->set_rolling_ms(1000);
  REQUIRE(CompileError(spec).rfind("window: rolling windows belong to rules", 0) == 0);

  spec = BaseSpec();
  spec.mutable_window()->mutable_sliding()->set_size_ms(1000);
  spec.mutable_window()->mutable_sliding()->set_every_ms(2000);
  REQUIRE(CompileError(spec) == "window: sliding needs 0 < every <= size");

  spec = BaseSpec();
  spec.mutable_window()->set_session_gap_ms(1000);
  *spec.add_aggregates() = Agg("events", proto::AggregateSpec::COUNT);
  *spec.add_aggregates() = Agg("total", proto::AggregateSpec::SUM);
  REQUIRE(CompileError(spec) == "aggregates[1]: aggregate 'total' needs a field");

  spec = BaseSpec();
  spec.mutable_window()->set_session_gap_ms(1000);
  *spec.add_aggregates() = Agg("events", proto::AggregateSpec::COUNT);
  spec.set_having("amount > 3");
  REQUIRE(CompileError(spec).find("having: column 1: unknown name 'amount'") == 0);
  REQUIRE(CompileError(spec).find("(aggregates here: events)") != std::string::npos);
}

TEST_CASE("a rule's select compiles over its aggregates and the event's fields") {
  proto::JobSpec base = BaseSpec();
  proto::RuleSpec* r = base.add_rules();
  r->set_name("burst");
  r->mutable_window()->set_rolling_ms(60'000);
  *r->add_aggregates() = Agg("total", proto::AggregateSpec::SUM, "amount");
  r->set_when("total > 100");
  auto select = [](proto::JobSpec* spec, const std::string& name, const std::string& expr) {
    proto::SelectSpec* s = spec->mutable_rules(0)->add_select();
    s->set_name(name);
    s->set_expr(expr);
  };

  proto::JobSpec spec = base;
  select(&spec, "total_eur", "total * 0.908");
  select(&spec, "country", "lower(country)");
  auto plan = JobPlan::Compile(spec);
  REQUIRE(plan.ok());
  const RuleDef& rule = (*plan)->rules()[0];
  REQUIRE(rule.selects.size() == 2);
  REQUIRE(rule.selects[0].name == "total_eur");
  REQUIRE(rule.selects[1].name == "country");
  REQUIRE(rule.selects[1].expr.text() == "lower(country)");
  // A select's fields are read from the event, not kept per event.
  REQUIRE((*plan)->rolling_slots() == std::vector<uint32_t>{2});

  spec = base;
  select(&spec, "seen", "new_value(country)");
  REQUIRE(CompileError(spec) ==
          "rules[0].select[0]: column 1: new_value() is not allowed in select (it is a "
          "condition; use it in when)");

  spec = base;
  select(&spec, "ok", "amount");
  select(&spec, "price-eur", "amount * 0.908");
  REQUIRE(CompileError(spec) ==
          "rules[0].select[1]: select name 'price-eur' is not an identifier like price_eur");

  spec = base;
  select(&spec, "total", "total * 0.908");
  REQUIRE(CompileError(spec) ==
          "rules[0].select[0]: select name 'total' is taken by an aggregate of the rule");

  spec = base;
  select(&spec, "eur", "total * 0.908");
  select(&spec, "eur", "amount");
  REQUIRE(CompileError(spec) == "rules[0].select[1]: duplicate select name 'eur'");

  spec = base;
  select(&spec, "eur", "");
  REQUIRE(CompileError(spec) == "rules[0].select[0]: select 'eur' needs an expression");

  spec = base;
  select(&spec, "eur", "total *");
  REQUIRE(CompileError(spec).rfind("rules[0].select[0]: column 8: ", 0) == 0);
}

}  // namespace
}  // namespace sluice::engine

namespace sluice::engine {
namespace {

std::shared_ptr<const JobPlan> Compiled(const proto::JobSpec& spec) {
  auto plan = JobPlan::Compile(spec);
  REQUIRE(plan.ok());
  return *plan;
}

TEST_CASE("updates may change conditions but not the state layout") {
  proto::JobSpec rules = testing::BaseSpec("fraud");
  proto::RuleSpec* r = rules.add_rules();
  r->set_name("velocity");
  r->mutable_window()->set_rolling_ms(60'000);
  *r->add_aggregates() = testing::Agg("total", proto::AggregateSpec::SUM, "amount");
  r->set_when("total > 100");
  auto before = Compiled(rules);

  proto::JobSpec thresholds = rules;
  thresholds.mutable_rules(0)->set_when("total > 5 && country == \"DE\"");
  thresholds.set_filter("amount > 0");
  proto::RuleSpec* extra = thresholds.add_rules();
  extra->set_name("big");
  extra->set_when("amount > 5000");
  REQUIRE(CheckStateCompatible(*before, *Compiled(thresholds)).ok());

  // A select keeps no state: adding or changing one, even over a field the
  // rule did not read, is an update.
  proto::JobSpec selects = rules;
  proto::SelectSpec* select = selects.mutable_rules(0)->add_select();
  select->set_name("country");
  select->set_expr("lower(country)");
  REQUIRE(CheckStateCompatible(*before, *Compiled(selects)).ok());
  proto::JobSpec other_select = selects;
  other_select.mutable_rules(0)->mutable_select(0)->set_expr("merchant");
  REQUIRE(CheckStateCompatible(*Compiled(selects), *Compiled(other_select)).ok());

  proto::JobSpec new_field = rules;
  new_field.mutable_rules(0)->set_when("new_value(country)");
  Status s = CheckStateCompatible(*before, *Compiled(new_field));
  REQUIRE(s.code() == StatusCode::kFailedPrecondition);
  REQUIRE(s.message().find("rolling rules keep") != std::string::npos);

  proto::JobSpec delivery = rules;
  delivery.set_delivery(proto::JobSpec::EXACTLY_ONCE);
  REQUIRE(CheckStateCompatible(*before, *Compiled(delivery)).message().find("delivery changed") ==
          4);

  proto::JobSpec topic = rules;
  topic.mutable_source()->set_topic("other");
  REQUIRE(CheckStateCompatible(*before, *Compiled(topic)).message().find("source topic") == 4);

  proto::JobSpec windows = testing::BaseSpec("fraud");
  windows.mutable_window()->set_tumbling_ms(60'000);
  *windows.add_aggregates() = testing::Agg("n", proto::AggregateSpec::COUNT);
  auto wbefore = Compiled(windows);
  REQUIRE(CheckStateCompatible(*before, *wbefore).message().find("rule job and a window job") !=
          std::string::npos);
  proto::JobSpec having = windows;
  having.set_having("n > 2");
  REQUIRE(CheckStateCompatible(*wbefore, *Compiled(having)).ok());
  proto::JobSpec wider = windows;
  wider.mutable_window()->set_tumbling_ms(120'000);
  REQUIRE(CheckStateCompatible(*wbefore, *Compiled(wider)).message().find("the window changed") ==
          0);
  proto::JobSpec more = windows;
  *more.add_aggregates() = testing::Agg("total", proto::AggregateSpec::SUM, "amount");
  REQUIRE(CheckStateCompatible(*wbefore, *Compiled(more)).message().find("aggregates changed") !=
          std::string::npos);
}

}  // namespace
}  // namespace sluice::engine
