#include "common/grpc_security.h"

namespace sluice {

namespace {

// A PEM file's text, or an error naming the flag and the file.
Result<std::string> ReadPem(const std::string& path, const std::string& flag) {
  Result<std::string> text = ReadSmallFile(path, flag);
  if (!text.ok()) return text.status();
  if (text->find("-----BEGIN ") == std::string::npos) {
    return Status::InvalidArgument(flag + " " + path + " is not PEM (no -----BEGIN line)");
  }
  return text;
}

}  // namespace

Result<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerSecurityFlags& flags, const std::string& listen) {
  if (Status s = CheckServerSecurity(flags, listen); !s.ok()) return s;
  if (flags.insecure) return grpc::InsecureServerCredentials();
  Result<std::string> cert = ReadPem(flags.tls_cert, "--tls-cert");
  if (!cert.ok()) return cert.status();
  Result<std::string> key = ReadPem(flags.tls_key, "--tls-key");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!flags.tls_ca.empty()) {
    Result<std::string> ca = ReadPem(flags.tls_ca, "--tls-ca");
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = std::move(ca).value();
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  options.pem_key_cert_pairs.push_back({std::move(key).value(), std::move(cert).value()});
  return grpc::SslServerCredentials(options);
}

void ClientSecurity::Apply(grpc::ClientContext* context) const {
  if (!token.empty()) context->AddMetadata(kAuthorizationHeader, "Bearer " + token);
}

Result<ClientSecurity> MakeClientSecurity(const ClientSecurityFlags& flags) {
  if (Status s = CheckClientSecurity(flags); !s.ok()) return s;
  ClientSecurity out;
  if (!flags.token_file.empty()) {
    Result<std::string> token = ReadTokenFile(flags.token_file);
    if (!token.ok()) return token.status();
    out.token = std::move(token).value();
  } else {
    out.token = flags.token;
  }
  if (out.token.find_first_of(" \t\r\n") != std::string::npos) {
    return Status::InvalidArgument("the token is one word without spaces");
  }
  if (flags.insecure) {
    out.credentials = grpc::InsecureChannelCredentials();
    return out;
  }
  grpc::SslCredentialsOptions options;
  Result<std::string> ca = ReadPem(flags.tls_ca, "--tls-ca");
  if (!ca.ok()) return ca.status();
  options.pem_root_certs = std::move(ca).value();
  if (!flags.tls_cert.empty()) {
    Result<std::string> cert = ReadPem(flags.tls_cert, "--tls-cert");
    if (!cert.ok()) return cert.status();
    Result<std::string> key = ReadPem(flags.tls_key, "--tls-key");
    if (!key.ok()) return key.status();
    options.pem_cert_chain = std::move(cert).value();
    options.pem_private_key = std::move(key).value();
  }
  out.credentials = grpc::SslCredentials(options);
  if (!flags.tls_server_name.empty()) out.args.SetSslTargetNameOverride(flags.tls_server_name);
  return out;
}

}  // namespace sluice
