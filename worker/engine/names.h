#pragma once

// The names of a job, defined once for the job loader, the plan and the
// expression language: what an identifier is, the words of the expression
// language, and the fields every output record has (which an aggregate or a
// select may not take, so an output record never has a field twice).

#include <algorithm>
#include <array>
#include <string_view>

namespace sluice::engine {

inline constexpr bool IsIdentifierStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
inline constexpr bool IsIdentifierChar(char c) {
  return IsIdentifierStart(c) || (c >= '0' && c <= '9');
}

// [A-Za-z_][A-Za-z0-9_]*: output field names are identifiers, so records never
// need them escaped.
inline constexpr bool IsIdentifier(std::string_view s) {
  if (s.empty() || !IsIdentifierStart(s[0])) return false;
  return std::all_of(s.begin(), s.end(), IsIdentifierChar);
}

// Identifiers joined by '.': how a job names an event field.
inline constexpr bool IsIdentifierPath(std::string_view s) {
  size_t start = 0;
  while (true) {
    const size_t dot = s.find('.', start);
    if (!IsIdentifier(s.substr(start, dot - start))) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// The words of the expression language (expr.h).
inline constexpr std::array<std::string_view, 4> kKeywords = {"true", "false", "null", "in"};

// The fields of every output record (JOBS.md, "Output records").
inline constexpr std::array<std::string_view, 10> kOutputFields = {
    "id",   "job",        "key",   "kind",       "window_start",
    "rule", "window_end", "event", "event_time", "source"};

inline constexpr bool IsKeyword(std::string_view s) {
  return std::find(kKeywords.begin(), kKeywords.end(), s) != kKeywords.end();
}
inline constexpr bool IsOutputField(std::string_view s) {
  return std::find(kOutputFields.begin(), kOutputFields.end(), s) != kOutputFields.end();
}

}  // namespace sluice::engine
