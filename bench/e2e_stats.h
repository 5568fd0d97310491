#pragma once

// Small helpers of sluice-e2e-bench: percentiles over recorded samples (all
// samples are kept and sorted; no averaging, no bucketing error), and the
// devbroker's line-based control port.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace sluice::bench {

// Exact percentiles of a sample set (nearest-rank on the sorted samples).
class Samples {
 public:
  void Add(double v) { values_.push_back(v); }
  size_t size() const { return values_.size(); }
  bool empty() const { return values_.empty(); }
  // q in [0, 1]; nearest rank: the smallest value with at least q of the
  // samples at or below it.
  double Quantile(double q) {
    if (values_.empty()) return 0;
    Sort();
    size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values_.size())));
    if (rank == 0) rank = 1;
    return values_[std::min(rank, values_.size()) - 1];
  }
  double Max() {
    Sort();
    return values_.empty() ? 0 : values_.back();
  }
  double Min() {
    Sort();
    return values_.empty() ? 0 : values_.front();
  }
  void Merge(const Samples& other) {
    values_.insert(values_.end(), other.values_.begin(), other.values_.end());
    sorted_ = false;
  }

 private:
  void Sort() {
    if (!sorted_) std::sort(values_.begin(), values_.end());
    sorted_ = true;
  }
  std::vector<double> values_;
  bool sorted_ = false;
};

// Sends one command line to the devbroker's control port ("127.0.0.1:PORT")
// and returns its reply line ("ok" or "error ...").
inline std::string DevbrokerControl(const std::string& addr, const std::string& command) {
  const size_t colon = addr.rfind(':');
  if (colon == std::string::npos) return "error bad control address";
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(addr.substr(colon + 1))));
  if (inet_pton(AF_INET, addr.substr(0, colon).c_str(), &sa.sin_addr) != 1) {
    return "error bad control host";
  }
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "error socket";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    ::close(fd);
    return "error connect";
  }
  std::string line = command + "\n";
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::write(fd, line.data() + off, line.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  std::string reply;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') reply.push_back(c);
  ::close(fd);
  return reply;
}

}  // namespace sluice::bench
