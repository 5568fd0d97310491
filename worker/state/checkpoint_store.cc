#include "worker/state/checkpoint_store.h"

#include <rocksdb/env.h>
#include <rocksdb/utilities/backup_engine.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <limits>
#include <map>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "common/rocksdb_status.h"

namespace sluice::worker {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kFormatKey = "format";
constexpr std::string_view kFormat = "sluice-checkpoint/1";

bool ParseInt(std::string_view text, int64_t& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end && !text.empty();
}

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

// ---- metadata ----

std::string EncodeCheckpointMeta(const CheckpointMeta& meta) {
  std::string out;
  out += std::string(kFormatKey) + "=" + std::string(kFormat) + "\n";
  out += "job=" + meta.job + "\n";
  out += "partition=" + std::to_string(meta.partition) + "\n";
  out += "next_offset=" + std::to_string(meta.next_offset) + "\n";
  out += "watermark=" + std::to_string(meta.watermark) + "\n";
  out += "epoch=" + std::to_string(meta.epoch) + "\n";
  out += "created_ms=" + std::to_string(meta.created_ms) + "\n";
  if (meta.checkpoint_id > 0) out += "checkpoint_id=" + std::to_string(meta.checkpoint_id) + "\n";
  if (meta.transactional) out += "transactional=1\n";
  return out;
}

Result<CheckpointMeta> DecodeCheckpointMeta(const std::string& text) {
  std::map<std::string, std::string, std::less<>> fields;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      return Status::Corruption("checkpoint metadata line without '=': '" + std::string(line) +
                                "'");
    }
    fields[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
  }
  auto format = fields.find(kFormatKey);
  if (format == fields.end() || format->second != kFormat) {
    return Status::Corruption("checkpoint metadata is not in format " + std::string(kFormat) +
                              (format == fields.end() ? "" : " (found " + format->second + ")"));
  }
  CheckpointMeta meta;
  auto job = fields.find("job");
  if (job == fields.end()) return Status::Corruption("checkpoint metadata has no job");
  meta.job = job->second;
  int64_t partition = 0;
  struct IntField {
    const char* name;
    int64_t* out;
  };
  for (IntField f : {IntField{"partition", &partition}, IntField{"next_offset", &meta.next_offset},
                     IntField{"watermark", &meta.watermark}, IntField{"epoch", &meta.epoch},
                     IntField{"created_ms", &meta.created_ms}}) {
    auto it = fields.find(f.name);
    if (it == fields.end() || !ParseInt(it->second, *f.out)) {
      return Status::Corruption(std::string("checkpoint metadata has no valid ") + f.name +
                                (it == fields.end() ? "" : " ('" + it->second + "')"));
    }
  }
  if (auto it = fields.find("checkpoint_id");
      it != fields.end() && (!ParseInt(it->second, meta.checkpoint_id) || meta.checkpoint_id < 0)) {
    return Status::Corruption("checkpoint metadata has no valid checkpoint_id ('" + it->second +
                              "')");
  }
  if (auto it = fields.find("transactional"); it != fields.end()) {
    if (it->second != "0" && it->second != "1") {
      return Status::Corruption("checkpoint metadata has no valid transactional ('" + it->second +
                                "')");
    }
    meta.transactional = it->second == "1";
  }
  if (partition < 0 || partition > std::numeric_limits<int32_t>::max()) {
    return Status::Corruption("checkpoint metadata partition out of range: " +
                              std::to_string(partition));
  }
  meta.partition = static_cast<int32_t>(partition);
  return meta;
}

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

CheckpointStore::CheckpointStore(std::string dir, std::string job, int32_t partition, int keep,
                                 rocksdb::BackupEngine* engine)
    : dir_(std::move(dir)),
      job_(std::move(job)),
      partition_(partition),
      keep_(keep),
      engine_(engine) {}

CheckpointStore::~CheckpointStore() = default;

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
  SLUICE_ASSIGN_OR_RETURN(std::string root, CheckpointRootFromUri(uri));
  SLUICE_RETURN_IF_ERROR(ValidJobName(job));
  if (partition < 0) {
    return Status::InvalidArgument("partition must be >= 0, got " + std::to_string(partition));
  }
  if (keep < 1) {
    return Status::InvalidArgument("checkpoints to keep must be >= 1, got " + std::to_string(keep));
  }
  const std::string dir = (fs::path(root) / job / std::to_string(partition)).string();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return Status::IoError("checkpoint store " + root + ": cannot create " + dir + ": " +
                           ec.message());
  }
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<rocksdb::BackupEngine> engine, OpenEngine(dir));
  return std::unique_ptr<CheckpointStore>(
      new CheckpointStore(dir, job, partition, keep, engine.release()));
}

Result<CheckpointMeta> CheckpointStore::Save(RocksDbStateStore& store, const CheckpointMeta& meta,
                                             int64_t protect_id) {
  SLUICE_RETURN_IF_ERROR(Usable());
  if (meta.job != job_ || meta.partition != partition_) {
    return Status::InvalidArgument("checkpoint of " + meta.job + "/" +
                                   std::to_string(meta.partition) + " saved to the store of " +
                                   job_ + "/" + std::to_string(partition_));
  }
  if (store.db() == nullptr) {
    return Status::FailedPrecondition("checkpoint of " + dir_ + ": the state store is closed");
  }
  SLUICE_ASSIGN_OR_RETURN(std::optional<CheckpointMeta> newest, Latest());
  if (newest && meta.epoch < newest->epoch) {
    return Status::FailedPrecondition(
        "checkpoint of " + dir_ + " refused: epoch " + std::to_string(meta.epoch) +
        " is older than checkpoint " + std::to_string(newest->checkpoint_id) + "'s epoch " +
        std::to_string(newest->epoch) + " (this task lost its assignment)");
  }

  rocksdb::CreateBackupOptions options;
  options.flush_before_backup = true;
  rocksdb::BackupID id = 0;
  rocksdb::IOStatus s =
      engine_->CreateNewBackupWithMetadata(options, store.db(), EncodeCheckpointMeta(meta), &id);
  if (!s.ok()) {
    // As for a failed restore (see Restore): wait for the copy threads, so
    // that the next Save's cleanup of this attempt does not race with them.
    Status failed = FromRocksDb(s, "writing checkpoint to " + dir_);
    SLUICE_RETURN_IF_ERROR(ReopenEngine());
    return failed;
  }

  // Committed. Purging is housekeeping: a failure leaves extra checkpoints,
  // which the next Save's purge removes.
  last_purge_status_ = Purge(protect_id);
  CheckpointMeta saved = meta;
  saved.checkpoint_id = id;
  return saved;
}

Status CheckpointStore::Purge(int64_t protect_id) {
  std::vector<rocksdb::BackupInfo> infos;
  engine_->GetBackupInfo(&infos, /*include_file_details=*/false);
  std::sort(infos.begin(), infos.end(),
            [](const auto& a, const auto& b) { return a.backup_id > b.backup_id; });
  int kept = 0;
  for (const rocksdb::BackupInfo& info : infos) {
    if (kept < keep_ || static_cast<int64_t>(info.backup_id) == protect_id) {
      ++kept;
      continue;
    }
    // Also deletes the table files no other checkpoint uses.
    SLUICE_RETURN_IF_ERROR(
        FromRocksDb(engine_->DeleteBackup(info.backup_id), "deleting old checkpoints in " + dir_));
  }
  return Status::Ok();
}

Result<std::vector<CheckpointMeta>> CheckpointStore::List() {
  SLUICE_RETURN_IF_ERROR(Usable());
  std::vector<rocksdb::BackupInfo> infos;
  engine_->GetBackupInfo(&infos);  // Only backups not known to be corrupt.
  std::sort(infos.begin(), infos.end(),
            [](const auto& a, const auto& b) { return a.backup_id > b.backup_id; });
  std::vector<CheckpointMeta> out;
  for (const rocksdb::BackupInfo& info : infos) {
    Result<CheckpointMeta> meta = DecodeCheckpointMeta(info.app_metadata);
    if (!meta.ok() || meta->job != job_ || meta->partition != partition_) continue;
    meta->checkpoint_id = info.backup_id;
    out.push_back(std::move(meta).value());
  }
  return out;
}

Result<std::optional<CheckpointMeta>> CheckpointStore::Latest() {
  SLUICE_ASSIGN_OR_RETURN(std::vector<CheckpointMeta> all, List());
  if (all.empty()) return std::optional<CheckpointMeta>();
  return std::optional<CheckpointMeta>(std::move(all.front()));
}

Status CheckpointStore::DeleteNewerThan(int64_t checkpoint_id) {
  SLUICE_RETURN_IF_ERROR(Usable());
  std::vector<rocksdb::BackupInfo> infos;
  engine_->GetBackupInfo(&infos, /*include_file_details=*/false);
  for (const rocksdb::BackupInfo& info : infos) {
    if (static_cast<int64_t>(info.backup_id) <= checkpoint_id) continue;
    SLUICE_RETURN_IF_ERROR(
        FromRocksDb(engine_->DeleteBackup(info.backup_id),
                    "deleting checkpoint " + std::to_string(info.backup_id) + " in " + dir_));
  }
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
  SLUICE_RETURN_IF_ERROR(Usable());
  if (checkpoint_id <= 0 || checkpoint_id > std::numeric_limits<rocksdb::BackupID>::max()) {
    return Status::InvalidArgument("no checkpoint " + std::to_string(checkpoint_id) + " in " +
                                   dir_);
  }
  const auto id = static_cast<rocksdb::BackupID>(checkpoint_id);
  const std::string what = "checkpoint " + std::to_string(checkpoint_id) + " in " + dir_;
  rocksdb::BackupInfo info;
  SLUICE_RETURN_IF_ERROR(FromRocksDb(engine_->GetBackupInfo(id, &info), "reading " + what));
  SLUICE_ASSIGN_OR_RETURN(CheckpointMeta meta, DecodeCheckpointMeta(info.app_metadata));
  if (meta.job != job_ || meta.partition != partition_) {
    return Status::Corruption(what + " belongs to " + meta.job + "/" +
                              std::to_string(meta.partition));
  }
  meta.checkpoint_id = checkpoint_id;

  // Build the database next to db_dir and rename it over db_dir, so a failed
  // restore leaves no half-restored database behind.
  const fs::path target = fs::path(db_dir).lexically_normal();
  const fs::path staging = target.string() + ".restoring";
  std::error_code ec;
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  if (ec) return Status::IoError("restoring " + what + ": " + ec.message());
  fs::remove_all(staging, ec);
  if (ec) return Status::IoError("restoring " + what + ": " + ec.message());
  rocksdb::IOStatus s = engine_->RestoreDBFromBackup(rocksdb::RestoreOptions(), id,
                                                     staging.string(), staging.string());
  if (!s.ok()) {
    Status failed = FromRocksDb(s, "restoring " + what + " into " + target.string());
    // A failed restore returns while the engine's threads may still be copying
    // the rest of the files into `staging`. Destroying the engine joins them;
    // only then can `staging` be removed and reused.
    SLUICE_RETURN_IF_ERROR(ReopenEngine());
    fs::remove_all(staging, ec);
    return failed;
  }
  fs::remove_all(target, ec);
  if (!ec) fs::rename(staging, target, ec);
  if (ec) {
    return Status::IoError("restoring " + what + ": replacing " + target.string() + ": " +
                           ec.message());
  }
  return meta;
}

Status CheckpointStore::RestoreLatest(const std::string& db_dir, CheckpointMeta* restored) {
  SLUICE_RETURN_IF_ERROR(Usable());
  std::vector<rocksdb::BackupInfo> infos;
  engine_->GetBackupInfo(&infos);
  std::sort(infos.begin(), infos.end(),
            [](const auto& a, const auto& b) { return a.backup_id > b.backup_id; });
  Status first_failure;
  for (const rocksdb::BackupInfo& info : infos) {
    Result<CheckpointMeta> meta = RestoreOne(info.backup_id, db_dir);
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
