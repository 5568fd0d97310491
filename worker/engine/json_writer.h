#pragma once

// JsonWriter: appends one JSON document to a caller-owned string. Used for the
// engine's output records, so the caller reuses one buffer for many records.
//
//   JsonWriter w(&buf);
//   w.BeginObject(); w.Key("n"); w.Int(4); w.EndObject();

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::engine {

// Writers into a buffer the caller has made large enough; each returns the end
// of what it wrote. JsonWriter formats numbers with them, so both write the
// same bytes.
namespace json {
// The most a WriteInt or WriteDouble writes.
inline constexpr size_t kMaxNumberChars = 32;
char* WriteInt(char* p, int64_t v);
// Integral values as integers, others in the shortest exact form, and null
// when not finite.
char* WriteDouble(char* p, double v);
// `s` JSON-escaped, without quotes: at most 6 * s.size() bytes.
char* WriteEscaped(char* p, std::string_view s);
}  // namespace json

class JsonWriter {
 public:
  explicit JsonWriter(std::string* out) : out_(out) {}

  void BeginObject();
  void EndObject();
  void BeginArray();
  void EndArray();
  void Key(std::string_view key);
  // Key and String for text known to need no escaping (identifiers, hex,
  // constants): appended as they are.
  void SafeKey(std::string_view key);
  void SafeString(std::string_view s);
  void String(std::string_view s);
  void Int(int64_t v);
  // Integral values print as integers; others with the shortest exact form.
  void Double(double v);
  void Bool(bool v);
  void Null();
  // Appends already-valid JSON as one value.
  void Raw(std::string_view json);

  // Appends `s` JSON-escaped, without quotes.
  static void AppendEscaped(std::string* out, std::string_view s);

 private:
  void BeforeValue();

  std::string* out_;
  bool need_comma_ = false;
  bool after_key_ = false;
};

}  // namespace sluice::engine
