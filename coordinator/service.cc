#include "coordinator/service.h"

namespace sluice::coordinator {

grpc::Status ToGrpc(const Status& s) {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  switch (s.code()) {
    case StatusCode::kOk:
      return grpc::Status::OK;
    case StatusCode::kInvalidArgument:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case StatusCode::kNotFound:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case StatusCode::kAlreadyExists:
      code = grpc::StatusCode::ALREADY_EXISTS;
      break;
    case StatusCode::kFailedPrecondition:
      code = grpc::StatusCode::FAILED_PRECONDITION;
      break;
    case StatusCode::kUnavailable:
      code = grpc::StatusCode::UNAVAILABLE;
      break;
    case StatusCode::kIoError:
    case StatusCode::kCorruption:
    case StatusCode::kInternal:
      code = grpc::StatusCode::INTERNAL;
      break;
  }
  return grpc::Status(code, s.message());
}

namespace {
template <typename T>
grpc::Status Reply(Result<T> result, T* out) {
  if (!result.ok()) return ToGrpc(result.status());
  *out = std::move(result).value();
  return grpc::Status::OK;
}
}  // namespace

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext*, const proto::SubmitJobRequest* req,
                                       proto::JobInfo* resp) {
  return Reply(c_.SubmitJob(*req), resp);
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext*, const proto::ListJobsRequest*,
                                      proto::ListJobsResponse* resp) {
  for (proto::JobInfo& j : c_.ListJobs()) *resp->add_jobs() = std::move(j);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext*, const proto::JobRef* req,
                                    proto::JobStatus* resp) {
  return Reply(c_.GetJob(req->name()), resp);
}

grpc::Status JobServiceImpl::UpdateJob(grpc::ServerContext*, const proto::UpdateJobRequest* req,
                                       proto::JobInfo* resp) {
  return Reply(c_.UpdateJob(*req), resp);
}

grpc::Status JobServiceImpl::StopJob(grpc::ServerContext*, const proto::StopJobRequest* req,
                                     proto::JobInfo* resp) {
  return Reply(c_.StopJob(req->name(), req->drain()), resp);
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext*, const proto::JobRef* req,
                                       proto::JobInfo* resp) {
  return Reply(c_.CancelJob(req->name()), resp);
}

grpc::Status JobServiceImpl::ListWorkers(grpc::ServerContext*, const proto::ListWorkersRequest*,
                                         proto::ListWorkersResponse* resp) {
  for (proto::WorkerInfo& w : c_.ListWorkers()) *resp->add_workers() = std::move(w);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Register(grpc::ServerContext*, const proto::RegisterRequest* req,
                                         proto::RegisterResponse* resp) {
  if (req->worker_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "a worker needs an id");
  }
  return Reply(c_.Register(*req), resp);
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext*, const proto::HeartbeatRequest* req,
                                          proto::HeartbeatResponse* resp) {
  return Reply(c_.Heartbeat(*req), resp);
}

}  // namespace sluice::coordinator
