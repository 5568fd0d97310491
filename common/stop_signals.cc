#include "common/stop_signals.h"

#include <csignal>

namespace sluice {

namespace {
std::atomic<bool> g_stop{false};
extern "C" void OnStopSignal(int) { g_stop.store(true); }
}  // namespace

bool SigintIgnored() {
  struct sigaction current = {};
  sigaction(SIGINT, nullptr, &current);
  return current.sa_handler == SIG_IGN;
}

const std::atomic<bool>& InstallStopSignals() {
  const bool keep_sigint_ignored = SigintIgnored();
  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  sigaction(SIGTERM, &sa, nullptr);
  if (!keep_sigint_ignored) sigaction(SIGINT, &sa, nullptr);
  return g_stop;
}

}  // namespace sluice
