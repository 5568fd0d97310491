// The state codec on its own: store names, the round trip of each value, and
// state of version 2 as an earlier build wrote it, which must still decode to
// the same state and encode to the same bytes.

#include "worker/engine/state_codec.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "worker/engine/codec.h"
#include "worker/engine/testing.h"

namespace sluice::engine {
namespace {

using testing::Agg;
using testing::BaseSpec;
using testing::Event;

constexpr int64_t T = 1'700'000'000'000;

std::shared_ptr<const JobPlan> Compile(const proto::JobSpec& spec) {
  auto plan = JobPlan::Compile(spec);
  REQUIRE(plan.ok());
  return *plan;
}

// Sessions (60 s gap, 10 s lateness) with count, sum and count_distinct, and
// dedup on transaction_id.
proto::JobSpec SessionsSpec() {
  proto::JobSpec spec = BaseSpec("sessions");
  spec.mutable_window()->set_session_gap_ms(60'000);
  spec.mutable_window()->set_allowed_lateness_ms(10'000);
  *spec.add_aggregates() = Agg("events", proto::AggregateSpec::COUNT);
  *spec.add_aggregates() = Agg("total", proto::AggregateSpec::SUM, "amount");
  *spec.add_aggregates() = Agg("pages", proto::AggregateSpec::COUNT_DISTINCT, "page");
  spec.mutable_dedup()->set_field("transaction_id");
  spec.mutable_dedup()->set_within_ms(3'600'000);
  return spec;
}

// A rolling rule over count and sum(amount): one value kept per event.
proto::JobSpec VelocitySpec() {
  proto::JobSpec spec = BaseSpec("velocity");
  spec.mutable_source()->set_max_out_of_orderness_ms(1000);
  proto::RuleSpec* r = spec.add_rules();
  r->set_name("velocity");
  r->set_when("n > 2");
  r->mutable_window()->set_rolling_ms(300'000);
  *r->add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  *r->add_aggregates() = Agg("total", proto::AggregateSpec::SUM, "amount");
  return spec;
}

// What a checkpoint of an earlier build (version 2) wrote. Sessions: events
// (u1, T, t1, 5, "a"), (u1, T + 1 s, t2, 2.5, "b"), (u1, T + 200 s, t3, 1, "a");
// the first session was purged. Velocity: events of u1 at T, T + 2 s,
// T + 5 s, T + 5.5 s with amounts 5, 7, 1, 3; the last two still queued.
constexpr char kSessionsKey[] =
    "\x01\x80\xd5\xc3\xfe\xf9\x62\xc0\xfe\xca\xfe\xf9\x62\x00\x01\x00"
    "\x03\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
    "\x02\x00\x00\x00\x00\x00\x00\xf0\x3f\x00\x00\x00\x00\x05\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x02\x73\x61\x00\x03"
    "\x03\x73\x74\x31\x80\xa0\xab\xfe\xf9\x62\x03\x73\x74\x32\xd0\xaf"
    "\xab\xfe\xf9\x62\x03\x73\x74\x33\x80\xd5\xc3\xfe\xf9\x62";
constexpr char kSessionsMeta[] =
    "\x02\x08\x73\x65\x73\x73\x69\x6f\x6e\x73\x06\x65\x76\x65\x6e\x74"
    "\x73\x00\x06\x80\xd5\xc3\xfe\xf9\x62\xfe\xd4\xc3\xfe\xf9\x62\x01"
    "\x80\xa0\xab\xfe\xf9\x62\x06\x06\x00\x00\x00\x02\x00\x00\x00";
constexpr char kVelocityKey[] = "\x00\x02";
constexpr char kVelocityMeta[] =
    "\x02\x08\x76\x65\x6c\x6f\x63\x69\x74\x79\x06\x65\x76\x65\x6e\x74"
    "\x73\x00\x08\xf8\xf5\xab\xfe\xf9\x62\xa6\xe6\xab\xfe\xf9\x62\x01"
    "\x80\xa0\xab\xfe\xf9\x62\x08\x08\x00\x00\x00\x00\x00\x00\x00";
constexpr char kVelocityPending[] =
    "\x02\x90\xee\xab\xfe\xf9\x62\x04\x02\x75\x31\x2b\x7b\x22\x75\x73"
    "\x65\x72\x22\x3a\x22\x75\x31\x22\x2c\x22\x74\x73\x22\x3a\x31\x37"
    "\x30\x30\x30\x30\x30\x30\x30\x35\x30\x30\x30\x2c\x22\x61\x6d\x6f"
    "\x75\x6e\x74\x22\x3a\x31\x7d\xf8\xf5\xab\xfe\xf9\x62\x06\x02\x75"
    "\x31\x2b\x7b\x22\x75\x73\x65\x72\x22\x3a\x22\x75\x31\x22\x2c\x22"
    "\x74\x73\x22\x3a\x31\x37\x30\x30\x30\x30\x30\x30\x30\x35\x35\x30"
    "\x30\x2c\x22\x61\x6d\x6f\x75\x6e\x74\x22\x3a\x33\x7d";
constexpr char kVelocityChunkName[] =
    "\x72\x2f\x00\x00\x00\x02\x75\x31\x80\x00\x01\x8b\xcf\xe5\x6f\xd0"
    "\x80\x00\x00\x00\x00\x00\x00\x01";
constexpr char kVelocityChunk[] =
    "\x02\x80\xa0\xab\xfe\xf9\x62\x00\x02\x00\x00\x00\x00\x00\x00\x14"
    "\x40\xa0\xbf\xab\xfe\xf9\x62\x02\x02\x00\x00\x00\x00\x00\x00\x1c"
    "\x40";

template <size_t N>
std::string_view Bytes(const char (&s)[N]) {
  return std::string_view(s, N - 1);
}

TEST_CASE("a key's entry of an earlier build decodes, and encodes to the same bytes") {
  const StateCodec codec(*Compile(SessionsSpec()));
  KeyState ks;
  uint64_t live = 99;
  REQUIRE(codec.DecodeKey(Bytes(kSessionsKey), kStateVersion, &ks, &live));
  REQUIRE(live == 0);
  REQUIRE(ks.rolling == nullptr);
  REQUIRE(ks.windows.size() == 1);
  const WindowState& w = ks.windows[0];
  CHECK(w.start == T + 200'000);
  CHECK(w.end == T + 260'000);
  CHECK_FALSE(w.fired);
  CHECK(w.changed);
  CHECK(w.revision == 0);
  REQUIRE(w.num_accs() == 3);
  CHECK(w.acc(0).Result().number == 1);
  CHECK(w.acc(1).Result().number == 1);
  CHECK(w.acc(2).Result().number == 1);
  REQUIRE(ks.dedup != nullptr);
  REQUIRE(ks.dedup->entries.size() == 3);
  CHECK(ks.dedup->entries[0].time == T);
  CHECK(ks.dedup->entries[1].time == T + 1000);
  CHECK(ks.dedup->entries[2].time == T + 200'000);
  std::string value;
  DistinctKey(Value::String("t2"), &value);
  CHECK(ks.dedup->entries[1].value == value);

  std::string again;
  codec.EncodeKey(ks, &again);
  REQUIRE(again == Bytes(kSessionsKey));
}

TEST_CASE("task metadata of an earlier build decodes, and encodes to the same bytes") {
  TaskMeta meta;
  REQUIRE(DecodeTaskMeta(Bytes(kSessionsMeta), "sessions", &meta).ok());
  CHECK(meta.version == kStateVersion);
  CHECK(meta.job == "sessions");
  CHECK(meta.topic == "events");
  CHECK(meta.partition == 0);
  CHECK(meta.next_offset == 3);
  CHECK(meta.max_event_time == T + 200'000);
  CHECK(meta.watermark == T + 199'999);
  CHECK(meta.seen_event);
  CHECK(meta.counters.consumed == 3);
  CHECK(meta.counters.processed == 3);
  CHECK(meta.counters.window_results == 1);
  CHECK(meta.counters.deduplicated == 0);
  std::string again;
  EncodeTaskMeta(meta, &again);
  REQUIRE(again == Bytes(kSessionsMeta));

  REQUIRE(DecodeTaskMeta(Bytes(kVelocityMeta), "velocity", &meta).ok());
  CHECK(meta.next_offset == 4);
  CHECK(meta.watermark == T + 4'499);
  EncodeTaskMeta(meta, &again);
  REQUIRE(again == Bytes(kVelocityMeta));
}

TEST_CASE("a chunk of rolling events of an earlier build decodes, and encodes the same") {
  const StateCodec codec(*Compile(VelocitySpec()));
  std::string_view key;
  REQUIRE(ChunkKeyOf(Bytes(kVelocityChunkName), &key));
  REQUIRE(key == "u1");
  REQUIRE(ChunkName("u1", T + 2'000, 1) == Bytes(kVelocityChunkName));

  KeyState ks;
  uint64_t live = 0;
  REQUIRE(codec.DecodeKey(Bytes(kVelocityKey), kStateVersion, &ks, &live));
  REQUIRE(live == 2);
  REQUIRE(ks.rolling != nullptr);
  REQUIRE(ks.rolling->entries.empty());  // they are in the chunk

  RollingState& rs = *ks.rolling;
  REQUIRE(codec.DecodeChunk(Bytes(kVelocityChunk), rs));
  REQUIRE(rs.entries.size() == 2);
  CHECK(rs.entries[0].time == T);
  CHECK(rs.entries[0].offset == 0);
  CHECK(rs.entries[1].time == T + 2'000);
  CHECK(rs.entries[1].offset == 1);
  REQUIRE(rs.values.size() == 2);
  CHECK(rs.values[0].view().number == 5);
  CHECK(rs.values[1].view().number == 7);

  std::string again;
  codec.EncodeChunk(rs, 0, &again);
  REQUIRE(again == Bytes(kVelocityChunk));
  codec.EncodeKey(ks, &again);
  REQUIRE(again == Bytes(kVelocityKey));
}

TEST_CASE("queued rule events of an earlier build decode, and encode the same") {
  std::vector<PendingEvent> events;
  REQUIRE(DecodePending(Bytes(kVelocityPending), [&](const PendingRecord& p) {
            events.push_back(
                PendingEvent{p.time, p.offset, std::string(p.key), std::string(p.payload), {}});
            return Status::Ok();
          }).ok());
  REQUIRE(events.size() == 2);
  CHECK(events[0].time == T + 5'000);
  CHECK(events[0].offset == 2);
  CHECK(events[0].key == "u1");
  CHECK(events[0].payload == Event("u1", T + 5'000, "\"amount\":1"));
  CHECK(events[1].time == T + 5'500);
  CHECK(events[1].offset == 3);

  std::vector<const PendingEvent*> order{&events[0], &events[1]};
  std::string again;
  EncodePending(order, &again);
  REQUIRE(again == Bytes(kVelocityPending));

  // A caller's error stops the decoding.
  int calls = 0;
  const Status s = DecodePending(Bytes(kVelocityPending), [&](const PendingRecord&) {
    ++calls;
    return Status::Corruption("no");
  });
  REQUIRE(s.code() == StatusCode::kCorruption);
  REQUIRE(calls == 1);
  REQUIRE(DecodePending(Bytes(kVelocityPending).substr(0, 20), [](const PendingRecord&) {
            return Status::Ok();
          }).code() == StatusCode::kCorruption);
}

TEST_CASE("a key's windows, rolling count and dedup values round-trip") {
  proto::JobSpec spec = SessionsSpec();
  *spec.add_aggregates() = Agg("lo", proto::AggregateSpec::MIN, "amount");
  *spec.add_aggregates() = Agg("last_page", proto::AggregateSpec::LAST, "page");
  const auto plan = Compile(spec);
  const StateCodec codec(*plan);
  KeyState ks;
  for (int i = 0; i < 3; ++i) {
    WindowState w;
    w.start = -5'000 + i * 100'000;
    w.end = w.start + 70'000;
    w.fired = i != 1;
    w.changed = i == 2;
    w.revision = static_cast<uint32_t>(i * 7);
    for (const AggregateDef& a : plan->aggregates()) w.AddAcc(a.fn);
    for (int e = 0; e <= i; ++e) {
      const Value vals[] = {Value::Bool(true), Value::Number(e * 1.5), Value::String("p"),
                            Value::Number(-e), Value::String(e % 2 ? "x" : "y")};
      for (size_t a = 0; a < w.num_accs(); ++a) w.acc(a).Add(vals[a], w.start + e, e);
    }
    ks.windows.push_back(std::move(w));
  }
  ks.dedup = std::make_unique<DedupState>();
  ks.dedup->entries.push_back(DedupEntry{std::string("\x00\x01zz", 4), -7});
  ks.dedup->entries.push_back(DedupEntry{"", T});

  std::string bytes;
  codec.EncodeKey(ks, &bytes);
  KeyState back;
  uint64_t live = 0;
  REQUIRE(codec.DecodeKey(bytes, kStateVersion, &back, &live));
  REQUIRE(back.windows.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(back.windows[i].start == ks.windows[i].start);
    CHECK(back.windows[i].end == ks.windows[i].end);
    CHECK(back.windows[i].fired == ks.windows[i].fired);
    CHECK(back.windows[i].changed == ks.windows[i].changed);
    CHECK(back.windows[i].revision == ks.windows[i].revision);
    for (size_t a = 0; a < ks.windows[i].num_accs(); ++a) {
      const Value x = back.windows[i].acc(a).Result();
      const Value y = ks.windows[i].acc(a).Result();
      CHECK(x.type == y.type);
      CHECK(x.number == y.number);
      CHECK(x.str == y.str);
    }
  }
  REQUIRE(back.dedup != nullptr);
  REQUIRE(back.dedup->entries.size() == 2);
  CHECK(back.dedup->entries[0].value == std::string("\x00\x01zz", 4));
  CHECK(back.dedup->entries[0].time == -7);
  CHECK(back.dedup->entries[1].value.empty());
  std::string again;
  codec.EncodeKey(back, &again);
  REQUIRE(again == bytes);
}

TEST_CASE("a key without dedup values encodes as before dedup existed") {
  const StateCodec codec(*Compile(VelocitySpec()));
  KeyState ks;
  ks.rolling = std::make_unique<RollingState>();
  for (int i = 0; i < 3; ++i) ks.rolling->entries.push_back(RollingEntry{});
  ks.dedup = std::make_unique<DedupState>();  // none left
  std::string bytes;
  codec.EncodeKey(ks, &bytes);
  REQUIRE(bytes == std::string("\x00\x03", 2));  // no windows, 3 rolling events
}

TEST_CASE("a key's entry that does not fit the job or is cut short does not decode") {
  const StateCodec sessions(*Compile(SessionsSpec()));
  const StateCodec velocity(*Compile(VelocitySpec()));
  KeyState ks;
  uint64_t live = 0;
  // Windows of 3 aggregates for a job without any.
  REQUIRE_FALSE(velocity.DecodeKey(Bytes(kSessionsKey), kStateVersion, &ks, &live));
  for (size_t n : {size_t{0}, size_t{5}, Bytes(kSessionsKey).size() - 1}) {
    KeyState cut;
    REQUIRE_FALSE(sessions.DecodeKey(Bytes(kSessionsKey).substr(0, n), kStateVersion, &cut, &live));
  }
  KeyState longer;
  std::string extra(Bytes(kVelocityKey));
  extra.append("\x00\x00", 2);  // no dedup values, then a byte too many
  REQUIRE_FALSE(velocity.DecodeKey(extra, kStateVersion, &longer, &live));
  RollingState rs;
  REQUIRE_FALSE(velocity.DecodeChunk(std::string_view("\x00", 1), rs));  // no events
  REQUIRE_FALSE(velocity.DecodeChunk(Bytes(kVelocityChunk).substr(0, 10), rs));
}

TEST_CASE("version 1 entries hold their rolling events inline, none saved in a chunk") {
  const StateCodec codec(*Compile(VelocitySpec()));
  std::string entry;
  Encoder e(&entry);
  e.U64(0);  // windows
  e.U64(2);  // rolling events: time, offset, amount
  for (int64_t i : {0, 1}) {
    e.I64(T + i * 1'000);
    e.I64(i);
    OwnedValue v;
    v.Set(Value::Number(static_cast<double>(10 + i)));
    v.Encode(e);
  }
  KeyState ks;
  uint64_t live = 99;
  REQUIRE(codec.DecodeKey(entry, kInlineRollingVersion, &ks, &live));
  REQUIRE(live == 0);
  REQUIRE(ks.rolling != nullptr);
  REQUIRE(ks.rolling->entries.size() == 2);
  CHECK(ks.rolling->unsaved == 2);
  CHECK(ks.rolling->entries[1].time == T + 1'000);
  CHECK(ks.rolling->values[1].view().number == 11);
}

TEST_CASE("metadata of another job, of an unknown version, or cut short is refused") {
  TaskMeta meta;
  CHECK(DecodeTaskMeta(Bytes(kSessionsMeta), "other", &meta).code() ==
        StatusCode::kFailedPrecondition);
  std::string v3(Bytes(kSessionsMeta));
  v3[0] = 3;
  CHECK(DecodeTaskMeta(v3, "sessions", &meta).code() == StatusCode::kCorruption);
  CHECK(DecodeTaskMeta(Bytes(kSessionsMeta).substr(0, 30), "sessions", &meta).code() ==
        StatusCode::kCorruption);
  CHECK(DecodeTaskMeta("", "sessions", &meta).code() == StatusCode::kCorruption);
}

TEST_CASE("metadata written before the dedup and type-mismatch counters reads them as 0") {
  // The first 7 counters only, as version 1 wrote them.
  std::string old(Bytes(kSessionsMeta));
  old.resize(old.size() - 2);
  old[0] = static_cast<char>(kInlineRollingVersion);
  TaskMeta meta;
  meta.counters.deduplicated = 5;
  REQUIRE(DecodeTaskMeta(old, "sessions", &meta).ok());
  CHECK(meta.version == kInlineRollingVersion);
  CHECK(meta.counters.window_results == 1);
  CHECK(meta.counters.deduplicated == 0);
  CHECK(meta.counters.type_mismatches == 0);
}

TEST_CASE("chunk names list a key's chunks together, in event order") {
  // Keys go by length, then bytes; a key's chunks by time, then offset.
  std::vector<std::string> names;
  for (std::string_view key : {"a", "b", "ab"}) {
    for (int64_t time : {-T, int64_t{-1}, int64_t{0}, T}) {
      for (int64_t offset : {int64_t{0}, int64_t{1} << 40}) {
        names.push_back(ChunkName(key, time, offset));
      }
    }
  }
  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  REQUIRE(sorted == names);
  for (const std::string& name : names) {
    std::string_view key;
    REQUIRE(ChunkKeyOf(name, &key));
    REQUIRE(name.substr(0, 2) == kChunkPrefix);
  }
  std::string_view key;
  CHECK_FALSE(ChunkKeyOf("k/u1", &key));
  CHECK_FALSE(ChunkKeyOf("r/\x00\x00\x00\x02u1", &key));
  CHECK(KeyStateName("u1") == "k/u1");
}

}  // namespace
}  // namespace sluice::engine
