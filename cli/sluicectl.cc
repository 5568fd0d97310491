// sluicectl: the command-line client of the Sluice coordinator. This file is
// the wiring: a JobClient over gRPC, the system clock and the process's
// streams, handed to cli::Run (commands.h), which does the rest.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "common/clock.h"
#include "common/grpc_security.h"
#include "common/status.h"
#include "proto/sluice.grpc.pb.h"

namespace {

using sluice::Status;
using sluice::StatusCode;
namespace proto = sluice::proto;

// JobClient over a gRPC channel: each call has its own deadline. Translates
// grpc::Status into Status per the JobClient contract: kUnavailable only when
// the coordinator was not reached (the channel is not connected, or no answer
// came before the deadline); an answer from the coordinator keeps its message.
// What to say for an error the coordinator sent without a message.
std::string EmptyMessage(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNIMPLEMENTED:
      return "the server does not implement this call (is it a Sluice coordinator of the same "
             "version?)";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "the coordinator refused the request (permission denied: the token's role does "
             "not allow it)";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "the coordinator refused the request (not authenticated: give --token-file or "
             "$SLUICE_TOKEN)";
    default:
      return "the coordinator failed with gRPC status code " +
             std::to_string(static_cast<int>(code));
  }
}

class GrpcJobClient final : public sluice::cli::JobClient {
 public:
  GrpcJobClient(std::shared_ptr<grpc::Channel> channel, std::chrono::milliseconds timeout,
                sluice::ClientSecurity security)
      : channel_(std::move(channel)),
        stub_(proto::JobService::NewStub(channel_)),
        timeout_(timeout),
        security_(std::move(security)) {}

  Status SubmitJob(const proto::SubmitJobRequest& request, proto::JobInfo* response) override {
    return Call(&proto::JobService::Stub::SubmitJob, request, response);
  }
  Status ListJobs(const proto::ListJobsRequest& request,
                  proto::ListJobsResponse* response) override {
    return Call(&proto::JobService::Stub::ListJobs, request, response);
  }
  Status GetJob(const proto::JobRef& request, proto::JobStatus* response) override {
    return Call(&proto::JobService::Stub::GetJob, request, response);
  }
  Status UpdateJob(const proto::UpdateJobRequest& request, proto::JobInfo* response) override {
    return Call(&proto::JobService::Stub::UpdateJob, request, response);
  }
  Status StopJob(const proto::StopJobRequest& request, proto::JobInfo* response) override {
    return Call(&proto::JobService::Stub::StopJob, request, response);
  }
  Status CancelJob(const proto::JobRef& request, proto::JobInfo* response) override {
    return Call(&proto::JobService::Stub::CancelJob, request, response);
  }
  Status ListWorkers(const proto::ListWorkersRequest& request,
                     proto::ListWorkersResponse* response) override {
    return Call(&proto::JobService::Stub::ListWorkers, request, response);
  }

 private:
  template <typename Request, typename Response>
  using Method = grpc::Status (proto::JobService::Stub::*)(grpc::ClientContext*, const Request&,
                                                           Response*);

  template <typename Request, typename Response>
  Status Call(Method<Request, Response> method, const Request& request, Response* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout_);
    security_.Apply(&context);
    const grpc::Status st = ((*stub_).*method)(&context, request, response);
    return Translate(st);
  }

  Status Translate(const grpc::Status& st) const {
    if (st.ok()) return Status::Ok();
    std::string message = st.error_message();
    if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      const int64_t ms = timeout_.count();
      return Status::Unavailable("no answer within " + (ms % 1000 == 0
                                                            ? std::to_string(ms / 1000) + "s"
                                                            : std::to_string(ms) + "ms"));
    }
    if (st.error_code() == grpc::StatusCode::UNAVAILABLE &&
        channel_->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_READY) {
      return Status::Unavailable(message.empty() ? "unavailable" : message);
    }
    if (message.empty()) message = EmptyMessage(st.error_code());
    switch (st.error_code()) {
      case grpc::StatusCode::INVALID_ARGUMENT:
      case grpc::StatusCode::OUT_OF_RANGE:
        return Status::InvalidArgument(message);
      case grpc::StatusCode::NOT_FOUND:
        return Status::NotFound(message);
      case grpc::StatusCode::ALREADY_EXISTS:
        return Status::AlreadyExists(message);
      case grpc::StatusCode::FAILED_PRECONDITION:
      // The coordinator's own UNAVAILABLE (say, Kafka cannot be reached): it
      // was reached, so this is its answer, not kUnavailable.
      case grpc::StatusCode::UNAVAILABLE:
        return Status::FailedPrecondition(message);
      default:
        return Status::Internal(message);
    }
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<proto::JobService::Stub> stub_;
  std::chrono::milliseconds timeout_;
  sluice::ClientSecurity security_;
};

}  // namespace

int main(int argc, char** argv) {
  sluice::cli::Environment env;
  if (const char* addr = std::getenv("SLUICE_COORDINATOR"); addr != nullptr && *addr != '\0') {
    env.default_coordinator = addr;
  }
  if (const char* token = std::getenv("SLUICE_TOKEN"); token != nullptr) {
    env.default_token = token;
  }
  env.connect = [](const sluice::cli::ConnectOptions& options)
      -> sluice::Result<std::unique_ptr<sluice::cli::JobClient>> {
    sluice::Result<sluice::ClientSecurity> security = sluice::MakeClientSecurity(options.security);
    if (!security.ok()) return security.status();
    auto channel =
        grpc::CreateCustomChannel(options.address, security->credentials, security->args);
    return std::unique_ptr<sluice::cli::JobClient>(std::make_unique<GrpcJobClient>(
        std::move(channel), options.timeout, std::move(security).value()));
  };
  sluice::SystemClock clock;
  env.clock = &clock;
  env.out = &std::cout;
  env.err = &std::cerr;
  return sluice::cli::Run(argc, argv, env);
}
