#pragma once

// CheckpointStore: the durable checkpoints of one task (job, partition), kept
// in a directory of the checkpoint store (local, or a shared volume in a
// cluster). A checkpoint is either full — a RocksDB BackupEngine backup of the
// task's database — or a delta: the state changes of one checkpoint interval
// written on top of the checkpoint before it (changelog.h). Restoring a delta
// restores the newest full checkpoint on its chain and applies the deltas
// after it in order.
//
//   <root>/<job>/<partition>/
//     meta/<backup id>     one per full checkpoint: its files, their checksums
//                          and our CheckpointMeta as app metadata; written to a
//                          temporary name and renamed, so it is the commit
//     shared_checksum/     table files, copied once and shared by all the
//                          full checkpoints that contain them (incremental)
//     private/<backup id>/ small per-backup files (MANIFEST, OPTIONS, WAL)
//     changelog/<id>.delta one per delta checkpoint, written once (fsynced,
//                          linked into place: the link is the commit)
//
// Why deltas: a full checkpoint flushes the task's memtable and copies every
// table file that flushes and compactions made since the last one — seconds
// for a large state — while a delta writes only what the interval changed.
// Under exactly_once the transaction of an interval commits only after its
// checkpoint, so the checkpoint's cost is the alerts' latency. SaveChanges
// therefore writes a delta, and every `full_every` deltas (or
// `full_after_bytes` of them) starts a full checkpoint of the same state in
// the background ("materialization", as Flink's changelog state backend): a
// hard-linked RocksDB checkpoint of the task's database taken right after the
// delta (a memtable flush), backed up by a thread of its own while the task
// and its next checkpoints go on. A full checkpoint carries the id of the
// delta it equals; from then on the deltas before it are not needed.
//
// Checkpoint ids increase by one with every checkpoint, full or delta. A full
// checkpoint written before deltas existed carries no id in its metadata: its
// id is its backup id.
//
// A checkpoint is atomic per task (invariant 3): the task's state, timers,
// watermark and next input offset are in the RocksDB (TaskProcessor::
// Checkpoint wrote them there) or the delta's batch, and the offset,
// watermark and epoch are repeated in the metadata, all committed by one
// rename or link. The last `keep` checkpoints are kept, with every checkpoint
// their restore needs (the full one their chain starts from, the deltas after
// it).
//
// The two phases (invariant 4) map as: prepare = the caller flushes its sink
// and writes the checkpoint's batch into the RocksDbStateStore; commit =
// SaveChanges (or Save). A checkpoint exists once it returns OK.
//
// Thread safety: one thread at a time calls a CheckpointStore (the task's, or
// the background thread committing the task's checkpoint); the store's own
// materialization thread works beside it. Only one CheckpointStore should be
// open per task directory at a time; the epoch check in Save refuses a writer
// older than the newest checkpoint it knows, and two writers of the same
// delta id cannot both succeed, but the coordinator's assignment is what
// really fences an old owner.

#include <atomic>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/write_batch.h"
#include "worker/state/checkpoint_meta.h"
#include "worker/state/rocksdb_state_store.h"

namespace rocksdb {
class BackupEngine;
}  // namespace rocksdb

namespace sluice::worker {

// "file:///abs/path" -> "/abs/path"; a plain path (made absolute) is accepted
// too. Other schemes are rejected: "s3://b/x: only file:// checkpoint stores
// are supported".
Result<std::string> CheckpointRootFromUri(const std::string& uri);

struct CheckpointStoreOptions {
  int keep = 3;  // checkpoints kept, >= 1
  // A full checkpoint is started in the background once this many deltas, or
  // this many bytes of them, follow the last full one (and at the first delta
  // when there is no full one). full_every = 0: every checkpoint is full (no
  // deltas).
  int full_every = 100;
  uint64_t full_after_bytes = 64 << 20;
};

class CheckpointStore {
 public:
  // Opens (creating) the task's directory <root>/<job>/<partition>. `job` is a
  // single directory name; keep >= 1.
  static Result<std::unique_ptr<CheckpointStore>> Open(const std::string& uri,
                                                       const std::string& job, int32_t partition,
                                                       int keep);
  static Result<std::unique_ptr<CheckpointStore>> Open(const std::string& uri,
                                                       const std::string& job, int32_t partition,
                                                       const CheckpointStoreOptions& options);
  // Stops a full checkpoint in the background (it is dropped; its deltas stay).
  ~CheckpointStore();
  CheckpointStore(const CheckpointStore&) = delete;
  CheckpointStore& operator=(const CheckpointStore&) = delete;

  // Commits a full checkpoint: flushes `store`'s memtables, copies the table
  // files not yet in the store (incremental) and the small per-checkpoint
  // files, and writes `meta` with them; then deletes what the newest `keep`
  // do not need. `meta.job` and `meta.partition` must be this store's task.
  // Fails with FailedPrecondition if `meta.epoch` is older than the newest
  // checkpoint's. Returns `meta` with checkpoint_id set. A failed purge does
  // not fail the commit: it is retried by the next Save and reported by
  // last_purge_status. `protect_id` (if > 0) is never purged, nor what it
  // needs: exactly_once's last committed checkpoint, which newer, not yet
  // committed ones must not push out.
  Result<CheckpointMeta> Save(RocksDbStateStore& store, const CheckpointMeta& meta,
                              int64_t protect_id = 0);

  // Commits the checkpoint whose changes since the previous checkpoint are
  // `batch`, already written to `store`. It is a delta when `store` is known
  // to hold the newest checkpoint of this store before `batch` (this store
  // saved or restored it, or there is none and the task started empty: pass
  // `started_empty`); otherwise it is full (Save). May start a full
  // checkpoint of the same state in the background. Same contract as Save
  // otherwise.
  Result<CheckpointMeta> SaveChanges(RocksDbStateStore& store, const WriteBatch& batch,
                                     const CheckpointMeta& meta, int64_t protect_id = 0,
                                     bool started_empty = false);

  // Every restorable checkpoint (not known to be corrupt, metadata decodes,
  // its chain complete), newest first.
  Result<std::vector<CheckpointMeta>> List();
  // Deletes the checkpoints newer than `checkpoint_id` (exactly_once: those
  // whose transaction never committed).
  Status DeleteNewerThan(int64_t checkpoint_id);

  // The newest checkpoint List() gives, or nullopt if there is none.
  Result<std::optional<CheckpointMeta>> Latest();

  // Restores the newest restorable checkpoint into `db_dir`, which must not be
  // open: it is replaced (built next to it, then renamed over it). File
  // checksums are verified while copying; a checkpoint that fails them is
  // skipped for the one before it, so the checkpoint restored may be older
  // than Latest() said: `restored` (if not null) receives the metadata of the
  // one actually restored. NotFound if there is no checkpoint, Corruption if
  // none restores.
  Status RestoreLatest(const std::string& db_dir, CheckpointMeta* restored = nullptr);
  // Restores a given checkpoint (e.g. the one the coordinator recorded); no
  // fallback.
  Status Restore(int64_t checkpoint_id, const std::string& db_dir,
                 CheckpointMeta* restored = nullptr);

  // Waits for a full checkpoint started in the background; returns how it
  // ended (OK if none ran).
  Status WaitMaterialized();

  const std::string& dir() const { return dir_; }
  const Status& last_purge_status() const { return last_purge_status_; }
  // How the last full checkpoint started in the background ended.
  Status last_materialize_status() const;
  // Deltas (and their bytes) after the newest full checkpoint on the chain of
  // the newest checkpoint.
  int deltas_since_full() const { return since_full_; }

 private:
  struct Full {
    uint32_t backup_id = 0;
    CheckpointMeta meta;
  };
  struct DeltaEntry {
    int64_t prev = 0;
    CheckpointMeta meta;
    uint64_t bytes = 0;
  };
  // A checkpoint as restored: the full one to start from (nullopt: empty) and
  // the deltas to apply after it, oldest first.
  struct Chain {
    std::optional<Full> base;
    std::vector<int64_t> deltas;
    uint64_t delta_bytes = 0;
  };

  CheckpointStore(std::string dir, std::string job, int32_t partition,
                  const CheckpointStoreOptions& options, rocksdb::BackupEngine* engine);
  Status Usable() const;
  Status CheckMeta(RocksDbStateStore& store, const CheckpointMeta& meta) const;
  // Reads the full checkpoints from the engine and the deltas from disk.
  Status LoadIndex();
  std::string DeltaPath(int64_t id) const;
  // Under mu_.
  int64_t MaxIdLocked() const;
  std::optional<Chain> ChainLocked(int64_t id) const;
  // Deletes what neither the newest `keep` checkpoints nor `protect_id` need.
  // A full checkpoint is deleted only if `may_wait` or the engine is free.
  Status Purge(int64_t protect_id, bool may_wait);
  // Deletes these deltas' files and forgets them.
  Status DeleteDeltas(const std::vector<int64_t>& ids);
  // Deletes these full checkpoints (id, backup id); under engine_mu_.
  Status DeleteFullsLocked(const std::vector<std::pair<int64_t, uint32_t>>& fulls);
  Result<CheckpointMeta> RestoreOne(int64_t checkpoint_id, const std::string& db_dir);
  // Starts a full checkpoint of `store` as it is now (= checkpoint `meta`).
  Status StartMaterialize(RocksDbStateStore& store, const CheckpointMeta& meta);
  // Destroys the engine (joining its copy threads) and opens it again.
  Status ReopenEngine();

  const std::string dir_;
  const std::string job_;
  const int32_t partition_;
  const CheckpointStoreOptions options_;

  // The engine is used by the caller and by the materialization thread, one
  // at a time. Lock order: engine_mu_ before mu_.
  std::mutex engine_mu_;
  std::unique_ptr<rocksdb::BackupEngine> engine_;  // null if a reopen failed
  Status reopen_status_;

  mutable std::mutex mu_;
  std::map<int64_t, Full> fulls_;
  std::map<int64_t, DeltaEntry> deltas_;
  Status materialize_status_;
  int64_t protect_id_ = 0;  // the newest caller's

  // The caller's only.
  int64_t chain_last_ = -1;  // the checkpoint `store` holds; -1: unknown
  int since_full_ = 0;
  uint64_t since_full_bytes_ = 0;
  // The chain starts from a full checkpoint, not from the empty state; a
  // chain from the empty state is made full in the background at once, so
  // that a restore does not replay the task's whole history of deltas.
  bool chain_has_full_ = false;
  std::thread materializer_;
  std::atomic<bool> materializing_{false};
  Status last_purge_status_;
};

}  // namespace sluice::worker
