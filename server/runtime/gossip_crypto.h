// The cluster key on the gossip wire: who may join, and what a frame's bytes may say.
//
// A connection starts with a Hello that proves the sender holds the cluster key (an HMAC over its
// address, its ClusterName, a random per-connection nonce and whether it encrypts). Both ends derive the
// connection's own key from the cluster key and that nonce, so no two connections share a key and frame
// numbers can start from 0 on each. Every frame after the Hello is numbered on its connection and
// either tagged (HMAC-SHA256 truncated to 16 bytes over the number and the body) or, with
// ClusterSettings.EnableExperimentalGossipEncryption, sealed with AES-256-GCM (nonce = the frame number;
// the 16-byte GCM tag in front of the ciphertext). A frame out of sequence, altered or forged fails and
// the receiver drops the connection. Both forms cost the same 16 bytes per frame.
//
// Not covered: the receiver does not contribute to the nonce, so a recorded connection could be replayed
// as a whole to a node; what it carries is then old membership and cluster news, which the protocols
// above already treat as stale (generations, per-stream sequence numbers).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "server/core/frame.h"

namespace chorus::runtime {

// HMAC-SHA256 of data under key (32 raw bytes).
std::string hmac(const std::string& key, std::span<const uint8_t> data);
// The Hello's proof of the key.
std::string hello_proof(const std::string& cluster_key, const Hello& hello);
// The key of one connection: HMAC(cluster key, "chorus-conn|" nonce).
std::string connection_key(const std::string& cluster_key, const std::string& nonce);
// The tag of the n-th frame of a connection, as sent in front of an authenticated-only body.
std::string frame_tag(const std::string& connection_key, uint64_t n, std::span<const uint8_t> body);

// Frame n of a connection as it goes on the wire (without the length header): tag (or GCM tag) then the
// body (or the ciphertext).
std::vector<uint8_t> seal_frame(const std::string& connection_key, bool encrypt, uint64_t n,
                                std::span<const uint8_t> payload);
// The payload of frame n, into `out`. False when the frame fails authentication.
bool open_frame(const std::string& connection_key, bool encrypted, uint64_t n, std::span<const uint8_t> frame,
                std::vector<uint8_t>& out);

}  // namespace chorus::runtime
