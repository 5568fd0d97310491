#pragma once

// A small binary codec for engine state: varints, fixed 64-bit values, doubles
// and length-prefixed strings. Encoder appends to a string; Decoder reads a view
// and remembers the first failure, so callers check ok() once at the end.

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace sluice::engine {

class Encoder {
 public:
  explicit Encoder(std::string* out) : out_(out) {}

  void U64(uint64_t v) {
    while (v >= 0x80) {
      out_->push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_->push_back(static_cast<char>(v));
  }
  // Zig-zag, so small negative numbers stay short.
  void I64(int64_t v) { U64((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63)); }
  void Bool(bool v) { out_->push_back(v ? 1 : 0); }
  void Double(double v) {
    char buf[8];
    std::memcpy(buf, &v, 8);
    out_->append(buf, 8);
  }
  void Bytes(std::string_view s) {
    U64(s.size());
    out_->append(s);
  }

 private:
  std::string* out_;
};

class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}

  bool ok() const { return ok_; }
  bool done() const { return pos_ == in_.size(); }

  uint64_t U64() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= in_.size()) return Fail();
      auto b = static_cast<uint8_t>(in_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
    return Fail();
  }
  int64_t I64() {
    uint64_t z = U64();
    return static_cast<int64_t>((z >> 1) ^ (~(z & 1) + 1));
  }
  bool Bool() {
    if (pos_ >= in_.size()) return Fail() != 0;
    return in_[pos_++] != 0;
  }
  double Double() {
    if (in_.size() - pos_ < 8) {
      Fail();
      return 0;
    }
    double v;
    std::memcpy(&v, in_.data() + pos_, 8);
    pos_ += 8;
    return v;
  }
  std::string_view Bytes() {
    uint64_t n = U64();
    if (!ok_ || in_.size() - pos_ < n) {
      Fail();
      return {};
    }
    std::string_view s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }

 private:
  uint64_t Fail() {
    ok_ = false;
    pos_ = in_.size();
    return 0;
  }

  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace sluice::engine
