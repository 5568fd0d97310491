#pragma once

// gRPC credentials from the security flags (common/security_flags.h): the
// one place where the coordinator, the workers and sluicectl build their TLS
// credentials and attach their bearer token.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "common/security_flags.h"
#include "common/status.h"

namespace sluice {

// The request header that carries "Bearer TOKEN".
inline constexpr const char* kAuthorizationHeader = "authorization";

// Server credentials: TLS with the certificate and key (and, with --tls-ca,
// client certificates required and verified), or plaintext when --insecure.
// Checks the flags against `listen` and reads the files; an error names the
// flag or the file.
Result<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerSecurityFlags& flags, const std::string& listen);

// A client's channel settings: credentials, the channel arguments (TLS
// server name) and the bearer token to send (empty: none).
struct ClientSecurity {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  grpc::ChannelArguments args;
  std::string token;

  // Adds the token, if any, to a call.
  void Apply(grpc::ClientContext* context) const;
};

// Checks the flags, reads the files and the token (the token file, else
// `flags.token`); an error names the flag or the file.
Result<ClientSecurity> MakeClientSecurity(const ClientSecurityFlags& flags);

}  // namespace sluice
