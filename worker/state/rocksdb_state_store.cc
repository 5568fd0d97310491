#include "worker/state/rocksdb_state_store.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <rocksdb/write_buffer_manager.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <utility>

#include "common/rocksdb_status.h"

namespace sluice::worker {
namespace {

namespace fs = std::filesystem;

Status FsError(const std::string& what, const std::error_code& ec) {
  return Status::IoError(what + ": " + ec.message());
}

// Creates `dir` and checks that a file can be written in it, so a bad data
// directory fails at startup with its name rather than at the first task.
Status EnsureWritableDir(const std::string& dir, const std::string& role) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return FsError(role + " " + dir + " cannot be created", ec);
  if (!fs::is_directory(dir, ec)) {
    return Status::IoError(role + " " + dir + " is not a directory");
  }
  const fs::path probe = fs::path(dir) / ".sluice-write-probe";
  {
    std::ofstream out(probe, std::ios::trunc);
    out << "probe\n";
    out.flush();
    if (!out) return Status::IoError(role + " " + dir + " is not writable");
  }
  fs::remove(probe, ec);
  if (ec) return FsError(role + " " + dir + " is not writable", ec);
  return Status::Ok();
}

// The smallest key greater than every key starting with `prefix`, or "" if
// there is none (the prefix is empty or all 0xff).
std::string PrefixSuccessor(std::string_view prefix) {
  std::string s(prefix);
  while (!s.empty()) {
    unsigned char last = static_cast<unsigned char>(s.back());
    if (last != 0xff) {
      s.back() = static_cast<char>(last + 1);
      return s;
    }
    s.pop_back();
  }
  return s;
}

rocksdb::Options TaskOptions(const std::shared_ptr<rocksdb::Cache>& cache,
                             const std::shared_ptr<rocksdb::WriteBufferManager>& wbm,
                             size_t write_buffer_bytes, bool scratch) {
  rocksdb::Options options;
  // The shared budget flushes the largest memtable once all of them reach
  // it, but does not stop a database written faster than its flushes run
  // (a spill store held 4x the budget): each database's own memtables, the
  // one written and the one flushing, are held to the budget too, and
  // RocksDB's write stall waits for the flush beyond that. (The budget's
  // own stall, allow_stall, can wedge every database sharing it in this
  // RocksDB version.)
  options.write_buffer_size = std::max<size_t>(write_buffer_bytes / 2, 1 << 20);
  options.max_write_buffer_number = 2;
  if (scratch) {
    // A spill store looks up keys it mostly does not hold (a key new to the
    // task, a mark never written): a Bloom filter over the memtable answers
    // those without a walk of its skip list.
    options.memtable_prefix_bloom_size_ratio = 0.05;
    options.memtable_whole_key_filtering = true;
  }
  options.create_if_missing = true;
  options.write_buffer_manager = wbm;
  // Many small databases per worker: keep their info logs small.
  options.keep_log_file_num = 2;
  options.max_log_file_size = 4 << 20;

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  // Index and filter blocks count against the shared cache, so memory stays
  // bounded however many tasks a worker runs.
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  // In partitions of a few KB, with the top level pinned: a lookup reads
  // the piece of the filter and index it needs, not a filter of megabytes
  // that a small cache keeps evicting (a spill store's lookups are random).
  table.index_type = rocksdb::BlockBasedTableOptions::IndexType::kTwoLevelIndexSearch;
  table.partition_filters = true;
  table.pin_top_level_index_and_filter = true;
  table.cache_index_and_filter_blocks_with_high_priority = true;
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return options;
}

Status ValidTaskName(const std::string& name) {
  if (name.empty() || name == "." || name == ".." ||
      name.find_first_of(std::string_view("/\0", 2)) != std::string::npos) {
    return Status::InvalidArgument("task name '" + name +
                                   "' is not a single directory name (empty, '.', '..' or "
                                   "contains '/')");
  }
  return Status::Ok();
}

}  // namespace

// ---- StateBackend ----

StateBackend::StateBackend(std::string data_dir, const StateOptions& options)
    : data_dir_(std::move(data_dir)),
      block_cache_(rocksdb::NewLRUCache(options.block_cache_bytes)),
      write_buffer_manager_(
          std::make_shared<rocksdb::WriteBufferManager>(options.write_buffer_bytes)),
      write_buffer_bytes_(options.write_buffer_bytes) {}

StateBackend::~StateBackend() = default;

Result<std::unique_ptr<StateBackend>> StateBackend::Open(const std::string& data_dir,
                                                         const StateOptions& options) {
  if (data_dir.empty()) return Status::InvalidArgument("state data directory is empty");
  SLUICE_RETURN_IF_ERROR(EnsureWritableDir(data_dir, "state directory"));
  // RocksDB's flushes and compactions yield the CPU to the task threads.
  rocksdb::Env::Default()->LowerThreadPoolCPUPriority(rocksdb::Env::LOW);
  rocksdb::Env::Default()->LowerThreadPoolCPUPriority(rocksdb::Env::HIGH);
  return std::unique_ptr<StateBackend>(new StateBackend(data_dir, options));
}

std::string StateBackend::TaskDir(const std::string& task_name) const {
  return (fs::path(data_dir_) / task_name).string();
}

Result<std::unique_ptr<RocksDbStateStore>> StateBackend::OpenTask(const std::string& task_name,
                                                                  bool wipe) {
  return Open(task_name, wipe, /*scratch=*/false);
}

Result<std::unique_ptr<RocksDbStateStore>> StateBackend::Open(const std::string& task_name,
                                                              bool wipe, bool scratch) {
  SLUICE_RETURN_IF_ERROR(ValidTaskName(task_name));
  const std::string dir = TaskDir(task_name);
  if (wipe) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (ec) return FsError("wiping state of task " + task_name + " at " + dir, ec);
  }
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(
      TaskOptions(block_cache_, write_buffer_manager_, write_buffer_bytes_, scratch), dir, &raw);
  std::unique_ptr<rocksdb::DB, RocksDbStateStore::DbDeleter> db(raw);
  if (!s.ok()) return FromRocksDb(s, "opening state of task " + task_name + " at " + dir);
  return std::unique_ptr<RocksDbStateStore>(
      new RocksDbStateStore(dir, std::move(db), block_cache_, write_buffer_manager_));
}

Result<std::unique_ptr<RocksDbStateStore>> StateBackend::OpenScratch(const std::string& name) {
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<RocksDbStateStore> store,
                          Open(name, /*wipe=*/true, /*scratch=*/true));
  store->write_wal_ = false;
  return store;
}

// ---- RocksDbStateStore ----

void RocksDbStateStore::DbDeleter::operator()(rocksdb::DB* db) const { delete db; }

RocksDbStateStore::RocksDbStateStore(std::string dir, std::unique_ptr<rocksdb::DB, DbDeleter> db,
                                     std::shared_ptr<rocksdb::Cache> cache,
                                     std::shared_ptr<rocksdb::WriteBufferManager> wbm)
    : dir_(std::move(dir)),
      db_(std::move(db)),
      block_cache_(std::move(cache)),
      write_buffer_manager_(std::move(wbm)) {}

RocksDbStateStore::~RocksDbStateStore() { Close().IgnoreError(); }

Status RocksDbStateStore::Close() {
  if (!db_) return Status::Ok();
  rocksdb::Status s = db_->Close();
  db_.reset();  // Deleted even when Close fails, as RocksDB requires.
  return FromRocksDb(s, "closing state at " + dir_);
}

Status RocksDbStateStore::Write(const engine::WriteBatch& batch) {
  return WriteSplit(batch, SIZE_MAX);
}

Status RocksDbStateStore::WriteInPieces(const engine::WriteBatch& batch) {
  return WriteSplit(batch, kPieceBytes);
}

Status RocksDbStateStore::WriteSplit(const engine::WriteBatch& batch, size_t piece_bytes) {
  if (!db_) return Status::FailedPrecondition("state at " + dir_ + " is closed");
  rocksdb::WriteOptions options;
  options.disableWAL = !write_wal_;
  rocksdb::WriteBatch wb;
  const auto write = [&]() -> Status {
    Status s = FromRocksDb(db_->Write(options, &wb), "writing state at " + dir_);
    wb.Clear();
    return s;
  };
  for (const engine::WriteBatch::Op& op : batch) {
    const rocksdb::Slice key(op.key.data(), op.key.size());
    rocksdb::Status s =
        op.put ? wb.Put(key, rocksdb::Slice(op.value.data(), op.value.size())) : wb.Delete(key);
    if (!s.ok()) return FromRocksDb(s, "building a write batch for " + dir_);
    if (wb.GetDataSize() >= piece_bytes) SLUICE_RETURN_IF_ERROR(write());
  }
  return wb.Count() > 0 ? write() : Status::Ok();
}

Result<std::optional<std::string>> RocksDbStateStore::Get(std::string_view key) const {
  if (!db_) return Status::FailedPrecondition("state at " + dir_ + " is closed");
  rocksdb::PinnableSlice value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(),
                               rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocksDb(s, "reading state at " + dir_);
  return std::optional<std::string>(value.ToString());
}

Status RocksDbStateStore::ScanFrom(
    std::string_view prefix, std::string_view from,
    const std::function<Status(std::string_view, std::string_view)>& fn) const {
  if (!db_) return Status::FailedPrecondition("state at " + dir_ + " is closed");
  const std::string upper = PrefixSuccessor(prefix);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions read;
  if (!upper.empty()) read.iterate_upper_bound = &upper_slice;
  // Restores read everything once: do not churn the shared cache.
  read.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read));
  const std::string_view start = std::max(prefix, from);
  for (it->Seek(rocksdb::Slice(start.data(), start.size())); it->Valid(); it->Next()) {
    rocksdb::Slice k = it->key();
    std::string_view key(k.data(), k.size());
    if (key.substr(0, prefix.size()) != prefix) break;
    rocksdb::Slice v = it->value();
    SLUICE_RETURN_IF_ERROR(fn(key, std::string_view(v.data(), v.size())));
  }
  return FromRocksDb(it->status(), "scanning state at " + dir_);
}

}  // namespace sluice::worker
