#include "common/fault_point.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdlib>
#include <string>

namespace sluice {

namespace {

struct Armed {
  std::string name;  // empty: no fault point armed
  int64_t hit_at = 1;
  std::atomic<int64_t> hits{0};
};

Armed& Config() {
  static Armed* armed = [] {
    auto* a = new Armed();
    const char* env = std::getenv("SLUICE_FAULT_POINT");
    if (env == nullptr || *env == '\0') return a;
    std::string_view spec(env);
    const size_t colon = spec.find(':');
    a->name = std::string(spec.substr(0, colon));
    if (colon != std::string_view::npos) {
      std::string_view n = spec.substr(colon + 1);
      int64_t v = 0;
      auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
      if (ec == std::errc() && end == n.data() + n.size() && v >= 1) a->hit_at = v;
    }
    spdlog::warn("fault point armed: {} (hit {})", a->name, a->hit_at);
    return a;
  }();
  return *armed;
}

}  // namespace

void FaultPoint(std::string_view name) {
  Armed& a = Config();
  if (a.name.empty() || a.name != name) return;
  if (a.hits.fetch_add(1) + 1 != a.hit_at) return;
  spdlog::warn("fault point {} reached: killing the process", a.name);
  spdlog::default_logger()->flush();
  kill(getpid(), SIGKILL);
}

}  // namespace sluice
