#include "worker/engine/state_spill.h"

#include <utility>

#include "worker/engine/state_codec.h"
#include "worker/engine/time_util.h"

namespace sluice::engine {

namespace {

constexpr std::string_view kSpilledKeyPrefix = "k/";
constexpr std::string_view kChangedPrefix = "d/";
constexpr std::string_view kTimerPrefix = "t/";
constexpr std::string_view kRollingPrefix = "r/";
constexpr uint64_t kSignBit = uint64_t{1} << 63;

void AppendOrdered(std::string* out, int64_t v) {
  const uint64_t u = static_cast<uint64_t>(v) ^ kSignBit;
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(u >> shift));
}

bool ReadOrdered(std::string_view* in, int64_t* v) {
  if (in->size() < 8) return false;
  uint64_t u = 0;
  for (size_t i = 0; i < 8; ++i) u = (u << 8) | static_cast<uint8_t>((*in)[i]);
  in->remove_prefix(8);
  *v = static_cast<int64_t>(u ^ kSignBit);
  return true;
}

std::string Named(std::string_view prefix, std::string_view key) {
  std::string out(prefix);
  out.append(key);
  return out;
}

}  // namespace

std::string SpilledTimerName(int64_t time, std::string_view key, int64_t start, TimerKind kind) {
  std::string out(kTimerPrefix);
  out.reserve(kTimerPrefix.size() + 8 + key.size() + 2 + 8 + 1);
  AppendOrdered(&out, time);
  for (char c : key) {
    out.push_back(c);
    if (c == '\0') out.push_back('\xff');
  }
  out.push_back('\0');
  out.push_back('\x01');
  AppendOrdered(&out, start);
  out.push_back(static_cast<char>(kind));
  return out;
}

bool ParseSpilledTimerName(std::string_view name, SpilledTimer* timer) {
  if (name.substr(0, kTimerPrefix.size()) != kTimerPrefix) return false;
  name.remove_prefix(kTimerPrefix.size());
  if (!ReadOrdered(&name, &timer->time)) return false;
  timer->key.clear();
  for (;;) {
    if (name.empty()) return false;
    const char c = name.front();
    name.remove_prefix(1);
    if (c != '\0') {
      timer->key.push_back(c);
      continue;
    }
    if (name.empty()) return false;
    const char next = name.front();
    name.remove_prefix(1);
    if (next == '\x01') break;
    if (next != '\xff') return false;
    timer->key.push_back('\0');
  }
  if (!ReadOrdered(&name, &timer->start) || name.size() != 1) return false;
  const auto kind = static_cast<uint8_t>(name.front());
  if (kind > static_cast<uint8_t>(TimerKind::kExpireDedup)) return false;
  timer->kind = static_cast<TimerKind>(kind);
  return true;
}

void StateSpill::Evict(std::string_view key, const std::string* state, bool dirty, bool persisted) {
  if (state != nullptr) batch_.Put(Named(kSpilledKeyPrefix, key), *state);
  if (dirty) batch_.Put(Named(kChangedPrefix, key), std::string(1, persisted ? '\1' : '\0'));
}

void StateSpill::EvictTimer(std::string_view key, int64_t time, int64_t start, TimerKind kind) {
  batch_.Put(SpilledTimerName(time, key, start, kind), std::string());
}

Status StateSpill::Flush() {
  if (batch_.empty()) return Status::Ok();
  batch_.SortByKey();
  const Status s = store_.WriteInPieces(batch_);
  batch_ = WriteBatch();
  return s;
}

Result<std::optional<StateSpill::Loaded>> StateSpill::Load(std::string_view key) {
  SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> state,
                          store_.Get(Named(kSpilledKeyPrefix, key)));
  SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> changed,
                          store_.Get(Named(kChangedPrefix, key)));
  if (!state && !changed) return std::optional<Loaded>();
  Loaded loaded;
  loaded.state = std::move(state);
  loaded.dirty = changed.has_value();
  // A key that is unchanged since the last barrier was written by it.
  loaded.persisted = !changed || (!changed->empty() && (*changed)[0] == '\1');
  return std::optional<Loaded>(std::move(loaded));
}

void StateSpill::Forget(std::string_view key, bool dirty) {
  batch_.Delete(Named(kSpilledKeyPrefix, key));
  if (dirty) batch_.Delete(Named(kChangedPrefix, key));
}

void StateSpill::ForgetTimer(std::string_view key, int64_t time, int64_t start, TimerKind kind) {
  batch_.Delete(SpilledTimerName(time, key, start, kind));
}

void StateSpill::EvictRolling(std::string_view key, const std::string& events) {
  batch_.Put(Named(kRollingPrefix, key), events);
}

Result<std::optional<std::string>> StateSpill::LoadRolling(std::string_view key) {
  return store_.Get(Named(kRollingPrefix, key));
}

void StateSpill::ForgetRolling(std::string_view key) { batch_.Delete(Named(kRollingPrefix, key)); }

Status StateSpill::TakeChanged(
    const std::function<void(std::string_view, const std::string*, bool)>& fn) {
  SLUICE_RETURN_IF_ERROR(Flush());
  // Key by key as the marks are read (a list of them first took more memory
  // than the snapshot they go to); the marks' deletes wait in the batch,
  // in order.
  SLUICE_RETURN_IF_ERROR(
      store_.Scan(kChangedPrefix, [&](std::string_view k, std::string_view v) -> Status {
        const std::string_view key = k.substr(kChangedPrefix.size());
        SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> state,
                                store_.Get(Named(kSpilledKeyPrefix, key)));
        fn(key, state ? &*state : nullptr, !v.empty() && v[0] == '\1');
        batch_.Delete(k);
        return Status::Ok();
      }));
  return Flush();
}

Status StateSpill::ForEachKey(const std::function<Status(std::string_view, std::string_view)>& fn) {
  SLUICE_RETURN_IF_ERROR(Flush());
  return store_.Scan(kSpilledKeyPrefix, [&](std::string_view k, std::string_view v) {
    return fn(k.substr(kSpilledKeyPrefix.size()), v);
  });
}

Status StateSpill::ForEachSpilledKey(const std::function<void(std::string_view)>& fn) {
  SLUICE_RETURN_IF_ERROR(Flush());
  SLUICE_RETURN_IF_ERROR(store_.Scan(kSpilledKeyPrefix, [&](std::string_view k, std::string_view) {
    fn(k.substr(kSpilledKeyPrefix.size()));
    return Status::Ok();
  }));
  // Keys changed with no state left have a mark only.
  return store_.Scan(kChangedPrefix, [&](std::string_view k, std::string_view) {
    const std::string_view key = k.substr(kChangedPrefix.size());
    SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> state,
                            store_.Get(Named(kSpilledKeyPrefix, key)));
    if (!state) fn(key);
    return Status::Ok();
  });
}

Status StateSpill::DueTimers(int64_t upto, std::string_view after, size_t max,
                             std::vector<SpilledTimer>* out, int64_t* next) {
  SLUICE_RETURN_IF_ERROR(Flush());
  std::string from(after.empty() ? kTimerPrefix : after);
  if (!after.empty()) from.push_back('\0');  // the first name after `after`
  *next = kMaxTime;
  size_t taken = 0;
  bool stopped = false;  // by the callback, not by an error
  const auto stop = [&] {
    stopped = true;
    return Status::Internal("stop");
  };
  const Status s = store_.ScanFrom(kTimerPrefix, from, [&](std::string_view k, std::string_view) {
    SpilledTimer t;
    if (!ParseSpilledTimerName(k, &t)) return Status::Corruption("a spilled timer's name is bad");
    if (t.time > upto) {
      *next = t.time;
      return stop();
    }
    out->push_back(std::move(t));
    if (++taken == max) {
      *next = upto;
      return stop();
    }
    return Status::Ok();
  });
  return stopped ? Status::Ok() : s;
}

}  // namespace sluice::engine
