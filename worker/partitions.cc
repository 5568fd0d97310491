#include "worker/partitions.h"

#include <algorithm>
#include <stdexcept>

namespace sluice::worker {

Result<std::vector<int32_t>> ParsePartitions(const std::string& text) {
  std::vector<int32_t> out;
  if (text == "all" || text.empty()) return out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string part =
        text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t dash = part.find('-');
    try {
      size_t used = 0;
      if (dash == std::string::npos) {
        int v = std::stoi(part, &used);
        if (used != part.size() || v < 0) throw std::invalid_argument(part);
        out.push_back(v);
      } else {
        int a = std::stoi(part.substr(0, dash), &used);
        if (used != dash) throw std::invalid_argument(part);
        std::string rest = part.substr(dash + 1);
        int b = std::stoi(rest, &used);
        if (used != rest.size() || a < 0 || b < a) throw std::invalid_argument(part);
        for (int v = a; v <= b; ++v) out.push_back(v);
      }
    } catch (const std::exception&) {
      return Status::InvalidArgument("--partitions: expected a list like 0-3,5,7 or 'all', got '" +
                                     text + "'");
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace sluice::worker
