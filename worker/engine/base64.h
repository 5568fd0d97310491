#pragma once

// Base64 (RFC 4648, the standard alphabet, padded with '='), for bytes that
// must travel inside JSON text: a dead letter whose record is not UTF-8
// carries it as "raw_base64" (side_output_writer.h).

#include <string>
#include <string_view>

namespace sluice::engine {

// Appends the Base64 encoding of `in` to *out: 4 characters per 3 bytes,
// rounded up.
void AppendBase64(std::string* out, std::string_view in);

}  // namespace sluice::engine
