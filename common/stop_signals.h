#pragma once

// How the daemons stop: SIGTERM, and SIGINT unless the process started with
// SIGINT ignored. A shell starts the background jobs of a script with SIGINT
// ignored, so Ctrl-C at the terminal reaches the script alone, which then
// stops its daemons in order (scripts/demo.sh drains its jobs first).

#include <atomic>

namespace sluice {

// Whether SIGINT was ignored when the process started (call before
// installing any handler).
bool SigintIgnored();

// Installs handlers that set the returned flag on the stop signals.
const std::atomic<bool>& InstallStopSignals();

}  // namespace sluice
