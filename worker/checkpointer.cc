#include "worker/checkpointer.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>

#include "common/fault_point.h"
#include "worker/engine/task_processor.h"
#include "worker/task_sink.h"

namespace sluice::worker {

void LowerThreadPriority() {
  // On Linux, PRIO_PROCESS with a thread id sets that thread's nice value.
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10) != 0) {
    spdlog::debug("could not lower the priority of the checkpoint thread");
  }
}

Checkpointer::Checkpointer(Parts parts) : parts_(std::move(parts)) {}

Checkpointer::~Checkpointer() {
  // The commit in flight uses the task's target and transaction: stop it at
  // its next wait and let it finish.
  Cancel();
  if (in_flight_) {
    std::unique_lock<std::mutex> lock(in_flight_->mu);
    in_flight_->cv.wait(lock, [&] { return in_flight_->done; });
  }
}

// ---- 1. The barrier ---------------------------------------------------------

Status Checkpointer::Begin(engine::TaskProcessor& processor, Barrier barrier) {
  if (in_flight_) return Status::FailedPrecondition("a checkpoint is in flight");
  if (!parts_.sink->error().ok()) return parts_.sink->error();
  if (parts_.txn != nullptr && !parts_.txn->error().ok()) return parts_.txn->error().status;
  auto f = std::make_shared<InFlight>();
  SLUICE_RETURN_IF_ERROR(processor.BeginSnapshot(*parts_.state));
  f->barrier = std::move(barrier);
  f->barrier.meta.next_offset = processor.next_offset();
  f->barrier.meta.watermark = processor.watermark();
  f->barrier.meta.transactional = parts_.txn != nullptr;
  if (parts_.txn != nullptr) parts_.txn->Seal();
  // Seal the records produced so far. The other generation is empty: the
  // checkpoint that sealed it has finished, and had it failed, the task
  // would have been restarted with new generations.
  f->sealed = &(*parts_.deliveries)[generation_];
  generation_ ^= 1;
  parts_.sink->set_generation(&(*parts_.deliveries)[generation_]);
  in_flight_ = std::move(f);
  FaultPoint("after_barrier");
  return Status::Ok();
}

// ---- 2. Encoding steps ------------------------------------------------------

void Checkpointer::Encode(engine::TaskProcessor& processor, int64_t budget_us) {
  if (!encoding()) return;
  constexpr size_t kKeysPerStep = 64;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(budget_us);
  while (!processor.SnapshotStep(kKeysPerStep)) {
    if (std::chrono::steady_clock::now() >= deadline) return;
  }
  Post(processor, /*inline_commit=*/!parts_.background);
}

void Checkpointer::Post(engine::TaskProcessor& processor, bool inline_commit) {
  std::shared_ptr<InFlight> f = in_flight_;
  processor.SnapshotStep(SIZE_MAX);
  processor.TakeSnapshot(&f->batch);
  f->posted = true;
  auto run = [this, f] {
    CheckpointOutcome outcome = Commit(*f);
    if (parts_.txn != nullptr && !outcome.status.ok()) {
      outcome.refused_records = parts_.txn->TakeRefused();
    }
    std::lock_guard<std::mutex> lock(f->mu);
    f->outcome = std::move(outcome);
    f->done = true;
    f->cv.notify_all();
  };
  if (inline_commit) {
    run();
  } else {
    parts_.background(std::move(run));
  }
}

// ---- 3. The commit (background) ---------------------------------------------

CheckpointOutcome Checkpointer::Commit(InFlight& f) {
  CheckpointOutcome out;
  Transaction* txn = parts_.txn;
  const Barrier& b = f.barrier;
  out.aborted = txn != nullptr;  // until the transaction commits
  auto deadline = [&] {
    return std::chrono::steady_clock::now() + std::chrono::milliseconds(b.flush_timeout_ms);
  };
  if (txn == nullptr) {
    // The sealed generation acknowledged; refused records dead-lettered.
    if (!f.sealed->WaitDrained(deadline(), f.cancelled)) {
      out.status = Status::Unavailable(
          f.cancelled.load() ? std::string("the task stopped")
                             : "sink did not acknowledge " +
                                   std::to_string(f.sealed->in_flight.load()) + " records in time");
      return out;
    }
    if (f.sealed->failed.load() > 0) {
      out.status = Status::Unavailable(f.sealed->last_error);
      return out;
    }
    out.status = parts_.sink->DeadLetterRefused(f.sealed, b.from_offset, b.meta.next_offset,
                                                deadline(), f.cancelled, &out.refused);
    if (!out.status.ok()) return out;
  }
  if (f.cancelled.load()) {
    out.status = Status::Unavailable("the task stopped");
    return out;
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (txn != nullptr) {
    // The sealed transaction's records acknowledged (a fenced owner learns it here).
    kafka::TxnStatus flushed = txn->Flush(parts_.transaction_timeout_ms);
    if (!flushed.ok()) {
      out.status = flushed.status;
      out.fenced = flushed.failure == kafka::TxnFailure::kFenced;
      return out;
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  // The local state, then the fence, then the save.
  if (out.status = parts_.state->WriteInPieces(f.batch); !out.status.ok()) return out;
  if (b.may_commit && !b.may_commit()) {
    out.status = Status::FailedPrecondition("the assignment is no longer confirmed");
    return out;
  }
  Result<CheckpointMeta> saved =
      parts_.target->Save(f.batch, b.meta, b.protect_id, b.started_empty);
  if (!saved.ok()) {
    out.status = saved.status();
    return out;
  }
  FaultPoint("after_checkpoint");
  spdlog::debug(
      "task {}: commit: flush {} ms, write and save {} ms", parts_.task_name,
      std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count(),
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t1)
          .count());
  if (txn != nullptr) {
    // The marker naming the checkpoint, and the transaction's commit.
    const auto start = std::chrono::steady_clock::now();
    kafka::TxnStatus committed = txn->Commit(*saved, parts_.transaction_timeout_ms);
    out.commit_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    if (!committed.ok()) {
      out.status = committed.status;
      out.fenced = committed.failure == kafka::TxnFailure::kFenced;
      out.aborted = committed.failure == kafka::TxnFailure::kAbort;
      return out;
    }
    out.aborted = false;
    FaultPoint("after_commit");
  }
  out.meta = *saved;
  return out;
}

// ---- 4. Done or failed; cancelled -------------------------------------------

std::optional<CheckpointOutcome> Checkpointer::Poll() {
  if (!in_flight_ || !in_flight_->posted) return std::nullopt;
  {
    std::lock_guard<std::mutex> lock(in_flight_->mu);
    if (!in_flight_->done) return std::nullopt;
  }
  return Take();
}

std::optional<CheckpointOutcome> Checkpointer::Wait(engine::TaskProcessor& processor) {
  if (!in_flight_) return std::nullopt;
  if (!in_flight_->posted) Post(processor, /*inline_commit=*/true);
  {
    std::unique_lock<std::mutex> lock(in_flight_->mu);
    in_flight_->cv.wait(lock, [&] { return in_flight_->done; });
  }
  return Take();
}

std::optional<CheckpointOutcome> Checkpointer::Take() {
  std::shared_ptr<InFlight> f = std::move(in_flight_);
  std::lock_guard<std::mutex> lock(f->mu);
  return std::move(f->outcome);
}

void Checkpointer::Cancel() {
  if (!in_flight_) return;
  if (!in_flight_->posted) {
    in_flight_.reset();  // the snapshot is dropped
    return;
  }
  in_flight_->cancelled.store(true);
  in_flight_->sealed->Wake();
}

}  // namespace sluice::worker
