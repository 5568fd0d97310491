#include "coordinator/planner.h"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <queue>
#include <set>
#include <utility>

#include "common/check.h"

namespace sluice::coordinator {

std::string TaskKey::ToString() const { return job + "/" + std::to_string(partition); }

namespace {

// Min-cost max-flow by successive shortest paths (primal-dual): Dijkstra on
// reduced costs finds the current shortest distance, then a Dinic blocking flow
// pushes every augmenting path of that length at once. Costs may be negative
// on the original edges as long as the graph has no negative cycle. Every
// choice is by node and edge index, so the result is deterministic.
class MinCostFlow {
 public:
  explicit MinCostFlow(int nodes) : graph_(static_cast<size_t>(nodes)) {}

  // Adds a directed edge and returns an id for Flow().
  int AddEdge(int from, int to, int64_t capacity, int64_t cost) {
    auto& out = graph_[static_cast<size_t>(from)];
    auto& in = graph_[static_cast<size_t>(to)];
    out.push_back({to, in.size(), capacity, cost});
    in.push_back({from, out.size() - 1, 0, -cost});
    edges_.push_back({from, out.size() - 1, capacity});
    return static_cast<int>(edges_.size()) - 1;
  }

  // Pushes the maximum flow from `source` to `sink` at the minimum cost.
  void Run(int source, int sink) {
    const size_t n = graph_.size();
    potential_.assign(n, 0);
    InitPotentials(source);
    std::vector<int64_t> dist(n);
    while (true) {
      ShortestPaths(source, dist);
      if (dist[static_cast<size_t>(sink)] >= kInf) break;
      for (size_t v = 0; v < n; ++v) {
        if (dist[v] < kInf) potential_[v] += dist[v];
      }
      while (BuildLevels(source, sink)) {
        next_edge_.assign(n, 0);
        while (Push(source, sink, kInf) > 0) {
        }
      }
    }
  }

  int64_t Flow(int edge_id) const {
    const EdgeRef& ref = edges_[static_cast<size_t>(edge_id)];
    return ref.capacity - graph_[static_cast<size_t>(ref.from)][ref.index].capacity;
  }

 private:
  static constexpr int64_t kInf = std::numeric_limits<int64_t>::max() / 4;

  struct Edge {
    int to;
    size_t reverse;
    int64_t capacity;
    int64_t cost;
  };
  struct EdgeRef {
    int from;
    size_t index;
    int64_t capacity;
  };

  int64_t Reduced(int from, const Edge& e) const {
    return e.cost + potential_[static_cast<size_t>(from)] - potential_[static_cast<size_t>(e.to)];
  }

  // Bellman-Ford from the source so that every reduced cost is non-negative.
  void InitPotentials(int source) {
    std::vector<int64_t> dist(graph_.size(), kInf);
    dist[static_cast<size_t>(source)] = 0;
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t u = 0; u < graph_.size(); ++u) {
        if (dist[u] == kInf) continue;
        for (const Edge& e : graph_[u]) {
          if (e.capacity > 0 && dist[u] + e.cost < dist[static_cast<size_t>(e.to)]) {
            dist[static_cast<size_t>(e.to)] = dist[u] + e.cost;
            changed = true;
          }
        }
      }
    }
    for (size_t v = 0; v < graph_.size(); ++v) potential_[v] = dist[v] == kInf ? 0 : dist[v];
  }

  // Dijkstra on reduced costs; kInf for nodes the residual graph cannot reach.
  void ShortestPaths(int source, std::vector<int64_t>& dist) const {
    std::fill(dist.begin(), dist.end(), kInf);
    using Item = std::pair<int64_t, int>;
    std::priority_queue<Item, std::vector<Item>, std::greater<>> queue;
    dist[static_cast<size_t>(source)] = 0;
    queue.push({0, source});
    while (!queue.empty()) {
      auto [d, u] = queue.top();
      queue.pop();
      if (d > dist[static_cast<size_t>(u)]) continue;
      for (const Edge& e : graph_[static_cast<size_t>(u)]) {
        if (e.capacity <= 0) continue;
        const int64_t nd = d + Reduced(u, e);
        if (nd < dist[static_cast<size_t>(e.to)]) {
          dist[static_cast<size_t>(e.to)] = nd;
          queue.push({nd, e.to});
        }
      }
    }
  }

  // BFS levels over the residual edges of zero reduced cost (the shortest ones).
  bool BuildLevels(int source, int sink) {
    level_.assign(graph_.size(), -1);
    std::queue<int> queue;
    level_[static_cast<size_t>(source)] = 0;
    queue.push(source);
    while (!queue.empty()) {
      const int u = queue.front();
      queue.pop();
      for (const Edge& e : graph_[static_cast<size_t>(u)]) {
        if (e.capacity > 0 && Reduced(u, e) == 0 && level_[static_cast<size_t>(e.to)] < 0) {
          level_[static_cast<size_t>(e.to)] = level_[static_cast<size_t>(u)] + 1;
          queue.push(e.to);
        }
      }
    }
    return level_[static_cast<size_t>(sink)] >= 0;
  }

  int64_t Push(int u, int sink, int64_t limit) {
    if (u == sink) return limit;
    const auto uu = static_cast<size_t>(u);
    for (size_t& i = next_edge_[uu]; i < graph_[uu].size(); ++i) {
      Edge& e = graph_[uu][i];
      if (e.capacity <= 0 || Reduced(u, e) != 0 ||
          level_[static_cast<size_t>(e.to)] != level_[uu] + 1) {
        continue;
      }
      const int64_t pushed = Push(e.to, sink, std::min(limit, e.capacity));
      if (pushed > 0) {
        e.capacity -= pushed;
        graph_[static_cast<size_t>(e.to)][e.reverse].capacity += pushed;
        return pushed;
      }
    }
    return 0;
  }

  std::vector<std::vector<Edge>> graph_;
  std::vector<EdgeRef> edges_;
  std::vector<int64_t> potential_;
  std::vector<int> level_;
  std::vector<size_t> next_edge_;
};

// One job's tasks and who of the live workers holds them now.
struct JobState {
  std::string name;
  std::vector<int32_t> partitions;  // ascending, unique
  // held[w]: partitions (ascending) of this job currently on live worker w.
  std::vector<std::vector<int32_t>> held;
  int64_t base = 0;   // every worker's share: floor(n / W)
  int64_t extra = 0;  // how many workers get one more: n mod W
};

// Decides which workers take the `extra` slot of each job. Per job exactly
// `extra` distinct workers take one (promise 2); per worker the number of extra
// slots over all jobs is q or q+1 where q = floor(sum of extras / W) (with equal
// bases this is promise 3, and it is also necessary for it). Among those
// choices it maximises the number of (worker, job) pairs where the extra slot
// lets the worker keep a task it already holds, i.e. it minimises moves
// (promise 4). Solved as a min-cost flow:
//   source -> job (capacity extra) -> worker (capacity 1, cost -1 when the worker
//   holds more than `base` of the job, else 0) -> sink (capacity q at a cost
//   -big that forces it full, plus capacity 1 at cost 0 when there is a remainder).
std::vector<std::vector<bool>> ChooseExtraSlots(const std::vector<JobState>& jobs,
                                                int64_t w_count) {
  const auto job_count = static_cast<int>(jobs.size());
  const auto workers = static_cast<int>(w_count);
  std::vector<std::vector<bool>> extra(jobs.size(),
                                       std::vector<bool>(static_cast<size_t>(workers)));
  int64_t total_extra = 0;
  for (const JobState& job : jobs) total_extra += job.extra;
  if (total_extra == 0) return extra;
  const int64_t q = total_extra / w_count;
  const int64_t remainder = total_extra % w_count;
  const int64_t big = total_extra + 1;  // more than any total gain

  const int source = 0;
  const int sink = 1 + job_count + workers;
  auto job_node = [](int j) { return 1 + j; };
  auto worker_node = [job_count](int w) { return 1 + job_count + w; };
  MinCostFlow flow(sink + 1);
  std::vector<std::vector<int>> edge(jobs.size(),
                                     std::vector<int>(static_cast<size_t>(workers), -1));
  for (int j = 0; j < job_count; ++j) {
    const JobState& job = jobs[static_cast<size_t>(j)];
    if (job.extra == 0) continue;
    flow.AddEdge(source, job_node(j), job.extra, 0);
    for (int w = 0; w < workers; ++w) {
      const bool keeps_one_more =
          static_cast<int64_t>(job.held[static_cast<size_t>(w)].size()) > job.base;
      edge[static_cast<size_t>(j)][static_cast<size_t>(w)] =
          flow.AddEdge(job_node(j), worker_node(w), 1, keeps_one_more ? -1 : 0);
    }
  }
  for (int w = 0; w < workers; ++w) {
    if (q > 0) flow.AddEdge(worker_node(w), sink, q, -big);
    if (remainder > 0) flow.AddEdge(worker_node(w), sink, 1, 0);
  }
  flow.Run(source, sink);

  std::vector<int64_t> per_worker(static_cast<size_t>(workers), 0);
  for (size_t j = 0; j < jobs.size(); ++j) {
    int64_t given = 0;
    for (size_t w = 0; w < static_cast<size_t>(workers); ++w) {
      if (edge[j][w] >= 0 && flow.Flow(edge[j][w]) > 0) {
        extra[j][w] = true;
        ++given;
        ++per_worker[w];
      }
    }
    SLUICE_CHECK(given == jobs[j].extra)
        << "job " << jobs[j].name << " got " << given << " extra slots, wants " << jobs[j].extra;
  }
  for (int64_t c : per_worker) {
    SLUICE_CHECK(c == q || c == q + 1) << "a worker got " << c << " extra slots, q=" << q;
  }
  return extra;
}

}  // namespace

std::map<TaskKey, std::string> PlanAssignment(const PlanInput& in) {
  std::map<TaskKey, std::string> plan;
  std::vector<std::string> workers = in.workers;
  std::sort(workers.begin(), workers.end());
  workers.erase(std::unique(workers.begin(), workers.end()), workers.end());
  if (workers.empty()) return plan;
  const auto w_count = static_cast<int64_t>(workers.size());
  std::map<std::string, size_t> worker_index;
  for (size_t w = 0; w < workers.size(); ++w) worker_index.emplace(workers[w], w);

  // Jobs in name order, partitions ascending; note who of the live workers
  // holds what. Tasks on dead workers or with no holder are placed afresh.
  const std::set<TaskKey> tasks(in.tasks.begin(), in.tasks.end());
  std::vector<JobState> jobs;
  for (const TaskKey& task : tasks) {
    if (jobs.empty() || jobs.back().name != task.job) {
      jobs.push_back({task.job, {}, std::vector<std::vector<int32_t>>(workers.size())});
    }
    JobState& job = jobs.back();
    job.partitions.push_back(task.partition);
    if (auto it = in.current.find(task); it != in.current.end()) {
      if (auto w = worker_index.find(it->second); w != worker_index.end()) {
        job.held[w->second].push_back(task.partition);
      }
    }
  }
  for (JobState& job : jobs) {
    const auto n = static_cast<int64_t>(job.partitions.size());
    job.base = n / w_count;
    job.extra = n % w_count;
  }

  const std::vector<std::vector<bool>> extra = ChooseExtraSlots(jobs, w_count);

  for (size_t j = 0; j < jobs.size(); ++j) {
    const JobState& job = jobs[j];
    std::vector<int64_t> target(workers.size());
    std::vector<int64_t> count(workers.size(), 0);
    std::set<int32_t> loose(job.partitions.begin(), job.partitions.end());
    // Each worker keeps its lowest partitions up to its target.
    for (size_t w = 0; w < workers.size(); ++w) {
      target[w] = job.base + (extra[j][w] ? 1 : 0);
      for (int32_t p : job.held[w]) {
        if (count[w] == target[w]) break;
        plan.emplace(TaskKey{job.name, p}, workers[w]);
        loose.erase(p);
        ++count[w];
      }
    }
    // The rest go, lowest partition first, to workers under target, lowest id first.
    size_t w = 0;
    for (int32_t p : loose) {
      while (count[w] == target[w]) ++w;
      plan.emplace(TaskKey{job.name, p}, workers[w]);
      ++count[w];
    }
  }
  return plan;
}

int CountMoves(const std::map<TaskKey, std::string>& before,
               const std::map<TaskKey, std::string>& after) {
  int moves = 0;
  for (const auto& [task, worker] : before) {
    if (auto it = after.find(task); it != after.end() && it->second != worker) ++moves;
  }
  return moves;
}

}  // namespace sluice::coordinator
