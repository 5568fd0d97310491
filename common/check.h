#pragma once

// SLUICE_CHECK(cond) << "message": aborts with the message when an invariant is
// broken. For programming errors only; bad input is a Status, never a CHECK.

#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace sluice::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* cond) {
    stream_ << file << ":" << line << ": CHECK failed: " << cond << " ";
  }
  [[noreturn]] ~CheckFailure() {
    std::fprintf(stderr, "%s\n", stream_.str().c_str());
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace sluice::internal

#define SLUICE_CHECK(cond)             \
  if (__builtin_expect(!!(cond), 1)) { \
  } else                               \
    ::sluice::internal::CheckFailure(__FILE__, __LINE__, #cond).stream()
