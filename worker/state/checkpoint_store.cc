#include "worker/state/checkpoint_store.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/backup_engine.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "common/file_util.h"
#include "common/rocksdb_status.h"
#include "worker/state/changelog.h"

namespace sluice::worker {
namespace {

namespace fs = std::filesystem;

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> PercentDecode(const std::string& uri, std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    int hi = i + 2 < text.size() ? HexDigit(text[i + 1]) : -1;
    int lo = i + 2 < text.size() ? HexDigit(text[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      return Status::InvalidArgument(uri + ": bad percent-escape in checkpoint store URI");
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::string Normalized(const fs::path& p) {
  std::string s = p.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

Status ValidJobName(const std::string& job) {
  if (job.empty() || job == "." || job == ".." ||
      job.find_first_of(std::string_view("/\n\0", 3)) != std::string::npos) {
    return Status::InvalidArgument("job name '" + job +
                                   "' cannot name a checkpoint directory (empty, '.', '..', or "
                                   "contains '/' or a newline)");
  }
  return Status::Ok();
}

bool IsCorruption(const Status& s) { return s.code() == StatusCode::kCorruption; }

Result<std::unique_ptr<rocksdb::BackupEngine>> OpenEngine(const std::string& dir) {
  rocksdb::BackupEngineOptions options(dir);
  options.share_table_files = true;
  options.share_files_with_checksum = true;  // names: <number>_s<session id>_<size>.sst
  options.sync = true;
  options.max_background_operations = 2;
  rocksdb::BackupEngine* raw = nullptr;
  rocksdb::IOStatus s = rocksdb::BackupEngine::Open(options, rocksdb::Env::Default(), &raw);
  std::unique_ptr<rocksdb::BackupEngine> engine(raw);
  if (!s.ok()) return FromRocksDb(s, "opening checkpoint store " + dir);
  return engine;
}

}  // namespace

// ---- URI ----

Result<std::string> CheckpointRootFromUri(const std::string& uri) {
  if (uri.empty()) return Status::InvalidArgument("checkpoint store URI is empty");
  const size_t sep = uri.find("://");
  std::string scheme = sep == std::string::npos ? "" : uri.substr(0, sep);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (sep == std::string::npos && uri.rfind("file:", 0) == 0) scheme = "file:";
  if (scheme.empty()) {
    std::error_code ec;
    fs::path abs = fs::absolute(uri, ec);
    if (ec) return Status::InvalidArgument(uri + ": " + ec.message());
    return Normalized(abs);
  }
  if (scheme != "file") {
    return Status::InvalidArgument(uri + ": only file:// checkpoint stores are supported");
  }
  std::string_view rest = std::string_view(uri).substr(sep + 3);
  if (rest.rfind("localhost/", 0) == 0) rest.remove_prefix(std::string_view("localhost").size());
  if (rest.empty() || rest.front() != '/') {
    return Status::InvalidArgument(
        uri +
        ": a file:// checkpoint store needs an absolute path and no host, as in "
        "file:///var/lib/sluice/checkpoints");
  }
  SLUICE_ASSIGN_OR_RETURN(std::string path, PercentDecode(uri, rest));
  return Normalized(fs::path(path));
}

// ---- CheckpointStore ----

namespace {

constexpr const char* kChangelogDir = "changelog";
constexpr std::string_view kDeltaSuffix = ".delta";

Result<std::string> ReadFile(const std::string& path, size_t limit) {
  Result<std::string> file = ReadFileUpTo(path, limit);
  if (!file.ok()) return Status::IoError("reading " + path + ": " + file.status().message());
  return file;
}

// Applies deltas to the database in `dir` (created if missing) and flushes.
Status ApplyDeltas(const std::string& dir, const std::vector<std::string>& paths) {
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  SLUICE_RETURN_IF_ERROR(FromRocksDb(rocksdb::DB::Open(options, dir, &raw), "opening " + dir));
  std::unique_ptr<rocksdb::DB> db(raw);
  for (const std::string& path : paths) {
    SLUICE_ASSIGN_OR_RETURN(std::string file, ReadFile(path, std::numeric_limits<size_t>::max()));
    Result<Delta> delta = DecodeDelta(file);
    if (!delta.ok()) return Status::Corruption(path + ": " + delta.status().message());
    rocksdb::WriteBatch batch;
    Status decoded = DecodeBatch(delta->batch, &batch);
    if (!decoded.ok()) return Status::Corruption(path + ": " + decoded.message());
    SLUICE_RETURN_IF_ERROR(
        FromRocksDb(db->Write(rocksdb::WriteOptions(), &batch), "applying " + path));
  }
  SLUICE_RETURN_IF_ERROR(FromRocksDb(db->Flush(rocksdb::FlushOptions()), "flushing " + dir));
  return FromRocksDb(db->Close(), "closing " + dir);
}

}  // namespace

CheckpointStore::CheckpointStore(std::string dir, std::string job, int32_t partition,
                                 const CheckpointStoreOptions& options,
                                 rocksdb::BackupEngine* engine)
    : dir_(std::move(dir)),
      job_(std::move(job)),
      partition_(partition),
      options_(options),
      engine_(engine) {}

CheckpointStore::~CheckpointStore() {
  if (materializer_.joinable()) {
    if (engine_) engine_->StopBackup();
    materializer_.join();
  }
}

Status CheckpointStore::Usable() const {
  if (engine_) return Status::Ok();
  return Status::Unavailable("checkpoint store " + dir_ +
                             " could not be reopened: " + reopen_status_.message());
}

Status CheckpointStore::ReopenEngine() {
  engine_.reset();  // joins the engine's threads
  Result<std::unique_ptr<rocksdb::BackupEngine>> engine = OpenEngine(dir_);
  if (!engine.ok()) {
    reopen_status_ = engine.status();
    return engine.status();
  }
  engine_ = std::move(engine).value();
  return Status::Ok();
}

Result<std::unique_ptr<CheckpointStore>> CheckpointStore::Open(const std::string& uri,
                                                               const std::string& job,
                                                               int32_t partition, int keep) {
  CheckpointStoreOptions options;
  options.keep = keep;
  return Open(uri, job, partition, options);
}

Result<std::unique_ptr<CheckpointStore>> CheckpointStore::Open(
    const std::string& uri, const std::string& job, int32_t partition,
    const CheckpointStoreOptions& options) {
  SLUICE_ASSIGN_OR_RETURN(std::string root, CheckpointRootFromUri(uri));
  SLUICE_RETURN_IF_ERROR(ValidJobName(job));
  if (partition < 0) {
    return Status::InvalidArgument("partition must be >= 0, got " + std::to_string(partition));
  }
  if (options.keep < 1) {
    return Status::InvalidArgument("checkpoints to keep must be >= 1, got " +
                                   std::to_string(options.keep));
  }
  const std::string dir = (fs::path(root) / job / std::to_string(partition)).string();
  std::error_code ec;
  fs::create_directories(fs::path(dir) / kChangelogDir, ec);
  if (ec) {
    return Status::IoError("checkpoint store " + root + ": cannot create " + dir + ": " +
                           ec.message());
  }
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<rocksdb::BackupEngine> engine, OpenEngine(dir));
  std::unique_ptr<CheckpointStore> store(
      new CheckpointStore(dir, job, partition, options, engine.release()));
  SLUICE_RETURN_IF_ERROR(store->LoadIndex());
  return store;
}

std::string CheckpointStore::DeltaPath(int64_t id) const {
  return (fs::path(dir_) / kChangelogDir / (std::to_string(id) + std::string(kDeltaSuffix)))
      .string();
}

Status CheckpointStore::LoadIndex() {
  std::vector<rocksdb::BackupInfo> infos;
  engine_->GetBackupInfo(&infos, /*include_file_details=*/false);  // not known to be corrupt
  std::map<int64_t, Full> fulls;
  for (const rocksdb::BackupInfo& info : infos) {
    Result<CheckpointMeta> meta = DecodeCheckpointMeta(info.app_metadata);
    if (!meta.ok() || meta->job != job_ || meta->partition != partition_) continue;
    if (meta->checkpoint_id == 0) meta->checkpoint_id = info.backup_id;
    const int64_t id = meta->checkpoint_id;
    fulls[id] = Full{info.backup_id, std::move(meta).value()};
  }
  std::map<int64_t, DeltaEntry> deltas;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(fs::path(dir_) / kChangelogDir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.find(".tmp-") != std::string::npos) {
      fs::remove(e.path(), ec);  // a write that never committed (WriteFileOnce)
      continue;
    }
    int64_t id = 0;
    if (name.size() <= kDeltaSuffix.size() ||
        name.compare(name.size() - kDeltaSuffix.size(), kDeltaSuffix.size(), kDeltaSuffix) != 0 ||
        !ParseInt64(std::string_view(name).substr(0, name.size() - kDeltaSuffix.size()), id)) {
      continue;
    }
    Result<std::string> head = ReadFile(e.path().string(), 4096);
    if (!head.ok()) return head.status();
    uint64_t bytes = 0;
    Result<Delta> delta = DecodeDeltaHeader(*head, &bytes);
    if (!delta.ok() || delta->meta.job != job_ || delta->meta.partition != partition_ ||
        delta->meta.checkpoint_id != id) {
      continue;  // damaged: restores fall back past it
    }
    deltas[id] = DeltaEntry{delta->prev, std::move(delta->meta), bytes};
  }
  if (ec) return Status::IoError("listing " + dir_ + "/" + kChangelogDir + ": " + ec.message());
  std::lock_guard<std::mutex> lock(mu_);
  fulls_ = std::move(fulls);
  deltas_ = std::move(deltas);
  return Status::Ok();
}

int64_t CheckpointStore::MaxIdLocked() const {
  int64_t id = 0;
  if (!fulls_.empty()) id = std::max(id, fulls_.rbegin()->first);
  if (!deltas_.empty()) id = std::max(id, deltas_.rbegin()->first);
  return id;
}

std::optional<CheckpointStore::Chain> CheckpointStore::ChainLocked(int64_t id) const {
  Chain chain;
  while (id != 0) {
    if (auto full = fulls_.find(id); full != fulls_.end()) {
      // A full checkpoint stands for the delta of its id. One that is not
      // the same checkpoint was finished late by the background thread of an
      // owner that had lost the task meanwhile (its delta was replaced by the
      // new owner's): it is not on this chain.
      auto same = deltas_.find(id);
      if (same == deltas_.end() || same->second.meta == full->second.meta) {
        chain.base = full->second;
        break;
      }
    }
    auto delta = deltas_.find(id);
    // A delta must follow an older checkpoint; anything else is a broken chain.
    if (delta == deltas_.end() || delta->second.prev >= id) return std::nullopt;
    chain.deltas.push_back(id);
    chain.delta_bytes += delta->second.bytes;
    id = delta->second.prev;
  }
  std::reverse(chain.deltas.begin(), chain.deltas.end());
  return chain;
}

Status CheckpointStore::CheckMeta(RocksDbStateStore& store, const CheckpointMeta& meta) const {
  if (meta.job != job_ || meta.partition != partition_) {
    return Status::InvalidArgument("checkpoint of " + meta.job + "/" +
                                   std::to_string(meta.partition) + " saved to the store of " +
                                   job_ + "/" + std::to_string(partition_));
  }
  if (store.db() == nullptr) {
    return Status::FailedPrecondition("checkpoint of " + dir_ + ": the state store is closed");
  }
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t newest_id = MaxIdLocked();
  if (newest_id == 0) return Status::Ok();
  auto full = fulls_.find(newest_id);
  const CheckpointMeta& newest =
      full != fulls_.end() ? full->second.meta : deltas_.at(newest_id).meta;
  if (meta.epoch < newest.epoch) {
    return Status::FailedPrecondition(
        "checkpoint of " + dir_ + " refused: epoch " + std::to_string(meta.epoch) +
        " is older than checkpoint " + std::to_string(newest_id) + "'s epoch " +
        std::to_string(newest.epoch) + " (this task lost its assignment)");
  }
  return Status::Ok();
}

Result<CheckpointMeta> CheckpointStore::Save(RocksDbStateStore& store, const CheckpointMeta& meta,
                                             int64_t protect_id) {
  WaitMaterialized().IgnoreError();
  SLUICE_RETURN_IF_ERROR(Usable());
  SLUICE_RETURN_IF_ERROR(CheckMeta(store, meta));
  CheckpointMeta saved = meta;
  {
    std::lock_guard<std::mutex> lock(mu_);
    saved.checkpoint_id = MaxIdLocked() + 1;
  }
  rocksdb::CreateBackupOptions options;
  options.flush_before_backup = true;
  rocksdb::BackupID backup_id = 0;
  rocksdb::IOStatus s;
  {
    std::lock_guard<std::mutex> engine_lock(engine_mu_);
    s = engine_->CreateNewBackupWithMetadata(options, store.db(), EncodeCheckpointMeta(saved),
                                             &backup_id);
  }
  if (!s.ok()) {
    // As for a failed restore (see Restore): wait for the copy threads, so
    // that the next Save's cleanup of this attempt does not race with them.
    Status failed = FromRocksDb(s, "writing checkpoint to " + dir_);
    SLUICE_RETURN_IF_ERROR(ReopenEngine());
    return failed;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    fulls_[saved.checkpoint_id] = Full{backup_id, saved};
  }
  chain_last_ = saved.checkpoint_id;
  since_full_ = 0;
  since_full_bytes_ = 0;
  chain_has_full_ = true;
  // Committed. Purging is housekeeping: a failure leaves extra checkpoints,
  // which the next Save's purge removes.
  last_purge_status_ = Purge(protect_id, /*may_wait=*/true);
  return saved;
}

Result<CheckpointMeta> CheckpointStore::SaveChanges(RocksDbStateStore& store,
                                                    const WriteBatch& batch,
                                                    const CheckpointMeta& meta, int64_t protect_id,
                                                    bool started_empty) {
  SLUICE_RETURN_IF_ERROR(Usable());
  SLUICE_RETURN_IF_ERROR(CheckMeta(store, meta));
  if (materializer_.joinable() && !materializing_.load()) WaitMaterialized().IgnoreError();
  int64_t newest = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    newest = MaxIdLocked();
  }
  if (chain_last_ < 0 && newest == 0 && started_empty) chain_last_ = 0;
  // A delta needs `store` to hold the newest checkpoint before `batch`; and a
  // chain the background could not end with a full checkpoint is not let grow
  // without bound.
  if (options_.full_every <= 0 || chain_last_ != newest || since_full_ >= 4 * options_.full_every) {
    return Save(store, meta, protect_id);
  }
  Delta delta;
  delta.prev = chain_last_;
  delta.meta = meta;
  delta.meta.checkpoint_id = newest + 1;
  // The batch goes to the file as it is (its chunks are the delta's encoding).
  std::vector<std::string_view> parts = BatchParts(batch);
  const std::string head = EncodeDeltaHead(delta, parts);
  parts.insert(parts.begin(), head);
  SLUICE_RETURN_IF_ERROR(WriteFileOnce(DeltaPath(delta.meta.checkpoint_id), parts));
  const uint64_t file_bytes = head.size() + batch.bytes();
  {
    std::lock_guard<std::mutex> lock(mu_);
    deltas_[delta.meta.checkpoint_id] = DeltaEntry{delta.prev, delta.meta, file_bytes};
    protect_id_ = protect_id;
  }
  chain_last_ = delta.meta.checkpoint_id;
  ++since_full_;
  since_full_bytes_ += file_bytes;
  if (!materializing_.load() && (!chain_has_full_ || since_full_ >= options_.full_every ||
                                 since_full_bytes_ >= options_.full_after_bytes)) {
    Status started = StartMaterialize(store, delta.meta);
    if (!started.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      materialize_status_ = started;
    }
  }
  last_purge_status_ = Purge(protect_id, /*may_wait=*/false);
  return delta.meta;
}

Status CheckpointStore::StartMaterialize(RocksDbStateStore& store, const CheckpointMeta& meta) {
  if (materializer_.joinable()) materializer_.join();  // finished: materializing_ is false
  const std::string snapshot = store.dir() + ".full-" + std::to_string(meta.checkpoint_id);
  std::error_code ec;
  // Snapshots a crash left behind.
  const fs::path parent = fs::path(store.dir()).parent_path();
  const std::string prefix = fs::path(store.dir()).filename().string() + ".full-";
  for (const fs::directory_entry& e : fs::directory_iterator(parent, ec)) {
    if (e.path().filename().string().rfind(prefix, 0) == 0) fs::remove_all(e.path(), ec);
  }
  rocksdb::Checkpoint* raw = nullptr;
  SLUICE_RETURN_IF_ERROR(
      FromRocksDb(rocksdb::Checkpoint::Create(store.db(), &raw), "snapshotting " + store.dir()));
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  // Flushes the memtable and hard-links the table files: the state as it is
  // now, which no later write changes.
  SLUICE_RETURN_IF_ERROR(FromRocksDb(checkpoint->CreateCheckpoint(snapshot),
                                     "snapshotting " + store.dir() + " into " + snapshot));
  materializing_.store(true);
  const int since = since_full_;
  materializer_ = std::thread([this, snapshot, meta, since] {
    Status done = [&]() -> Status {
      rocksdb::Options options;
      options.disable_auto_compactions = true;
      rocksdb::DB* raw_db = nullptr;
      SLUICE_RETURN_IF_ERROR(
          FromRocksDb(rocksdb::DB::Open(options, snapshot, &raw_db), "opening " + snapshot));
      std::unique_ptr<rocksdb::DB> db(raw_db);
      rocksdb::CreateBackupOptions backup;
      backup.flush_before_backup = false;
      rocksdb::BackupID backup_id = 0;
      {
        std::lock_guard<std::mutex> engine_lock(engine_mu_);
        if (!engine_) return Status::Unavailable("checkpoint store " + dir_ + " is not open");
        SLUICE_RETURN_IF_ERROR(FromRocksDb(
            engine_->CreateNewBackupWithMetadata(backup, db.get(), EncodeCheckpointMeta(meta),
                                                 &backup_id),
            "writing full checkpoint " + std::to_string(meta.checkpoint_id) + " to " + dir_));
      }
      SLUICE_RETURN_IF_ERROR(FromRocksDb(db->Close(), "closing " + snapshot));
      std::lock_guard<std::mutex> lock(mu_);
      fulls_[meta.checkpoint_id] = Full{backup_id, meta};
      return Status::Ok();
    }();
    std::error_code ec;
    fs::remove_all(snapshot, ec);
    int64_t protect = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      materialize_status_ = done;
      protect = protect_id_;
    }
    if (done.ok()) {
      Status purged = Purge(protect, /*may_wait=*/true);
      if (!purged.ok()) spdlog::warn("checkpoint store {}: purge: {}", dir_, purged.ToString());
    } else {
      spdlog::warn(
          "checkpoint store {}: full checkpoint {} in the background failed ({} deltas "
          "since the last one): {}",
          dir_, meta.checkpoint_id, since, done.ToString());
    }
    materializing_.store(false);
  });
  return Status::Ok();
}

Status CheckpointStore::WaitMaterialized() {
  if (materializer_.joinable()) materializer_.join();
  std::lock_guard<std::mutex> lock(mu_);
  Status s = materialize_status_;
  if (s.ok() && chain_last_ > 0) {
    // The chain of the newest checkpoint now starts at the newest full one.
    if (std::optional<Chain> chain = ChainLocked(chain_last_)) {
      since_full_ = static_cast<int>(chain->deltas.size());
      since_full_bytes_ = chain->delta_bytes;
      chain_has_full_ = chain->base.has_value();
    }
  }
  return s;
}

Status CheckpointStore::last_materialize_status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return materialize_status_;
}

Status CheckpointStore::Purge(int64_t protect_id, bool may_wait) {
  std::vector<int64_t> delta_victims;
  std::vector<std::pair<int64_t, uint32_t>> full_victims;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int64_t> ids;
    for (const auto& [id, full] : fulls_) ids.push_back(id);
    for (const auto& [id, delta] : deltas_) ids.push_back(id);
    std::sort(ids.begin(), ids.end(), std::greater<>());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    std::vector<int64_t> wanted(ids.begin(),
                                ids.begin() + std::min<size_t>(ids.size(), options_.keep));
    if (protect_id > 0) wanted.push_back(protect_id);
    std::set<int64_t> keep_full, keep_delta;
    for (int64_t id : wanted) {
      std::optional<Chain> chain = ChainLocked(id);
      if (!chain) {
        // Not restorable: keep what is there of it rather than guess.
        if (deltas_.count(id)) keep_delta.insert(id);
        continue;
      }
      if (chain->base) keep_full.insert(chain->base->meta.checkpoint_id);
      keep_delta.insert(chain->deltas.begin(), chain->deltas.end());
    }
    for (const auto& [id, delta] : deltas_) {
      if (!keep_delta.count(id)) delta_victims.push_back(id);
    }
    for (const auto& [id, full] : fulls_) {
      if (!keep_full.count(id)) full_victims.emplace_back(id, full.backup_id);
    }
  }
  SLUICE_RETURN_IF_ERROR(DeleteDeltas(delta_victims));
  if (full_victims.empty()) return Status::Ok();
  std::unique_lock<std::mutex> engine_lock(engine_mu_, std::defer_lock);
  if (may_wait) {
    engine_lock.lock();
  } else if (!engine_lock.try_lock()) {
    return Status::Ok();  // the background backup runs; its purge does this
  }
  if (!engine_) return Usable();
  return DeleteFullsLocked(full_victims);
}

Status CheckpointStore::DeleteDeltas(const std::vector<int64_t>& ids) {
  for (int64_t id : ids) {
    std::error_code ec;
    fs::remove(DeltaPath(id), ec);
    if (ec) return Status::IoError("deleting " + DeltaPath(id) + ": " + ec.message());
    std::lock_guard<std::mutex> lock(mu_);
    deltas_.erase(id);
  }
  return Status::Ok();
}

Status CheckpointStore::DeleteFullsLocked(const std::vector<std::pair<int64_t, uint32_t>>& fulls) {
  for (const auto& [id, backup_id] : fulls) {
    // Also deletes the table files no other checkpoint uses.
    SLUICE_RETURN_IF_ERROR(
        FromRocksDb(engine_->DeleteBackup(backup_id),
                    "deleting checkpoint " + std::to_string(id) + " in " + dir_));
    std::lock_guard<std::mutex> lock(mu_);
    fulls_.erase(id);
  }
  return Status::Ok();
}

Result<std::vector<CheckpointMeta>> CheckpointStore::List() {
  SLUICE_RETURN_IF_ERROR(Usable());
  std::lock_guard<std::mutex> lock(mu_);
  std::map<int64_t, const CheckpointMeta*, std::greater<>> all;
  for (const auto& [id, delta] : deltas_) {
    if (ChainLocked(id)) all[id] = &delta.meta;
  }
  for (const auto& [id, full] : fulls_) all[id] = &full.meta;
  std::vector<CheckpointMeta> out;
  out.reserve(all.size());
  for (const auto& [id, meta] : all) out.push_back(*meta);
  return out;
}

Result<std::optional<CheckpointMeta>> CheckpointStore::Latest() {
  SLUICE_ASSIGN_OR_RETURN(std::vector<CheckpointMeta> all, List());
  if (all.empty()) return std::optional<CheckpointMeta>();
  return std::optional<CheckpointMeta>(std::move(all.front()));
}

Status CheckpointStore::DeleteNewerThan(int64_t checkpoint_id) {
  WaitMaterialized().IgnoreError();
  SLUICE_RETURN_IF_ERROR(Usable());
  std::vector<int64_t> deltas;
  std::vector<std::pair<int64_t, uint32_t>> fulls;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, delta] : deltas_) {
      if (id > checkpoint_id) deltas.push_back(id);
    }
    for (const auto& [id, full] : fulls_) {
      if (id > checkpoint_id) fulls.emplace_back(id, full.backup_id);
    }
  }
  {
    std::lock_guard<std::mutex> engine_lock(engine_mu_);
    SLUICE_RETURN_IF_ERROR(DeleteFullsLocked(fulls));
  }
  SLUICE_RETURN_IF_ERROR(DeleteDeltas(deltas));
  if (chain_last_ > checkpoint_id) chain_last_ = -1;
  return Status::Ok();
}

Status CheckpointStore::Restore(int64_t checkpoint_id, const std::string& db_dir,
                                CheckpointMeta* restored) {
  SLUICE_ASSIGN_OR_RETURN(CheckpointMeta meta, RestoreOne(checkpoint_id, db_dir));
  if (restored != nullptr) *restored = std::move(meta);
  return Status::Ok();
}

Result<CheckpointMeta> CheckpointStore::RestoreOne(int64_t checkpoint_id,
                                                   const std::string& db_dir) {
  WaitMaterialized().IgnoreError();
  SLUICE_RETURN_IF_ERROR(Usable());
  const std::string what = "checkpoint " + std::to_string(checkpoint_id) + " in " + dir_;
  std::optional<Chain> chain;
  CheckpointMeta meta;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto full = fulls_.find(checkpoint_id);
    auto delta = deltas_.find(checkpoint_id);
    if (full == fulls_.end() && delta == deltas_.end()) {
      return Status::NotFound("no " + what);
    }
    meta = full != fulls_.end() ? full->second.meta : delta->second.meta;
    chain = ChainLocked(checkpoint_id);
  }
  if (!chain) {
    return Status::Corruption(what + " cannot be restored: a checkpoint it builds on is missing");
  }

  // Build the database next to db_dir and rename it over db_dir, so a failed
  // restore leaves no half-restored database behind.
  const fs::path target = fs::path(db_dir).lexically_normal();
  const fs::path staging = target.string() + ".restoring";
  std::error_code ec;
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  if (ec) return Status::IoError("restoring " + what + ": " + ec.message());
  fs::remove_all(staging, ec);
  if (ec) return Status::IoError("restoring " + what + ": " + ec.message());
  if (chain->base) {
    rocksdb::IOStatus s;
    {
      std::lock_guard<std::mutex> engine_lock(engine_mu_);
      s = engine_->RestoreDBFromBackup(rocksdb::RestoreOptions(), chain->base->backup_id,
                                       staging.string(), staging.string());
    }
    if (!s.ok()) {
      Status failed = FromRocksDb(s, "restoring " + what + " into " + target.string());
      // A failed restore returns while the engine's threads may still be
      // copying the rest of the files into `staging`. Destroying the engine
      // joins them; only then can `staging` be removed and reused.
      SLUICE_RETURN_IF_ERROR(ReopenEngine());
      fs::remove_all(staging, ec);
      return failed;
    }
  }
  if (!chain->base || !chain->deltas.empty()) {
    std::vector<std::string> paths;
    for (int64_t id : chain->deltas) paths.push_back(DeltaPath(id));
    Status applied = ApplyDeltas(staging.string(), paths);
    if (!applied.ok()) {
      fs::remove_all(staging, ec);
      return Status(applied.code(), "restoring " + what + ": " + applied.message());
    }
  }
  fs::remove_all(target, ec);
  if (!ec) fs::rename(staging, target, ec);
  if (ec) {
    return Status::IoError("restoring " + what + ": replacing " + target.string() + ": " +
                           ec.message());
  }
  chain_last_ = checkpoint_id;
  since_full_ = static_cast<int>(chain->deltas.size());
  since_full_bytes_ = chain->delta_bytes;
  chain_has_full_ = chain->base.has_value();
  return meta;
}

Status CheckpointStore::RestoreLatest(const std::string& db_dir, CheckpointMeta* restored) {
  SLUICE_ASSIGN_OR_RETURN(std::vector<CheckpointMeta> all, List());
  Status first_failure;
  for (const CheckpointMeta& candidate : all) {
    Result<CheckpointMeta> meta = RestoreOne(candidate.checkpoint_id, db_dir);
    if (meta.ok()) {
      if (restored != nullptr) *restored = std::move(meta).value();
      return Status::Ok();
    }
    // Damaged checkpoint: fall back to the one before it. Anything else
    // (e.g. db_dir not writable) would fail for every checkpoint.
    if (!IsCorruption(meta.status())) return meta.status();
    if (first_failure.ok()) first_failure = meta.status();
  }
  if (!first_failure.ok()) {
    return Status::Corruption("no restorable checkpoint in " + dir_ +
                              "; newest failure: " + first_failure.message());
  }
  return Status::NotFound("no checkpoint in " + dir_);
}

}  // namespace sluice::worker
