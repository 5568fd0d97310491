#include "worker/engine/event_decoder.h"

#include <simdjson.h>

#include <charconv>
#include <cmath>
#include <cstring>

#include "worker/engine/time_util.h"

namespace sluice::engine {

namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

const char* TypeName(element_type t) {
  switch (t) {
    case element_type::ARRAY:
      return "an array";
    case element_type::OBJECT:
      return "an object";
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return "a number";
    case element_type::STRING:
      return "a string";
    case element_type::BOOL:
      return "a bool";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "a value";
}

// Visits every value with the On-Demand API, which stops where the document
// stops being valid JSON.
simdjson::error_code Walk(simdjson::ondemand::value v, int depth) {
  using simdjson::ondemand::json_type;
  if (depth > 64) return simdjson::DEPTH_ERROR;
  json_type t;
  if (auto e = v.type().get(t)) return e;
  switch (t) {
    case json_type::object: {
      simdjson::ondemand::object o;
      if (auto e = v.get_object().get(o)) return e;
      for (auto field : o) {
        simdjson::ondemand::value fv;
        if (auto e = field.value().get(fv)) return e;
        if (auto e = Walk(fv, depth + 1)) return e;
      }
      return simdjson::SUCCESS;
    }
    case json_type::array: {
      simdjson::ondemand::array a;
      if (auto e = v.get_array().get(a)) return e;
      for (auto item : a) {
        simdjson::ondemand::value x;
        if (auto e = item.get(x)) return e;
        if (auto e = Walk(x, depth + 1)) return e;
      }
      return simdjson::SUCCESS;
    }
    case json_type::number: {
      double d;
      return v.get_double().get(d);
    }
    case json_type::string: {
      std::string_view s;
      return v.get_string().get(s);
    }
    case json_type::boolean: {
      bool b;
      return v.get_bool().get(b);
    }
    case json_type::null: {
      bool n;
      return v.is_null().get(n);
    }
  }
  return simdjson::SUCCESS;
}

// "invalid_json at byte N: <what>" for a message the DOM parser rejected.
std::string InvalidJsonReason(std::string_view payload, simdjson::error_code dom_error) {
  std::string what = simdjson::error_message(dom_error);
  long at = -1;
  simdjson::ondemand::parser parser;
  simdjson::padded_string padded(payload);
  simdjson::ondemand::document doc;
  if (!parser.iterate(padded).get(doc)) {
    simdjson::ondemand::value root;
    simdjson::error_code e = doc.get_value().get(root);
    if (!e) e = Walk(root, 0);
    auto loc = doc.current_location();
    if (!loc.error()) at = static_cast<long>(loc.value_unsafe() - padded.data());
  }
  if (dom_error == simdjson::EMPTY) return "invalid_json: empty message";
  if (at < 0) return "invalid_json: " + what;
  return "invalid_json at byte " + std::to_string(at) + ": " + what;
}

// Whether `el` (found) is of the declared type `want`.
bool HasType(const element& el, proto::FieldSpec::Type want) {
  const element_type t = el.type();
  switch (want) {
    case proto::FieldSpec::NUMBER:
      return t == element_type::INT64 || t == element_type::UINT64 || t == element_type::DOUBLE;
    case proto::FieldSpec::INTEGER:
      return t == element_type::INT64 || t == element_type::UINT64 ||
             (t == element_type::DOUBLE && double(el) == std::trunc(double(el)));
    case proto::FieldSpec::STRING:
      return t == element_type::STRING;
    case proto::FieldSpec::BOOL:
      return t == element_type::BOOL;
    case proto::FieldSpec::TIMESTAMP:
      if (t == element_type::INT64 || t == element_type::UINT64) return true;
      if (t == element_type::DOUBLE) return double(el) == std::trunc(double(el));
      return t == element_type::STRING && ParseRfc3339Millis(std::string_view(el)).has_value();
    case proto::FieldSpec::OBJECT:
      return t == element_type::OBJECT;
    case proto::FieldSpec::ARRAY:
      return t == element_type::ARRAY;
    default:
      return true;  // any
  }
}

const char* DeclaredTypeName(proto::FieldSpec::Type type) {
  switch (type) {
    case proto::FieldSpec::NUMBER:
      return "number";
    case proto::FieldSpec::INTEGER:
      return "integer";
    case proto::FieldSpec::STRING:
      return "string";
    case proto::FieldSpec::BOOL:
      return "bool";
    case proto::FieldSpec::TIMESTAMP:
      return "timestamp (epoch ms or RFC 3339)";
    case proto::FieldSpec::OBJECT:
      return "object";
    case proto::FieldSpec::ARRAY:
      return "array";
    default:
      return "a value";
  }
}

// "string \"9000\"", "number 12.5", "bool true", "object", "null".
std::string DescribeValue(const element& el) {
  constexpr size_t kMaxShown = 64;
  auto shown = [&](const char* kind) {
    std::string text = simdjson::minify(el);
    if (text.size() > kMaxShown) text = text.substr(0, kMaxShown) + "...";
    return std::string(kind) + " " + text;
  };
  switch (el.type()) {
    case element_type::STRING:
      return shown("string");
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return shown("number");
    case element_type::BOOL:
      return shown("bool");
    case element_type::OBJECT:
      return "object";
    case element_type::ARRAY:
      return "array";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "a value";
}

}  // namespace

struct EventDecoder::Impl {
  explicit Impl(const JobPlan& plan)
      : plan(plan),
        fields(plan.field_paths().size()),
        elements(plan.field_paths().size()),
        found(plan.field_paths().size()) {}

  const JobPlan& plan;
  simdjson::dom::parser parser;
  std::vector<char> padded;  // the message, followed by simdjson's padding
  std::vector<Value> fields;
  std::vector<element> elements;  // by slot, where found[slot]
  std::vector<char> found;
  simdjson::dom::element root;  // of the last parsed message
  char key_buf[32];
  std::string minified;
};

EventDecoder::EventDecoder(const JobPlan& plan) : impl_(std::make_unique<Impl>(plan)) {}
EventDecoder::~EventDecoder() = default;

bool EventDecoder::Decode(std::string_view payload, int64_t now_ms, bool check_time_bounds,
                          DecodedEvent* out, std::string* reason) {
  return Parse(payload, reason, /*check_fields=*/check_time_bounds) &&
         Extract(now_ms, check_time_bounds, out, reason);
}

std::span<const Value> EventDecoder::fields() const { return impl_->fields; }

bool EventDecoder::Parse(std::string_view payload, std::string* reason, bool check_fields) {
  Impl& m = *impl_;
  const size_t need = payload.size() + simdjson::SIMDJSON_PADDING;
  if (m.padded.size() < need) m.padded.resize(need);
  std::memcpy(m.padded.data(), payload.data(), payload.size());
  std::memset(m.padded.data() + payload.size(), 0, simdjson::SIMDJSON_PADDING);

  element& root = m.root;
  simdjson::error_code err = m.parser.parse(m.padded.data(), payload.size(), false).get(root);
  if (err) {
    *reason = InvalidJsonReason(payload, err);
    return false;
  }
  if (root.type() != element_type::OBJECT) {
    *reason = std::string("invalid_json: expected a JSON object, got ") + TypeName(root.type());
    return false;
  }

  // Extract every field the job reads.
  const auto& paths = m.plan.field_paths();
  for (size_t slot = 0; slot < paths.size(); ++slot) {
    element cur = root;
    bool found = true;
    for (const std::string& part : paths[slot]) {
      if (cur.type() != element_type::OBJECT) {
        found = false;
        break;
      }
      if (cur.get_object().at_key(part).get(cur)) {
        found = false;
        break;
      }
    }
    Value& v = m.fields[slot];
    v = Value::Null();
    m.found[slot] = found;
    if (!found) continue;
    m.elements[slot] = cur;
    switch (cur.type()) {
      case element_type::STRING:
        v = Value::String(std::string_view(cur));
        break;
      case element_type::INT64:
        v = Value::Number(static_cast<double>(int64_t(cur)));
        break;
      case element_type::UINT64:
        v = Value::Number(static_cast<double>(uint64_t(cur)));
        break;
      case element_type::DOUBLE:
        v = Value::Number(double(cur));
        break;
      case element_type::BOOL:
        v = Value::Bool(bool(cur));
        break;
      // Objects and arrays are not values of the expression language.
      case element_type::OBJECT:
      case element_type::ARRAY:
      case element_type::NULL_VALUE:
        break;
    }
  }

  // Declared fields (source.fields): present and of their type, before the
  // filter sees them.
  if (!check_fields) return true;
  for (const FieldCheck& check : m.plan.field_checks()) {
    const bool present =
        m.found[check.slot] && m.elements[check.slot].type() != element_type::NULL_VALUE;
    if (!present) {
      if (check.optional) continue;
      const std::string& name = m.plan.field_names()[check.slot];
      *reason = m.found[check.slot]
                    ? "field " + name + ": expected " + DeclaredTypeName(check.type) + ", got null"
                    : "missing field " + name + " (expected " + DeclaredTypeName(check.type) + ")";
      return false;
    }
    if (!HasType(m.elements[check.slot], check.type)) {
      *reason = "field " + m.plan.field_names()[check.slot] + ": expected " +
                DeclaredTypeName(check.type) + ", got " + DescribeValue(m.elements[check.slot]);
      return false;
    }
  }
  return true;
}

bool EventDecoder::Extract(int64_t now_ms, bool check_time_bounds, DecodedEvent* out,
                           std::string* reason) {
  Impl& m = *impl_;
  const element& root = m.root;
  out->event_time = kMinTime;
  // The event time: epoch milliseconds, or an RFC 3339 string.
  const std::string& time_name = m.plan.field_names()[m.plan.time_slot()];
  const Value& t = m.fields[m.plan.time_slot()];
  int64_t event_time = 0;
  if (t.is_null()) {
    *reason = "missing event_time field " + time_name;
    return false;
  } else if (t.is_number()) {
    if (!(std::fabs(t.number) < 9.2e18) || t.number != std::trunc(t.number)) {
      *reason =
          "wrong type: event_time field " + time_name + " is not a whole number of milliseconds";
      return false;
    }
    event_time = static_cast<int64_t>(t.number);
  } else if (t.is_string()) {
    std::optional<int64_t> parsed = ParseRfc3339Millis(t.str);
    if (!parsed) {
      *reason = "bad event_time: field " + time_name + " '" + std::string(t.str.substr(0, 64)) +
                "' is not an RFC 3339 time like 2024-03-01T12:00:00Z";
      return false;
    }
    event_time = *parsed;
  } else {
    *reason = "wrong type: event_time field " + time_name + " is " +
              (t.is_bool() ? "a bool" : "not a value") +
              ", expected epoch milliseconds or an RFC 3339 string";
    return false;
  }

  if (check_time_bounds) {
    const proto::SourceSpec& src = m.plan.spec().source();
    if (src.max_future_ms() > 0 && event_time > SaturatingAdd(now_ms, src.max_future_ms())) {
      *reason = "event_time " + FormatRfc3339Millis(event_time) + " is " +
                FormatApproxDuration(event_time - now_ms) + " in the future (max_future " +
                FormatApproxDuration(src.max_future_ms()) + ")";
      return false;
    }
    if (src.max_past_ms() > 0 && event_time < SaturatingAdd(now_ms, -src.max_past_ms())) {
      *reason = "event_time " + FormatRfc3339Millis(event_time) + " is " +
                FormatApproxDuration(now_ms - event_time) + " in the past (max_past " +
                FormatApproxDuration(src.max_past_ms()) + ")";
      return false;
    }
  }

  out->event_time = event_time;  // valid even if the key is not

  // The key: a string, or an integer written as its decimal text.
  const std::string& key_name = m.plan.field_names()[m.plan.key_slot()];
  if (const Value& k = m.fields[m.plan.key_slot()]; k.is_string()) {
    out->key = k.str;  // the common case: extracted with the fields already
  } else {
    // Integers keep their exact decimal text; anything else is an error.
    element key_el = root;
    bool found = true;
    for (const std::string& part : m.plan.field_paths()[m.plan.key_slot()]) {
      if (key_el.type() != element_type::OBJECT || key_el.get_object().at_key(part).get(key_el)) {
        found = false;
        break;
      }
    }
    if (!found || key_el.type() == element_type::NULL_VALUE) {
      *reason = "missing key field " + key_name;
      return false;
    }
    switch (key_el.type()) {
      case element_type::STRING:
        out->key = std::string_view(key_el);
        break;
      case element_type::INT64: {
        auto r = std::to_chars(m.key_buf, m.key_buf + sizeof(m.key_buf), int64_t(key_el));
        out->key = std::string_view(m.key_buf, r.ptr - m.key_buf);
        break;
      }
      case element_type::UINT64: {
        auto r = std::to_chars(m.key_buf, m.key_buf + sizeof(m.key_buf), uint64_t(key_el));
        out->key = std::string_view(m.key_buf, r.ptr - m.key_buf);
        break;
      }
      default:
        *reason = "wrong type: key field " + key_name + " is " + TypeName(key_el.type()) +
                  ", expected a string or an integer";
        return false;
    }
  }

  out->fields = m.fields;
  return true;
}

std::string_view EventDecoder::Minify(std::string_view payload) {
  Impl& m = *impl_;
  m.minified.resize(payload.size());
  size_t len = 0;
  if (simdjson::minify(payload.data(), payload.size(), m.minified.data(), len)) {
    return payload;
  }
  return std::string_view(m.minified.data(), len);
}

}  // namespace sluice::engine
