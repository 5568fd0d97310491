#include "common/file_util.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

namespace sluice {

Result<std::string> ReadFileUpTo(const std::string& path, size_t limit) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return Status::IoError("it is a directory");
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  errno = 0;
  std::unique_ptr<std::FILE, Closer> file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) {
    const int err = errno;
    if (err == ENOENT) return Status::NotFound(std::strerror(err));
    return Status::IoError(std::strerror(err));
  }
  std::string out;
  std::array<char, 64 * 1024> buf;
  while (out.size() < limit) {
    const size_t n =
        std::fread(buf.data(), 1, std::min(buf.size(), limit - out.size()), file.get());
    if (n == 0) break;
    out.append(buf.data(), n);
  }
  if (std::ferror(file.get()) != 0) return Status::IoError(std::strerror(errno));
  return out;
}

}  // namespace sluice
