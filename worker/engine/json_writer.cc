#include "worker/engine/json_writer.h"

#include <array>
#include <charconv>
#include <cmath>

namespace sluice::engine {

void JsonWriter::BeforeValue() {
  if (after_key_) {
    after_key_ = false;
  } else if (need_comma_) {
    out_->push_back(',');
  }
  need_comma_ = true;
}

void JsonWriter::BeginObject() {
  BeforeValue();
  out_->push_back('{');
  need_comma_ = false;
}

void JsonWriter::EndObject() {
  out_->push_back('}');
  need_comma_ = true;
}

void JsonWriter::BeginArray() {
  BeforeValue();
  out_->push_back('[');
  need_comma_ = false;
}

void JsonWriter::EndArray() {
  out_->push_back(']');
  need_comma_ = true;
}

void JsonWriter::Key(std::string_view key) {
  if (need_comma_) out_->push_back(',');
  out_->push_back('"');
  AppendEscaped(out_, key);
  out_->append("\":");
  after_key_ = true;
  need_comma_ = true;
}

void JsonWriter::SafeKey(std::string_view key) {
  if (need_comma_) out_->push_back(',');
  out_->push_back('"');
  out_->append(key);
  out_->append("\":");
  after_key_ = true;
  need_comma_ = true;
}

void JsonWriter::SafeString(std::string_view s) {
  BeforeValue();
  out_->push_back('"');
  out_->append(s);
  out_->push_back('"');
}

void JsonWriter::String(std::string_view s) {
  BeforeValue();
  out_->push_back('"');
  AppendEscaped(out_, s);
  out_->push_back('"');
}

void JsonWriter::Int(int64_t v) {
  BeforeValue();
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  out_->append(buf, res.ptr);
}

void JsonWriter::Double(double v) {
  if (!std::isfinite(v)) {
    Null();
    return;
  }
  if (v == std::trunc(v) && std::fabs(v) < 9007199254740992.0) {
    Int(static_cast<int64_t>(v));
    return;
  }
  BeforeValue();
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  out_->append(buf, res.ptr);
}

void JsonWriter::Bool(bool v) {
  BeforeValue();
  out_->append(v ? "true" : "false");
}

void JsonWriter::Null() {
  BeforeValue();
  out_->append("null");
}

void JsonWriter::Raw(std::string_view json) {
  BeforeValue();
  out_->append(json);
}

namespace {
// Bytes that JSON strings must escape: control characters, '"' and '\\'.
constexpr std::array<bool, 256> kNeedsEscape = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = true;
  t['"'] = true;
  t['\\'] = true;
  return t;
}();
}  // namespace

void JsonWriter::AppendEscaped(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t run = 0;  // start of the current run of characters that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (!kNeedsEscape[c]) continue;
    out->append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      default:
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 0xf]);
    }
  }
  out->append(s.data() + run, s.size() - run);
}

}  // namespace sluice::engine
