#pragma once

// JobPlan: a JobSpec compiled for execution. It resolves every field path used
// by the job (key, event time, filter, rules, aggregates) to a slot the decoder
// fills per event, parses every expression once, and fixes the window and rule
// operators. Immutable once built; shared by all tasks of a job.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "proto/sluice.pb.h"
#include "worker/engine/expr.h"

namespace sluice::engine {

// The aggregate functions of the job language.
enum class AggFn : uint8_t {
  kCount,
  kSum,
  kMin,
  kMax,
  kAvg,
  kCountDistinct,
  kFirst,
  kLast,
  kDuration,  // last event time - first event time
};

struct AggregateDef {
  std::string name;
  AggFn fn = AggFn::kCount;
  std::optional<uint32_t> field_slot;  // absent for count()
  // Rules only: where the field's value sits among the values a rolling rule
  // keeps per event (JobPlan::rolling_slots()); -1 when none.
  int32_t rolling_index = -1;
};

enum class WindowKind : uint8_t { kNone, kTumbling, kSliding, kSession, kRolling };

struct WindowDef {
  WindowKind kind = WindowKind::kNone;
  int64_t size_ms = 0;   // tumbling, sliding, rolling
  int64_t every_ms = 0;  // sliding
  int64_t gap_ms = 0;    // session
  int64_t allowed_lateness_ms = 0;
};

// One output field of a rule's alerts (RuleSpec.select): `expr` is evaluated
// when the rule alerts, with what its `when` sees (the event's fields and the
// rule's aggregates), and written after the aggregates.
struct SelectDef {
  std::string name;  // an identifier, none of the rule's aggregate names
  Expr expr;         // never reads new_value()
};

struct RuleDef {
  std::string name;
  WindowDef window;  // kNone or kRolling
  std::vector<AggregateDef> aggregates;
  Expr when;
  std::vector<SelectDef> selects;  // in the order of the alert's fields
  // For new_value(f): the rolling index (see AggregateDef) of f, by new_value
  // slot.
  std::vector<int32_t> new_value_rolling_index;
};

// One declared field of source.fields, checked by the decoder before the
// filter runs.
struct FieldCheck {
  uint32_t slot = 0;
  proto::FieldSpec::Type type = proto::FieldSpec::ANY;
  bool optional = false;  // may be missing or null
};

// The job's `dedup`: an event whose `slot` value its key already had within
// `within_ms` of event time is dropped.
struct DedupDef {
  uint32_t slot = 0;
  int64_t within_ms = 0;
};

// Where JobPlan::Compile found a job wrong: the path of the offending element
// in the job's terms ("rules[1].when", "source.fields.amount", "window"; ""
// for none) and what is wrong there. The job loader maps the path to a line of
// the job file.
struct PlanError {
  std::string path;
  std::string message;
};

class JobPlan {
 public:
  // Compiles `spec`. Errors name the part of the job at fault first, as a path
  // into the job file, then what is wrong:
  //   "filter: column 8: expected an expression, got end of input"
  //   "rules[1].when: unknown name 'm' (aggregates here: n)"
  //   "rules[0].select[2]: column 1: new_value() is not allowed in select ..."
  //   "having: ..." / "window: ..." / "aggregates[2]: ..."
  //   "rules[0].when: field 'country' is not declared in source.fields ..."
  // The same, structured, in `*error` (if not null): the job loader turns the
  // path into a file line.
  static Result<std::shared_ptr<const JobPlan>> Compile(const proto::JobSpec& spec,
                                                        PlanError* error = nullptr);

  const proto::JobSpec& spec() const { return spec_; }
  const std::string& name() const { return spec_.name(); }

  // Field paths the decoder extracts, split on '.', by slot.
  const std::vector<std::vector<std::string>>& field_paths() const { return field_paths_; }
  const std::vector<std::string>& field_names() const { return field_names_; }

  uint32_t key_slot() const { return key_slot_; }
  uint32_t time_slot() const { return time_slot_; }

  const std::optional<Expr>& filter() const { return filter_; }

  // source.fields, in the order declared; empty when the job declares none.
  const std::vector<FieldCheck>& field_checks() const { return field_checks_; }
  const std::optional<DedupDef>& dedup() const { return dedup_; }
  // The largest source record processed; also the most of a raw record a dead
  // letter carries (source.max_record_bytes; 64 KiB when unset).
  int64_t max_record_bytes() const { return max_record_bytes_; }

  bool is_rule_job() const { return !rules_.empty(); }
  const std::vector<RuleDef>& rules() const { return rules_; }
  // The largest rolling window of any rule (0 if none).
  int64_t max_rolling_ms() const { return max_rolling_ms_; }
  bool has_rolling_rules() const { return max_rolling_ms_ > 0; }
  // The field slots whose values rolling rules keep per event.
  const std::vector<uint32_t>& rolling_slots() const { return rolling_slots_; }

  const WindowDef& window() const { return window_; }
  const std::vector<AggregateDef>& aggregates() const { return aggregates_; }
  const std::optional<Expr>& having() const { return having_; }

 private:
  JobPlan() = default;
  uint32_t FieldSlot(std::string_view path);
  // After compiling the part of the job at `path`: an error if it read a
  // field source.fields does not declare.
  Status CheckDeclared(const std::string& path);
  int32_t RollingIndex(uint32_t field_slot);
  Status CompileJob();
  Status CompileRule(int index, const proto::RuleSpec& spec);
  Status CompileWindowJob();
  // Records the first error (PlanError) and returns it as a Status,
  // "path: message".
  Status Fail(std::string path, std::string message);

  proto::JobSpec spec_;
  PlanError error_;
  std::vector<std::vector<std::string>> field_paths_;
  std::vector<std::string> field_names_;
  uint32_t key_slot_ = 0;
  uint32_t time_slot_ = 0;
  std::vector<uint32_t> rolling_slots_;
  std::optional<Expr> filter_;
  std::vector<FieldCheck> field_checks_;
  std::vector<std::string> declared_;  // source.fields paths, plus key and event time
  std::string undeclared_;             // the first field read that is not declared
  std::optional<DedupDef> dedup_;
  int64_t max_record_bytes_ = 0;
  std::vector<RuleDef> rules_;
  int64_t max_rolling_ms_ = 0;
  WindowDef window_;
  std::vector<AggregateDef> aggregates_;
  std::optional<Expr> having_;
};

// Whether a task of `before` can continue from its state under `after` (an
// update: rules, thresholds, filters and selects may change). OK, or
// FailedPrecondition naming what changed: the source (topic, key, event time,
// format), the sinks, the kind of job, the window, the aggregates of a window
// job, or the event fields rolling rules keep per event.
Status CheckStateCompatible(const JobPlan& before, const JobPlan& after);

}  // namespace sluice::engine
