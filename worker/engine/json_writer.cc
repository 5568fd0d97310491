#include "worker/engine/json_writer.h"

#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>

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
  char buf[json::kMaxNumberChars];
  out_->append(buf, json::WriteInt(buf, v));
}

void JsonWriter::Double(double v) {
  BeforeValue();
  char buf[json::kMaxNumberChars];
  out_->append(buf, json::WriteDouble(buf, v));
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

// Decimal digits in pairs, for WriteInt.
constexpr std::array<char, 200> kDigitPairs = [] {
  std::array<char, 200> t{};
  for (int i = 0; i < 100; ++i) {
    t[2 * i] = static_cast<char>('0' + i / 10);
    t[2 * i + 1] = static_cast<char>('0' + i % 10);
  }
  return t;
}();

constexpr std::array<uint64_t, 20> kPowersOf10 = [] {
  std::array<uint64_t, 20> t{};
  uint64_t p = 1;
  for (uint64_t& x : t) {
    x = p;
    p *= 10;
  }
  return t;
}();
}  // namespace

// As std::to_chars, with the digit count from the bit width instead of a loop
// (times and offsets have 13 or more digits).
char* json::WriteInt(char* p, int64_t v) {
  uint64_t u = static_cast<uint64_t>(v);
  if (v < 0) {
    *p++ = '-';
    u = 0 - u;
  }
  if (u < 10) {
    *p = static_cast<char>('0' + u);
    return p + 1;
  }
  // floor(log10(2^bits)), then one less when u is below that power of 10.
  const int t = (std::bit_width(u) * 1233) >> 12;
  const int digits = t + 1 - (u < kPowersOf10[static_cast<size_t>(t)] ? 1 : 0);
  char* const end = p + digits;
  char* q = end;
  while (u >= 100) {
    const uint64_t pair = u % 100;
    u /= 100;
    q -= 2;
    std::memcpy(q, &kDigitPairs[2 * pair], 2);
  }
  if (u >= 10) {
    std::memcpy(q - 2, &kDigitPairs[2 * u], 2);
  } else {
    q[-1] = static_cast<char>('0' + u);
  }
  return end;
}

char* json::WriteDouble(char* p, double v) {
  if (!std::isfinite(v)) {
    std::memcpy(p, "null", 4);
    return p + 4;
  }
  if (v == std::trunc(v) && std::fabs(v) < 9007199254740992.0) {
    return WriteInt(p, static_cast<int64_t>(v));
  }
  return std::to_chars(p, p + kMaxNumberChars, v).ptr;
}

char* json::WriteEscaped(char* p, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t run = 0;  // start of the current run of characters that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (!kNeedsEscape[c]) continue;
    std::memcpy(p, s.data() + run, i - run);
    p += i - run;
    run = i + 1;
    *p++ = '\\';
    switch (c) {
      case '"':
        *p++ = '"';
        break;
      case '\\':
        *p++ = '\\';
        break;
      case '\n':
        *p++ = 'n';
        break;
      case '\r':
        *p++ = 'r';
        break;
      case '\t':
        *p++ = 't';
        break;
      case '\b':
        *p++ = 'b';
        break;
      case '\f':
        *p++ = 'f';
        break;
      default:
        std::memcpy(p, "u00", 3);
        p[3] = kHex[c >> 4];
        p[4] = kHex[c & 0xf];
        p += 5;
    }
  }
  std::memcpy(p, s.data() + run, s.size() - run);
  return p + (s.size() - run);
}

void JsonWriter::AppendEscaped(std::string* out, std::string_view s) {
  // Room for the worst case (every byte as \u00XX), then cut to what was written.
  const size_t at = out->size();
  out->resize(at + 6 * s.size());
  char* end = json::WriteEscaped(out->data() + at, s);
  out->resize(static_cast<size_t>(end - out->data()));
}

}  // namespace sluice::engine
