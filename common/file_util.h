#pragma once

// Reading a whole (small) file: job files, token files, TLS files,
// checkpoint deltas.

#include <cstddef>
#include <limits>
#include <string>

#include "common/status.h"

namespace sluice {

// Reads the file at `path`, at most `limit` bytes: a longer file is cut
// there, so a caller that refuses large files asks for one byte more than it
// takes (and /dev/zero ends too). On failure the status is NotFound (no such
// file) or IoError, and its message is the reason alone ("No such file or
// directory", "it is a directory"), for the caller to say what it was
// reading.
Result<std::string> ReadFileUpTo(const std::string& path,
                                 size_t limit = std::numeric_limits<size_t>::max());

}  // namespace sluice
