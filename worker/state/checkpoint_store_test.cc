// Checkpoints through RocksDB and the BackupEngine checkpoint store: a task
// whose local disk is lost continues from its last checkpoint with output
// identical to a task that never stopped.

#include "worker/state/checkpoint_store.h"

#include <rocksdb/env.h>
#include <rocksdb/utilities/backup_engine.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "worker/engine/testing.h"
#include "worker/state/rocksdb_state_store.h"
#include "worker/state/testing_dir.h"

namespace sluice::worker {
namespace {

namespace fs = std::filesystem;
using engine::CollectingSink;
using engine::testing::Agg;
using engine::testing::BaseSpec;
using engine::testing::Event;
using engine::testing::Harness;
using engine::testing::RandomEvents;
using engine::testing::RuleJob;
using engine::testing::SessionJob;
using testing::OpenBackend;
using testing::OpenTask;
using testing::TempDir;

constexpr int64_t T = 1'700'000'000'000;

std::unique_ptr<CheckpointStore> OpenCheckpoints(const std::string& uri, const std::string& job,
                                                 int32_t partition, int keep) {
  auto store = CheckpointStore::Open(uri, job, partition, keep);
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  return std::move(store).value();
}

CheckpointMeta Save(CheckpointStore& checkpoints, RocksDbStateStore& store,
                    const CheckpointMeta& meta) {
  auto saved = checkpoints.Save(store, meta);
  INFO(saved.status().ToString());
  REQUIRE(saved.ok());
  REQUIRE(saved->checkpoint_id > 0);
  REQUIRE(checkpoints.last_purge_status().ok());
  return *saved;
}

Result<CheckpointMeta> RestoreLatest(CheckpointStore& checkpoints, const std::string& dir) {
  CheckpointMeta meta;
  meta.checkpoint_id = -1;
  Status s = checkpoints.RestoreLatest(dir, &meta);
  if (!s.ok()) {
    REQUIRE(meta.checkpoint_id == -1);  // untouched on failure
    return s;
  }
  return meta;
}

Result<CheckpointMeta> RestoreId(CheckpointStore& checkpoints, int64_t id, const std::string& dir) {
  CheckpointMeta meta;
  SLUICE_RETURN_IF_ERROR(checkpoints.Restore(id, dir, &meta));
  return meta;
}

// Prepare (TaskProcessor::Checkpoint into RocksDB) and commit (Save).
CheckpointMeta CheckpointTask(Harness& h, RocksDbStateStore& store, CheckpointStore& checkpoints,
                              const std::string& job) {
  REQUIRE(h.task().Checkpoint(store).ok());
  CheckpointMeta meta;
  meta.next_offset = h.task().next_offset();
  meta.watermark = h.task().watermark();
  meta.epoch = 1;
  meta.created_ms = h.clock().NowMillis();
  meta.job = job;
  meta.partition = 0;
  return Save(checkpoints, store, meta);
}

struct FileStats {
  size_t files = 0;
  uintmax_t bytes = 0;
};

// The table files of a checkpoint directory (shared by its checkpoints).
FileStats SharedFiles(const std::string& dir) {
  FileStats stats;
  for (const auto& top : fs::directory_iterator(dir)) {
    if (top.path().filename().string().rfind("shared", 0) != 0) continue;
    for (const auto& e : fs::recursive_directory_iterator(top.path())) {
      if (!e.is_regular_file()) continue;
      ++stats.files;
      stats.bytes += e.file_size();
    }
  }
  return stats;
}

size_t CountEntries(const fs::path& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().find("tmp") == std::string::npos) ++n;
  }
  return n;
}

TEST_CASE("checkpoint, lose the local disk, restore, continue: output identical") {
  for (const proto::JobSpec& spec : {SessionJob(), RuleJob()}) {
    INFO(spec.name());
    const auto events = RandomEvents(7, 3000, 40);
    std::vector<CollectingSink::Record> expected;
    {
      Harness straight(spec);
      straight.Feed(events);
      straight.task().Drain();
      expected = straight.sink().records();
    }
    REQUIRE(expected.size() > 20);

    for (size_t cut : {size_t{1}, size_t{1200}, size_t{2999}}) {
      INFO("checkpoint at " << cut);
      TempDir tmp;
      const std::string task = spec.name() + "-0";
      const std::string uri = "file://" + tmp.Sub("checkpoints");
      Harness h(spec);
      std::vector<CollectingSink::Record> committed_output;
      {
        auto backend = OpenBackend(tmp.Sub("data"));
        auto store = OpenTask(*backend, task, true);
        auto checkpoints = OpenCheckpoints(uri, spec.name(), 0, 2);
        for (size_t i = 0; i < cut / 2; ++i) h.Feed(events[i]);
        CheckpointMeta first = CheckpointTask(h, *store, *checkpoints, spec.name());
        for (size_t i = cut / 2; i < cut; ++i) h.Feed(events[i]);
        h.clock().Advance(10'000);
        CheckpointMeta second = CheckpointTask(h, *store, *checkpoints, spec.name());
        REQUIRE(second.checkpoint_id > first.checkpoint_id);
        REQUIRE(second.next_offset == static_cast<int64_t>(cut));
        committed_output = h.sink().records();
        // Work after the checkpoint, lost with the machine: its output is
        // re-emitted identically by the replay below.
        for (size_t i = cut; i < std::min(cut + 300, events.size()); ++i) h.Feed(events[i]);
      }
      std::filesystem::remove_all(tmp.Sub("data"));

      // Another worker takes the task over, with an empty data directory.
      auto backend = OpenBackend(tmp.Sub("data2"));
      auto checkpoints = OpenCheckpoints(uri, spec.name(), 0, 2);
      auto latest = checkpoints->Latest();
      REQUIRE(latest.ok());
      REQUIRE(latest->has_value());
      auto restored = RestoreLatest(*checkpoints, backend->TaskDir(task));
      INFO(restored.status().ToString());
      REQUIRE(restored.ok());
      REQUIRE(*restored == **latest);
      REQUIRE(restored->next_offset == static_cast<int64_t>(cut));
      REQUIRE(restored->created_ms == T + 10'000);
      auto store = OpenTask(*backend, task, false);

      h.sink().Clear();
      h.RestoreFrom(*store);
      REQUIRE(h.task().next_offset() == restored->next_offset);
      REQUIRE(h.task().watermark() == restored->watermark);
      h.set_next_offset(restored->next_offset);
      for (size_t i = static_cast<size_t>(restored->next_offset); i < events.size(); ++i) {
        h.Feed(events[i]);
      }
      h.task().Drain();
      std::vector<CollectingSink::Record> output = committed_output;
      output.insert(output.end(), h.sink().records().begin(), h.sink().records().end());
      REQUIRE(output == expected);
    }
  }
}

TEST_CASE("checkpoints are incremental: a small change copies only new table files") {
  TempDir tmp;
  auto backend = OpenBackend(tmp.Sub("data"));
  auto store = OpenTask(*backend, "big-0", false);
  auto checkpoints = OpenCheckpoints(tmp.Sub("checkpoints"), "big", 0, 5);
  const std::string dir = checkpoints->dir();
  REQUIRE(dir == (tmp.path() / "checkpoints" / "big" / "0").string());

  std::mt19937_64 rng(1);
  engine::WriteBatch batch;
  for (int i = 0; i < 20'000; ++i) {
    std::string value(100, '\0');
    for (char& c : value) c = static_cast<char>(rng());  // incompressible
    char key[16];
    std::snprintf(key, sizeof(key), "k%06d", i);
    batch.Put(key, std::move(value));
  }
  REQUIRE(store->Write(batch).ok());
  CheckpointMeta meta;
  meta.job = "big";
  meta.next_offset = 20'000;
  CheckpointMeta first = Save(*checkpoints, *store, meta);
  const FileStats after_first = SharedFiles(dir);
  REQUIRE(after_first.files >= 1);
  REQUIRE(after_first.bytes > 1'000'000);

  engine::WriteBatch small;
  small.Put("k000007", "changed");
  small.Delete("k000008");
  REQUIRE(store->Write(small).ok());
  meta.next_offset = 20'001;
  CheckpointMeta second = Save(*checkpoints, *store, meta);
  const FileStats after_second = SharedFiles(dir);
  const uintmax_t copied = after_second.bytes - after_first.bytes;
  INFO("first " << after_first.files << " files " << after_first.bytes << " bytes; second copied "
                << after_second.files - after_first.files << " files " << copied << " bytes");
  REQUIRE(after_second.files > after_first.files);       // the new flush
  REQUIRE(after_second.files <= after_first.files + 2);  // and nothing else
  REQUIRE(copied < after_first.bytes / 10);

  // BackupEngine's own accounting: the second checkpoint references the big
  // file as well as the new one, without having copied it again.
  rocksdb::BackupEngineReadOnly* raw = nullptr;
  REQUIRE(rocksdb::BackupEngineReadOnly::Open(rocksdb::BackupEngineOptions(dir),
                                              rocksdb::Env::Default(), &raw)
              .ok());
  std::unique_ptr<rocksdb::BackupEngineReadOnly> engine(raw);
  rocksdb::BackupInfo info1, info2;
  REQUIRE(engine->GetBackupInfo(static_cast<rocksdb::BackupID>(first.checkpoint_id), &info1).ok());
  REQUIRE(engine->GetBackupInfo(static_cast<rocksdb::BackupID>(second.checkpoint_id), &info2).ok());
  REQUIRE(info2.size > after_first.bytes);
  REQUIRE(info2.size < after_first.bytes + copied + 1'000'000);  // + small private files

  // And the second checkpoint restores the change.
  REQUIRE(store->Close().ok());
  auto restored = RestoreLatest(*checkpoints, tmp.Sub("restored"));
  REQUIRE(restored.ok());
  REQUIRE(restored->checkpoint_id == second.checkpoint_id);
  auto root = OpenBackend(tmp.path().string());
  auto reopened = OpenTask(*root, "restored", false);
  REQUIRE(reopened->Get("k000007")->value() == "changed");
  REQUIRE_FALSE(reopened->Get("k000008")->has_value());
  REQUIRE(reopened->Get("k019999")->has_value());

  // A restored task (another worker) checkpointing again shares the files it
  // restored: their names come from the SSTs' own session ids.
  engine::WriteBatch after_move;
  after_move.Put("k000009", "moved");
  REQUIRE(reopened->Write(after_move).ok());
  meta.next_offset = 20'002;
  Save(*checkpoints, *reopened, meta);
  const FileStats after_third = SharedFiles(dir);
  REQUIRE(after_third.files <= after_second.files + 2);
  REQUIRE(after_third.bytes - after_second.bytes < after_first.bytes / 10);
}

TEST_CASE("the restored directory opens as the task's database") {
  TempDir tmp;
  auto backend = OpenBackend(tmp.Sub("data"));
  auto checkpoints = OpenCheckpoints(tmp.Sub("cp"), "job", 3, 2);
  {
    auto store = OpenTask(*backend, "job-3", false);
    engine::WriteBatch b;
    b.Put("a", "1");
    REQUIRE(store->Write(b).ok());
    CheckpointMeta meta;
    meta.job = "job";
    meta.partition = 3;
    Save(*checkpoints, *store, meta);
    engine::WriteBatch after;
    after.Put("b", "not in the checkpoint");
    REQUIRE(store->Write(after).ok());
  }
  // Restoring replaces what is in the task's directory.
  auto restored = RestoreLatest(*checkpoints, backend->TaskDir("job-3"));
  INFO(restored.status().ToString());
  REQUIRE(restored.ok());
  REQUIRE(restored->partition == 3);
  auto store = OpenTask(*backend, "job-3", false);
  REQUIRE(store->Get("a")->value() == "1");
  REQUIRE_FALSE(store->Get("b")->has_value());
  REQUIRE_FALSE(fs::exists(backend->TaskDir("job-3") + ".restoring"));
}

TEST_CASE("only the last K checkpoints are kept; the newest keeps its metadata") {
  TempDir tmp;
  const int keep = 2;
  auto backend = OpenBackend(tmp.Sub("data"));
  auto store = OpenTask(*backend, "keep-5", false);
  auto checkpoints = OpenCheckpoints("file://" + tmp.Sub("cp") + "/", "keep", 5, keep);
  std::vector<CheckpointMeta> saved;
  for (int i = 0; i < keep + 2; ++i) {
    engine::WriteBatch b;
    b.Put("round", std::to_string(i));
    b.Put("key" + std::to_string(i), std::string(5000, 'x'));
    REQUIRE(store->Write(b).ok());
    CheckpointMeta meta;
    meta.job = "keep";
    meta.partition = 5;
    meta.next_offset = 100 * (i + 1);
    meta.watermark = T + i;
    meta.epoch = 7;
    meta.created_ms = T + 1000 * i;
    saved.push_back(Save(*checkpoints, *store, meta));
    if (i > 0) REQUIRE(saved[i].checkpoint_id > saved[i - 1].checkpoint_id);
  }
  auto latest = checkpoints->Latest();
  REQUIRE(latest.ok());
  REQUIRE(latest->has_value());
  REQUIRE(**latest == saved.back());

  const fs::path dir = checkpoints->dir();
  REQUIRE(CountEntries(dir / "meta") == static_cast<size_t>(keep));
  REQUIRE(CountEntries(dir / "private") == static_cast<size_t>(keep));

  // A fresh open (another process) sees the same.
  checkpoints.reset();
  checkpoints = OpenCheckpoints(tmp.Sub("cp"), "keep", 5, keep);
  latest = checkpoints->Latest();
  REQUIRE(latest.ok());
  REQUIRE(**latest == saved.back());

  // Kept checkpoints restore; purged ones are gone.
  auto older = RestoreId(*checkpoints, saved[keep].checkpoint_id, tmp.Sub("older"));
  REQUIRE(older.ok());
  REQUIRE(*older == saved[keep]);
  auto purged = RestoreId(*checkpoints, saved[0].checkpoint_id, tmp.Sub("purged"));
  REQUIRE(purged.status().code() == StatusCode::kNotFound);

  REQUIRE(store->Close().ok());
  auto restored = RestoreLatest(*checkpoints, backend->TaskDir("keep-5"));
  REQUIRE(restored.ok());
  REQUIRE(*restored == saved.back());
  store = OpenTask(*backend, "keep-5", false);
  REQUIRE(store->Get("round")->value() == std::to_string(keep + 1));
  REQUIRE(store->Get("key0")->has_value());
}

TEST_CASE("a damaged newest checkpoint is skipped for the one before it") {
  TempDir tmp;
  auto backend = OpenBackend(tmp.Sub("data"));
  auto store = OpenTask(*backend, "dmg-0", false);
  auto checkpoints = OpenCheckpoints(tmp.Sub("cp"), "dmg", 0, 3);
  std::vector<CheckpointMeta> saved;
  for (int i = 0; i < 2; ++i) {
    engine::WriteBatch b;
    b.Put("round", std::to_string(i));
    REQUIRE(store->Write(b).ok());
    CheckpointMeta meta;
    meta.job = "dmg";
    meta.next_offset = i + 1;
    saved.push_back(Save(*checkpoints, *store, meta));
  }
  REQUIRE(store->Close().ok());

  // Flip one byte in every file private to the newest checkpoint (same size,
  // so only the checksum can tell).
  const fs::path priv =
      fs::path(checkpoints->dir()) / "private" / std::to_string(saved[1].checkpoint_id);
  size_t damaged = 0;
  for (const auto& e : fs::directory_iterator(priv)) {
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    char c = 0;
    f.seekg(0);
    f.get(c);
    f.seekp(0);
    f.put(static_cast<char>(c ^ 0x5a));
    ++damaged;
  }
  REQUIRE(damaged > 0);

  auto newest = RestoreId(*checkpoints, saved[1].checkpoint_id, tmp.Sub("newest"));
  INFO(newest.status().ToString());
  REQUIRE(newest.status().code() == StatusCode::kCorruption);
  REQUIRE_FALSE(fs::exists(tmp.Sub("newest")));
  REQUIRE_FALSE(fs::exists(tmp.Sub("newest.restoring")));

  auto restored = RestoreLatest(*checkpoints, backend->TaskDir("dmg-0"));
  INFO(restored.status().ToString());
  REQUIRE(restored.ok());
  REQUIRE(*restored == saved[0]);
  store = OpenTask(*backend, "dmg-0", false);
  REQUIRE(store->Get("round")->value() == "0");
}

TEST_CASE("checkpoint store: refusals") {
  TempDir tmp;
  auto backend = OpenBackend(tmp.Sub("data"));
  auto store = OpenTask(*backend, "t-0", false);
  auto checkpoints = OpenCheckpoints(tmp.Sub("cp"), "t", 0, 2);

  SECTION("nothing to restore") {
    auto latest = checkpoints->Latest();
    REQUIRE(latest.ok());
    REQUIRE_FALSE(latest->has_value());
    REQUIRE(RestoreLatest(*checkpoints, tmp.Sub("r")).status().code() == StatusCode::kNotFound);
  }
  SECTION("another task's metadata") {
    CheckpointMeta meta;
    meta.job = "other";
    REQUIRE(checkpoints->Save(*store, meta).status().code() == StatusCode::kInvalidArgument);
    meta.job = "t";
    meta.partition = 1;
    REQUIRE(checkpoints->Save(*store, meta).status().code() == StatusCode::kInvalidArgument);
  }
  SECTION("an older epoch than the newest checkpoint") {
    CheckpointMeta meta;
    meta.job = "t";
    meta.epoch = 4;
    Save(*checkpoints, *store, meta);
    meta.epoch = 3;
    auto refused = checkpoints->Save(*store, meta);
    REQUIRE(refused.status().code() == StatusCode::kFailedPrecondition);
    REQUIRE(refused.status().message().find("epoch 3") != std::string::npos);
    meta.epoch = 5;
    Save(*checkpoints, *store, meta);
  }
  SECTION("a closed state store") {
    REQUIRE(store->Close().ok());
    CheckpointMeta meta;
    meta.job = "t";
    REQUIRE(checkpoints->Save(*store, meta).status().code() == StatusCode::kFailedPrecondition);
  }
}

TEST_CASE("checkpoint store: unusable locations are clear errors") {
  auto proc = CheckpointStore::Open("file:///proc/sluice-x", "job", 0, 2);
  REQUIRE_FALSE(proc.ok());
  REQUIRE(proc.status().code() == StatusCode::kIoError);
  REQUIRE(proc.status().message().find("/proc/sluice-x") != std::string::npos);

  auto s3 = CheckpointStore::Open("s3://bucket/checkpoints", "job", 0, 2);
  REQUIRE(s3.status().code() == StatusCode::kInvalidArgument);
  REQUIRE(s3.status().message() ==
          "s3://bucket/checkpoints: only file:// checkpoint stores are supported");

  TempDir tmp;
  REQUIRE(CheckpointStore::Open(tmp.Sub("cp"), "a/b", 0, 2).status().code() ==
          StatusCode::kInvalidArgument);
  REQUIRE(CheckpointStore::Open(tmp.Sub("cp"), "job", -1, 2).status().code() ==
          StatusCode::kInvalidArgument);
  REQUIRE(CheckpointStore::Open(tmp.Sub("cp"), "job", 0, 0).status().code() ==
          StatusCode::kInvalidArgument);
}

TEST_CASE("checkpoint store URIs") {
  REQUIRE(CheckpointRootFromUri("file:///var/lib/sluice/cp").value() == "/var/lib/sluice/cp");
  REQUIRE(CheckpointRootFromUri("file:///var/lib/sluice/cp/").value() == "/var/lib/sluice/cp");
  REQUIRE(CheckpointRootFromUri("FILE:///a/../b").value() == "/b");
  REQUIRE(CheckpointRootFromUri("file://localhost/srv/cp").value() == "/srv/cp");
  REQUIRE(CheckpointRootFromUri("file:///my%20dir").value() == "/my dir");
  REQUIRE(CheckpointRootFromUri("/plain/path").value() == "/plain/path");
  REQUIRE(CheckpointRootFromUri("relative/cp").value() ==
          (fs::current_path() / "relative/cp").lexically_normal().string());
  for (const char* bad : {"", "file://host/x", "file://relative", "file:/x", "file:///bad%2",
                          "gs://b/x", "hdfs://nn/x"}) {
    INFO(bad);
    REQUIRE(CheckpointRootFromUri(bad).status().code() == StatusCode::kInvalidArgument);
  }
}

TEST_CASE("checkpoint metadata encoding") {
  CheckpointMeta meta;
  meta.checkpoint_id = 0;  // Save stores none: it is the backup id
  meta.next_offset = 12345;
  meta.watermark = std::numeric_limits<int64_t>::min();
  meta.epoch = 3;
  meta.created_ms = T;
  meta.job = "fraud rules=v2";
  meta.partition = 11;
  const std::string text = EncodeCheckpointMeta(meta);
  REQUIRE(text.rfind("format=sluice-checkpoint/1\n", 0) == 0);
  auto decoded = DecodeCheckpointMeta(text);
  REQUIRE(decoded.ok());
  REQUIRE(*decoded == meta);
  REQUIRE(text.find("checkpoint_id") == std::string::npos);
  REQUIRE(text.find("transactional") == std::string::npos);

  // A marker (exactly_once) names its checkpoint, which is transactional.
  CheckpointMeta marker = meta;
  marker.checkpoint_id = 9;
  marker.transactional = true;
  auto decoded_marker = DecodeCheckpointMeta(EncodeCheckpointMeta(marker));
  REQUIRE(decoded_marker.ok());
  REQUIRE(*decoded_marker == marker);
  REQUIRE(DecodeCheckpointMeta(text + "transactional=yes\n").status().code() ==
          StatusCode::kCorruption);
  REQUIRE(DecodeCheckpointMeta(text + "checkpoint_id=-4\n").status().code() ==
          StatusCode::kCorruption);

  REQUIRE(DecodeCheckpointMeta(text + "from_a_newer_version=1\n").ok());
  REQUIRE(DecodeCheckpointMeta("").status().code() == StatusCode::kCorruption);
  REQUIRE(DecodeCheckpointMeta("format=sluice-checkpoint/2\n").status().code() ==
          StatusCode::kCorruption);
  std::string broken = text;
  broken.replace(broken.find("next_offset=12345"), 17, "next_offset=12x45");
  auto bad = DecodeCheckpointMeta(broken);
  REQUIRE(bad.status().code() == StatusCode::kCorruption);
  REQUIRE(bad.status().message().find("next_offset") != std::string::npos);
}

}  // namespace
}  // namespace sluice::worker
