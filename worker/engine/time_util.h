#pragma once

// Event-time helpers: RFC 3339 parsing and formatting, and the short human
// durations used in dead-letter reasons ("4y", "3d", "250ms").

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::engine {

inline constexpr int64_t kMinTime = std::numeric_limits<int64_t>::min();
inline constexpr int64_t kMaxTime = std::numeric_limits<int64_t>::max();

// a + b, clamped to [kMinTime, kMaxTime].
inline int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? kMaxTime : kMinTime;
  return r;
}

// Parses "2024-03-01T12:00:00Z", "2024-03-01T12:00:00.250+01:00" (fraction of
// any length, truncated to milliseconds; 't'/'z' accepted; offset Z or ±HH:MM).
// Returns milliseconds since the Unix epoch, or nullopt if malformed.
std::optional<int64_t> ParseRfc3339Millis(std::string_view text);

// "2024-03-01T12:00:00Z", or "...:00.250Z" when there are milliseconds.
std::string FormatRfc3339Millis(int64_t millis);

// The largest whole unit of a non-negative span: "4y", "3d", "2h", "5m", "12s",
// "250ms". Years are 365 days.
std::string FormatApproxDuration(int64_t millis);

}  // namespace sluice::engine
