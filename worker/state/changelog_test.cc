// Delta checkpoints: the changelog codec, and a checkpoint store whose
// checkpoints are deltas on a full one made in the background. Every
// checkpoint kept restores to exactly the state it was taken at.

#include "worker/state/changelog.h"

#include <rocksdb/utilities/backup_engine.h>
#include <rocksdb/write_batch.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "worker/engine/testing.h"
#include "worker/state/checkpoint_store.h"
#include "worker/state/testing_dir.h"

namespace sluice::worker {
namespace {

namespace fs = std::filesystem;
using testing::OpenBackend;
using testing::OpenTask;
using testing::TempDir;

using Contents = std::map<std::string, std::string>;

using engine::testing::ReadAll;

CheckpointMeta Meta(int64_t epoch = 1) {
  CheckpointMeta meta;
  meta.job = "job";
  meta.partition = 0;
  meta.epoch = epoch;
  return meta;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void Spit(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

// A task's state under random changes, checkpointed after each interval.
struct Run {
  TempDir tmp;
  std::unique_ptr<StateBackend> backend = OpenBackend(tmp.Sub("data"));
  std::unique_ptr<RocksDbStateStore> store = OpenTask(*backend, "job-0", /*wipe=*/true);
  std::unique_ptr<CheckpointStore> checkpoints;
  std::mt19937 rng{42};
  Contents model;
  std::map<int64_t, Contents> at;  // the model at each checkpoint

  explicit Run(CheckpointStoreOptions options) {
    auto opened = CheckpointStore::Open(tmp.Sub("cp"), "job", 0, options);
    INFO(opened.status().ToString());
    REQUIRE(opened.ok());
    checkpoints = std::move(opened).value();
  }

  WriteBatch Interval(int ops) {
    WriteBatch batch;
    for (int i = 0; i < ops; ++i) {
      std::string key = "k" + std::to_string(rng() % 200);
      if (rng() % 4 == 0) {
        batch.Delete(key);
        model.erase(key);
      } else {
        std::string value(1 + rng() % 40, static_cast<char>('a' + rng() % 26));
        model[key] = value;
        batch.Put(key, value);
      }
    }
    return batch;
  }

  CheckpointMeta Checkpoint(int ops = 20, int64_t protect = 0) {
    WriteBatch batch = Interval(ops);
    REQUIRE(store->Write(batch).ok());
    auto saved = checkpoints->SaveChanges(*store, batch, Meta(), protect, /*started_empty=*/true);
    INFO(saved.status().ToString());
    REQUIRE(saved.ok());
    at[saved->checkpoint_id] = model;
    return *saved;
  }

  Contents Restored(int64_t id) {
    const std::string dir = backend->TaskDir("restored");
    CheckpointMeta meta;
    Status s = checkpoints->Restore(id, dir, &meta);
    INFO(s.ToString());
    REQUIRE(s.ok());
    REQUIRE(meta.checkpoint_id == id);
    auto restored = OpenTask(*backend, "restored", false);
    return ReadAll(*restored);
  }
};

TEST_CASE("changelog: a delta round-trips, and damage is Corruption") {
  WriteBatch batch;
  batch.Put("a", "1");
  batch.Put(std::string("b\0c", 3), std::string(300, 'x'));
  batch.Delete("gone");
  batch.Put("empty", "");
  Delta delta;
  delta.prev = 7;
  delta.meta = Meta(3);
  delta.meta.checkpoint_id = 8;
  delta.meta.next_offset = 1234;
  delta.batch = EncodeBatch(batch);
  const std::string file = EncodeDelta(delta);

  auto decoded = DecodeDelta(file);
  INFO(decoded.status().ToString());
  REQUIRE(decoded.ok());
  REQUIRE(decoded->prev == 7);
  REQUIRE(decoded->meta == delta.meta);
  REQUIRE(decoded->batch == delta.batch);
  rocksdb::WriteBatch rocks;
  REQUIRE(DecodeBatch(decoded->batch, &rocks).ok());
  REQUIRE(rocks.Count() == 4);

  uint64_t bytes = 0;
  auto header = DecodeDeltaHeader(file.substr(0, file.size() - 10), &bytes);
  REQUIRE(header.ok());
  REQUIRE(header->meta.checkpoint_id == 8);
  REQUIRE(bytes == file.size());

  std::string flipped = file;
  flipped[flipped.size() - 5] ^= 1;
  REQUIRE(DecodeDelta(flipped).status().code() == StatusCode::kCorruption);
  REQUIRE(DecodeDelta(file.substr(0, file.size() - 1)).status().code() == StatusCode::kCorruption);
  REQUIRE(DecodeDelta("sluice-delta/9\n\n").status().code() == StatusCode::kCorruption);
  rocksdb::WriteBatch cut;
  REQUIRE(DecodeBatch(std::string_view(delta.batch).substr(0, 7), &cut).code() ==
          StatusCode::kCorruption);
}

TEST_CASE("changelog: a file is written once") {
  TempDir tmp;
  const std::string path = tmp.Sub("x.delta");
  REQUIRE(WriteFileOnce(path, {"fir", "st"}).ok());
  REQUIRE(WriteFileOnce(path, {"second"}).code() == StatusCode::kAlreadyExists);
  REQUIRE(Slurp(path) == "first");
  // Neither writer's temporary file is left.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path())) {
    names.push_back(e.path().filename().string());
  }
  REQUIRE(names == std::vector<std::string>{"x.delta"});
}

TEST_CASE("delta checkpoints: every kept checkpoint restores its exact state") {
  CheckpointStoreOptions options;
  options.keep = 3;
  options.full_every = 4;
  Run run(options);
  std::vector<int64_t> ids;
  // The first 20 checkpoints run beside the full ones made in the background;
  // from then on each full one ends before the next checkpoint, so what is
  // kept at the end does not depend on timing.
  for (int i = 0; i < 30; ++i) {
    ids.push_back(run.Checkpoint().checkpoint_id);
    if (i >= 20) REQUIRE(run.checkpoints->WaitMaterialized().ok());
  }
  // Ids increase by one; the newest `keep` are listed.
  for (size_t i = 1; i < ids.size(); ++i) REQUIRE(ids[i] == ids[i - 1] + 1);
  REQUIRE(run.checkpoints->WaitMaterialized().ok());
  auto listed = run.checkpoints->List();
  REQUIRE(listed.ok());
  REQUIRE(listed->size() >= 3);
  REQUIRE(listed->front().checkpoint_id == ids.back());
  for (const CheckpointMeta& m : *listed)
    REQUIRE(run.Restored(m.checkpoint_id) == run.at.at(m.checkpoint_id));
  // Full checkpoints were made in the background, so old deltas are gone.
  REQUIRE(run.checkpoints->deltas_since_full() < 2 * options.full_every);
  size_t delta_files = 0;
  for (const auto& e : fs::directory_iterator(run.checkpoints->dir() + "/changelog")) {
    (void)e;
    ++delta_files;
  }
  REQUIRE(delta_files <= static_cast<size_t>(2 * options.full_every + options.keep));
  REQUIRE(run.checkpoints->last_purge_status().ok());
}

TEST_CASE("delta checkpoints: a batch of several chunks is saved and restored whole") {
  CheckpointStoreOptions options;
  options.full_every = 100;  // deltas only, after the first full checkpoint
  Run run(options);
  run.Checkpoint();
  REQUIRE(run.checkpoints->WaitMaterialized().ok());
  WriteBatch batch;
  for (int i = 0; i < 40; ++i) {
    const std::string key = "big" + std::to_string(i);
    const std::string value(100'000 + i, static_cast<char>('a' + i % 26));
    batch.Put(key, value);
    run.model[key] = value;
  }
  batch.Delete("big3");
  run.model.erase("big3");
  REQUIRE(batch.chunks().size() > 2);
  REQUIRE(run.store->WriteInPieces(batch).ok());
  auto saved = run.checkpoints->SaveChanges(*run.store, batch, Meta(), 0, true);
  INFO(saved.status().ToString());
  REQUIRE(saved.ok());
  REQUIRE(run.checkpoints->deltas_since_full() > 0);
  REQUIRE(run.Restored(saved->checkpoint_id) == run.model);
}

TEST_CASE("delta checkpoints: a new store continues the chain of what it restored") {
  CheckpointStoreOptions options;
  options.keep = 2;
  options.full_every = 1000;
  Run run(options);
  run.Checkpoint();
  // The first delta starts from the empty state: it is made full in the
  // background at once, so a restore does not apply the task's whole history.
  REQUIRE(run.checkpoints->WaitMaterialized().ok());
  const std::string cp = run.checkpoints->dir();
  REQUIRE_FALSE(fs::is_empty(cp + "/meta"));
  for (int i = 0; i < 4; ++i) run.Checkpoint();
  REQUIRE(run.checkpoints->deltas_since_full() == 4);

  // The worker restarts: restore the newest, continue with deltas on it.
  run.store.reset();
  run.checkpoints.reset();
  auto reopened = CheckpointStore::Open(run.tmp.Sub("cp"), "job", 0, options);
  REQUIRE(reopened.ok());
  run.checkpoints = std::move(reopened).value();
  CheckpointMeta restored;
  REQUIRE(run.checkpoints->RestoreLatest(run.backend->TaskDir("job-0"), &restored).ok());
  REQUIRE(restored.checkpoint_id == 5);
  run.store = OpenTask(*run.backend, "job-0", false);
  REQUIRE(ReadAll(*run.store) == run.at.at(5));
  REQUIRE(run.Checkpoint().checkpoint_id == 6);
  REQUIRE(fs::exists(cp + "/changelog/6.delta"));
  REQUIRE(run.checkpoints->deltas_since_full() == 5);
  REQUIRE(run.Restored(6) == run.at.at(6));
  REQUIRE(run.Restored(5) == run.at.at(5));
}

TEST_CASE("delta checkpoints: a store that does not know the local state saves a full one") {
  CheckpointStoreOptions options;
  options.full_every = 1000;
  Run run(options);
  run.Checkpoint();
  run.Checkpoint();
  REQUIRE(run.checkpoints->WaitMaterialized().ok());
  auto reopened = CheckpointStore::Open(run.tmp.Sub("cp"), "job", 0, options);
  REQUIRE(reopened.ok());
  run.checkpoints = std::move(reopened).value();  // nothing restored
  const int64_t id = run.Checkpoint().checkpoint_id;
  REQUIRE(id == 3);
  REQUIRE_FALSE(fs::is_empty(run.checkpoints->dir() + "/meta"));
  REQUIRE_FALSE(fs::exists(run.checkpoints->dir() + "/changelog/3.delta"));
  REQUIRE(run.Restored(3) == run.at.at(3));
}

TEST_CASE("delta checkpoints: a damaged delta falls back to the checkpoint before it") {
  CheckpointStoreOptions options;
  options.keep = 3;
  options.full_every = 1000;
  Run run(options);
  for (int i = 0; i < 4; ++i) run.Checkpoint();
  REQUIRE(run.checkpoints->WaitMaterialized().ok());
  const std::string newest = run.checkpoints->dir() + "/changelog/4.delta";
  std::string data = Slurp(newest);
  data[data.size() - 3] ^= 0x20;
  Spit(newest, data);
  CheckpointMeta restored;
  Status s = run.checkpoints->RestoreLatest(run.backend->TaskDir("again"), &restored);
  INFO(s.ToString());
  REQUIRE(s.ok());
  REQUIRE(restored.checkpoint_id == 3);
  auto store = OpenTask(*run.backend, "again", false);
  REQUIRE(ReadAll(*store) == run.at.at(3));
  REQUIRE(run.checkpoints->Restore(4, run.backend->TaskDir("x"), nullptr).code() ==
          StatusCode::kCorruption);
  // A missing link breaks every checkpoint after it.
  fs::remove(run.checkpoints->dir() + "/changelog/2.delta");
  auto reopened = CheckpointStore::Open(run.tmp.Sub("cp"), "job", 0, options);
  REQUIRE(reopened.ok());
  auto listed = (*reopened)->List();
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 1);
  REQUIRE(listed->front().checkpoint_id == 1);
}

TEST_CASE("delta checkpoints: deleting newer ones, then continuing (exactly_once's restore)") {
  CheckpointStoreOptions options;
  options.keep = 10;
  options.full_every = 3;
  Run run(options);
  for (int i = 0; i < 7; ++i) run.Checkpoint();
  REQUIRE(run.checkpoints->WaitMaterialized().ok());
  // Checkpoints 6 and 7 never committed their transactions.
  REQUIRE(run.checkpoints->DeleteNewerThan(5).ok());
  CheckpointMeta restored;
  run.store.reset();
  REQUIRE(run.checkpoints->Restore(5, run.backend->TaskDir("job-0"), &restored).ok());
  run.store = OpenTask(*run.backend, "job-0", false);
  run.model = run.at.at(5);
  REQUIRE(ReadAll(*run.store) == run.model);
  const int64_t next = run.Checkpoint().checkpoint_id;
  REQUIRE(next == 6);
  REQUIRE(run.Restored(6) == run.at.at(6));
  // The protected checkpoint and what it needs outlive `keep`.
  CheckpointStoreOptions keep_one = options;
  keep_one.keep = 1;
  auto reopened = CheckpointStore::Open(run.tmp.Sub("cp"), "job", 0, keep_one);
  REQUIRE(reopened.ok());
  run.checkpoints = std::move(reopened).value();
  run.store.reset();
  REQUIRE(run.checkpoints->Restore(6, run.backend->TaskDir("job-0"), &restored).ok());
  run.store = OpenTask(*run.backend, "job-0", false);
  run.model = run.at.at(6);
  for (int i = 0; i < 8; ++i) run.Checkpoint(20, /*protect=*/2);
  REQUIRE(run.checkpoints->WaitMaterialized().ok());
  run.Checkpoint(20, 2);
  REQUIRE(run.Restored(2) == run.at.at(2));
  REQUIRE(run.Restored(run.at.rbegin()->first) == run.at.rbegin()->second);
}

TEST_CASE("delta checkpoints: a full checkpoint an old owner finished late is not the new one's") {
  CheckpointStoreOptions options;
  options.keep = 10;
  Run run(options);
  for (int i = 0; i < 3; ++i) run.Checkpoint();  // full 1 in the background, deltas 2 and 3
  REQUIRE(run.checkpoints->WaitMaterialized().ok());
  // The new owner (epoch 2) goes back to checkpoint 2 and writes its own 3.
  run.checkpoints.reset();
  auto opened = CheckpointStore::Open(run.tmp.Sub("cp"), "job", 0, options);
  REQUIRE(opened.ok());
  run.checkpoints = std::move(opened).value();
  REQUIRE(run.checkpoints->DeleteNewerThan(2).ok());
  run.store.reset();
  REQUIRE(run.checkpoints->Restore(2, run.backend->TaskDir("job-0"), nullptr).ok());
  run.store = OpenTask(*run.backend, "job-0", false);
  run.model = run.at.at(2);
  WriteBatch batch = run.Interval(20);
  REQUIRE(run.store->Write(batch).ok());
  auto saved = run.checkpoints->SaveChanges(*run.store, batch, Meta(2));
  REQUIRE(saved.ok());
  REQUIRE(saved->checkpoint_id == 3);
  run.checkpoints.reset();
  {
    // The old owner's background thread ends only now: a full checkpoint 3
    // of epoch 1, of another state.
    auto other = OpenTask(*run.backend, "other", true);
    WriteBatch junk;
    junk.Put("old owner", "state");
    REQUIRE(other->Write(junk).ok());
    rocksdb::BackupEngine* raw = nullptr;
    REQUIRE(rocksdb::BackupEngine::Open(rocksdb::BackupEngineOptions(run.tmp.Sub("cp") + "/job/0"),
                                        rocksdb::Env::Default(), &raw)
                .ok());
    std::unique_ptr<rocksdb::BackupEngine> engine(raw);
    CheckpointMeta late = Meta(1);
    late.checkpoint_id = 3;
    REQUIRE(engine
                ->CreateNewBackupWithMetadata(rocksdb::CreateBackupOptions(), other->db(),
                                              EncodeCheckpointMeta(late))
                .ok());
  }
  auto reopened = CheckpointStore::Open(run.tmp.Sub("cp"), "job", 0, options);
  REQUIRE(reopened.ok());
  run.checkpoints = std::move(reopened).value();
  REQUIRE(run.Restored(3) == run.model);
}

TEST_CASE("delta checkpoints: a store written before deltas existed restores and continues") {
  TempDir tmp;
  auto backend = OpenBackend(tmp.Sub("data"));
  auto store = OpenTask(*backend, "job-0", true);
  WriteBatch batch;
  batch.Put("old", "state");
  REQUIRE(store->Write(batch).ok());
  const std::string dir = tmp.Sub("cp") + "/job/0";
  fs::create_directories(dir);
  {
    // The metadata as the previous version wrote it: no checkpoint_id line.
    rocksdb::BackupEngine* raw = nullptr;
    REQUIRE(rocksdb::BackupEngine::Open(rocksdb::BackupEngineOptions(dir), rocksdb::Env::Default(),
                                        &raw)
                .ok());
    std::unique_ptr<rocksdb::BackupEngine> engine(raw);
    for (int i = 0; i < 2; ++i) {
      REQUIRE(engine
                  ->CreateNewBackupWithMetadata(rocksdb::CreateBackupOptions(), store->db(),
                                                EncodeCheckpointMeta(Meta()))
                  .ok());
    }
  }
  CheckpointStoreOptions options;
  auto opened = CheckpointStore::Open(tmp.Sub("cp"), "job", 0, options);
  REQUIRE(opened.ok());
  auto& checkpoints = **opened;
  auto latest = checkpoints.Latest();
  REQUIRE(latest.ok());
  REQUIRE((*latest)->checkpoint_id == 2);  // its backup id
  store.reset();
  REQUIRE(checkpoints.Restore(2, backend->TaskDir("job-0"), nullptr).ok());
  store = OpenTask(*backend, "job-0", false);
  WriteBatch more;
  more.Put("new", "delta");
  REQUIRE(store->Write(more).ok());
  auto saved = checkpoints.SaveChanges(*store, more, Meta());
  REQUIRE(saved.ok());
  REQUIRE(saved->checkpoint_id == 3);
  REQUIRE(fs::exists(dir + "/changelog/3.delta"));
  store.reset();
  REQUIRE(checkpoints.Restore(3, backend->TaskDir("job-0"), nullptr).ok());
  store = OpenTask(*backend, "job-0", false);
  REQUIRE(ReadAll(*store) == Contents{{"new", "delta"}, {"old", "state"}});
}

TEST_CASE("delta checkpoints: full_every = 0 makes every checkpoint full") {
  CheckpointStoreOptions options;
  options.full_every = 0;
  Run run(options);
  for (int i = 0; i < 3; ++i) run.Checkpoint();
  REQUIRE(fs::is_empty(run.checkpoints->dir() + "/changelog"));
  REQUIRE(run.Restored(3) == run.at.at(3));
  REQUIRE(run.Restored(2) == run.at.at(2));
}

TEST_CASE("delta checkpoints: an older epoch is refused") {
  CheckpointStoreOptions options;
  Run run(options);
  WriteBatch batch = run.Interval(5);
  REQUIRE(run.store->Write(batch).ok());
  REQUIRE(run.checkpoints->SaveChanges(*run.store, batch, Meta(5), 0, true).ok());
  auto refused = run.checkpoints->SaveChanges(*run.store, batch, Meta(4), 0, true);
  REQUIRE(refused.status().code() == StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace sluice::worker
