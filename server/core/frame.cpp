#include "server/core/frame.h"

#include <cassert>
#include <cstring>

#include "server/core/codec.h"
#include "server/core/transport.h"

namespace chorus {

namespace {
constexpr uint8_t kMagic[4] = {'C', 'H', 'R', 'S'};
}

const char* to_string(SendStatus status) {
  switch (status) {
    case SendStatus::queued:
      return "queued";
    case SendStatus::not_connected:
      return "not_connected";
    case SendStatus::queue_full:
      return "queue_full";
    case SendStatus::too_large:
      return "too_large";
  }
  return "?";
}

void encode_frame(std::span<const uint8_t> payload, std::vector<uint8_t>& out) {
  assert(payload.size() <= UINT32_MAX);
  const uint32_t n = static_cast<uint32_t>(payload.size());
  const uint8_t header[kFrameHeaderSize] = {static_cast<uint8_t>(n >> 24), static_cast<uint8_t>(n >> 16),
                                            static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)};
  out.insert(out.end(), header, header + kFrameHeaderSize);
  out.insert(out.end(), payload.begin(), payload.end());
}

std::vector<uint8_t> encode_frame(std::span<const uint8_t> payload) {
  std::vector<uint8_t> out;
  out.reserve(kFrameHeaderSize + payload.size());
  encode_frame(payload, out);
  return out;
}

std::vector<uint8_t> encode_hello_payload(const Hello& hello) {
  ByteWriter w;
  w.raw(kMagic);
  w.u16(hello.wire_version);
  w.str(hello.address);
  w.str(hello.cluster_name);
  w.str(hello.proof);
  w.str(hello.nonce);
  w.u8(hello.encrypted ? 1 : 0);
  return w.take();
}

std::optional<Hello> decode_hello_payload(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  auto magic = r.raw(sizeof kMagic);
  if (!r.ok() || std::memcmp(magic.data(), kMagic, sizeof kMagic) != 0) return std::nullopt;
  Hello hello;
  hello.wire_version = r.u16();
  if (r.ok() && hello.wire_version != kWireVersion) return hello;  // another version: the caller says so
  hello.address = r.str(255);
  hello.cluster_name = r.str(64);
  hello.proof = r.str(64);
  hello.nonce = r.str(64);
  const uint8_t flags = r.u8();
  if (flags > 1) return std::nullopt;
  hello.encrypted = flags == 1;
  if (!r.done() || hello.address.empty()) return std::nullopt;
  return hello;
}

FrameDecoder::Error FrameDecoder::feed(std::span<const uint8_t> bytes,
                                       const std::function<void(std::span<const uint8_t>)>& on_frame) {
  if (failed_) return Error::oversized;
  size_t pos = 0;
  while (pos < bytes.size()) {
    if (!in_payload_) {
      const size_t take = std::min<size_t>(kFrameHeaderSize - have_header_bytes_, bytes.size() - pos);
      std::memcpy(header_ + have_header_bytes_, bytes.data() + pos, take);
      have_header_bytes_ += static_cast<uint32_t>(take);
      pos += take;
      if (have_header_bytes_ < kFrameHeaderSize) break;
      const uint32_t n = (uint32_t{header_[0]} << 24) | (uint32_t{header_[1]} << 16) | (uint32_t{header_[2]} << 8) |
                         uint32_t{header_[3]};
      if (n > frame_size_max_) {
        bad_length_ = n;
        failed_ = true;
        return Error::oversized;
      }
      have_header_bytes_ = 0;
      in_payload_ = true;
      expected_ = n;
      payload_.clear();
      // Fast path: the whole payload is already here; hand it out without copying.
      if (bytes.size() - pos >= n) {
        on_frame(bytes.subspan(pos, n));
        pos += n;
        in_payload_ = false;
        expected_ = 0;
      }
      continue;
    }
    const size_t take = std::min<size_t>(expected_ - payload_.size(), bytes.size() - pos);
    payload_.insert(payload_.end(), bytes.begin() + pos, bytes.begin() + pos + take);
    pos += take;
    if (payload_.size() == expected_) {
      in_payload_ = false;
      expected_ = 0;
      on_frame(payload_);
      payload_.clear();
    }
  }
  return Error::none;
}

}  // namespace chorus
