#pragma once

// Test helpers: a unique temporary directory, removed when the object dies,
// and opening state that must open (Catch2 REQUIREs).

#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>

#include "worker/state/rocksdb_state_store.h"

namespace sluice::worker::testing {

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("sluice-state-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) +
             "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string Sub(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

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
