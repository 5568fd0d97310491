#include "coordinator/planner.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace sluice::coordinator {
namespace {

using Plan = std::map<TaskKey, std::string>;

std::vector<TaskKey> Partitions(const std::string& job, int n) {
  std::vector<TaskKey> tasks;
  for (int p = 0; p < n; ++p) tasks.push_back({job, p});
  return tasks;
}

std::vector<TaskKey> Concat(std::vector<TaskKey> a, const std::vector<TaskKey>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Tasks per live worker, overall or for one job (live workers with none count 0).
std::map<std::string, int> Load(const PlanInput& in, const Plan& plan,
                                const std::string* job = nullptr) {
  std::map<std::string, int> load;
  for (const std::string& w : in.workers) load[w] = 0;
  for (const auto& [task, w] : plan) {
    if (job == nullptr || task.job == *job) ++load[w];
  }
  return load;
}

int Spread(const std::map<std::string, int>& load) {
  int lo = load.begin()->second;
  int hi = lo;
  for (const auto& [w, n] : load) {
    lo = std::min(lo, n);
    hi = std::max(hi, n);
  }
  return hi - lo;
}

std::string Describe(const PlanInput& in) {
  std::ostringstream out;
  out << "workers:";
  for (const std::string& w : in.workers) out << " " << w;
  out << "\ntasks:";
  for (const TaskKey& t : in.tasks) out << " " << t.ToString();
  out << "\ncurrent:";
  for (const auto& [t, w] : in.current) out << " " << t.ToString() << "=" << w;
  return out.str();
}

// Promises 1-3; returns "" when they hold, else what is wrong.
std::string Violation(const PlanInput& in, const Plan& plan) {
  const std::set<TaskKey> tasks(in.tasks.begin(), in.tasks.end());
  const std::set<std::string> workers(in.workers.begin(), in.workers.end());
  if (workers.empty()) return plan.empty() ? "" : "a plan without live workers";
  // 1. Every task exactly once (the map holds one worker per key), on a live worker.
  if (plan.size() != tasks.size()) return "plan has the wrong number of tasks";
  for (const auto& [task, w] : plan) {
    if (!tasks.contains(task)) return "plan has unknown task " + task.ToString();
    if (!workers.contains(w)) return task.ToString() + " is on non-live worker " + w;
  }
  // 2. Balanced per job.
  std::set<std::string> jobs;
  for (const TaskKey& t : tasks) jobs.insert(t.job);
  for (const std::string& job : jobs) {
    if (Spread(Load(in, plan, &job)) > 1) return "job " + job + " is unbalanced";
  }
  // 3. Balanced overall.
  if (Spread(Load(in, plan)) > 1) return "overall load is unbalanced";
  return "";
}

// Tasks that leave a live worker holding them now (the moves promise 4 is about;
// tasks on dead workers or unheld are placed, not moved).
int Displaced(const PlanInput& in, const Plan& plan) {
  const std::set<std::string> workers(in.workers.begin(), in.workers.end());
  const std::set<TaskKey> tasks(in.tasks.begin(), in.tasks.end());
  int moves = 0;
  for (const TaskKey& t : tasks) {
    auto it = in.current.find(t);
    if (it != in.current.end() && workers.contains(it->second) && plan.at(t) != it->second) {
      ++moves;
    }
  }
  return moves;
}

// Tasks each live worker holds now, per job: held[job][worker].
std::map<std::string, std::map<std::string, int>> Held(const PlanInput& in) {
  const std::set<std::string> workers(in.workers.begin(), in.workers.end());
  const std::set<TaskKey> tasks(in.tasks.begin(), in.tasks.end());
  std::map<std::string, std::map<std::string, int>> held;
  for (const TaskKey& t : tasks) {
    for (const std::string& w : workers) held[t.job][w] += 0;
    auto it = in.current.find(t);
    if (it != in.current.end() && workers.contains(it->second)) ++held[t.job][it->second];
  }
  return held;
}

// The brief's bound on moves, with the plan's own per-job targets: the sum over
// (worker, job) of max(0, held now - target).
int OverflowBound(const PlanInput& in, const Plan& plan) {
  int bound = 0;
  for (const auto& [job, per_worker] : Held(in)) {
    const std::map<std::string, int> target = Load(in, plan, &job);
    for (const auto& [w, n] : per_worker) bound += std::max(0, n - target.at(w));
  }
  return bound;
}

// The fewest moves of any plan meeting promises 1-3, by exhaustive search over
// which workers take each job's extra slot; nullopt when the search would
// visit more than `budget` nodes.
std::optional<int> MinimumMoves(const PlanInput& in, int64_t budget) {
  const std::set<std::string> worker_set(in.workers.begin(), in.workers.end());
  const int w_count = static_cast<int>(worker_set.size());
  if (w_count == 0) return 0;
  std::vector<int> base, extra;
  std::vector<std::vector<int>> held;  // [job][worker]
  int total_extra = 0;
  for (const auto& [job, per_worker] : Held(in)) {
    int n = 0;
    held.emplace_back();
    for (const auto& [w, h] : per_worker) held.back().push_back(h);
    for (const TaskKey& t : std::set<TaskKey>(in.tasks.begin(), in.tasks.end())) {
      n += t.job == job ? 1 : 0;
    }
    base.push_back(n / w_count);
    extra.push_back(n % w_count);
    total_extra += n % w_count;
  }
  const int q = total_extra / w_count;
  const int jobs = static_cast<int>(base.size());
  std::vector<int> given(static_cast<size_t>(w_count), 0);
  int best = 1 << 30;
  int64_t nodes = 0;
  bool exhausted = false;
  // Decide worker w of job j; `left` extra slots of job j remain to hand out.
  auto search = [&](auto&& self, int j, int w, int left, int cost) -> void {
    if (exhausted || cost >= best) return;
    if (++nodes > budget) {
      exhausted = true;
      return;
    }
    if (j == jobs) {
      for (int g : given) {
        if (g < q) return;
      }
      best = cost;
      return;
    }
    if (w == w_count) {
      if (left == 0)
        self(self, j + 1, 0, j + 1 < jobs ? extra[static_cast<size_t>(j + 1)] : 0, cost);
      return;
    }
    const int h = held[static_cast<size_t>(j)][static_cast<size_t>(w)];
    const int b = base[static_cast<size_t>(j)];
    const size_t ws = static_cast<size_t>(w);
    if (left > 0 && given[ws] < q + 1) {
      ++given[ws];
      self(self, j, w + 1, left - 1, cost + std::max(0, h - b - 1));
      --given[ws];
    }
    if (left < w_count - w) self(self, j, w + 1, left, cost + std::max(0, h - b));
  };
  search(search, 0, 0, jobs > 0 ? extra[0] : 0, 0);
  if (exhausted) return std::nullopt;
  return best;
}

PlanInput RandomInput(std::mt19937& rng, int max_jobs, int max_partitions, int max_workers) {
  auto uniform = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  PlanInput in;
  std::vector<std::string> pool;
  for (int i = 0; i < 10; ++i) pool.push_back("w" + std::to_string(i));
  std::shuffle(pool.begin(), pool.end(), rng);
  in.workers.assign(pool.begin(), pool.begin() + uniform(1, max_workers));
  const int jobs = uniform(1, max_jobs);
  for (int j = 0; j < jobs; ++j) {
    const std::string job = "job" + std::to_string(uniform(0, 99));
    const int n = uniform(1, max_partitions);
    const bool sparse = uniform(0, 3) == 0;  // partition ids with gaps
    for (int p = 0; p < n; ++p) in.tasks.push_back({job, sparse ? p * 3 + uniform(0, 2) : p});
  }
  for (const TaskKey& t : in.tasks) {
    const int r = uniform(0, 9);
    if (r == 0) continue;  // nobody holds it
    if (r == 1) {
      in.current[t] = "dead" + std::to_string(uniform(0, 2));
    } else {
      in.current[t] = pool[static_cast<size_t>(uniform(0, 9))];  // live, or gone
    }
  }
  for (int s = uniform(0, 3); s > 0; --s) {  // stale tasks of deleted jobs
    in.current[{"gone" + std::to_string(uniform(0, 2)), uniform(0, 9)}] =
        pool[static_cast<size_t>(uniform(0, 9))];
  }
  return in;
}

TEST_CASE("TaskKey prints as job/partition and orders by job, then partition") {
  REQUIRE(TaskKey{"fraud", 3}.ToString() == "fraud/3");
  REQUIRE(TaskKey{"a", 10} < TaskKey{"b", 0});
  REQUIRE(TaskKey{"a", 2} < TaskKey{"a", 10});
  REQUIRE(TaskKey{"a", 2} == TaskKey{"a", 2});
}

TEST_CASE("CountMoves counts tasks present in both plans whose worker differs") {
  const Plan before = {{{"a", 0}, "w1"}, {{"a", 1}, "w1"}, {{"a", 2}, "w2"}};
  const Plan after = {{{"a", 0}, "w1"}, {{"a", 1}, "w2"}, {{"b", 0}, "w3"}};
  REQUIRE(CountMoves(before, after) == 1);
  REQUIRE(CountMoves(after, before) == 1);
  REQUIRE(CountMoves(before, before) == 0);
  REQUIRE(CountMoves({}, after) == 0);
}

TEST_CASE("a cluster grows and shrinks with the fewest moves") {
  PlanInput in{Partitions("fraud", 8), {}, {"w1", "w2", "w3"}};
  const Plan three = PlanAssignment(in);
  REQUIRE(Violation(in, three).empty());
  std::vector<int> loads;
  for (const auto& [w, n] : Load(in, three)) loads.push_back(n);
  std::sort(loads.begin(), loads.end());
  REQUIRE(loads == std::vector<int>{2, 3, 3});

  SECTION("a fourth worker joins: 2/2/2/2, and only the two it takes move") {
    in.current = three;
    in.workers = {"w4", "w2", "w1", "w3"};
    const Plan four = PlanAssignment(in);
    REQUIRE(Violation(in, four).empty());
    for (const auto& [w, n] : Load(in, four)) REQUIRE(n == 2);
    REQUIRE(CountMoves(three, four) == 2);
    for (const auto& [task, w] : four) {
      if (three.at(task) != w) REQUIRE(w == "w4");
    }
  }

  SECTION("a worker leaves: only its tasks move") {
    in.current = three;
    in.workers = {"w1", "w3"};
    const Plan two = PlanAssignment(in);
    REQUIRE(Violation(in, two).empty());
    for (const auto& [w, n] : Load(in, two)) REQUIRE(n == 4);
    for (const auto& [task, w] : three) {
      if (w != "w2") REQUIRE(two.at(task) == w);
    }
  }

  SECTION("nothing changed: the plan is returned as is") {
    in.current = three;
    REQUIRE(PlanAssignment(in) == three);
  }
}

TEST_CASE("one job moving from W to W+1 workers moves exactly floor(N/(W+1)) tasks") {
  for (int n = 1; n <= 40; ++n) {
    for (int w = 1; w <= 6; ++w) {
      PlanInput in{Partitions("j", n), {}, {}};
      for (int i = 0; i < w; ++i) in.workers.push_back("w" + std::to_string(i));
      in.current = PlanAssignment(in);
      const Plan before = in.current;
      in.workers.push_back("w" + std::to_string(w));
      const Plan after = PlanAssignment(in);
      INFO("n=" << n << " w=" << w);
      REQUIRE(Violation(in, after).empty());
      REQUIRE(CountMoves(before, after) == n / (w + 1));
    }
  }
}

TEST_CASE("two jobs are balanced per job and overall") {
  const PlanInput in{Concat(Partitions("big", 8), Partitions("small", 3)), {}, {"a", "b", "c"}};
  const Plan plan = PlanAssignment(in);
  REQUIRE(Violation(in, plan).empty());
  const std::string big = "big", small = "small";
  std::vector<int> big_loads, small_loads, totals;
  for (const auto& [w, n] : Load(in, plan, &big)) big_loads.push_back(n);
  for (const auto& [w, n] : Load(in, plan, &small)) small_loads.push_back(n);
  for (const auto& [w, n] : Load(in, plan)) totals.push_back(n);
  std::sort(big_loads.begin(), big_loads.end());
  std::sort(totals.begin(), totals.end());
  REQUIRE(big_loads == std::vector<int>{2, 3, 3});
  REQUIRE(small_loads == std::vector<int>{1, 1, 1});
  REQUIRE(totals == std::vector<int>{3, 4, 4});
}

TEST_CASE("a balanced plan over several jobs is kept even where a greedy order would move") {
  // Jobs x, y on A and z on B is balanced (2/1, and 1/0 per job). Handing the
  // extra slots out job by job to the least loaded worker would move y.
  PlanInput in{{{"x", 0}, {"y", 0}, {"z", 0}}, {}, {"B", "A"}};
  in.current = {{{"x", 0}, "A"}, {{"y", 0}, "A"}, {{"z", 0}, "B"}};
  REQUIRE(PlanAssignment(in) == in.current);
}

TEST_CASE("no live workers gives an empty plan") {
  PlanInput in{Partitions("a", 4), {{{"a", 0}, "w1"}}, {}};
  REQUIRE(PlanAssignment(in).empty());
  REQUIRE(PlanAssignment(PlanInput{}).empty());
  REQUIRE(PlanAssignment(PlanInput{{}, {}, {"w1"}}).empty());
}

TEST_CASE("stale tasks of deleted jobs and tasks of dead workers are not counted") {
  PlanInput in{Partitions("a", 4), {}, {"w1", "w2"}};
  in.current = {{{"a", 0}, "w1"}, {{"a", 1}, "w1"}, {{"a", 2}, "w2"}, {{"a", 3}, "w2"}};
  for (int p = 0; p < 6; ++p) in.current[{"deleted", p}] = "w1";
  Plan plan = PlanAssignment(in);
  REQUIRE(Violation(in, plan).empty());
  REQUIRE(plan.size() == 4);
  for (const auto& [task, w] : plan) REQUIRE(w == in.current.at(task));

  // w2 died; its tasks go to the live worker without load, the rest stay.
  in.current[{"a", 2}] = "dead";
  in.current[{"a", 3}] = "dead";
  in.workers = {"w1", "w3"};
  plan = PlanAssignment(in);
  REQUIRE(Violation(in, plan).empty());
  REQUIRE(plan.at({"a", 0}) == "w1");
  REQUIRE(plan.at({"a", 1}) == "w1");
  REQUIRE(plan.at({"a", 2}) == "w3");
  REQUIRE(plan.at({"a", 3}) == "w3");
}

TEST_CASE("duplicate tasks and workers in the input are harmless") {
  const PlanInput once{Partitions("a", 5), {}, {"w1", "w2"}};
  const PlanInput twice{Concat(Partitions("a", 5), Partitions("a", 5)), {}, {"w2", "w1", "w2"}};
  REQUIRE(PlanAssignment(twice) == PlanAssignment(once));
}

TEST_CASE("property: random inputs give valid, deterministic, minimal-move plans") {
  std::mt19937 rng(20240611);
  int verified_minimal = 0;
  const int kCases = 3000;
  for (int c = 0; c < kCases; ++c) {
    PlanInput in = RandomInput(rng, 6, 16, 7);
    const Plan plan = PlanAssignment(in);
    INFO(Describe(in));
    // 1-3.
    REQUIRE(Violation(in, plan) == "");
    // 4: tasks only leave a live worker beyond its target...
    REQUIRE(Displaced(in, plan) == OverflowBound(in, plan));
    // ...and no balanced plan moves fewer (when the search is small enough).
    if (auto best = MinimumMoves(in, 200000)) {
      REQUIRE(Displaced(in, plan) == *best);
      ++verified_minimal;
    }
    // A valid plan fed back is kept as is.
    REQUIRE(PlanAssignment(PlanInput{in.tasks, plan, in.workers}) == plan);
    // 5: the order of workers and tasks does not matter.
    PlanInput shuffled = in;
    std::shuffle(shuffled.workers.begin(), shuffled.workers.end(), rng);
    std::shuffle(shuffled.tasks.begin(), shuffled.tasks.end(), rng);
    REQUIRE(PlanAssignment(shuffled) == plan);
  }
  INFO("verified minimal against exhaustive search: " << verified_minimal);
  REQUIRE(verified_minimal >= kCases / 2);
}

TEST_CASE("property: small random inputs move exactly the minimum") {
  std::mt19937 rng(7);
  for (int c = 0; c < 2000; ++c) {
    const PlanInput in = RandomInput(rng, 4, 12, 5);
    const Plan plan = PlanAssignment(in);
    INFO(Describe(in));
    REQUIRE(Violation(in, plan) == "");
    const std::optional<int> best = MinimumMoves(in, 50000000);
    REQUIRE(best.has_value());
    REQUIRE(Displaced(in, plan) == *best);
  }
}

TEST_CASE("property: from a balanced plan on some workers, joins and leaves move the fewest") {
  std::mt19937 rng(99);
  int verified_minimal = 0;
  const int kCases = 2000;
  for (int c = 0; c < kCases; ++c) {
    PlanInput in = RandomInput(rng, 6, 16, 7);
    // A valid plan over a random subset of the live workers, plus some workers
    // that have since died.
    PlanInput before = in;
    std::shuffle(before.workers.begin(), before.workers.end(), rng);
    before.workers.resize(std::uniform_int_distribution<size_t>(1, in.workers.size())(rng));
    const size_t live_before = before.workers.size();
    for (int d = std::uniform_int_distribution<int>(0, 2)(rng); d > 0; --d) {
      before.workers.push_back("dead" + std::to_string(d));
    }
    in.current = PlanAssignment(before);
    REQUIRE(Violation(before, in.current) == "");

    const Plan plan = PlanAssignment(in);
    INFO(Describe(in));
    REQUIRE(Violation(in, plan) == "");
    const int moves = Displaced(in, plan);
    REQUIRE(moves == OverflowBound(in, plan));
    if (auto best = MinimumMoves(in, 200000)) {
      REQUIRE(moves == *best);
      ++verified_minimal;
    }
    // Only joins, one job: exactly what the newcomers must take.
    std::set<std::string> jobs;
    for (const TaskKey& t : in.tasks) jobs.insert(t.job);
    if (jobs.size() == 1 && before.workers.size() == live_before &&
        live_before + 1 == in.workers.size()) {
      REQUIRE(moves ==
              static_cast<int>(std::set<TaskKey>(in.tasks.begin(), in.tasks.end()).size()) /
                  static_cast<int>(in.workers.size()));
    }
    // When nobody joined and the plan was on exactly these workers, nothing moves.
    if (std::set<std::string>(before.workers.begin(), before.workers.end()) ==
        std::set<std::string>(in.workers.begin(), in.workers.end())) {
      REQUIRE(plan == in.current);
    }
  }
  INFO("verified minimal against exhaustive search: " << verified_minimal);
  REQUIRE(verified_minimal >= kCases / 2);
}

}  // namespace
}  // namespace sluice::coordinator
