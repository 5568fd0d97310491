#pragma once

// CheckpointStore: the durable checkpoints of one task (job, partition), kept
// in a directory of the checkpoint store (local, or a shared volume in a
// cluster) as a RocksDB BackupEngine directory:
//
//   <root>/<job>/<partition>/
//     meta/<id>            one per checkpoint: its files, their checksums and
//                          our CheckpointMeta as app metadata; written to a
//                          temporary name and renamed, so it is the commit
//     shared_checksum/     table files, copied once and shared by all the
//                          checkpoints that contain them (incremental)
//     private/<id>/        small per-checkpoint files (MANIFEST, OPTIONS, WAL)
//
// A checkpoint is atomic per task (invariant 3): the task's state, timers,
// watermark and next input offset are in the RocksDB (TaskProcessor::
// Checkpoint wrote them there), and the offset, watermark and epoch are
// repeated in the metadata, all committed by one rename. The last `keep`
// checkpoints are kept.
//
// The two phases (invariant 4) map as: prepare = the caller flushes its sink
// and calls TaskProcessor::Checkpoint into the RocksDbStateStore; commit =
// Save. A checkpoint exists once Save returns OK.
//
// Thread safety: one thread at a time uses a CheckpointStore (the task's, or
// the background thread committing the task's checkpoint). Only one
// CheckpointStore should be open per task directory at a time; the epoch
// check in Save refuses a writer older than the newest checkpoint it knows,
// but the coordinator's assignment is what really fences an old owner.

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/state/rocksdb_state_store.h"

namespace rocksdb {
class BackupEngine;
}  // namespace rocksdb

namespace sluice::worker {

struct CheckpointMeta {
  int64_t checkpoint_id = 0;  // the BackupEngine backup id; set by Save
  int64_t next_offset = -1;   // the first input offset not in the state
  int64_t watermark = std::numeric_limits<int64_t>::min();
  int64_t epoch = 0;       // the assignment epoch of the task that wrote it
  int64_t created_ms = 0;  // processing time when taken (from the Clock)
  std::string job;
  int32_t partition = 0;
  // Written under delivery: exactly_once: it counts only once the Kafka
  // transaction naming it (in a marker record) has committed.
  bool transactional = false;

  bool operator==(const CheckpointMeta&) const = default;
};

// The metadata as stored with a checkpoint (and in exactly_once markers):
// "key=value" lines, with a format line first; checkpoint_id (when set) and
// transactional (when true) are optional lines. Decoding ignores unknown keys
// (written by newer versions) and fails with Corruption on a missing or
// malformed one.
std::string EncodeCheckpointMeta(const CheckpointMeta& meta);
Result<CheckpointMeta> DecodeCheckpointMeta(const std::string& text);

// "file:///abs/path" -> "/abs/path"; a plain path (made absolute) is accepted
// too. Other schemes are rejected: "s3://b/x: only file:// checkpoint stores
// are supported".
Result<std::string> CheckpointRootFromUri(const std::string& uri);

class CheckpointStore {
 public:
  // Opens (creating) the task's directory <root>/<job>/<partition>. `job` is a
  // single directory name; keep >= 1.
  static Result<std::unique_ptr<CheckpointStore>> Open(const std::string& uri,
                                                       const std::string& job, int32_t partition,
                                                       int keep);
  ~CheckpointStore();
  CheckpointStore(const CheckpointStore&) = delete;
  CheckpointStore& operator=(const CheckpointStore&) = delete;

  // Commits a checkpoint: flushes `store`'s memtables, copies the table files
  // not yet in the store (incremental) and the small per-checkpoint files,
  // and writes `meta` with them; then deletes all but the newest `keep`.
  // `meta.job` and `meta.partition` must be this store's task. Fails with
  // FailedPrecondition if `meta.epoch` is older than the newest checkpoint's.
  // Returns `meta` with checkpoint_id set. A failed purge does not fail the
  // commit: it is retried by the next Save and reported by last_purge_status.
  // `protect_id` (if > 0) is never purged: exactly_once's last committed
  // checkpoint, which newer, not yet committed ones must not push out.
  Result<CheckpointMeta> Save(RocksDbStateStore& store, const CheckpointMeta& meta,
                              int64_t protect_id = 0);

  // Every checkpoint not known to be corrupt whose metadata decodes, newest
  // first.
  Result<std::vector<CheckpointMeta>> List();
  // Deletes the checkpoints newer than `checkpoint_id` (exactly_once: those
  // whose transaction never committed).
  Status DeleteNewerThan(int64_t checkpoint_id);

  // The newest checkpoint that BackupEngine does not know to be corrupt and
  // whose metadata decodes, or nullopt if there is none.
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

  const std::string& dir() const { return dir_; }
  const Status& last_purge_status() const { return last_purge_status_; }

 private:
  CheckpointStore(std::string dir, std::string job, int32_t partition, int keep,
                  rocksdb::BackupEngine* engine);
  Status Usable() const;
  // Deletes all but the newest `keep_` checkpoints, and `protect_id`.
  Status Purge(int64_t protect_id);
  Result<CheckpointMeta> RestoreOne(int64_t checkpoint_id, const std::string& db_dir);
  // Destroys the engine (joining its copy threads) and opens it again.
  Status ReopenEngine();

  std::string dir_;
  std::string job_;
  int32_t partition_;
  int keep_;
  std::unique_ptr<rocksdb::BackupEngine> engine_;  // null if a reopen failed
  Status reopen_status_;
  Status last_purge_status_;
};

}  // namespace sluice::worker
