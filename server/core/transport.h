// Node-to-node messaging, as the seam gives it.
//
// A node names peers by address ("host:port", the peer's gossip address). It asks the transport to keep
// a connection to each peer it cares about (add_peer); the transport connects, reconnects with capped,
// jittered backoff when the connection drops, and reports each connection going up and down. Frames
// are sent on that outbound connection and received on the peer's; received frames carry the sender's
// advertised address, learnt from the connection's handshake.
//
// The contract is deliberately weak, so that protocols on top survive the real world: frames may be
// lost (a connection drops, a queue is full, a partition), and in the simulator also duplicated and
// reordered. A frame is never corrupted or delivered partially. Production: server/runtime/tcp_transport.
// Simulation: simulator/kernel. Layers above the seam use only this interface.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace chorus {

using Bytes = std::vector<uint8_t>;

class TransportHandler {
 public:
  virtual ~TransportHandler() = default;
  // A frame from the peer that advertised itself as `from`.
  virtual void on_frame(const std::string& from, std::span<const uint8_t> payload) = 0;
  // The outbound connection to a peer given to add_peer is up (connected, our Hello sent) or has dropped.
  virtual void on_peer_up(const std::string& peer) = 0;
  virtual void on_peer_down(const std::string& peer) = 0;
};

enum class SendStatus {
  queued,         // handed to the connection (delivery is still not guaranteed)
  not_connected,  // no live connection to that peer right now: dropped
  queue_full,     // the peer's bounded send queue is full: dropped
  too_large,      // larger than the maximum frame size: dropped
};
const char* to_string(SendStatus status);

struct TransportStats {
  uint64_t frames_sent = 0;
  uint64_t frames_received = 0;
  uint64_t frames_dropped = 0;       // not_connected, queue_full, too_large, or lost with a connection
  uint64_t connections_refused = 0;  // inbound connections closed for bad input (garbage, oversize, silence)
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Starts listening and reporting to handler. Called once, before any other call.
  virtual void start(TransportHandler& handler) = 0;
  // Closes every connection and the listener; no handler call follows.
  virtual void stop() = 0;
  // Keep a connection to this peer (idempotent). on_peer_up follows once it is connected.
  virtual void add_peer(const std::string& address) = 0;
  // Drop the connection and stop reconnecting. No on_peer_down follows for it.
  virtual void remove_peer(const std::string& address) = 0;
  virtual SendStatus send(const std::string& peer, std::span<const uint8_t> payload) = 0;
  virtual bool connected(const std::string& peer) const = 0;
  virtual TransportStats stats() const = 0;
};

// Limits shared by both implementations.
inline constexpr uint32_t kDefaultFrameSizeMax = 4u << 20;  // 4 MiB
inline constexpr uint32_t kDefaultSendQueueFramesMax = 4096;

}  // namespace chorus
