#include "worker/engine/state_codec.h"

#include <memory>
#include <utility>

namespace sluice::engine {

namespace {

constexpr uint64_t kSignBit = uint64_t{1} << 63;

void AppendBigEndian(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

}  // namespace

std::string KeyStateName(std::string_view key) {
  std::string out(kKeyPrefix);
  out.append(key);
  return out;
}

std::string ChunkName(std::string_view key, int64_t time, int64_t offset) {
  std::string out(kChunkPrefix);
  out.reserve(kChunkPrefix.size() + 4 + key.size() + 16);
  const auto len = static_cast<uint32_t>(key.size());
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(len >> shift));
  out.append(key);
  AppendBigEndian(&out, static_cast<uint64_t>(time) ^ kSignBit);
  AppendBigEndian(&out, static_cast<uint64_t>(offset) ^ kSignBit);
  return out;
}

bool ChunkKeyOf(std::string_view name, std::string_view* key) {
  if (name.substr(0, kChunkPrefix.size()) != kChunkPrefix) return false;
  name.remove_prefix(kChunkPrefix.size());
  if (name.size() < 4) return false;
  uint32_t len = 0;
  for (size_t i = 0; i < 4; ++i) len = (len << 8) | static_cast<uint8_t>(name[i]);
  name.remove_prefix(4);
  if (name.size() != size_t{len} + 16) return false;
  *key = name.substr(0, len);
  return true;
}

void EncodeTaskMeta(const TaskMeta& meta, std::string* out) {
  out->clear();
  Encoder e(out);
  e.U64(kStateVersion);
  e.Bytes(meta.job);
  e.Bytes(meta.topic);
  e.I64(meta.partition);
  e.I64(meta.next_offset);
  e.I64(meta.max_event_time);
  e.I64(meta.watermark);
  e.Bool(meta.seen_event);
  e.I64(meta.last_event_proc_time);
  const TaskCounters& c = meta.counters;
  for (int64_t v : {c.consumed, c.processed, c.filtered, c.late, c.dead_lettered, c.window_results,
                    c.alerts, c.deduplicated, c.type_mismatches}) {
    e.I64(v);
  }
}

Status DecodeTaskMeta(std::string_view in, std::string_view job, TaskMeta* meta) {
  Decoder d(in);
  meta->version = d.U64();
  if (meta->version != kStateVersion && meta->version != kInlineRollingVersion) {
    return Status::Corruption("task state has an unknown version");
  }
  meta->job = d.Bytes();
  if (d.ok() && meta->job != job) {
    return Status::FailedPrecondition("task state belongs to job '" + std::string(meta->job) +
                                      "', not '" + std::string(job) + "'");
  }
  meta->topic = d.Bytes();
  meta->partition = static_cast<int32_t>(d.I64());
  meta->next_offset = d.I64();
  meta->max_event_time = d.I64();
  meta->watermark = d.I64();
  meta->seen_event = d.Bool();
  meta->last_event_proc_time = d.I64();
  TaskCounters& c = meta->counters;
  c = TaskCounters{};
  for (int64_t* v : {&c.consumed, &c.processed, &c.filtered, &c.late, &c.dead_lettered,
                     &c.window_results, &c.alerts}) {
    *v = d.I64();
  }
  // Metadata written before these counters existed ends here.
  if (d.ok() && !d.done()) {
    c.deduplicated = d.I64();
    c.type_mismatches = d.I64();
  }
  if (!d.ok()) return Status::Corruption("task metadata does not decode");
  return Status::Ok();
}

void EncodePending(std::span<const PendingEvent* const> events, std::string* out) {
  out->clear();
  Encoder e(out);
  e.U64(events.size());
  for (const PendingEvent* p : events) {
    e.I64(p->time);
    e.I64(p->offset);
    e.Bytes(p->key);
    e.Bytes(p->payload);
  }
}

Status DecodePending(std::string_view in,
                     const std::function<Status(const PendingRecord&)>& on_event) {
  Decoder d(in);
  const uint64_t n = d.U64();
  for (uint64_t i = 0; i < n && d.ok(); ++i) {
    PendingRecord p;
    p.time = d.I64();
    p.offset = d.I64();
    p.key = d.Bytes();
    p.payload = d.Bytes();
    if (d.ok()) SLUICE_RETURN_IF_ERROR(on_event(p));
  }
  if (!d.ok()) return Status::Corruption("queued rule events do not decode");
  return Status::Ok();
}

StateCodec::StateCodec(const JobPlan& plan)
    : num_aggregates_(plan.aggregates().size()), stride_(plan.rolling_slots().size()) {}

void StateCodec::EncodeKey(const KeyState& ks, std::string* out) const {
  out->clear();
  Encoder e(out);
  e.U64(ks.windows.size());
  for (const WindowState& w : ks.windows) {
    e.I64(w.start);
    e.I64(w.end);
    e.Bool(w.fired);
    e.Bool(w.changed);
    e.U64(w.revision);
    e.U64(w.num_accs());
    for (size_t a = 0; a < w.num_accs(); ++a) w.acc(a).Encode(e);
  }
  // The rolling events live in chunks (EncodeChunk); here only their number.
  e.U64(ks.rolling ? ks.rolling->entries.size() : 0);
  // Dedup values follow only when there are any, so that a key of a job
  // without `dedup` encodes as before.
  if (ks.dedup && !ks.dedup->entries.empty()) {
    e.U64(ks.dedup->entries.size());
    for (const DedupEntry& d : ks.dedup->entries) {
      e.Bytes(d.value);
      e.I64(d.time);
    }
  }
}

bool StateCodec::DecodeKey(std::string_view in, uint64_t version, KeyState* ks,
                           uint64_t* live) const {
  *live = 0;
  Decoder d(in);
  uint64_t nw = d.U64();
  for (uint64_t i = 0; i < nw && d.ok(); ++i) {
    WindowState w;
    w.start = d.I64();
    w.end = d.I64();
    w.fired = d.Bool();
    w.changed = d.Bool();
    w.revision = static_cast<uint32_t>(d.U64());
    uint64_t na = d.U64();
    if (na != num_aggregates_) return false;
    for (uint64_t a = 0; a < na && d.ok(); ++a) w.AddAcc(AggFn::kCount).Decode(d);
    ks->windows.push_back(std::move(w));
  }
  uint64_t nr = d.U64();
  if (nr > 0) ks->rolling = std::make_unique<RollingState>();
  if (version == kInlineRollingVersion) {
    // The events follow inline; none is in a chunk yet.
    if (ks->rolling) {
      DecodeRollingEvents(d, nr, *ks->rolling);
      ks->rolling->unsaved = ks->rolling->entries.size();
    }
  } else {
    *live = nr;
  }
  if (d.ok() && !d.done()) {
    const uint64_t nd = d.U64();
    if (nd > 0) ks->dedup = std::make_unique<DedupState>();
    for (uint64_t i = 0; i < nd && d.ok(); ++i) {
      DedupEntry entry;
      entry.value.assign(d.Bytes());
      entry.time = d.I64();
      ks->dedup->entries.push_back(std::move(entry));
    }
  }
  return d.ok() && d.done();
}

void StateCodec::EncodeChunk(const RollingState& rs, size_t first, std::string* out) const {
  out->clear();
  Encoder e(out);
  e.U64(rs.entries.size() - first);
  for (size_t i = first; i < rs.entries.size(); ++i) {
    e.I64(rs.entries[i].time);
    e.I64(rs.entries[i].offset);
    for (size_t j = 0; j < stride_; ++j) rs.values[i * stride_ + j].Encode(e);
  }
}

bool StateCodec::DecodeChunk(std::string_view in, RollingState& rs) const {
  Decoder d(in);
  const uint64_t n = d.U64();
  DecodeRollingEvents(d, n, rs);
  return d.ok() && d.done() && n > 0;
}

void StateCodec::EncodeSpilledRolling(const RollingState& rs, std::string* out) const {
  std::string events;
  EncodeChunk(rs, 0, &events);
  out->clear();
  Encoder e(out);
  e.U64(rs.first_seq);
  e.U64(rs.unsaved);
  e.U64(rs.entries.size());
  for (const RollingEntry& entry : rs.entries) e.Bool(entry.chunk_end);
  e.Bytes(events);
}

bool StateCodec::DecodeSpilledRolling(std::string_view in, RollingState& rs) const {
  Decoder d(in);
  const uint64_t first_seq = d.U64();
  const uint64_t unsaved = d.U64();
  const uint64_t n = d.U64();
  std::vector<bool> chunk_end;
  for (uint64_t i = 0; i < n && d.ok(); ++i) chunk_end.push_back(d.Bool());
  const std::string_view events = d.Bytes();
  if (!d.ok() || !d.done() || unsaved > n || !DecodeChunk(events, rs) || rs.entries.size() != n) {
    return false;
  }
  for (size_t i = 0; i < n; ++i) rs.entries[i].chunk_end = chunk_end[i];
  rs.first_seq = first_seq;
  rs.unsaved = unsaved;
  return true;
}

void StateCodec::DecodeRollingEvents(Decoder& d, uint64_t n, RollingState& rs) const {
  for (uint64_t i = 0; i < n && d.ok(); ++i) {
    RollingEntry entry;
    entry.time = d.I64();
    entry.offset = d.I64();
    rs.entries.push_back(entry);
    for (size_t j = 0; j < stride_; ++j) rs.values.emplace_back().Decode(d);
  }
}

}  // namespace sluice::engine
