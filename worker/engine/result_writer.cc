#include "worker/engine/result_writer.h"

#include <xxhash.h>

#include <array>
#include <cstring>

#include "worker/engine/codec.h"
#include "worker/engine/json_writer.h"

namespace sluice::engine {

namespace {

constexpr std::string_view kIdHead = "{\"id\":\"";
constexpr std::string_view kWindowStart = "\",\"window_start\":";
constexpr std::string_view kWindowEnd = ",\"window_end\":";
constexpr std::string_view kFinal = ",\"kind\":\"final\"";
constexpr std::string_view kUpdate = ",\"kind\":\"update\"";
constexpr std::string_view kEventTime = "\",\"event_time\":";
constexpr std::string_view kEvent = ",\"event\":";
constexpr size_t kIdHexChars = 32;
// Bytes of a varint-encoded 64-bit value (codec.h), at most.
constexpr size_t kMaxVarint = 10;

// Two hex digits per byte value.
constexpr std::array<char, 512> kHexPairs = [] {
  constexpr char kHex[] = "0123456789abcdef";
  std::array<char, 512> t{};
  for (int b = 0; b < 256; ++b) {
    t[2 * b] = kHex[b >> 4];
    t[2 * b + 1] = kHex[b & 15];
  }
  return t;
}();

std::string Escaped(std::string_view s) {
  std::string out;
  JsonWriter::AppendEscaped(&out, s);
  return out;
}

std::string FieldKey(const std::string& name) {
  // Aggregate and select names are identifiers (checked by JobPlan::Compile):
  // no escaping.
  return ",\"" + name + "\":";
}

char* Put(char* p, std::string_view s) {
  std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

// As Encoder::U64, I64 and Bytes (codec.h), into a sized buffer.
char* PutVarint(char* p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}
char* PutZigZag(char* p, int64_t v) {
  return PutVarint(p, (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));
}
char* PutBytes(char* p, std::string_view s) { return Put(PutVarint(p, s.size()), s); }

// The most a value takes as JSON.
size_t MaxValueChars(const Value& v) {
  return v.type == ValueType::kString ? 2 + 6 * v.str.size() : json::kMaxNumberChars;
}

char* WriteValue(char* p, const Value& v) {
  switch (v.type) {
    case ValueType::kNull:
      return Put(p, "null");
    case ValueType::kBool:
      return Put(p, v.boolean ? "true" : "false");
    case ValueType::kNumber:
      return json::WriteDouble(p, v.number);
    case ValueType::kString:
      *p++ = '"';
      p = json::WriteEscaped(p, v.str);
      *p++ = '"';
      return p;
  }
  return p;
}

}  // namespace

ResultWriter::ResultWriter(const JobPlan& plan) {
  const std::string job = Escaped(plan.name());
  {
    std::string id;
    Encoder e(&id);
    e.Bytes("window");
    e.Bytes(plan.name());
    window_id_prefix_ = std::move(id);
  }
  window_head_ = "\",\"job\":\"" + job + "\",\"key\":\"";
  for (const AggregateDef& a : plan.aggregates()) window_agg_keys_.push_back(FieldKey(a.name));
  for (const RuleDef& r : plan.rules()) {
    RuleParts parts;
    Encoder e(&parts.id_prefix);
    e.Bytes("alert");
    e.Bytes(plan.name());
    e.Bytes(r.name);
    parts.head = "\",\"job\":\"" + job + "\",\"rule\":\"" + Escaped(r.name) + "\",\"key\":\"";
    for (const AggregateDef& a : r.aggregates) parts.value_keys.push_back(FieldKey(a.name));
    for (const SelectDef& s : r.selects) parts.value_keys.push_back(FieldKey(s.name));
    rules_.push_back(std::move(parts));
  }
  SetSource("", 0);
}

void ResultWriter::SetSource(std::string_view topic, int32_t partition) {
  source_id_.clear();
  Encoder e(&source_id_);
  e.Bytes(topic);
  e.I64(partition);
  source_head_ = ",\"source\":{\"topic\":\"" + Escaped(topic) +
                 "\",\"partition\":" + std::to_string(partition) + ",\"offset\":";
}

char* ResultWriter::Reserve(size_t n) {
  if (buf_.size() < n) buf_.resize(n);
  return buf_.data();
}

char* ResultWriter::WriteId(char* p, std::string_view hashed) {
  const XXH128_hash_t h = XXH3_128bits(hashed.data(), hashed.size());
  p = Put(p, kIdHead);
  // The high 64 bits first, each most significant byte first.
  for (uint64_t part : {h.high64, h.low64}) {
    for (int shift = 56; shift >= 0; shift -= 8) {
      const auto byte = static_cast<uint8_t>(part >> shift);
      p[0] = kHexPairs[2 * byte];
      p[1] = kHexPairs[2 * byte + 1];
      p += 2;
    }
  }
  return p;
}

std::string_view ResultWriter::Window(std::string_view key, int64_t start, int64_t end,
                                      uint32_t revision, bool update,
                                      std::span<const Value> values) {
  // The id hashes (window, job, key, start, end, revision).
  const size_t id_size = window_id_prefix_.size() + key.size() + 4 * kMaxVarint;
  if (id_buf_.size() < id_size) id_buf_.resize(id_size);
  char* q = Put(id_buf_.data(), window_id_prefix_);
  q = PutBytes(q, key);
  q = PutZigZag(q, start);
  q = PutZigZag(q, end);
  q = PutZigZag(q, revision);
  const std::string_view hashed(id_buf_.data(), static_cast<size_t>(q - id_buf_.data()));

  size_t size = kIdHead.size() + kIdHexChars + window_head_.size() + 6 * key.size() +
                kWindowStart.size() + kWindowEnd.size() + 2 * json::kMaxNumberChars +
                kUpdate.size() + 1;
  for (size_t a = 0; a < values.size(); ++a) {
    size += window_agg_keys_[a].size() + MaxValueChars(values[a]);
  }
  char* const begin = Reserve(size);
  char* p = WriteId(begin, hashed);
  p = Put(p, window_head_);
  p = json::WriteEscaped(p, key);
  p = Put(p, kWindowStart);
  p = json::WriteInt(p, start);
  p = Put(p, kWindowEnd);
  p = json::WriteInt(p, end);
  p = Put(p, update ? kUpdate : kFinal);
  for (size_t a = 0; a < values.size(); ++a) {
    p = Put(p, window_agg_keys_[a]);
    p = WriteValue(p, values[a]);
  }
  *p++ = '}';
  return std::string_view(begin, static_cast<size_t>(p - begin));
}

std::string_view ResultWriter::Alert(size_t rule, std::string_view key, int64_t event_time,
                                     std::span<const Value> values, std::string_view event,
                                     int64_t offset) {
  const RuleParts& parts = rules_[rule];
  // The id hashes (alert, job, rule, key, topic, partition, offset).
  const size_t id_size = parts.id_prefix.size() + key.size() + source_id_.size() + 2 * kMaxVarint;
  if (id_buf_.size() < id_size) id_buf_.resize(id_size);
  char* q = Put(id_buf_.data(), parts.id_prefix);
  q = PutBytes(q, key);
  q = Put(q, source_id_);
  q = PutZigZag(q, offset);
  const std::string_view hashed(id_buf_.data(), static_cast<size_t>(q - id_buf_.data()));

  size_t size = kIdHead.size() + kIdHexChars + parts.head.size() + 6 * key.size() +
                kEventTime.size() + kEvent.size() + event.size() + source_head_.size() +
                2 * json::kMaxNumberChars + 2;
  for (size_t a = 0; a < values.size(); ++a) {
    size += parts.value_keys[a].size() + MaxValueChars(values[a]);
  }
  char* const begin = Reserve(size);
  char* p = WriteId(begin, hashed);
  p = Put(p, parts.head);
  p = json::WriteEscaped(p, key);
  p = Put(p, kEventTime);
  p = json::WriteInt(p, event_time);
  for (size_t a = 0; a < values.size(); ++a) {
    p = Put(p, parts.value_keys[a]);
    p = WriteValue(p, values[a]);
  }
  p = Put(p, kEvent);
  p = Put(p, event);
  p = Put(p, source_head_);
  p = json::WriteInt(p, offset);
  *p++ = '}';
  *p++ = '}';
  return std::string_view(begin, static_cast<size_t>(p - begin));
}

}  // namespace sluice::engine
