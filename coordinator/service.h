#pragma once

// The coordinator's gRPC services: thin adapters from JobService and
// WorkerService to Coordinator, translating Status into grpc::Status.

#include <memory>

#include "coordinator/coordinator.h"
#include "proto/sluice.grpc.pb.h"

namespace sluice::coordinator {

grpc::Status ToGrpc(const Status& s);

class JobServiceImpl final : public proto::JobService::Service {
 public:
  explicit JobServiceImpl(Coordinator& c) : c_(c) {}
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
  Coordinator& c_;
};

class WorkerServiceImpl final : public proto::WorkerService::Service {
 public:
  explicit WorkerServiceImpl(Coordinator& c) : c_(c) {}
  grpc::Status Register(grpc::ServerContext*, const proto::RegisterRequest* req,
                        proto::RegisterResponse* resp) override;
  grpc::Status Heartbeat(grpc::ServerContext*, const proto::HeartbeatRequest* req,
                         proto::HeartbeatResponse* resp) override;

 private:
  Coordinator& c_;
};

}  // namespace sluice::coordinator
