#include "worker/engine/job_plan.h"

#include <algorithm>
#include <cctype>

#include "worker/engine/names.h"

namespace sluice::engine {

namespace {

// Every name is a field path; new_value is not allowed. Used for `filter`.
class FieldScope : public ExprScope {
 public:
  explicit FieldScope(std::function<uint32_t(std::string_view)> field_slot)
      : field_slot_(std::move(field_slot)) {}
  std::optional<ExprRef> Resolve(std::string_view name) override {
    return ExprRef{ExprRef::Kind::kField, field_slot_(name)};
  }
  std::optional<uint32_t> ResolveNewValue(std::string_view) override { return std::nullopt; }

 protected:
  std::function<uint32_t(std::string_view)> field_slot_;
};

// Aggregate names first, then (if allowed) fields; new_value when allowed.
class AggregateScope : public FieldScope {
 public:
  AggregateScope(std::function<uint32_t(std::string_view)> field_slot,
                 const std::vector<AggregateDef>* aggregates, bool allow_fields,
                 std::vector<uint32_t>* new_value_fields)
      : FieldScope(std::move(field_slot)),
        aggregates_(aggregates),
        allow_fields_(allow_fields),
        new_value_fields_(new_value_fields) {}

  std::optional<ExprRef> Resolve(std::string_view name) override {
    for (size_t i = 0; i < aggregates_->size(); ++i) {
      if ((*aggregates_)[i].name == name) {
        return ExprRef{ExprRef::Kind::kAggregate, static_cast<uint32_t>(i)};
      }
    }
    if (!allow_fields_) return std::nullopt;
    return FieldScope::Resolve(name);
  }

  std::optional<uint32_t> ResolveNewValue(std::string_view path) override {
    if (new_value_fields_ == nullptr) return std::nullopt;
    new_value_fields_->push_back(field_slot_(path));
    return static_cast<uint32_t>(new_value_fields_->size() - 1);
  }

  std::string UnknownNameHint() const override {
    std::string hint = " (aggregates here:";
    for (const AggregateDef& a : *aggregates_) hint += " " + a.name;
    if (aggregates_->empty()) hint += " none";
    return hint + ")";
  }

 private:
  const std::vector<AggregateDef>* aggregates_;
  bool allow_fields_;
  std::vector<uint32_t>* new_value_fields_;
};

// A rule's select: like its `when` (aggregates, then fields) but without
// new_value(), which is a condition on the window rather than a value.
class SelectScope : public AggregateScope {
 public:
  SelectScope(std::function<uint32_t(std::string_view)> field_slot,
              const std::vector<AggregateDef>* aggregates)
      : AggregateScope(std::move(field_slot), aggregates, /*allow_fields=*/true, nullptr) {}
  std::string NewValueRefusal() const override {
    return "new_value() is not allowed in select (it is a condition; use it in when)";
  }
};

// An output field's name is no word of the expression language and no field
// every output record has.
Status CheckNotReserved(std::string_view what, const std::string& name) {
  if (IsKeyword(name)) {
    return Status::InvalidArgument(std::string(what) + " name '" + name +
                                   "' is a word of the expression language");
  }
  if (IsOutputField(name)) {
    return Status::InvalidArgument(std::string(what) + " name '" + name +
                                   "' is taken by a field of every output record");
  }
  return Status::Ok();
}

Result<AggregateDef> CompileAggregate(const proto::AggregateSpec& spec,
                                      const std::function<uint32_t(std::string_view)>& slot) {
  AggregateDef def;
  def.name = spec.name();
  if (!IsIdentifier(def.name)) {
    return Status::InvalidArgument("aggregate name '" + def.name +
                                   "' is not an identifier like total_spend");
  }
  if (Status s = CheckNotReserved("aggregate", def.name); !s.ok()) return s;
  switch (spec.function()) {
    case proto::AggregateSpec::COUNT:
      def.fn = AggFn::kCount;
      break;
    case proto::AggregateSpec::SUM:
      def.fn = AggFn::kSum;
      break;
    case proto::AggregateSpec::MIN:
      def.fn = AggFn::kMin;
      break;
    case proto::AggregateSpec::MAX:
      def.fn = AggFn::kMax;
      break;
    case proto::AggregateSpec::AVG:
      def.fn = AggFn::kAvg;
      break;
    case proto::AggregateSpec::COUNT_DISTINCT:
      def.fn = AggFn::kCountDistinct;
      break;
    case proto::AggregateSpec::FIRST:
      def.fn = AggFn::kFirst;
      break;
    case proto::AggregateSpec::LAST:
      def.fn = AggFn::kLast;
      break;
    case proto::AggregateSpec::DURATION:
      def.fn = AggFn::kDuration;
      break;
    default:
      return Status::InvalidArgument("aggregate '" + def.name + "' has no function");
  }
  if (def.fn == AggFn::kDuration) {
    if (!spec.field().empty()) {
      return Status::InvalidArgument("aggregate '" + def.name + "': duration() takes no field");
    }
  } else if (def.fn == AggFn::kCount) {
    if (!spec.field().empty()) def.field_slot = slot(spec.field());
  } else {
    if (spec.field().empty()) {
      return Status::InvalidArgument("aggregate '" + def.name + "' needs a field");
    }
    def.field_slot = slot(spec.field());
  }
  return def;
}

// One select of `rule`, whose aggregates and earlier selects are compiled.
Result<SelectDef> CompileSelect(const proto::SelectSpec& spec, const RuleDef& rule,
                                const std::function<uint32_t(std::string_view)>& slot) {
  SelectDef def;
  def.name = spec.name();
  if (!IsIdentifier(def.name)) {
    return Status::InvalidArgument("select name '" + def.name +
                                   "' is not an identifier like price_eur");
  }
  if (Status s = CheckNotReserved("select", def.name); !s.ok()) return s;
  for (const AggregateDef& a : rule.aggregates) {
    if (a.name == def.name) {
      return Status::InvalidArgument("select name '" + def.name +
                                     "' is taken by an aggregate of the rule");
    }
  }
  for (const SelectDef& other : rule.selects) {
    if (other.name == def.name) {
      return Status::InvalidArgument("duplicate select name '" + def.name + "'");
    }
  }
  if (spec.expr().empty()) {
    return Status::InvalidArgument("select '" + def.name + "' needs an expression");
  }
  SelectScope scope(slot, &rule.aggregates);
  auto expr = Expr::Parse(spec.expr(), scope);
  if (!expr.ok()) return expr.status();
  def.expr = std::move(expr).value();
  return def;
}

}  // namespace

uint32_t JobPlan::FieldSlot(std::string_view path) {
  if (!declared_.empty() && undeclared_.empty() &&
      std::find(declared_.begin(), declared_.end(), path) == declared_.end()) {
    undeclared_ = std::string(path);
  }
  for (size_t i = 0; i < field_names_.size(); ++i) {
    if (field_names_[i] == path) return static_cast<uint32_t>(i);
  }
  field_names_.emplace_back(path);
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    parts.emplace_back(path.substr(start, dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  field_paths_.push_back(std::move(parts));
  return static_cast<uint32_t>(field_names_.size() - 1);
}

Status JobPlan::CheckDeclared(const std::string& path) {
  if (undeclared_.empty()) return Status::Ok();
  std::string declared;
  for (const proto::FieldSpec& f : spec_.source().fields()) {
    declared += (declared.empty() ? "" : ", ") + f.path();
  }
  std::string field = std::move(undeclared_);
  undeclared_.clear();
  return Fail(
      path, "field '" + field + "' is not declared in source.fields (declared: " + declared + ")");
}

int32_t JobPlan::RollingIndex(uint32_t field_slot) {
  auto it = std::find(rolling_slots_.begin(), rolling_slots_.end(), field_slot);
  if (it != rolling_slots_.end()) return static_cast<int32_t>(it - rolling_slots_.begin());
  rolling_slots_.push_back(field_slot);
  return static_cast<int32_t>(rolling_slots_.size() - 1);
}

Status JobPlan::CompileRule(int index, const proto::RuleSpec& spec) {
  const std::string path = "rules[" + std::to_string(index) + "]";
  auto slot = [this](std::string_view p) { return FieldSlot(p); };
  RuleDef rule;
  rule.name = spec.name();
  if (rule.name.empty()) return Fail(path, "a rule needs a name");
  for (const RuleDef& other : rules_) {
    if (other.name == rule.name) {
      return Fail(path, "duplicate rule name '" + rule.name + "'");
    }
  }
  const proto::WindowSpec& w = spec.window();
  switch (w.kind_case()) {
    case proto::WindowSpec::KIND_NOT_SET:
      break;
    case proto::WindowSpec::kRollingMs:
      if (w.rolling_ms() <= 0) {
        return Fail(path + ".window", "rolling window must be longer than 0");
      }
      rule.window.kind = WindowKind::kRolling;
      rule.window.size_ms = w.rolling_ms();
      max_rolling_ms_ = std::max(max_rolling_ms_, w.rolling_ms());
      break;
    default:
      return Fail(path + ".window", "a rule's window must be rolling, e.g. {rolling: 5m}");
  }
  for (int i = 0; i < spec.aggregates_size(); ++i) {
    auto agg = CompileAggregate(spec.aggregates(i), slot);
    if (!agg.ok()) {
      return Fail(path + ".aggregates[" + std::to_string(i) + "]", agg.status().message());
    }
    SLUICE_RETURN_IF_ERROR(CheckDeclared(path + ".aggregates[" + std::to_string(i) + "]"));
    rule.aggregates.push_back(std::move(agg).value());
  }
  if (!rule.aggregates.empty() && rule.window.kind != WindowKind::kRolling) {
    return Fail(path, "an aggregate needs a rolling window, e.g. {rolling: 5m}");
  }
  if (spec.when().empty()) return Fail(path + ".when", "a rule needs a condition");
  std::vector<uint32_t> new_value_fields;
  AggregateScope scope(slot, &rule.aggregates, /*allow_fields=*/true,
                       rule.window.kind == WindowKind::kRolling ? &new_value_fields : nullptr);
  auto when = Expr::Parse(spec.when(), scope);
  if (!when.ok()) return Fail(path + ".when", when.status().message());
  SLUICE_RETURN_IF_ERROR(CheckDeclared(path + ".when"));
  rule.when = std::move(when).value();
  for (int i = 0; i < spec.select_size(); ++i) {
    auto select = CompileSelect(spec.select(i), rule, slot);
    if (!select.ok()) {
      return Fail(path + ".select[" + std::to_string(i) + "]", select.status().message());
    }
    SLUICE_RETURN_IF_ERROR(CheckDeclared(path + ".select[" + std::to_string(i) + "]"));
    rule.selects.push_back(std::move(select).value());
  }
  if (rule.window.kind == WindowKind::kRolling) {
    for (AggregateDef& a : rule.aggregates) {
      if (a.field_slot) a.rolling_index = RollingIndex(*a.field_slot);
    }
    for (uint32_t f : new_value_fields) rule.new_value_rolling_index.push_back(RollingIndex(f));
  }
  rules_.push_back(std::move(rule));
  return Status::Ok();
}

Status JobPlan::CompileWindowJob() {
  const proto::WindowSpec& w = spec_.window();
  window_.allowed_lateness_ms = w.allowed_lateness_ms();
  if (window_.allowed_lateness_ms < 0) {
    return Fail("window", "allowed_lateness must not be negative");
  }
  switch (w.kind_case()) {
    case proto::WindowSpec::kTumblingMs:
      window_.kind = WindowKind::kTumbling;
      window_.size_ms = w.tumbling_ms();
      if (window_.size_ms <= 0) return Fail("window", "tumbling size must be > 0");
      break;
    case proto::WindowSpec::kSliding:
      window_.kind = WindowKind::kSliding;
      window_.size_ms = w.sliding().size_ms();
      window_.every_ms = w.sliding().every_ms();
      if (window_.size_ms <= 0 || window_.every_ms <= 0 || window_.every_ms > window_.size_ms) {
        return Fail("window", "sliding needs 0 < every <= size");
      }
      break;
    case proto::WindowSpec::kSessionGapMs:
      window_.kind = WindowKind::kSession;
      window_.gap_ms = w.session_gap_ms();
      if (window_.gap_ms <= 0) return Fail("window", "session gap must be > 0");
      break;
    case proto::WindowSpec::kRollingMs:
      return Fail("window",
                  "rolling windows belong to rules; a window job takes tumbling, sliding or "
                  "session");
    case proto::WindowSpec::KIND_NOT_SET:
      return Fail("window", "expected tumbling, sliding or session");
  }
  auto slot = [this](std::string_view p) { return FieldSlot(p); };
  for (int i = 0; i < spec_.aggregates_size(); ++i) {
    auto agg = CompileAggregate(spec_.aggregates(i), slot);
    if (!agg.ok()) return Fail("aggregates[" + std::to_string(i) + "]", agg.status().message());
    SLUICE_RETURN_IF_ERROR(CheckDeclared("aggregates[" + std::to_string(i) + "]"));
    for (const AggregateDef& other : aggregates_) {
      if (other.name == agg->name) {
        return Fail("aggregates[" + std::to_string(i) + "]",
                    "duplicate aggregate name '" + agg->name + "'");
      }
    }
    aggregates_.push_back(std::move(agg).value());
  }
  if (!spec_.having().empty()) {
    AggregateScope scope(slot, &aggregates_, /*allow_fields=*/false, nullptr);
    auto having = Expr::Parse(spec_.having(), scope);
    if (!having.ok()) return Fail("having", having.status().message());
    having_ = std::move(having).value();
  }
  return Status::Ok();
}

Status JobPlan::Fail(std::string path, std::string message) {
  Status status = Status::InvalidArgument(path.empty() ? message : path + ": " + message);
  if (error_.message.empty()) error_ = PlanError{std::move(path), std::move(message)};
  return status;
}

Result<std::shared_ptr<const JobPlan>> JobPlan::Compile(const proto::JobSpec& spec,
                                                        PlanError* error) {
  std::shared_ptr<JobPlan> plan(new JobPlan());
  plan->spec_ = spec;
  if (Status compiled = plan->CompileJob(); !compiled.ok()) {
    if (error != nullptr) *error = plan->error_;
    return compiled;
  }
  return std::shared_ptr<const JobPlan>(std::move(plan));
}

Status JobPlan::CompileJob() {
  const proto::JobSpec& spec = spec_;
  const proto::SourceSpec& src = spec.source();
  if (spec.name().empty()) return Fail("name", "a job needs a name");
  if (src.key().empty()) return Fail("source.key", "missing the key field");
  if (src.event_time().empty()) {
    return Fail("source.event_time", "missing the event time field");
  }
  if (src.max_out_of_orderness_ms() < 0 || src.idle_timeout_ms() < 0 || src.max_future_ms() < 0 ||
      src.max_past_ms() < 0) {
    return Fail("source", "durations must not be negative");
  }
  key_slot_ = FieldSlot(src.key());
  time_slot_ = FieldSlot(src.event_time());
  max_record_bytes_ = src.max_record_bytes() > 0 ? src.max_record_bytes() : 64 * 1024;

  // Declared fields: every other field the job reads must be one of them.
  for (int i = 0; i < src.fields_size(); ++i) {
    const proto::FieldSpec& f = src.fields(i);
    const std::string path = "source.fields." + f.path();
    if (f.path().empty()) return Fail("source.fields", "a field needs a path");
    if (std::find(declared_.begin(), declared_.end(), f.path()) != declared_.end()) {
      return Fail(path, "declared twice");
    }
    declared_.push_back(f.path());
    field_checks_.push_back(FieldCheck{FieldSlot(f.path()), f.type(), f.optional()});
  }
  if (!declared_.empty()) {
    declared_.push_back(src.key());
    declared_.push_back(src.event_time());
  }

  if (spec.has_dedup()) {
    const proto::DedupSpec& d = spec.dedup();
    if (d.field().empty()) return Fail("dedup.field", "missing the field");
    if (d.within_ms() <= 0) return Fail("dedup.within", "must be longer than 0s");
    dedup_ = DedupDef{FieldSlot(d.field()), d.within_ms()};
    SLUICE_RETURN_IF_ERROR(CheckDeclared("dedup.field"));
  }

  if (!spec.filter().empty()) {
    FieldScope scope([this](std::string_view path) { return FieldSlot(path); });
    auto filter = Expr::Parse(spec.filter(), scope);
    if (!filter.ok()) return Fail("filter", filter.status().message());
    SLUICE_RETURN_IF_ERROR(CheckDeclared("filter"));
    filter_ = std::move(filter).value();
  }

  const bool has_window = spec.window().kind_case() != proto::WindowSpec::KIND_NOT_SET;
  if (spec.rules_size() > 0 && has_window) {
    return Fail("rules", "a job has either rules or a window, not both");
  }
  if (spec.rules_size() > 0) {
    for (int i = 0; i < spec.rules_size(); ++i) {
      SLUICE_RETURN_IF_ERROR(CompileRule(i, spec.rules(i)));
    }
  } else if (has_window) {
    SLUICE_RETURN_IF_ERROR(CompileWindowJob());
  } else {
    return Fail("rules", "a job needs rules or a window");
  }
  return Status::Ok();
}

Status CheckStateCompatible(const JobPlan& before, const JobPlan& after) {
  auto refuse = [](const std::string& what) {
    return Status::FailedPrecondition(
        what + "; an update keeps the task state, so this needs a new job (cancel and submit)");
  };
  const proto::SourceSpec& a = before.spec().source();
  const proto::SourceSpec& b = after.spec().source();
  if (a.topic() != b.topic() || a.brokers() != b.brokers()) {
    return refuse("the source topic changed");
  }
  if (a.key() != b.key()) return refuse("the key changed");
  if (a.event_time() != b.event_time()) return refuse("the event_time field changed");
  if (a.format() != b.format()) return refuse("the format changed");
  const proto::SinkSpec& sa = before.spec().sinks();
  const proto::SinkSpec& sb = after.spec().sinks();
  if (sa.output() != sb.output() || sa.late() != sb.late() ||
      sa.dead_letter() != sb.dead_letter() || sa.markers() != sb.markers()) {
    return refuse("the sinks changed");
  }
  if (before.spec().delivery() != after.spec().delivery()) {
    return refuse("the delivery changed");
  }
  if (before.is_rule_job() != after.is_rule_job()) {
    return refuse("a rule job and a window job keep different state");
  }
  if (!before.is_rule_job()) {
    const WindowDef& wa = before.window();
    const WindowDef& wb = after.window();
    if (wa.kind != wb.kind || wa.size_ms != wb.size_ms || wa.every_ms != wb.every_ms ||
        wa.gap_ms != wb.gap_ms) {
      return refuse("the window changed");
    }
    if (before.aggregates().size() != after.aggregates().size()) {
      return refuse("the aggregates changed");
    }
    for (size_t i = 0; i < before.aggregates().size(); ++i) {
      const AggregateDef& x = before.aggregates()[i];
      const AggregateDef& y = after.aggregates()[i];
      auto field = [](const JobPlan& p, const AggregateDef& d) {
        return d.field_slot ? p.field_names()[*d.field_slot] : std::string();
      };
      if (x.name != y.name || x.fn != y.fn || field(before, x) != field(after, y)) {
        return refuse("aggregate '" + x.name + "' changed");
      }
    }
    return Status::Ok();
  }
  auto rolling_fields = [](const JobPlan& p) {
    std::vector<std::string> names;
    for (uint32_t slot : p.rolling_slots()) names.push_back(p.field_names()[slot]);
    return names;
  };
  if (rolling_fields(before) != rolling_fields(after)) {
    return refuse("the event fields the rolling rules keep changed");
  }
  return Status::Ok();
}

}  // namespace sluice::engine
