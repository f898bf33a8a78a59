// Binary encoding of protocol messages: little-endian fixed-width integers, LEB128 varints and
// length-prefixed strings. ByteReader never reads past its input: every read reports failure instead,
// and stays failed, so a decoder checks ok() once at the end. Any layer may use it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace chorus {

class ByteWriter {
 public:
  ByteWriter() = default;
  explicit ByteWriter(std::vector<uint8_t>& out) : out_(&out) {}

  void u8(uint8_t v) { buf().push_back(v); }
  void u16(uint16_t v);
  void u32(uint32_t v);
  void u64(uint64_t v);
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  void varint(uint64_t v);
  void str(std::string_view s);  // varint length, then bytes
  void raw(std::span<const uint8_t> bytes);

  std::vector<uint8_t>& bytes() { return buf(); }
  std::vector<uint8_t> take() { return std::move(buf()); }

 private:
  std::vector<uint8_t>& buf() { return out_ ? *out_ : own_; }
  std::vector<uint8_t> own_;
  std::vector<uint8_t>* out_ = nullptr;
};

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> in) : in_(in) {}

  uint8_t u8();
  uint16_t u16();
  uint32_t u32();
  uint64_t u64();
  int64_t i64() { return static_cast<int64_t>(u64()); }
  uint64_t varint();
  // A string of at most size_max bytes; longer fails the reader.
  std::string str(size_t size_max = 1u << 20);
  std::span<const uint8_t> raw(size_t n);

  bool ok() const { return ok_; }
  size_t remaining() const { return ok_ ? in_.size() - pos_ : 0; }
  // True when everything was read and nothing is left over.
  bool done() const { return ok_ && pos_ == in_.size(); }

 private:
  bool need(size_t n);
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// FNV-1a 64-bit over bytes: cheap, stable across platforms; for trace hashing, not for security.
uint64_t fnv1a64(std::span<const uint8_t> bytes, uint64_t h = 0xcbf29ce484222325ULL);
// Mixes a 64-bit value into a running hash (order-sensitive).
uint64_t hash_mix(uint64_t h, uint64_t v);

}  // namespace chorus
