#pragma once

// The coordinator's gRPC services: thin adapters from JobService and
// WorkerService to Coordinator, translating Status into grpc::Status.
// Every call is first authorized (coordinator/auth.h) from its bearer token;
// every mutating call, allowed or refused, is written to the audit log.

#include <memory>

#include "common/clock.h"
#include "coordinator/auth.h"
#include "coordinator/coordinator.h"
#include "proto/sluice.grpc.pb.h"

namespace sluice::coordinator {

grpc::Status ToGrpc(const Status& s);

// What both services check calls against. Both pointers may be null: no
// token table = authentication off; no audit log = nothing recorded.
// Outlives the services; shared by the gRPC threads.
struct CallGuard {
  const TokenTable* tokens = nullptr;
  AuditLog* audit = nullptr;
  const Clock* clock = nullptr;
};

class JobServiceImpl final : public proto::JobService::Service {
 public:
  JobServiceImpl(Coordinator& c, CallGuard guard) : c_(c), guard_(guard) {}
  grpc::Status SubmitJob(grpc::ServerContext*, const proto::SubmitJobRequest* req,
                         proto::JobInfo* resp) override;
  grpc::Status ListJobs(grpc::ServerContext*, const proto::ListJobsRequest* req,
                        proto::ListJobsResponse* resp) override;
  grpc::Status GetJob(grpc::ServerContext*, const proto::JobRef* req,
                      proto::JobStatus* resp) override;
  grpc::Status UpdateJob(grpc::ServerContext*, const proto::UpdateJobRequest* req,
                         proto::JobInfo* resp) override;
  grpc::Status StopJob(grpc::ServerContext*, const proto::StopJobRequest* req,
                       proto::JobInfo* resp) override;
  grpc::Status CancelJob(grpc::ServerContext*, const proto::JobRef* req,
                         proto::JobInfo* resp) override;
  grpc::Status ListWorkers(grpc::ServerContext*, const proto::ListWorkersRequest* req,
                           proto::ListWorkersResponse* resp) override;

 private:
  // Runs a mutating call `run` on `job` (sent as `file`, if any) if the
  // caller holds operate, and audits it: `change` describes what it did from the job before (null
  // when there was none) and the answer.
  template <typename Fn>
  grpc::Status Mutate(grpc::ServerContext* ctx, const char* method, const std::string& job,
                      const std::string& file, proto::JobInfo* resp, Fn run);

  Coordinator& c_;
  CallGuard guard_;
};

class WorkerServiceImpl final : public proto::WorkerService::Service {
 public:
  WorkerServiceImpl(Coordinator& c, CallGuard guard) : c_(c), guard_(guard) {}
  grpc::Status Register(grpc::ServerContext*, const proto::RegisterRequest* req,
                        proto::RegisterResponse* resp) override;
  grpc::Status Heartbeat(grpc::ServerContext*, const proto::HeartbeatRequest* req,
                         proto::HeartbeatResponse* resp) override;

 private:
  Coordinator& c_;
  CallGuard guard_;
};

}  // namespace sluice::coordinator
