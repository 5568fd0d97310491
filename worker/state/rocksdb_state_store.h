#pragma once

// The RocksDB state store of a worker: one RocksDB instance per task (task =
// job + Kafka partition), so a task's state is snapshotted, moved and restored
// on its own, and all instances of a worker share one block cache and one
// write-buffer budget (StateBackend).
//
// Layout on disk: <data_dir>/<task_name>/ is one RocksDB database.
//
// Ownership: the worker owns one StateBackend; each task owns its
// RocksDbStateStore. A store keeps the shared cache alive itself, so stores may
// outlive the backend.
//
// Thread safety: StateBackend::OpenTask may be called from several threads for
// distinct task names. A RocksDbStateStore is used by one thread at a time:
// its task's thread, or the worker's background thread while it commits that
// task's checkpoint (the task does not touch the store meanwhile).
//
// Errors: RocksDB statuses are translated into sluice Status codes (IoError,
// Corruption, ...); nothing here throws.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "worker/engine/state_store.h"

namespace rocksdb {
class Cache;
class DB;
class WriteBufferManager;
}  // namespace rocksdb

namespace sluice::worker {

struct StateOptions {
  // LRU cache for data, index and filter blocks, shared by every task.
  size_t block_cache_bytes = 256 << 20;
  // Memtable budget shared by every task; reaching it flushes the largest.
  // Not charged to the block cache: memory is about the sum of the two.
  size_t write_buffer_bytes = 128 << 20;
};

class RocksDbStateStore;

// What all tasks of a worker share: the data directory, the block cache and
// the write buffer manager.
class StateBackend {
 public:
  // Creates `data_dir` if needed; an IoError naming it if it cannot be created
  // or written.
  static Result<std::unique_ptr<StateBackend>> Open(const std::string& data_dir,
                                                    const StateOptions& options);
  ~StateBackend();
  StateBackend(const StateBackend&) = delete;
  StateBackend& operator=(const StateBackend&) = delete;

  // Opens (creating) the RocksDB of one task at TaskDir(task_name).
  // wipe=true deletes what is there first (e.g. before restoring a checkpoint
  // or when the local state is known to be stale). `task_name` is one path
  // component: not empty, no '/', not "." or "..".
  Result<std::unique_ptr<RocksDbStateStore>> OpenTask(const std::string& task_name, bool wipe);
  // A scratch store (a task's spill store): always wiped, written without a
  // WAL, since nothing in it outlives the process.
  Result<std::unique_ptr<RocksDbStateStore>> OpenScratch(const std::string& name);

  std::string TaskDir(const std::string& task_name) const;
  const std::string& data_dir() const { return data_dir_; }

 private:
  StateBackend(std::string data_dir, const StateOptions& options);
  Result<std::unique_ptr<RocksDbStateStore>> Open(const std::string& task_name, bool wipe,
                                                  bool scratch);

  std::string data_dir_;
  std::shared_ptr<rocksdb::Cache> block_cache_;
  std::shared_ptr<rocksdb::WriteBufferManager> write_buffer_manager_;
  size_t write_buffer_bytes_ = 0;
};

// One task's state in its own RocksDB. Write applies a batch atomically
// through the WAL (not fsynced: the durable copy of a task's state is its
// checkpoint). Scan walks a prefix in key order.
class RocksDbStateStore final : public engine::StateStore {
 public:
  ~RocksDbStateStore() override;  // Closes if still open, ignoring errors.
  RocksDbStateStore(const RocksDbStateStore&) = delete;
  RocksDbStateStore& operator=(const RocksDbStateStore&) = delete;

  Status Write(const engine::WriteBatch& batch) override;
  // In RocksDB writes of about kPieceBytes each, so that a checkpoint of many
  // keys never sits in a RocksDB batch beside ours, nor in a memtable, all at
  // once.
  Status WriteInPieces(const engine::WriteBatch& batch) override;
  static constexpr size_t kPieceBytes = size_t{1} << 20;
  Result<std::optional<std::string>> Get(std::string_view key) const override;
  Status ScanFrom(
      std::string_view prefix, std::string_view from,
      const std::function<Status(std::string_view, std::string_view)>& fn) const override;

  // Closes the database (what is not flushed yet stays in its WAL and is
  // replayed by the next open). Later calls fail with FailedPrecondition;
  // Close again is OK.
  Status Close();

  // The open database, for the checkpoint store; nullptr after Close.
  rocksdb::DB* db() { return db_.get(); }
  const std::string& dir() const { return dir_; }

 private:
  friend class StateBackend;
  Status WriteSplit(const engine::WriteBatch& batch, size_t piece_bytes);
  struct DbDeleter {
    void operator()(rocksdb::DB* db) const;
  };
  RocksDbStateStore(std::string dir, std::unique_ptr<rocksdb::DB, DbDeleter> db,
                    std::shared_ptr<rocksdb::Cache> cache,
                    std::shared_ptr<rocksdb::WriteBufferManager> wbm);

  std::string dir_;
  bool write_wal_ = true;
  std::unique_ptr<rocksdb::DB, DbDeleter> db_;
  // Kept alive for as long as the database uses them.
  std::shared_ptr<rocksdb::Cache> block_cache_;
  std::shared_ptr<rocksdb::WriteBufferManager> write_buffer_manager_;
};

}  // namespace sluice::worker
