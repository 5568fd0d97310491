#include "worker/instance.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace sluice::worker {

namespace fs = std::filesystem;

namespace {

std::string RandomHex(int bytes) {
  std::random_device rd;
  std::string out;
  static const char kHex[] = "0123456789abcdef";
  for (int i = 0; i < bytes; ++i) {
    const unsigned v = rd() & 0xff;
    out += kHex[v >> 4];
    out += kHex[v & 0xf];
  }
  return out;
}

// FNV-1a, 64 bits: stable across builds and machines (std::hash is not).
uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

Result<DataDirClaim> DataDirClaim::Take(const std::string& data_dir) {
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  if (ec) return Status::IoError("data directory " + data_dir + ": " + ec.message());
  const std::string lock_path = (fs::path(data_dir) / "worker.lock").string();
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IoError(lock_path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return Status::FailedPrecondition("data directory " + data_dir +
                                        " is in use by another sluice-worker; give each worker "
                                        "its own --data-dir");
    }
    return Status::IoError(lock_path + ": " + std::strerror(err));
  }
  const fs::path instance_path = fs::path(data_dir) / "worker.instance";
  std::string instance;
  {
    std::ifstream in(instance_path);
    std::getline(in, instance);
  }
  if (instance.size() != 32 ||
      instance.find_first_not_of("0123456789abcdef") != std::string::npos) {
    instance = RandomHex(16);
    const fs::path tmp = instance_path.string() + ".tmp";
    std::ofstream out(tmp, std::ios::trunc);
    out << instance << "\n";
    out.close();
    fs::rename(tmp, instance_path, ec);
    if (!out || ec) {
      ::close(fd);
      return Status::IoError("cannot write " + instance_path.string());
    }
  }
  return DataDirClaim(fd, instance);
}

DataDirClaim::DataDirClaim(DataDirClaim&& other) noexcept
    : fd_(other.fd_), instance_(std::move(other.instance_)) {
  other.fd_ = -1;
}

DataDirClaim::~DataDirClaim() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

std::string DefaultWorkerId(const std::string& data_dir) {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::error_code ec;
  const std::string path = fs::absolute(data_dir, ec).lexically_normal().string();
  std::ostringstream suffix;
  suffix << std::hex << (Fnv1a(path) & 0xffffff);
  return std::string(host) + "-" + suffix.str();
}

}  // namespace sluice::worker
