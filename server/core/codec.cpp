#include "server/core/codec.h"

#include <cstring>

namespace chorus {

void ByteWriter::u16(uint16_t v) {
  auto& b = buf();
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}
void ByteWriter::u32(uint32_t v) {
  auto& b = buf();
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void ByteWriter::u64(uint64_t v) {
  auto& b = buf();
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void ByteWriter::varint(uint64_t v) {
  auto& b = buf();
  while (v >= 0x80) {
    b.push_back(static_cast<uint8_t>(v) | 0x80);
    v >>= 7;
  }
  b.push_back(static_cast<uint8_t>(v));
}
void ByteWriter::str(std::string_view s) {
  varint(s.size());
  auto& b = buf();
  b.insert(b.end(), s.begin(), s.end());
}
void ByteWriter::raw(std::span<const uint8_t> bytes) {
  auto& b = buf();
  b.insert(b.end(), bytes.begin(), bytes.end());
}

bool ByteReader::need(size_t n) {
  if (!ok_ || in_.size() - pos_ < n) {
    ok_ = false;
    return false;
  }
  return true;
}
uint8_t ByteReader::u8() { return need(1) ? in_[pos_++] : 0; }
uint16_t ByteReader::u16() {
  if (!need(2)) return 0;
  uint16_t v = static_cast<uint16_t>(in_[pos_] | (in_[pos_ + 1] << 8));
  pos_ += 2;
  return v;
}
uint32_t ByteReader::u32() {
  if (!need(4)) return 0;
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(in_[pos_ + i]) << (8 * i);
  pos_ += 4;
  return v;
}
uint64_t ByteReader::u64() {
  if (!need(8)) return 0;
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(in_[pos_ + i]) << (8 * i);
  pos_ += 8;
  return v;
}
uint64_t ByteReader::varint() {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (!need(1)) return 0;
    const uint8_t byte = in_[pos_++];
    v |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return v;
  }
  ok_ = false;  // more than 10 bytes: malformed
  return 0;
}
std::string ByteReader::str(size_t size_max) {
  const uint64_t n = varint();
  if (!ok_ || n > size_max || !need(n)) {
    ok_ = false;
    return {};
  }
  std::string s(reinterpret_cast<const char*>(in_.data() + pos_), n);
  pos_ += n;
  return s;
}
std::span<const uint8_t> ByteReader::raw(size_t n) {
  if (!need(n)) return {};
  auto s = in_.subspan(pos_, n);
  pos_ += n;
  return s;
}

uint64_t fnv1a64(std::span<const uint8_t> bytes, uint64_t h) {
  for (uint8_t b : bytes) {
    h ^= b;
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t hash_mix(uint64_t h, uint64_t v) {
  // A round of a 64-bit finaliser over (h ^ rotated v): order-sensitive, well mixed.
  uint64_t x = h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

}  // namespace chorus
