// The gossip port's catalogue: what every frame's first byte means (FrameType) and every cluster
// message's event name (ClusterEvent). One place, so two protocols never share a byte, a name is never
// misspelt in one place only, and a receiver dispatches on an enum rather than on string prefixes.
//
// Frames: ping/pong (the foundation's ping cluster), membership (SWIM: ping, ack, ping-req, gossip),
// status (versions and config hashes for green/red), and the messenger's data and ack. A frame whose
// first byte is none of these is dropped by the node (garbage on the gossip port).
//
// Events travel as their names (strings) inside the messenger's data frames, as in Mattermost's cluster
// messages; a name this version does not know (a newer node's) is ignored by the receiver.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <utility>

namespace chorus::cluster {

enum class FrameType : uint8_t {
  ping = 0x01,  // the ping cluster (server/cluster/ping.h)
  pong = 0x02,
  member_ping = 0x10,  // membership (server/cluster/membership.h)
  member_ack = 0x11,
  member_ping_req = 0x12,
  member_gossip = 0x13,
  status = 0x20,        // cluster status (server/cluster/status.h)
  message_data = 0x30,  // cluster messages (server/cluster/messages.h)
  message_ack = 0x31,
};

constexpr uint8_t to_byte(FrameType t) { return static_cast<uint8_t>(t); }

// The type of a frame, from its first byte; nullopt for an empty frame or an unknown byte.
constexpr std::optional<FrameType> frame_type(std::span<const uint8_t> payload) {
  if (payload.empty()) return std::nullopt;
  switch (static_cast<FrameType>(payload[0])) {
    case FrameType::ping:
    case FrameType::pong:
    case FrameType::member_ping:
    case FrameType::member_ack:
    case FrameType::member_ping_req:
    case FrameType::member_gossip:
    case FrameType::status:
    case FrameType::message_data:
    case FrameType::message_ack:
      return static_cast<FrameType>(payload[0]);
  }
  return std::nullopt;
}

enum class ClusterEvent {
  open,           // "_open": the messenger opens a stream (never handed to subscribers)
  publish,        // a WebSocket event for the receiver's clients (app)
  update_status,  // a user's status changed (app)
  inv_user,       // cache invalidations (app)
  inv_channel,
  inv_channel_members,
  clear_session_user,  // a user's sessions, or one token, revoked (app)
  config_changed,      // a peer saved config.json: reload (node)
  cluster_stats,       // request: this node's WebSocket figures (analytics)
  ws_queues,           // request: hand a WebSocket connection's queue over (resume on another node)
  ws_missed,           // an event reached the node that had handed a connection over, after it did (app)
};

inline constexpr std::array<std::pair<ClusterEvent, std::string_view>, 11> kClusterEvents{{
    {ClusterEvent::open, "_open"},
    {ClusterEvent::publish, "publish"},
    {ClusterEvent::update_status, "update_status"},
    {ClusterEvent::inv_user, "inv_user"},
    {ClusterEvent::inv_channel, "inv_channel"},
    {ClusterEvent::inv_channel_members, "inv_channel_members"},
    {ClusterEvent::clear_session_user, "clear_session_user"},
    {ClusterEvent::config_changed, "config_changed"},
    {ClusterEvent::cluster_stats, "cluster_stats"},
    {ClusterEvent::ws_queues, "ws_queues"},
    {ClusterEvent::ws_missed, "ws_missed"},
}};

// The event's name on the wire.
constexpr std::string_view name(ClusterEvent e) {
  for (const auto& [event, n] : kClusterEvents)
    if (event == e) return n;
  return {};
}

// The event a name on the wire stands for; nullopt for a name this version does not know.
constexpr std::optional<ClusterEvent> cluster_event(std::string_view wire) {
  for (const auto& [event, n] : kClusterEvents)
    if (n == wire) return event;
  return std::nullopt;
}

}  // namespace chorus::cluster
