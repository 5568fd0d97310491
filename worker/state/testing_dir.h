#pragma once

// Test helpers: a unique temporary directory (common/temp_dir.h), and opening
// state that must open (Catch2 REQUIREs).

#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "common/temp_dir.h"
#include "worker/state/rocksdb_state_store.h"

namespace sluice::worker::testing {

using sluice::testing::TempDir;

inline std::unique_ptr<StateBackend> OpenBackend(const std::string& dir) {
  auto backend = StateBackend::Open(dir, StateOptions{8 << 20, 8 << 20});
  INFO(backend.status().ToString());
  REQUIRE(backend.ok());
  return std::move(backend).value();
}

inline std::unique_ptr<RocksDbStateStore> OpenTask(StateBackend& backend, const std::string& name,
                                                   bool wipe) {
  auto store = backend.OpenTask(name, wipe);
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  return std::move(store).value();
}

}  // namespace sluice::worker::testing
