#pragma once

// StateStore: where a task's state lives between checkpoints. One StateStore
// holds exactly one task's state (stores are sharded by task), so a task can be
// snapshotted, moved and restored on its own.
//
// The engine keeps the live state of a task in memory (a write-back cache) and
// writes what changed since the last checkpoint as one atomic WriteBatch. The
// worker's RocksDB store implements this interface; InMemoryStateStore is the
// version for tests and tools.
//
// Thread safety: a StateStore is used by its task's thread only.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/write_batch.h"

namespace sluice::engine {

using WriteBatch = sluice::WriteBatch;

class StateStore {
 public:
  virtual ~StateStore() = default;

  // Applies `batch` atomically.
  virtual Status Write(const WriteBatch& batch) = 0;
  // Applies `batch`, possibly in pieces so that a large one is never held
  // twice: a failure may leave part of it applied. For a store that a failed
  // write makes the task replace before it is read again: its local state,
  // written with each checkpoint (a restart restores the last checkpoint
  // into a new one), and its spill store (wiped). By default, Write.
  virtual Status WriteInPieces(const WriteBatch& batch) { return Write(batch); }
  virtual Result<std::optional<std::string>> Get(std::string_view key) const = 0;
  // Calls `fn` for every entry whose key starts with `prefix`, in key order;
  // stops at the first error `fn` returns.
  Status Scan(std::string_view prefix,
              const std::function<Status(std::string_view key, std::string_view value)>& fn) const {
    return ScanFrom(prefix, prefix, fn);
  }
  // The same, from the first key at or after `from` on.
  virtual Status ScanFrom(
      std::string_view prefix, std::string_view from,
      const std::function<Status(std::string_view key, std::string_view value)>& fn) const = 0;
};

class InMemoryStateStore final : public StateStore {
 public:
  Status Write(const WriteBatch& batch) override;
  Result<std::optional<std::string>> Get(std::string_view key) const override;
  Status ScanFrom(
      std::string_view prefix, std::string_view from,
      const std::function<Status(std::string_view, std::string_view)>& fn) const override;

  size_t size() const { return data_.size(); }
  // The number of Write calls, for tests of incremental checkpoints.
  size_t writes() const { return writes_; }
  size_t last_batch_size() const { return last_batch_size_; }

 private:
  std::map<std::string, std::string, std::less<>> data_;
  size_t writes_ = 0;
  size_t last_batch_size_ = 0;
};

}  // namespace sluice::engine
