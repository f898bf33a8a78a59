// The gossip port's bytes as the runtime reads them (server/runtime/tcp_transport.cpp): the FrameDecoder
// fed in chunks of any size, the first frame decoded as a Hello (small limit), the limit then raised, and
// every later frame authenticated (tagged, or sealed with AES-256-GCM) under a connection key derived from
// the Hello's nonce, then typed by its first byte (server/cluster/wire.h).
//
// Input: byte 0 = mode (bits 0-1: 0 no key, 1 tagged, 2 sealed; bits 2-7: how the bytes are chunked),
// byte 1 = the frame size limit after the Hello (64 << (b & 15), at most 2 MiB), then the bytes of the
// connection.
//
// Properties checked besides the sanitizers: chunked and one-shot feeding give the same frames; the frames
// re-encoded are exactly the bytes consumed; a decoded Hello survives encode/decode; seal_frame/open_frame
// round-trip and refuse a flipped byte.
#include <cstring>

#include "cluster_stack.h"
#include "fuzz_input.h"
#include "server/core/frame.h"
#include "server/runtime/gossip_crypto.h"

using namespace chorus;
using namespace chorus::fuzz;

namespace {

const std::string kClusterKey(32, '\x42');

struct Decoded {
  std::vector<Bytes> frames;
  FrameDecoder::Error error = FrameDecoder::Error::none;
  bool partial = false;
};

// Feeds `stream` in chunks given by `chunk` (0: all at once), raising the limit after the first frame.
template <class Chunk>
Decoded decode(std::span<const uint8_t> stream, uint32_t limit_after_hello, Chunk chunk) {
  Decoded out;
  FrameDecoder d(kHelloSizeMax);
  auto on_frame = [&](std::span<const uint8_t> f) {
    out.frames.emplace_back(f.begin(), f.end());
    if (out.frames.size() == 1) d.set_frame_size_max(limit_after_hello);
  };
  size_t pos = 0;
  while (pos < stream.size()) {
    const size_t n = std::min(stream.size() - pos, chunk());
    out.error = d.feed(stream.subspan(pos, n), on_frame);
    pos += n;
    if (out.error != FrameDecoder::Error::none) break;
  }
  out.partial = d.partial();
  return out;
}

bool same_hello(const Hello& a, const Hello& b) {
  return a.wire_version == b.wire_version && a.address == b.address && a.cluster_name == b.cluster_name &&
         a.proof == b.proof && a.nonce == b.nonce && a.encrypted == b.encrypted;
}

void write_seeds(SeedWriter& w) {
  // A connection as a real node opens it: the Hello, then real frames of every type.
  std::vector<Bytes> bodies;
  for (const auto& [from, to, payload] : real_cluster_frames())
    if (from == cluster_addresses()[1] && bodies.size() < 12) bodies.push_back(payload);
  for (uint8_t mode : {0, 1, 2}) {
    Hello h;
    h.address = cluster_addresses()[1];
    h.cluster_name = "sim";
    h.nonce = std::string(16, '\x07');
    h.encrypted = mode == 2;
    if (mode != 0) h.proof = runtime::hello_proof(kClusterKey, h);
    const std::string conn_key = runtime::connection_key(kClusterKey, h.nonce);
    std::string s;
    s.push_back(static_cast<char>(mode | (mode << 2)));
    s.push_back(10);  // 64 KiB
    Bytes stream;
    encode_frame(encode_hello_payload(h), stream);
    uint64_t n = 0;
    for (const auto& b : bodies) {
      if (mode == 0)
        encode_frame(b, stream);
      else
        encode_frame(runtime::seal_frame(conn_key, mode == 2, n++, b), stream);
    }
    s.append(reinterpret_cast<const char*>(stream.data()), stream.size());
    w.add("connection-mode" + std::to_string(mode), s);
  }
  // A Hello of another wire version, and a frame over the Hello limit.
  Hello old;
  old.wire_version = 2;
  old.address = "10.0.0.9:8074";
  Bytes stream;
  encode_frame(encode_hello_payload(old), stream);
  w.add("hello-other-version", std::string("\x00\x0a", 2) + as_string(stream));
  w.add("oversized-first-frame", std::string("\x04\x0a\x00\x00\x10\x00", 6) + std::string(32, 'x'));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  maybe_write_seeds("fuzz_frame", write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  const uint32_t limit = std::min<uint32_t>(64u << (data[1] & 15), 2u << 20);
  const std::span<const uint8_t> stream(data + 2, size - 2);

  uint32_t rng = 0x9e3779b9u ^ (mode >> 2);
  auto chunked = decode(stream, limit, [&] {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return size_t{1} + (rng % ((mode >> 2) + 1)) * (rng % 7 == 0 ? 64 : 1);
  });
  auto whole = decode(stream, limit, [&] { return stream.size(); });
  if (chunked.frames != whole.frames || chunked.error != whole.error)
    property_failed("chunked and one-shot feeding disagree");
  if (!whole.partial && whole.error == FrameDecoder::Error::none) {
    Bytes again;
    for (const auto& f : whole.frames) encode_frame(f, again);
    if (again.size() != stream.size() || !std::equal(again.begin(), again.end(), stream.begin()))
      property_failed("re-encoded frames differ from the stream");
  }
  if (whole.frames.empty()) return 0;

  auto hello = decode_hello_payload(whole.frames[0]);
  std::string conn_key;
  bool encrypted = false;
  if (hello && hello->wire_version == kWireVersion) {
    auto again = decode_hello_payload(encode_hello_payload(*hello));
    if (!again || !same_hello(*again, *hello)) property_failed("Hello does not survive encode/decode");
    if ((mode & 3) != 0) {
      (void)(hello->proof == runtime::hello_proof(kClusterKey, *hello));  // the runtime's check
      conn_key = runtime::connection_key(kClusterKey, hello->nonce);
      encrypted = (mode & 3) == 2 || hello->encrypted;
    }
  }
  std::vector<uint8_t> plain;
  for (size_t i = 1; i < whole.frames.size(); ++i) {
    std::span<const uint8_t> body = whole.frames[i];
    if (!conn_key.empty()) {
      if (!runtime::open_frame(conn_key, encrypted, i - 1, body, plain)) continue;
      body = plain;
    }
    (void)cluster::frame_type(body);
  }
  // Sealing round-trips; a flipped byte does not open.
  if (!conn_key.empty() && whole.frames.size() > 1) {
    const Bytes& payload = whole.frames[1];
    auto sealed = runtime::seal_frame(conn_key, encrypted, 7, payload);
    if (!runtime::open_frame(conn_key, encrypted, 7, sealed, plain) || plain != payload)
      property_failed("seal_frame/open_frame do not round-trip");
    sealed[mode % sealed.size()] ^= 0x01;
    if (runtime::open_frame(conn_key, encrypted, 7, sealed, plain)) property_failed("a flipped byte opened");
  }
  return 0;
}
