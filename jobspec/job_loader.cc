#include "jobspec/job_loader.h"

#include <yaml-cpp/yaml.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

#include "common/file_util.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/names.h"
#include "worker/engine/time_util.h"

namespace sluice::jobspec {
namespace {

constexpr int64_t kSecondMs = 1000;
constexpr int64_t kMinuteMs = 60 * kSecondMs;
constexpr int64_t kHourMs = 60 * kMinuteMs;
constexpr int64_t kDayMs = 24 * kHourMs;

constexpr int64_t kDefaultIdleTimeoutMs = 30 * kSecondMs;
constexpr int64_t kDefaultMaxFutureMs = kHourMs;
constexpr int64_t kDefaultCheckpointIntervalMs = 10 * kSecondMs;
// The largest source record processed, and the most of a raw record a dead
// letter carries, unless source.max_record_bytes says otherwise.
constexpr int64_t kDefaultMaxRecordBytes = 64 * 1024;
// Past this a record cannot be produced to Kafka with any sane setting.
constexpr int64_t kMaxMaxRecordBytes = int64_t{1} << 30;

// Longer names would make the default sink topics ("<name>-late") exceed
// Kafka's limit of 249 characters.
constexpr size_t kMaxJobNameLength = 200;
constexpr size_t kMaxTopicLength = 249;

constexpr std::string_view kDurationExpected = "a duration like 250ms, 5s, 30m, 1h or 7d";
constexpr std::string_view kAggregateExpected =
    "an aggregate like count(), count(f), sum(f), min(f), max(f), avg(f), "
    "count_distinct(f), first(f), last(f) or duration()";

using engine::IsIdentifier;
using engine::IsIdentifierChar;
using engine::IsIdentifierPath;

bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAsciiLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsBlank(char c) { return c == ' ' || c == '\t'; }

// [a-z0-9-]+
bool IsJobName(std::string_view s) {
  if (s.empty() || s.size() > kMaxJobNameLength) return false;
  for (char c : s) {
    if (!IsAsciiLower(c) && !IsAsciiDigit(c) && c != '-') return false;
  }
  return true;
}

// [A-Za-z0-9_-]+
bool IsRuleName(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsIdentifierChar(c) && c != '-') return false;
  }
  return true;
}

// Non-empty segments joined by '.', without spaces or control characters. JSON
// field names may hold other punctuation ("@timestamp", "user-id").
bool IsFieldPath(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  if (s.find("..") != std::string_view::npos) return false;
  for (char c : s) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return false;
  }
  return true;
}

// Kafka's rule: 1-249 of [A-Za-z0-9._-], and not "." or "..".
bool IsTopicName(std::string_view s) {
  if (s.empty() || s.size() > kMaxTopicLength || s == "." || s == "..") {
    return false;
  }
  for (char c : s) {
    if (!IsIdentifierChar(c) && c != '.' && c != '-') return false;
  }
  return true;
}

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

// How a node reads in "got ..." of an error message.
std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return Quote(node.Scalar());
    default:
      return "nothing";
  }
}

// 1-based line of a node, 0 when yaml-cpp has none.
int LineOf(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.is_null() || mark.line < 0 ? 0 : mark.line + 1;
}

// A key of a mapping and its value.
struct Entry {
  std::string key;
  YAML::Node key_node;
  YAML::Node value;

  int key_line() const { return LineOf(key_node); }
  // Where an error about the value points: a scalar's own line; a mapping, a
  // list or an empty value points at its key (yaml-cpp marks an empty value
  // at the token after it).
  int value_line() const {
    const int line = value.IsScalar() ? LineOf(value) : 0;
    return line > 0 ? line : key_line();
  }
};

// A mapping whose keys were checked: all scalar, known and unique.
struct Section {
  std::string where;  // "" for the job itself, "source", "rules[1]", ...
  int line = 0;       // the line of the key naming it
  std::vector<Entry> entries;

  const Entry* Find(std::string_view key) const {
    for (const Entry& e : entries) {
      if (e.key == key) return &e;
    }
    return nullptr;
  }
  std::string Path(std::string_view key) const {
    return where.empty() ? std::string(key) : where + "." + std::string(key);
  }
  // " in source", or nothing for the job itself.
  std::string InWhere() const { return where.empty() ? "" : " in " + where; }
};

std::string JoinKeys(std::initializer_list<std::string_view> keys) {
  std::string out;
  for (std::string_view k : keys) {
    if (!out.empty()) out += ", ";
    out += k;
  }
  return out;
}

// Parses the text of one aggregate, "fn(field)" or "count()". The returned
// spec has no name yet. Errors carry no path; the caller adds it.
Result<proto::AggregateSpec> ParseAggregateCall(std::string_view text) {
  const Status malformed = Status::InvalidArgument("expected " + std::string(kAggregateExpected) +
                                                   ", got " + Quote(text));
  size_t i = 0;
  auto skip_blanks = [&] {
    while (i < text.size() && IsBlank(text[i])) ++i;
  };
  skip_blanks();
  const size_t fn_start = i;
  while (i < text.size() && IsIdentifierChar(text[i])) ++i;
  const std::string_view fn = text.substr(fn_start, i - fn_start);
  skip_blanks();
  if (fn.empty() || i >= text.size() || text[i] != '(') return malformed;
  ++i;
  skip_blanks();
  const size_t arg_start = i;
  while (i < text.size() && (IsIdentifierChar(text[i]) || text[i] == '.')) ++i;
  const std::string_view arg = text.substr(arg_start, i - arg_start);
  skip_blanks();
  if (i >= text.size() || text[i] != ')') return malformed;
  ++i;
  skip_blanks();
  if (i != text.size()) return malformed;
  if (!arg.empty() && !IsIdentifierPath(arg)) return malformed;

  static const std::map<std::string_view, proto::AggregateSpec::Function> kFunctions = {
      {"count", proto::AggregateSpec::COUNT},
      {"sum", proto::AggregateSpec::SUM},
      {"min", proto::AggregateSpec::MIN},
      {"max", proto::AggregateSpec::MAX},
      {"avg", proto::AggregateSpec::AVG},
      {"count_distinct", proto::AggregateSpec::COUNT_DISTINCT},
      {"first", proto::AggregateSpec::FIRST},
      {"last", proto::AggregateSpec::LAST},
      {"duration", proto::AggregateSpec::DURATION},
  };
  const auto it = kFunctions.find(fn);
  if (it == kFunctions.end()) {
    return Status::InvalidArgument("unknown aggregate function " + Quote(fn) +
                                   " (expected one of: count, sum, min, max, avg, count_distinct, "
                                   "first, last, duration)");
  }
  // count() counts events, count(f) the events where f is not null.
  const bool no_field = it->second == proto::AggregateSpec::DURATION;
  const bool optional_field = it->second == proto::AggregateSpec::COUNT;
  if (no_field && !arg.empty()) {
    return Status::InvalidArgument(std::string(fn) + "() takes no field, got " + Quote(text));
  }
  if (!no_field && !optional_field && arg.empty()) {
    return Status::InvalidArgument(std::string(fn) + "() needs a field, like " + std::string(fn) +
                                   "(amount)");
  }
  proto::AggregateSpec agg;
  agg.set_function(it->second);
  agg.set_field(std::string(arg));
  return agg;
}

// Maps one job document onto a JobSpec. Remembers the line of every path into
// the job so that errors found later (by JobPlan::Compile) can point at it.
class Loader {
 public:
  Loader(std::string_view filename, int top_line)
      : filename_(filename.empty() ? "<job>" : filename), top_line_(top_line > 0 ? top_line : 1) {}

  Status Error(int line, std::string_view message) const {
    return Status::InvalidArgument(Prefix(line) + std::string(message));
  }

  Status MapJob(const YAML::Node& root, proto::JobSpec* spec);

  // Prefixes an error of JobPlan::Compile with the file and the line of the
  // element its path names.
  Status LocateCompileError(const Status& status, const engine::PlanError& error) const;

 private:
  std::string Prefix(int line) const {
    return filename_ + ":" + std::to_string(line > 0 ? line : top_line_) + ": ";
  }

  Status ReadSection(const YAML::Node& node, std::string where, int line,
                     std::initializer_list<std::string_view> allowed, Section* out);
  Status Require(const Section& section, std::string_view key, const Entry** out) const;
  Result<std::string> Scalar(const Entry& e, const std::string& path,
                             std::string_view expected) const;
  Status Duration(const Entry& e, const std::string& path, bool positive, int64_t* out) const;
  Status OptionalDuration(const Section& section, std::string_view key, bool positive,
                          int64_t default_ms, int64_t* out) const;
  Status Topic(const Entry& e, const std::string& path, std::string* out) const;
  Status FieldPath(const Entry& e, const std::string& path, std::string* out) const;

  Status MapSource(const Entry& e, proto::SourceSpec* source);
  Status MapFields(const Entry& e, proto::SourceSpec* source);
  Status MapStart(const Entry& e, proto::SourceSpec* source) const;
  Status MapDedup(const Entry& e, proto::JobSpec* spec);
  Status MapSinks(const Entry& e, proto::JobSpec* spec);
  Status MapRules(const Entry& e, proto::JobSpec* spec);
  Status MapRule(const YAML::Node& node, int index, int line,
                 std::map<std::string, int>* rule_names, proto::RuleSpec* rule);
  Status MapRuleWindow(const Entry& e, const std::string& path, proto::WindowSpec* window);
  Status MapJobWindow(const Entry& e, proto::WindowSpec* window);
  Status MapAggregates(const Entry& e, const std::string& yaml_path, const std::string& proto_path,
                       google::protobuf::RepeatedPtrField<proto::AggregateSpec>* out);
  // What every name of an output field must be (an aggregate's, a
  // select's): an identifier that is no word of the expression language and
  // no field every output record has. `what` names it in the error, e.g.
  // "rules[0].aggregate: aggregate name 'n'".
  Status CheckOutputName(const Entry& e, const std::string& what) const {
    if (!IsIdentifier(e.key)) {
      return Error(e.key_line(), what +
                                     " is not an identifier (A-Z, a-z, 0-9 "
                                     "and '_', not starting with a digit)");
    }
    if (engine::IsKeyword(e.key)) {
      return Error(e.key_line(), what + " is a word of the expression language");
    }
    if (engine::IsOutputField(e.key)) {
      return Error(e.key_line(), what + " is taken by a field of every output record");
    }
    return Status::Ok();
  }
  Status MapSelect(const Entry& e, const std::string& path, proto::RuleSpec* rule);

  std::string filename_;
  int top_line_;
  std::map<std::string, int, std::less<>> lines_;  // path -> 1-based line
};

Status Loader::ReadSection(const YAML::Node& node, std::string where, int line,
                           std::initializer_list<std::string_view> allowed, Section* out) {
  out->where = std::move(where);
  out->line = line;
  out->entries.clear();
  if (!node.IsMap()) {
    return Error(line, out->where + ": expected a mapping, got " + Describe(node));
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    Entry e{"", it->first, it->second};
    if (!e.key_node.IsScalar()) {
      return Error(e.key_line() > 0 ? e.key_line() : line,
                   "expected a key name" + out->InWhere() + ", got " + Describe(e.key_node));
    }
    e.key = e.key_node.Scalar();
    bool known = false;
    for (std::string_view a : allowed) known = known || a == e.key;
    if (!known) {
      return Error(e.key_line(), "unknown key " + Quote(e.key) + out->InWhere() +
                                     " (expected one of: " + JoinKeys(allowed) + ")");
    }
    if (out->Find(e.key) != nullptr) {
      return Error(e.key_line(), "duplicate key " + Quote(e.key) + out->InWhere());
    }
    lines_[out->Path(e.key)] = e.value_line();
    out->entries.push_back(std::move(e));
  }
  return Status::Ok();
}

Status Loader::Require(const Section& section, std::string_view key, const Entry** out) const {
  *out = section.Find(key);
  if (*out == nullptr) {
    return Error(section.line, "missing required key " + Quote(key) + section.InWhere());
  }
  return Status::Ok();
}

Result<std::string> Loader::Scalar(const Entry& e, const std::string& path,
                                   std::string_view expected) const {
  if (!e.value.IsScalar()) {
    return Error(e.value_line(),
                 path + ": expected " + std::string(expected) + ", got " + Describe(e.value));
  }
  // "?" plain, "!" quoted. Any other tag is most likely an expression that
  // starts with '!', which YAML reads as a tag.
  const std::string& tag = e.value.Tag();
  if (tag != "?" && tag != "!" && tag != "tag:yaml.org,2002:str") {
    return Error(e.value_line(), path + ": unexpected YAML tag " + Quote(tag) +
                                     " (quote a value that starts with '!')");
  }
  return e.value.Scalar();
}

Status Loader::Duration(const Entry& e, const std::string& path, bool positive,
                        int64_t* out) const {
  SLUICE_ASSIGN_OR_RETURN(std::string text, Scalar(e, path, kDurationExpected));
  Result<int64_t> ms = ParseDurationMs(text);
  if (!ms.ok()) {
    return Error(e.value_line(), path + ": " + ms.status().message());
  }
  if (positive && *ms == 0) {
    return Error(e.value_line(), path + ": must be longer than 0s");
  }
  *out = *ms;
  return Status::Ok();
}

Status Loader::OptionalDuration(const Section& section, std::string_view key, bool positive,
                                int64_t default_ms, int64_t* out) const {
  const Entry* e = section.Find(key);
  if (e == nullptr) {
    *out = default_ms;
    return Status::Ok();
  }
  return Duration(*e, section.Path(key), positive, out);
}

Status Loader::Topic(const Entry& e, const std::string& path, std::string* out) const {
  SLUICE_ASSIGN_OR_RETURN(*out, Scalar(e, path, "a Kafka topic name"));
  if (!IsTopicName(*out)) {
    return Error(e.value_line(), path +
                                     ": expected a Kafka topic name (at most 249 of "
                                     "A-Z a-z 0-9 . _ -), got " +
                                     Quote(*out));
  }
  return Status::Ok();
}

Status Loader::FieldPath(const Entry& e, const std::string& path, std::string* out) const {
  constexpr std::string_view kExpected = "a field path like user_id or user.id";
  SLUICE_ASSIGN_OR_RETURN(*out, Scalar(e, path, kExpected));
  if (!IsFieldPath(*out)) {
    return Error(e.value_line(),
                 path + ": expected " + std::string(kExpected) + ", got " + Quote(*out));
  }
  return Status::Ok();
}

Status Loader::MapJob(const YAML::Node& root, proto::JobSpec* spec) {
  if (!root.IsMap()) {
    return Error(top_line_,
                 "expected a job: a mapping with name, source, sinks and "
                 "either rules or window, got " +
                     Describe(root));
  }
  Section job;
  SLUICE_RETURN_IF_ERROR(
      ReadSection(root, "", top_line_,
                  {"name", "source", "dedup", "filter", "sinks", "checkpoint_interval", "delivery",
                   "rules", "window", "aggregate", "having"},
                  &job));
  const Entry* e = nullptr;
  SLUICE_RETURN_IF_ERROR(Require(job, "name", &e));
  SLUICE_ASSIGN_OR_RETURN(std::string name, Scalar(*e, "name", "a job name"));
  if (!IsJobName(name)) {
    return Error(e->value_line(), "name: expected a job name of a-z, 0-9 and '-' (at most " +
                                      std::to_string(kMaxJobNameLength) + "), got " + Quote(name));
  }
  spec->set_name(name);

  SLUICE_RETURN_IF_ERROR(Require(job, "source", &e));
  SLUICE_RETURN_IF_ERROR(MapSource(*e, spec->mutable_source()));

  if ((e = job.Find("dedup")) != nullptr) SLUICE_RETURN_IF_ERROR(MapDedup(*e, spec));

  if ((e = job.Find("filter")) != nullptr) {
    SLUICE_ASSIGN_OR_RETURN(*spec->mutable_filter(), Scalar(*e, "filter", "an expression"));
  }

  SLUICE_RETURN_IF_ERROR(Require(job, "sinks", &e));
  SLUICE_RETURN_IF_ERROR(MapSinks(*e, spec));

  int64_t checkpoint_ms = 0;
  SLUICE_RETURN_IF_ERROR(OptionalDuration(job, "checkpoint_interval", true,
                                          kDefaultCheckpointIntervalMs, &checkpoint_ms));
  spec->set_checkpoint_interval_ms(checkpoint_ms);

  if ((e = job.Find("delivery")) != nullptr) {
    constexpr std::string_view kExpected = "exactly_once or at_least_once";
    SLUICE_ASSIGN_OR_RETURN(std::string delivery, Scalar(*e, "delivery", kExpected));
    if (delivery == "exactly_once") {
      spec->set_delivery(proto::JobSpec::EXACTLY_ONCE);
      // Kafka's transaction.max.timeout.ms is 15 minutes by default.
      constexpr int64_t kMaxIntervalMs = 5 * 60 * kSecondMs;
      if (checkpoint_ms > kMaxIntervalMs) {
        return Error(e->value_line(),
                     "delivery: exactly_once keeps a transaction open for a checkpoint "
                     "interval: checkpoint_interval must be at most " +
                         FormatDurationMs(kMaxIntervalMs) + ", got " +
                         FormatDurationMs(checkpoint_ms));
      }
    } else if (delivery != "at_least_once") {
      return Error(e->value_line(),
                   "delivery: expected " + std::string(kExpected) + ", got " + Quote(delivery));
    }
  }

  const Entry* rules = job.Find("rules");
  const Entry* window = job.Find("window");
  const Entry* aggregate = job.Find("aggregate");
  const Entry* having = job.Find("having");
  if (rules != nullptr && window != nullptr) {
    const Entry* later = rules->key_line() > window->key_line() ? rules : window;
    return Error(later->key_line(), "a job has either 'rules' or 'window', not both");
  }
  if (rules != nullptr) {
    if (aggregate != nullptr) {
      return Error(aggregate->key_line(),
                   "aggregate: a rule job has no job-level aggregate; put it "
                   "in the rule that uses it");
    }
    if (having != nullptr) {
      return Error(having->key_line(),
                   "having: only a window job has 'having'; a rule has "
                   "'when'");
    }
    return MapRules(*rules, spec);
  }
  if (window == nullptr) {
    if (aggregate != nullptr || having != nullptr) {
      return Error(top_line_,
                   "missing required key 'window' (a job with 'aggregate' "
                   "is a window job)");
    }
    return Error(top_line_, "a job needs either 'rules' or 'window' and 'aggregate'");
  }
  SLUICE_RETURN_IF_ERROR(MapJobWindow(*window, spec->mutable_window()));
  if (aggregate == nullptr) {
    return Error(top_line_, "missing required key 'aggregate' (a window job needs it)");
  }
  SLUICE_RETURN_IF_ERROR(
      MapAggregates(*aggregate, "aggregate", "aggregates", spec->mutable_aggregates()));
  if (having != nullptr) {
    SLUICE_ASSIGN_OR_RETURN(*spec->mutable_having(), Scalar(*having, "having", "an expression"));
  }
  return Status::Ok();
}

Status Loader::MapSource(const Entry& e, proto::SourceSpec* source) {
  Section s;
  SLUICE_RETURN_IF_ERROR(
      ReadSection(e.value, "source", e.key_line(),
                  {"brokers", "topic", "format", "key", "event_time", "max_out_of_orderness",
                   "idle_timeout", "max_future", "max_past", "start", "fields", "max_record_bytes"},
                  &s));
  const Entry* f = nullptr;
  if ((f = s.Find("brokers")) != nullptr) {
    constexpr std::string_view kExpected = "a broker list like host:9092 or host1:9092,host2:9092";
    SLUICE_ASSIGN_OR_RETURN(*source->mutable_brokers(), Scalar(*f, "source.brokers", kExpected));
    if (source->brokers().empty()) {
      return Error(f->value_line(),
                   "source.brokers: expected " + std::string(kExpected) + ", got ''");
    }
  }
  SLUICE_RETURN_IF_ERROR(Require(s, "topic", &f));
  SLUICE_RETURN_IF_ERROR(Topic(*f, "source.topic", source->mutable_topic()));

  source->set_format("json");
  if ((f = s.Find("format")) != nullptr) {
    SLUICE_ASSIGN_OR_RETURN(std::string format, Scalar(*f, "source.format", "json"));
    if (format != "json") {
      return Error(f->value_line(),
                   "source.format: expected json (the only format), got " + Quote(format));
    }
  }
  SLUICE_RETURN_IF_ERROR(Require(s, "key", &f));
  SLUICE_RETURN_IF_ERROR(FieldPath(*f, "source.key", source->mutable_key()));
  SLUICE_RETURN_IF_ERROR(Require(s, "event_time", &f));
  SLUICE_RETURN_IF_ERROR(FieldPath(*f, "source.event_time", source->mutable_event_time()));

  int64_t ms = 0;
  SLUICE_RETURN_IF_ERROR(OptionalDuration(s, "max_out_of_orderness", false, 0, &ms));
  source->set_max_out_of_orderness_ms(ms);
  SLUICE_RETURN_IF_ERROR(OptionalDuration(s, "idle_timeout", false, kDefaultIdleTimeoutMs, &ms));
  source->set_idle_timeout_ms(ms);
  SLUICE_RETURN_IF_ERROR(OptionalDuration(s, "max_future", false, kDefaultMaxFutureMs, &ms));
  source->set_max_future_ms(ms);
  SLUICE_RETURN_IF_ERROR(OptionalDuration(s, "max_past", false, 0, &ms));
  source->set_max_past_ms(ms);

  if ((f = s.Find("start")) != nullptr) SLUICE_RETURN_IF_ERROR(MapStart(*f, source));
  if ((f = s.Find("fields")) != nullptr) SLUICE_RETURN_IF_ERROR(MapFields(*f, source));

  source->set_max_record_bytes(kDefaultMaxRecordBytes);
  if ((f = s.Find("max_record_bytes")) != nullptr) {
    const std::string expected =
        "a size in bytes from 1024 to " + std::to_string(kMaxMaxRecordBytes) + ", like 65536";
    SLUICE_ASSIGN_OR_RETURN(std::string text, Scalar(*f, "source.max_record_bytes", expected));
    int64_t bytes = 0;
    bool digits = !text.empty() && text.size() <= 10;
    for (char c : text) {
      digits = digits && IsAsciiDigit(c);
      if (digits) bytes = bytes * 10 + (c - '0');
    }
    if (!digits || bytes < 1024 || bytes > kMaxMaxRecordBytes) {
      return Error(f->value_line(),
                   "source.max_record_bytes: expected " + expected + ", got " + Quote(text));
    }
    source->set_max_record_bytes(bytes);
  }
  return Status::Ok();
}

Status Loader::MapStart(const Entry& e, proto::SourceSpec* source) const {
  constexpr std::string_view kExpected =
      "earliest, latest or an RFC 3339 time like 2024-03-01T12:00:00Z";
  SLUICE_ASSIGN_OR_RETURN(std::string text, Scalar(e, "source.start", kExpected));
  if (text == "earliest") {
    source->set_start(proto::SourceSpec::EARLIEST);
  } else if (text == "latest") {
    source->set_start(proto::SourceSpec::LATEST);
  } else if (std::optional<int64_t> ms = engine::ParseRfc3339Millis(text)) {
    source->set_start(proto::SourceSpec::AT_TIME);
    source->set_start_time_ms(*ms);
  } else {
    return Error(e.value_line(),
                 "source.start: expected " + std::string(kExpected) + ", got " + Quote(text));
  }
  return Status::Ok();
}

// source.fields: a mapping of field path to type, "number" or "number?".
Status Loader::MapFields(const Entry& e, proto::SourceSpec* source) {
  constexpr std::string_view kTypes =
      "number, integer, string, bool, timestamp, object, array or any, with a trailing ? when "
      "the field may be missing or null";
  static const std::map<std::string_view, proto::FieldSpec::Type> kTypeNames = {
      {"number", proto::FieldSpec::NUMBER},       {"integer", proto::FieldSpec::INTEGER},
      {"string", proto::FieldSpec::STRING},       {"bool", proto::FieldSpec::BOOL},
      {"timestamp", proto::FieldSpec::TIMESTAMP}, {"object", proto::FieldSpec::OBJECT},
      {"array", proto::FieldSpec::ARRAY},         {"any", proto::FieldSpec::ANY},
  };
  if (!e.value.IsMap() || e.value.size() == 0) {
    return Error(e.value_line(),
                 "source.fields: expected a mapping of field to type, like { amount: number, "
                 "merchant_id: string? }, got " +
                     Describe(e.value));
  }
  for (auto it = e.value.begin(); it != e.value.end(); ++it) {
    const Entry field{it->first.IsScalar() ? it->first.Scalar() : "", it->first, it->second};
    const int line = field.key_line() > 0 ? field.key_line() : e.key_line();
    if (!IsFieldPath(field.key)) {
      return Error(line, "source.fields: expected a field path like amount or user.id, got " +
                             Describe(field.key_node));
    }
    for (const proto::FieldSpec& earlier : source->fields()) {
      if (earlier.path() == field.key) {
        return Error(line, "source.fields: duplicate field " + Quote(field.key));
      }
    }
    const std::string path = "source.fields." + field.key;
    SLUICE_ASSIGN_OR_RETURN(std::string type, Scalar(field, path, kTypes));
    const bool optional = !type.empty() && type.back() == '?';
    if (optional) type.pop_back();
    const auto t = kTypeNames.find(type);
    if (t == kTypeNames.end()) {
      return Error(field.value_line(), path + ": unknown type " + Quote(field.value.Scalar()) +
                                           " (expected " + std::string(kTypes) + ")");
    }
    lines_[path] = field.value_line();
    proto::FieldSpec* spec = source->add_fields();
    spec->set_path(field.key);
    spec->set_type(t->second);
    spec->set_optional(optional);
  }
  return Status::Ok();
}

// dedup: { field: transaction_id, within: 1h }
Status Loader::MapDedup(const Entry& e, proto::JobSpec* spec) {
  Section s;
  SLUICE_RETURN_IF_ERROR(ReadSection(e.value, "dedup", e.key_line(), {"field", "within"}, &s));
  const Entry* f = nullptr;
  proto::DedupSpec* dedup = spec->mutable_dedup();
  SLUICE_RETURN_IF_ERROR(Require(s, "field", &f));
  SLUICE_RETURN_IF_ERROR(FieldPath(*f, "dedup.field", dedup->mutable_field()));
  SLUICE_RETURN_IF_ERROR(Require(s, "within", &f));
  int64_t ms = 0;
  SLUICE_RETURN_IF_ERROR(Duration(*f, "dedup.within", /*positive=*/true, &ms));
  dedup->set_within_ms(ms);
  return Status::Ok();
}

Status Loader::MapSinks(const Entry& e, proto::JobSpec* spec) {
  Section s;
  SLUICE_RETURN_IF_ERROR(ReadSection(e.value, "sinks", e.key_line(),
                                     {"output", "late", "dead_letter", "markers"}, &s));
  proto::SinkSpec* sinks = spec->mutable_sinks();
  const Entry* f = nullptr;
  SLUICE_RETURN_IF_ERROR(Require(s, "output", &f));
  SLUICE_RETURN_IF_ERROR(Topic(*f, "sinks.output", sinks->mutable_output()));

  struct Defaulted {
    std::string_view key;
    std::string* topic;
    std::string default_topic;
  };
  const std::array<Defaulted, 3> defaulted = {{
      {"late", sinks->mutable_late(), spec->name() + "-late"},
      {"dead_letter", sinks->mutable_dead_letter(), spec->name() + "-dlq"},
      {"markers", sinks->mutable_markers(), "sluice-" + spec->name() + "-markers"},
  }};
  for (const Defaulted& d : defaulted) {
    if ((f = s.Find(d.key)) != nullptr) {
      SLUICE_RETURN_IF_ERROR(Topic(*f, s.Path(d.key), d.topic));
    } else {
      *d.topic = d.default_topic;
    }
  }

  // Writing to the topic the job reads would feed its output back into it.
  const std::string& input = spec->source().topic();
  for (std::string_view key : {"output", "late", "dead_letter", "markers"}) {
    f = s.Find(key);
    const std::string& topic = key == "output"        ? sinks->output()
                               : key == "late"        ? sinks->late()
                               : key == "dead_letter" ? sinks->dead_letter()
                                                      : sinks->markers();
    if (topic != input) continue;
    if (f != nullptr) {
      return Error(f->value_line(), s.Path(key) + ": " + Quote(topic) +
                                        " is the source topic; a job must "
                                        "not write to the topic it reads");
    }
    return Error(s.line, s.Path(key) + ": the default " + Quote(topic) +
                             " is the source topic; set " + s.Path(key) + " to another topic");
  }
  return Status::Ok();
}

Status Loader::MapRules(const Entry& e, proto::JobSpec* spec) {
  if (!e.value.IsSequence()) {
    return Error(e.value_line(), "rules: expected a list of rules, got " + Describe(e.value));
  }
  if (e.value.size() == 0) {
    return Error(e.key_line(), "rules: expected at least one rule");
  }
  lines_["rules"] = e.key_line();
  std::map<std::string, int> rule_names;
  int index = 0;
  for (auto it = e.value.begin(); it != e.value.end(); ++it, ++index) {
    const YAML::Node item = *it;
    const int line = LineOf(item) > 0 ? LineOf(item) : e.key_line();
    SLUICE_RETURN_IF_ERROR(MapRule(item, index, line, &rule_names, spec->add_rules()));
  }
  return Status::Ok();
}

Status Loader::MapRule(const YAML::Node& node, int index, int line,
                       std::map<std::string, int>* rule_names, proto::RuleSpec* rule) {
  const std::string where = "rules[" + std::to_string(index) + "]";
  lines_[where] = line;
  if (!node.IsMap()) {
    return Error(line, where +
                           ": expected a rule: a mapping with name and "
                           "when, got " +
                           Describe(node));
  }
  Section r;
  SLUICE_RETURN_IF_ERROR(
      ReadSection(node, where, line, {"name", "when", "window", "aggregate", "select"}, &r));
  const Entry* f = nullptr;
  SLUICE_RETURN_IF_ERROR(Require(r, "name", &f));
  SLUICE_ASSIGN_OR_RETURN(*rule->mutable_name(), Scalar(*f, r.Path("name"), "a rule name"));
  if (!IsRuleName(rule->name())) {
    return Error(f->value_line(), r.Path("name") +
                                      ": expected a rule name of A-Z, a-z, "
                                      "0-9, '_' and '-', got " +
                                      Quote(rule->name()));
  }
  const auto [previous, inserted] = rule_names->emplace(rule->name(), index);
  if (!inserted) {
    return Error(f->value_line(), r.Path("name") + ": duplicate rule name " + Quote(rule->name()) +
                                      " (also rules[" + std::to_string(previous->second) + "])");
  }

  SLUICE_RETURN_IF_ERROR(Require(r, "when", &f));
  SLUICE_ASSIGN_OR_RETURN(*rule->mutable_when(), Scalar(*f, r.Path("when"), "an expression"));
  if (rule->when().empty()) {
    return Error(f->value_line(), r.Path("when") + ": expected an expression, got ''");
  }

  const Entry* window = r.Find("window");
  if (window != nullptr) {
    SLUICE_RETURN_IF_ERROR(MapRuleWindow(*window, r.Path("window"), rule->mutable_window()));
  }
  if ((f = r.Find("aggregate")) != nullptr) {
    if (window == nullptr) {
      return Error(f->key_line(), r.Path("aggregate") +
                                      ": a rule aggregates over a window; add "
                                      "one like window: { rolling: 5m }");
    }
    SLUICE_RETURN_IF_ERROR(
        MapAggregates(*f, r.Path("aggregate"), r.Path("aggregates"), rule->mutable_aggregates()));
  }
  if ((f = r.Find("select")) != nullptr) {
    SLUICE_RETURN_IF_ERROR(MapSelect(*f, r.Path("select"), rule));
  }
  return Status::Ok();
}

Status Loader::MapRuleWindow(const Entry& e, const std::string& path, proto::WindowSpec* window) {
  if (e.value.IsMap()) {
    for (auto it = e.value.begin(); it != e.value.end(); ++it) {
      const YAML::Node key = it->first;
      if (!key.IsScalar()) continue;
      const std::string& k = key.Scalar();
      if (k == "tumbling" || k == "session" || k == "sliding" || k == "every") {
        return Error(LineOf(key) > 0 ? LineOf(key) : e.key_line(),
                     path +
                         ": a rule window can only be rolling, like "
                         "{ rolling: 5m }, got " +
                         Quote(k));
      }
    }
  } else {
    return Error(e.value_line(), path +
                                     ": expected a rolling window like "
                                     "{ rolling: 5m }, got " +
                                     Describe(e.value));
  }
  Section w;
  SLUICE_RETURN_IF_ERROR(ReadSection(e.value, path, e.key_line(), {"rolling"}, &w));
  const Entry* f = nullptr;
  SLUICE_RETURN_IF_ERROR(Require(w, "rolling", &f));
  int64_t ms = 0;
  SLUICE_RETURN_IF_ERROR(Duration(*f, w.Path("rolling"), true, &ms));
  window->set_rolling_ms(ms);
  return Status::Ok();
}

Status Loader::MapJobWindow(const Entry& e, proto::WindowSpec* window) {
  if (!e.value.IsMap()) {
    return Error(e.value_line(),
                 "window: expected a window like { tumbling: 1m }, "
                 "{ session: 30m } or { sliding: 10m, every: 1m }, got " +
                     Describe(e.value));
  }
  for (auto it = e.value.begin(); it != e.value.end(); ++it) {
    const YAML::Node key = it->first;
    if (key.IsScalar() && key.Scalar() == "rolling") {
      return Error(LineOf(key) > 0 ? LineOf(key) : e.key_line(),
                   "window: a rolling window is for rules; a job window is "
                   "tumbling, session or sliding");
    }
  }
  Section w;
  SLUICE_RETURN_IF_ERROR(
      ReadSection(e.value, "window", e.key_line(),
                  {"tumbling", "session", "sliding", "every", "allowed_lateness"}, &w));

  const Entry* kind = nullptr;
  for (const Entry& f : w.entries) {
    if (f.key != "tumbling" && f.key != "session" && f.key != "sliding") {
      continue;
    }
    if (kind != nullptr) {
      return Error(f.key_line(),
                   "window: expected only one of tumbling, session or "
                   "sliding, got " +
                       Quote(kind->key) + " and " + Quote(f.key));
    }
    kind = &f;
  }
  if (kind == nullptr) {
    return Error(w.line,
                 "window: expected one of tumbling, session or sliding, like "
                 "{ tumbling: 1m }");
  }
  const Entry* every = w.Find("every");
  if (every != nullptr && kind->key != "sliding") {
    return Error(every->key_line(), "window.every: only a sliding window has 'every'");
  }

  int64_t ms = 0;
  SLUICE_RETURN_IF_ERROR(Duration(*kind, w.Path(kind->key), true, &ms));
  if (kind->key == "tumbling") {
    window->set_tumbling_ms(ms);
  } else if (kind->key == "session") {
    window->set_session_gap_ms(ms);
  } else {
    if (every == nullptr) {
      return Error(w.line,
                   "missing required key 'every' in window (a sliding "
                   "window needs it, like { sliding: 10m, every: 1m })");
    }
    int64_t every_ms = 0;
    SLUICE_RETURN_IF_ERROR(Duration(*every, "window.every", true, &every_ms));
    if (every_ms > ms) {
      return Error(every->value_line(), "window.every: must not be longer than the window (" +
                                            FormatDurationMs(ms) + "), got " +
                                            FormatDurationMs(every_ms));
    }
    window->mutable_sliding()->set_size_ms(ms);
    window->mutable_sliding()->set_every_ms(every_ms);
  }
  SLUICE_RETURN_IF_ERROR(OptionalDuration(w, "allowed_lateness", false, 0, &ms));
  window->set_allowed_lateness_ms(ms);
  return Status::Ok();
}

Status Loader::MapAggregates(const Entry& e, const std::string& yaml_path,
                             const std::string& proto_path,
                             google::protobuf::RepeatedPtrField<proto::AggregateSpec>* out) {
  if (!e.value.IsMap()) {
    return Error(e.value_line(), yaml_path +
                                     ": expected a mapping of name: "
                                     "function, like { n: count() }, got " +
                                     Describe(e.value));
  }
  if (e.value.size() == 0) {
    return Error(e.key_line(), yaml_path + ": expected at least one aggregate");
  }
  lines_[proto_path] = e.key_line();
  int index = 0;
  for (auto it = e.value.begin(); it != e.value.end(); ++it, ++index) {
    Entry a{"", it->first, it->second};
    if (!a.key_node.IsScalar()) {
      return Error(a.key_line() > 0 ? a.key_line() : e.key_line(),
                   yaml_path + ": expected an aggregate name, got " + Describe(a.key_node));
    }
    a.key = a.key_node.Scalar();
    SLUICE_RETURN_IF_ERROR(CheckOutputName(a, yaml_path + ": aggregate name " + Quote(a.key)));
    for (const proto::AggregateSpec& earlier : *out) {
      if (earlier.name() == a.key) {
        return Error(a.key_line(), "duplicate aggregate name " + Quote(a.key) + " in " + yaml_path);
      }
    }
    const std::string path = yaml_path + "." + a.key;
    SLUICE_ASSIGN_OR_RETURN(std::string text,
                            Scalar(a, path, "an aggregate like count() or sum(amount)"));
    Result<proto::AggregateSpec> agg = ParseAggregateCall(text);
    if (!agg.ok()) {
      return Error(a.value_line(), path + ": " + agg.status().message());
    }
    agg->set_name(a.key);
    lines_[path] = a.value_line();
    lines_[proto_path + "[" + std::to_string(index) + "]"] = a.value_line();
    *out->Add() = std::move(agg).value();
  }
  return Status::Ok();
}

// A rule's select, after its aggregates: output name -> expression, in the
// file's order. The expressions are parsed by JobPlan::Compile, whose errors
// ("rules[0].select[1]: ...") find their line through lines_.
Status Loader::MapSelect(const Entry& e, const std::string& path, proto::RuleSpec* rule) {
  if (!e.value.IsMap()) {
    return Error(e.value_line(), path +
                                     ": expected a mapping of name: "
                                     "expression, like { price_eur: price * "
                                     "0.908 }, got " +
                                     Describe(e.value));
  }
  if (e.value.size() == 0) {
    return Error(e.key_line(), path + ": expected at least one field");
  }
  int index = 0;
  for (auto it = e.value.begin(); it != e.value.end(); ++it, ++index) {
    Entry f{"", it->first, it->second};
    if (!f.key_node.IsScalar()) {
      return Error(f.key_line() > 0 ? f.key_line() : e.key_line(),
                   path + ": expected a field name, got " + Describe(f.key_node));
    }
    f.key = f.key_node.Scalar();
    const std::string what = path + ": select name " + Quote(f.key);
    SLUICE_RETURN_IF_ERROR(CheckOutputName(f, what));
    for (const proto::AggregateSpec& agg : rule->aggregates()) {
      if (agg.name() == f.key) {
        return Error(f.key_line(), what + " is taken by an aggregate of the rule");
      }
    }
    for (const proto::SelectSpec& earlier : rule->select()) {
      if (earlier.name() == f.key) {
        return Error(f.key_line(), "duplicate select name " + Quote(f.key) + " in " + path);
      }
    }
    const std::string field_path = path + "." + f.key;
    SLUICE_ASSIGN_OR_RETURN(std::string expr, Scalar(f, field_path, "an expression"));
    if (expr.empty()) {
      return Error(f.value_line(), field_path + ": expected an expression, got ''");
    }
    lines_[field_path] = f.value_line();
    lines_[path + "[" + std::to_string(index) + "]"] = f.value_line();
    proto::SelectSpec* select = rule->add_select();
    select->set_name(f.key);
    select->set_expr(std::move(expr));
  }
  return Status::Ok();
}

Status Loader::LocateCompileError(const Status& status, const engine::PlanError& error) const {
  std::string path = error.path;
  int line = top_line_;
  // The longest recorded prefix: "rules[1].aggregates[0].field" falls back to
  // "rules[1].aggregates[0]", then "rules[1].aggregates", then "rules[1]".
  while (!path.empty()) {
    const auto it = lines_.find(path);
    if (it != lines_.end() && it->second > 0) {
      line = it->second;
      break;
    }
    const size_t cut = path.find_last_of(".[");
    path.resize(cut == std::string::npos ? 0 : cut);
  }
  const StatusCode code =
      status.code() == StatusCode::kOk ? StatusCode::kInvalidArgument : status.code();
  return Status(code, Prefix(line) + status.message());
}

Result<proto::JobSpec> ParseJobYamlOrThrow(std::string_view yaml_text, std::string_view filename) {
  // Empty documents (a stray "---") do not count.
  std::vector<YAML::Node> docs;
  for (const YAML::Node& doc : YAML::LoadAll(std::string(yaml_text))) {
    if (!doc.IsNull()) docs.push_back(doc);
  }
  if (docs.size() > 1) {
    return Loader(filename, 1)
        .Error(LineOf(docs[1]), "a job file holds one YAML document, found another");
  }
  const YAML::Node root = docs.empty() ? YAML::Node() : docs[0];
  Loader loader(filename, docs.empty() ? 1 : LineOf(root));

  proto::JobSpec spec;
  SLUICE_RETURN_IF_ERROR(loader.MapJob(root, &spec));
  spec.set_source_yaml(std::string(yaml_text));

  engine::PlanError error;
  Result<std::shared_ptr<const engine::JobPlan>> plan = engine::JobPlan::Compile(spec, &error);
  if (!plan.ok()) return loader.LocateCompileError(plan.status(), error);
  return spec;
}

}  // namespace

Result<proto::JobSpec> ParseJobYaml(std::string_view yaml_text, std::string_view filename) {
  const std::string file = filename.empty() ? "<job>" : std::string(filename);
  try {
    return ParseJobYamlOrThrow(yaml_text, filename);
  } catch (const YAML::Exception& e) {
    const int line = e.mark.is_null() || e.mark.line < 0 ? 1 : e.mark.line + 1;
    return Status::InvalidArgument(file + ":" + std::to_string(line) + ": invalid YAML: " + e.msg);
  } catch (const std::exception& e) {
    return Status::Internal(file + ": loading the job failed: " + e.what());
  }
}

Result<proto::JobSpec> LoadJobFile(const std::string& path) {
  Result<std::string> text = ReadFileUpTo(path);
  if (!text.ok()) {
    if (text.status().code() == StatusCode::kNotFound) {
      return Status::NotFound(path + ": " + text.status().message());
    }
    return Status::IoError(path + ": cannot read: " + text.status().message());
  }
  return ParseJobYaml(*text, path);
}

Result<int64_t> ParseDurationMs(std::string_view text) {
  const Status malformed = Status::InvalidArgument("expected " + std::string(kDurationExpected) +
                                                   ", got " + Quote(text));
  size_t digits = 0;
  while (digits < text.size() && IsAsciiDigit(text[digits])) ++digits;
  if (digits == 0) return malformed;

  const std::string_view unit = text.substr(digits);
  int64_t unit_ms = 0;
  if (unit == "ms") {
    unit_ms = 1;
  } else if (unit == "s") {
    unit_ms = kSecondMs;
  } else if (unit == "m") {
    unit_ms = kMinuteMs;
  } else if (unit == "h") {
    unit_ms = kHourMs;
  } else if (unit == "d") {
    unit_ms = kDayMs;
  } else {
    return malformed;
  }

  const Status too_long =
      Status::InvalidArgument("duration " + Quote(text) + " is longer than the limit of " +
                              FormatDurationMs(kMaxDurationMs));
  int64_t count = 0;
  for (size_t i = 0; i < digits; ++i) {
    count = count * 10 + (text[i] - '0');
    if (count > kMaxDurationMs) return too_long;
  }
  if (count > kMaxDurationMs / unit_ms) return too_long;
  return count * unit_ms;
}

std::string FormatDurationMs(int64_t ms) {
  if (ms == 0) return "0s";
  static constexpr std::array<std::pair<int64_t, std::string_view>, 4> kUnits = {
      {{kDayMs, "d"}, {kHourMs, "h"}, {kMinuteMs, "m"}, {kSecondMs, "s"}}};
  for (const auto& [unit_ms, suffix] : kUnits) {
    if (ms % unit_ms == 0) return std::to_string(ms / unit_ms) + std::string(suffix);
  }
  return std::to_string(ms) + "ms";
}

}  // namespace sluice::jobspec
