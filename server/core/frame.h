// The gossip port's wire format: length-prefixed frames, and the handshake that opens a connection.
//
// A frame is a 4-byte big-endian payload length followed by the payload. The first frame on every
// connection is a Hello: magic "CHRS", wire version, the sender's advertised address, its cluster name,
// and a proof that it holds the cluster key (HMAC-SHA256; empty when the cluster has no key). A receiver
// that sees anything else first, a length above its maximum, a Hello of another wire version or cluster,
// or a proof that does not verify, closes the connection. With a key, every later frame starts with a
// 16-byte tag: HMAC-SHA256 over the frame's number on its connection and its body (server/runtime). The FrameDecoder
// takes bytes in chunks of any size (as they come off a socket) and yields whole frames; it never buffers more than one
// maximum frame. Used by server/runtime; kept here, with no I/O, so it can be tested and benchmarked alone.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace chorus {

inline constexpr uint32_t kFrameHeaderSize = 4;
inline constexpr uint16_t kWireVersion = 3;
inline constexpr size_t kFrameTagSize = 16;
inline constexpr uint32_t kHelloSizeMax = 512;

// Appends header + payload to out.
void encode_frame(std::span<const uint8_t> payload, std::vector<uint8_t>& out);
std::vector<uint8_t> encode_frame(std::span<const uint8_t> payload);

struct Hello {
  uint16_t wire_version = kWireVersion;
  std::string address;       // the sender's advertised gossip address, "host:port"
  std::string cluster_name;  // ClusterSettings.ClusterName
  std::string proof;         // HMAC-SHA256 under the cluster key (runtime/gossip_crypto.h), or empty
  std::string nonce;         // random per connection: the connection's own key is derived from it
  bool encrypted = false;    // the frames that follow are AES-256-GCM sealed, not only tagged
};
std::vector<uint8_t> encode_hello_payload(const Hello& hello);
// Nullopt when the payload is not a well-formed Hello (bad magic, truncated, trailing bytes). A Hello of
// another wire version comes back with only wire_version set: its layout is not ours to read.
std::optional<Hello> decode_hello_payload(std::span<const uint8_t> payload);

class FrameDecoder {
 public:
  enum class Error { none, oversized };

  explicit FrameDecoder(uint32_t frame_size_max) : frame_size_max_(frame_size_max) {}

  // Feeds bytes; calls on_frame for every complete frame, in order. Stops at the first error and
  // reports it; the decoder is then unusable (the connection must close).
  Error feed(std::span<const uint8_t> bytes, const std::function<void(std::span<const uint8_t>)>& on_frame);

  // Lowers or raises the limit (e.g. a small limit until the Hello has been read).
  void set_frame_size_max(uint32_t n) { frame_size_max_ = n; }
  // True when some bytes of a frame have arrived but not all of it.
  bool partial() const { return have_header_bytes_ > 0 || in_payload_; }
  uint32_t last_bad_length() const { return bad_length_; }

 private:
  uint32_t frame_size_max_;
  uint8_t header_[kFrameHeaderSize] = {};
  uint32_t have_header_bytes_ = 0;
  uint32_t expected_ = 0;  // payload length of the frame being read
  bool in_payload_ = false;
  std::vector<uint8_t> payload_;
  uint32_t bad_length_ = 0;
  bool failed_ = false;
};

}  // namespace chorus
