#include "worker/engine/timer_queue.h"

#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace sluice::engine {
namespace {

struct Owner {
  int id = 0;
  const std::string* name = nullptr;
};

// An owner per key.
std::vector<Owner> OwnersOf(const std::vector<std::string>& keys) {
  std::vector<Owner> owners(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    owners[i].id = static_cast<int>(i);
    owners[i].name = &keys[i];
  }
  return owners;
}

using Q = TimerQueue<Owner>;
using T = Timer<Owner>;

// The order the engine fires timers in.
auto Order(const T& t) { return std::make_tuple(t.time, t.key(), t.start, t.kind); }

// Takes every timer out of `q`: they must be `pushed`, in the engine's
// order (pushes of equal timers in push order), and then the queue empty.
void RequireOutInOrder(Q& q, std::vector<T> pushed) {
  std::stable_sort(pushed.begin(), pushed.end(),
                   [](const T& a, const T& b) { return Order(a) < Order(b); });
  for (const T& want : pushed) {
    const T got = q.Pop();
    REQUIRE(Order(got) == Order(want));
    REQUIRE(got.owner == want.owner);
  }
  REQUIRE(q.empty());
}

TEST_CASE("timers come out by time, then key as std::string orders it, then start, then kind") {
  // Keys that agree in their first 8 bytes, embedded NULs, bytes above 0x7f.
  const std::vector<std::string> keys = {"u1",
                                         "u10",
                                         "u2",
                                         "",
                                         std::string("u1\0", 3),
                                         "abcdefgh",
                                         "abcdefghA",
                                         "abcdefgh\x01",
                                         "abcdefgi",
                                         "\xff",
                                         "\x80zz",
                                         "u100000",
                                         "abcdefghijklmnopqrstuvwxyz"};
  std::vector<Owner> owners = OwnersOf(keys);
  std::mt19937_64 rng(42);
  Q q;
  std::vector<T> expected;
  for (int i = 0; i < 5000; ++i) {
    const size_t k = rng() % keys.size();
    // Few distinct times (as windows ending together), some far apart.
    const int64_t time = (rng() % 4 == 0) ? static_cast<int64_t>(rng() % 1000) * 7919
                                          : static_cast<int64_t>(rng() % 6) * 60'000;
    T t{time, &owners[k], static_cast<int64_t>(rng() % 3) * 10,
        rng() % 2 ? TimerKind::kFire : TimerKind::kPurge};
    q.Push(t);
    expected.push_back(t);
  }
  REQUIRE(q.size() == expected.size());
  std::stable_sort(expected.begin(), expected.end(),
                   [](const T& a, const T& b) { return Order(a) < Order(b); });
  for (const T& want : expected) {
    REQUIRE_FALSE(q.empty());
    REQUIRE(q.next_time() == want.time);
    const T got = q.Pop();
    REQUIRE(Order(got) == Order(want));
    REQUIRE(got.owner == want.owner);
  }
  REQUIRE(q.empty());
  REQUIRE(q.size() == 0);
}

TEST_CASE("a time with more timers than the queue keeps buffers for comes out in order") {
  // Every key's window ending at once: the due timers are put in order in
  // place. Twice, so the second time starts without the first's buffers.
  std::vector<std::string> keys;
  for (int i = 0; i < 5000; ++i) keys.push_back("user-" + std::to_string(i * 7919 % 100'000));
  std::vector<Owner> owners = OwnersOf(keys);
  std::mt19937_64 rng(9);
  Q q;
  std::vector<T> expected;
  for (int64_t time : {60'000, 120'000}) {
    for (int i = 0; i < 12'000; ++i) {
      const size_t k = rng() % keys.size();
      T t{time, &owners[k], static_cast<int64_t>(rng() % 4) * 10,
          rng() % 2 ? TimerKind::kFire : TimerKind::kPurge};
      q.Push(t);
      expected.push_back(t);
    }
  }
  RequireOutInOrder(q, expected);
}

TEST_CASE("pushes while taking out timers keep the order, even at the current time") {
  const std::vector<std::string> keys = {"a", "b", "c", "d"};
  std::vector<Owner> owners = OwnersOf(keys);
  Q q;
  for (size_t k : {3, 1, 0}) q.Push(T{100, &owners[k], 0, TimerKind::kFire});
  q.Push(T{200, &owners[0], 0, TimerKind::kFire});

  T t = q.Pop();
  REQUIRE(t.key() == "a");
  // Due at the time being taken out, and before it: both come next, in order.
  q.Push(T{100, &owners[2], 0, TimerKind::kFire});
  q.Push(T{50, &owners[3], 0, TimerKind::kPurge});
  // Later ones wait for their turn.
  q.Push(T{150, &owners[1], 0, TimerKind::kPurge});
  q.Push(T{200, &owners[0], 0, TimerKind::kFire});  // a duplicate

  std::vector<std::pair<int64_t, std::string>> order;
  while (!q.empty()) {
    t = q.Pop();
    order.emplace_back(t.time, t.key());
  }
  REQUIRE(order ==
          std::vector<std::pair<int64_t, std::string>>{
              {50, "d"}, {100, "b"}, {100, "c"}, {100, "d"}, {150, "b"}, {200, "a"}, {200, "a"}});
}

TEST_CASE("interleaved pushes and pops match a heap ordered by (time, key, start, kind)") {
  std::vector<std::string> keys;
  for (int i = 0; i < 300; ++i) keys.push_back("user-" + std::to_string(i * 7919 % 1000));
  std::vector<Owner> owners = OwnersOf(keys);
  std::mt19937_64 rng(3);
  Q q;
  std::vector<T> reference;  // kept sorted, latest first
  auto later = [](const T& a, const T& b) { return Order(a) > Order(b); };
  int64_t now = 0;
  for (int round = 0; round < 2000; ++round) {
    for (int i = static_cast<int>(rng() % 8); i > 0; --i) {
      const size_t k = rng() % keys.size();
      // Mostly the next few window ends; sometimes one already due.
      const int64_t time =
          now + static_cast<int64_t>(rng() % 5) * 1000 - (rng() % 10 == 0 ? 500 : 0);
      T t{time, &owners[k], time - 999, TimerKind::kFire};
      q.Push(t);
      reference.insert(std::upper_bound(reference.begin(), reference.end(), t, later), t);
    }
    now += 250;
    while (!q.empty() && q.next_time() <= now) {
      REQUIRE(!reference.empty());
      const T want = reference.back();
      reference.pop_back();
      REQUIRE(Order(q.Pop()) == Order(want));
    }
    REQUIRE(q.size() == reference.size());
  }
}

TEST_CASE("timers removed from the queue are gone; the others come out in order") {
  Q q;
  std::vector<std::string> names(50);
  for (int i = 0; i < 50; ++i) names[i] = "k" + std::to_string(i);
  std::vector<Owner> owners = OwnersOf(names);
  std::mt19937_64 rng(2);
  std::vector<std::pair<int64_t, int>> kept;
  for (int i = 0; i < 500; ++i) {
    const int o = static_cast<int>(rng() % 50);
    const auto time = static_cast<int64_t>(rng() % 20);
    q.Push(T{time, &owners[o], 0, TimerKind::kFire});
    if (o % 3 != 0) kept.emplace_back(time, o);
  }
  // Some are taken out first, so the due list is part way through.
  std::vector<std::pair<int64_t, int>> out;
  for (int i = 0; i < 20; ++i) {
    const T t = q.Pop();
    out.emplace_back(t.time, t.owner->id);
  }
  q.RemoveIf([](const T& t) { return t.owner->id % 3 == 0; });
  while (!q.empty()) {
    REQUIRE(q.Peek().time == q.next_time());
    const T t = q.Pop();
    REQUIRE(t.owner->id % 3 != 0);
    out.emplace_back(t.time, t.owner->id);
  }
  for (size_t i = 1; i < out.size(); ++i) REQUIRE(out[i - 1].first <= out[i].first);
  // Every kept timer came out (the first 20 may include removed owners).
  size_t removed_early = 0;
  for (size_t i = 0; i < 20; ++i) removed_early += out[i].second % 3 == 0 ? 1 : 0;
  REQUIRE(out.size() == kept.size() + removed_early);
}

TEST_CASE("removing timers from times that hold several chunks of them keeps the rest, in order") {
  // Two times with 3 chunks and a part of timers each (as when every key's
  // window ends together and the budget moves keys out): every third owner's
  // timers go, which empties whole chunks and parts of others.
  const size_t per_time = 3 * 4096 + 1000;
  std::vector<std::string> keys(per_time);
  for (size_t i = 0; i < per_time; ++i) keys[i] = "user-" + std::to_string(i * 7919 % 100'000);
  std::vector<Owner> owners = OwnersOf(keys);
  Q q;
  std::vector<T> expected;
  for (int round = 0; round < 2; ++round) {
    for (int64_t time : {60'000, 120'000}) {
      for (size_t i = 0; i < per_time; ++i) {
        // The first round's timers of one owner are removed later in bulk.
        const bool removed = round == 0 ? i % 3 == 0 : i < 4096 * 2;
        const T t{time, &owners[i], round, TimerKind::kFire};
        q.Push(t);
        if (!removed) expected.push_back(t);
      }
    }
    if (round == 0) {
      q.RemoveIf([](const T& t) { return t.start == 0 && t.owner->id % 3 == 0; });
    } else {
      q.RemoveIf([](const T& t) { return t.start == 1 && t.owner->id < 4096 * 2; });
    }
    REQUIRE(q.size() == expected.size());
  }
  RequireOutInOrder(q, expected);
}

TEST_CASE("the windows of a sliding job that end together share one bucket of timers") {
  // Each key's six windows end at six times, pushed key by key: one bucket
  // per time however the pushes interleave.
  std::vector<std::string> keys;
  for (int i = 0; i < 3000; ++i) keys.push_back("user-" + std::to_string(i));
  std::vector<Owner> owners = OwnersOf(keys);
  Q q;
  std::vector<T> expected;
  for (size_t k = 0; k < keys.size(); ++k) {
    for (int64_t w = 0; w < 6; ++w) {
      const T t{(w + 1) * 10'000 - 1, &owners[k], w * 10'000 - 50'000, TimerKind::kFire};
      q.Push(t);
      expected.push_back(t);
    }
  }
  REQUIRE(q.buckets() == 6);
  REQUIRE(q.size() == expected.size());
  RequireOutInOrder(q, expected);
  REQUIRE(q.buckets() == 0);
}

TEST_CASE("a timer pushed while earlier ones are being taken out comes out in order") {
  // A timer earlier than the due ones joins them (a key read back from a
  // spill store); one between it and them must not overtake them.
  const std::vector<std::string> keys = {"a", "b", "c"};
  std::vector<Owner> owners = OwnersOf(keys);
  Owner *a = &owners[0], *b = &owners[1], *c = &owners[2];
  Q q;
  q.Push(T{20, c, 0, TimerKind::kFire});
  q.Push(T{30, c, 0, TimerKind::kFire});
  REQUIRE(q.Peek().time == 20);  // the time-20 timers are taken out now
  q.Push(T{10, b, 0, TimerKind::kFire});
  q.Push(T{20, a, 0, TimerKind::kFire});
  q.Push(T{15, a, 0, TimerKind::kFire});
  std::vector<std::pair<int64_t, std::string>> out;
  while (!q.empty()) {
    const T t = q.Pop();
    out.emplace_back(t.time, t.key());
  }
  REQUIRE(out == std::vector<std::pair<int64_t, std::string>>{
                     {10, "b"}, {15, "a"}, {20, "a"}, {20, "c"}, {30, "c"}});
}

}  // namespace
}  // namespace sluice::engine
