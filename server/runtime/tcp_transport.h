// The production transport: TCP on the gossip port (see server/core/transport.h for the contract and
// server/core/frame.h for the wire format).
//
// One outbound connection per peer carries our frames to it; peers' frames arrive on their inbound
// connections. Per peer: a bounded send queue (frames and bytes), reconnect with capped, jittered
// backoff, and a connect timeout. Inbound: the Hello must arrive within handshake_timeout, a frame that
// has started must finish within partial_frame_timeout, and no frame may exceed frame_size_max; a peer
// breaking any of these is logged and disconnected, and the node carries on. Runs on one Asio
// io_context (the node's loop). Only server/runtime and its tests include this header.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "server/core/env.h"
#include "server/core/transport.h"
#include "server/runtime/gossip_crypto.h"

namespace boost::asio {
class io_context;
}

namespace chorus::runtime {

struct TcpTransportOptions {
  std::string bind_host = "0.0.0.0";
  uint16_t port = 8074;           // 0: any free port (tests); see TcpTransport::local_port
  std::string advertise_address;  // "host:port" sent in our Hello
  uint32_t frame_size_max = kDefaultFrameSizeMax;
  uint32_t send_queue_frames_max = kDefaultSendQueueFramesMax;
  size_t send_queue_bytes_max = 64u << 20;
  Duration handshake_timeout{5'000'000};
  Duration partial_frame_timeout{10'000'000};
  Duration connect_timeout{2'000'000};
  Duration reconnect_base{100'000};
  Duration reconnect_cap{1'000'000};
  size_t inbound_connections_max = 1024;
  std::string cluster_name;  // peers of another ClusterName are refused
  std::string cluster_key;   // the shared key (empty: frames are not authenticated)
  bool encrypt = false;      // seal frames with AES-256-GCM (EnableExperimentalGossipEncryption)
};

class TcpTransport final : public Transport {
 public:
  // Binds the listening socket at once; throws std::runtime_error naming the address when it cannot.
  TcpTransport(boost::asio::io_context& io, Env& env, TcpTransportOptions options);
  ~TcpTransport() override;

  // The cluster this node belongs to, and its key (from the database): before start().
  void set_cluster(const std::string& name, const std::string& key, bool encrypt = false);
  void start(TransportHandler& handler) override;
  void stop() override;
  void add_peer(const std::string& address) override;
  void remove_peer(const std::string& address) override;
  SendStatus send(const std::string& peer, std::span<const uint8_t> payload) override;
  bool connected(const std::string& peer) const override;
  TransportStats stats() const override;
  // Per peer: frames and bytes waiting in its send queue, and whether its connection is up (metrics).
  struct QueueDepth {
    size_t frames = 0, bytes = 0;
    bool up = false;
  };
  std::map<std::string, QueueDepth> queue_depths() const;

  uint16_t local_port() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// Splits "host:port". False when there is no port or it is not 1-65535.
bool split_host_port(const std::string& address, std::string& host, uint16_t& port);

}  // namespace chorus::runtime
