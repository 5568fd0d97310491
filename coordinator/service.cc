#include "coordinator/service.h"

#include <grpc/grpc_security_constants.h>
#include <spdlog/spdlog.h>

#include "common/grpc_security.h"

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

std::string AuthorizationHeader(const grpc::ServerContext* ctx) {
  const auto& metadata = ctx->client_metadata();
  auto it = metadata.find(kAuthorizationHeader);
  if (it == metadata.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

// The client certificate's subject under mutual TLS, else empty.
std::string CertSubject(const grpc::ServerContext* ctx) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx->auth_context();
  if (!auth) return "";
  for (const char* property : {GRPC_X509_SUBJECT_PROPERTY_NAME, GRPC_X509_CN_PROPERTY_NAME}) {
    std::vector<grpc::string_ref> values = auth->FindPropertyValues(property);
    if (!values.empty()) return std::string(values[0].data(), values[0].size());
  }
  return "";
}

grpc::Status Refusal(const AuthDecision& d) {
  return grpc::Status(d.outcome == AuthDecision::Outcome::kPermissionDenied
                          ? grpc::StatusCode::PERMISSION_DENIED
                          : grpc::StatusCode::UNAUTHENTICATED,
                      d.message);
}

// Authorizes a call that changes nothing: a refusal is logged, not audited.
grpc::Status Check(const CallGuard& guard, const grpc::ServerContext* ctx, Role need,
                   const char* method) {
  const AuthDecision d = Authorize(guard.tokens, AuthorizationHeader(ctx), need, method);
  if (d.outcome == AuthDecision::Outcome::kOk) return grpc::Status::OK;
  spdlog::warn("refused {} from {}: {}", method, ctx->peer(), d.message);
  return Refusal(d);
}

// What a mutating call changed, from the job before (if it existed) and after.
std::string Change(const Result<proto::JobStatus>& before, const proto::JobInfo& after) {
  const std::string state_after = proto::JobState_Name(after.state());
  if (!before.ok()) {
    return "new job, version " + std::to_string(after.version()) + ", " + state_after;
  }
  const proto::JobInfo& b = before->job();
  std::string change;
  if (b.version() != after.version()) {
    change = "version " + std::to_string(b.version()) + " -> " + std::to_string(after.version());
  }
  if (b.state() != after.state()) {
    if (!change.empty()) change += ", ";
    change += proto::JobState_Name(b.state()) + " -> " + state_after;
  }
  return change.empty()
             ? "no change (version " + std::to_string(after.version()) + ", " + state_after + ")"
             : change;
}
}  // namespace

template <typename Fn>
grpc::Status JobServiceImpl::Mutate(grpc::ServerContext* ctx, const char* method,
                                    const std::string& job, const std::string& file,
                                    proto::JobInfo* resp, Fn run) {
  const AuthDecision d = Authorize(guard_.tokens, AuthorizationHeader(ctx), Role::kOperate, method);
  AuditEntry entry;
  entry.time_ms = guard_.clock != nullptr ? guard_.clock->NowMillis() : 0;
  entry.caller = d.caller;
  entry.peer = ctx->peer();
  entry.cert_subject = CertSubject(ctx);
  entry.method = method;
  entry.job = job;
  entry.file = file;
  grpc::Status status;
  if (d.outcome != AuthDecision::Outcome::kOk) {
    spdlog::warn("refused {} of job '{}' from {}: {}", method, job, entry.peer, d.message);
    entry.result = "refused: " + d.message;
    status = Refusal(d);
  } else {
    Result<proto::JobStatus> before =
        job.empty() ? Result<proto::JobStatus>(Status::NotFound("")) : c_.GetJob(job);
    Result<proto::JobInfo> after = run();
    if (after.ok()) {
      if (entry.job.empty()) entry.job = after->name();
      entry.change = Change(before, *after);
      entry.result = "ok";
    } else {
      entry.result = "error: " + after.status().message();
    }
    status = Reply(std::move(after), resp);
  }
  if (guard_.audit != nullptr) guard_.audit->Write(entry);
  return status;
}

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext* ctx, const proto::SubmitJobRequest* req,
                                       proto::JobInfo* resp) {
  // The job's name is in the spec, or in YAML only the coordinator parses:
  // the audit line names it from the answer.
  const std::string job = req->has_spec() ? req->spec().name() : "";
  return Mutate(ctx, "SubmitJob", job, req->filename(), resp, [&] { return c_.SubmitJob(*req); });
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext* ctx, const proto::ListJobsRequest*,
                                      proto::ListJobsResponse* resp) {
  if (grpc::Status st = Check(guard_, ctx, Role::kRead, "ListJobs"); !st.ok()) return st;
  for (proto::JobInfo& j : c_.ListJobs()) *resp->add_jobs() = std::move(j);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext* ctx, const proto::JobRef* req,
                                    proto::JobStatus* resp) {
  if (grpc::Status st = Check(guard_, ctx, Role::kRead, "GetJob"); !st.ok()) return st;
  return Reply(c_.GetJob(req->name()), resp);
}

grpc::Status JobServiceImpl::UpdateJob(grpc::ServerContext* ctx, const proto::UpdateJobRequest* req,
                                       proto::JobInfo* resp) {
  return Mutate(ctx, "UpdateJob", req->name(), req->filename(), resp,
                [&] { return c_.UpdateJob(*req); });
}

grpc::Status JobServiceImpl::StopJob(grpc::ServerContext* ctx, const proto::StopJobRequest* req,
                                     proto::JobInfo* resp) {
  return Mutate(ctx, req->drain() ? "StopJob(drain)" : "StopJob", req->name(), "", resp,
                [&] { return c_.StopJob(req->name(), req->drain()); });
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* ctx, const proto::JobRef* req,
                                       proto::JobInfo* resp) {
  return Mutate(ctx, "CancelJob", req->name(), "", resp, [&] { return c_.CancelJob(req->name()); });
}

grpc::Status JobServiceImpl::ListWorkers(grpc::ServerContext* ctx, const proto::ListWorkersRequest*,
                                         proto::ListWorkersResponse* resp) {
  if (grpc::Status st = Check(guard_, ctx, Role::kRead, "ListWorkers"); !st.ok()) return st;
  for (proto::WorkerInfo& w : c_.ListWorkers()) *resp->add_workers() = std::move(w);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Register(grpc::ServerContext* ctx,
                                         const proto::RegisterRequest* req,
                                         proto::RegisterResponse* resp) {
  if (grpc::Status st = Check(guard_, ctx, Role::kWorker, "Register"); !st.ok()) return st;
  if (req->worker_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "a worker needs an id");
  }
  return Reply(c_.Register(*req), resp);
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext* ctx,
                                          const proto::HeartbeatRequest* req,
                                          proto::HeartbeatResponse* resp) {
  if (grpc::Status st = Check(guard_, ctx, Role::kWorker, "Heartbeat"); !st.ok()) return st;
  return Reply(c_.Heartbeat(*req), resp);
}

}  // namespace sluice::coordinator
