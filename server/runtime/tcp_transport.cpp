#include "server/runtime/tcp_transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <deque>
#include <map>
#include <set>
#include <stdexcept>

#include "server/core/backoff.h"
#include "server/core/frame.h"

namespace chorus::runtime {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

bool split_host_port(const std::string& address, std::string& host, uint16_t& port) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string p = address.substr(colon + 1);
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (ec != std::errc() || ptr != p.data() + p.size() || value == 0 || value > 65535) return false;
  port = static_cast<uint16_t>(value);
  return true;
}

namespace {
// Dead peers must be noticed even when the path goes silent (a host that lost power, a blackhole):
// keepalive probes after 5 s idle, every 2 s, 3 misses; unacknowledged data fails after 10 s.
void tune_socket(tcp::socket& s) {
  error_code ignored;
  s.set_option(tcp::no_delay(true), ignored);
  s.set_option(asio::socket_base::keep_alive(true), ignored);
  const int fd = s.native_handle();
  int idle = 5, interval = 2, count = 3;
  unsigned user_timeout_ms = 10'000;
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
}

}  // namespace

namespace {

std::string endpoint_text(const tcp::socket& s) {
  error_code ec;
  auto ep = s.remote_endpoint(ec);
  if (ec) return "(unknown)";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}
}  // namespace

struct Inbound {
  explicit Inbound(asio::io_context& io, uint32_t hello_max) : socket(io), deadline(io), decoder(hello_max) {}
  tcp::socket socket;
  asio::steady_timer deadline;
  FrameDecoder decoder;
  std::array<uint8_t, 64 * 1024> buffer;
  std::string remote;
  std::string peer;  // advertised address from the Hello; empty until it arrives
  bool deadline_armed = false;
  uint64_t deadline_generation = 0;  // a handler from an earlier arming must not act
  uint64_t frames = 0;               // frames completed
  std::string key;                   // this connection's key (from the cluster key and the Hello's nonce)
  bool encrypted = false;
  std::vector<uint8_t> plain;  // the current frame's payload, authenticated (and decrypted)
  bool closed = false;
};

struct Outbound {
  explicit Outbound(asio::io_context& io, std::string addr, Backoff b)
      : address(std::move(addr)), socket(io), resolver(io), timer(io), backoff(b) {}
  enum class State { connecting, up, waiting } state = State::connecting;
  std::string address;
  MonoTime up_since;
  tcp::socket socket;
  tcp::resolver resolver;
  asio::steady_timer timer;  // connect timeout, then reconnect delay
  Backoff backoff;
  uint64_t generation = 0;  // bumps on every (re)connect: stale handlers compare and bail
  std::deque<Bytes> queue;  // encoded frames (header + payload) waiting to be written
  uint64_t frames_out = 0;  // frames queued on this connection (numbers them for their tags)
  std::string key;          // this connection's key, drawn anew on every connect
  size_t queued_bytes = 0;
  bool writing = false;
  std::array<uint8_t, 512> sink;  // peers never send on our outbound connection; read only to see EOF
  bool removed = false;
};

struct TcpTransport::Impl : std::enable_shared_from_this<TcpTransport::Impl> {
  Impl(asio::io_context& io, Env& env, TcpTransportOptions options)
      : io(io), env(env), options(std::move(options)), acceptor(io) {}

  asio::io_context& io;
  Env& env;
  TcpTransportOptions options;
  tcp::acceptor acceptor;
  TransportHandler* handler = nullptr;
  bool stopped = false;
  std::set<std::shared_ptr<Inbound>> inbound;
  std::map<std::string, std::shared_ptr<Outbound>> outbound;
  TransportStats stats;
  std::unique_ptr<asio::steady_timer> accept_retry;

  Logger& log() { return env.log(); }

  // --- listening

  void listen() {
    error_code ec;
    const auto address = asio::ip::make_address(options.bind_host, ec);
    if (ec) throw std::runtime_error("gossip bind address \"" + options.bind_host + "\" is not an IP address");
    tcp::endpoint ep(address, options.port);
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      throw std::runtime_error("cannot listen on gossip address " + options.bind_host + ":" +
                               std::to_string(options.port) + ": " + ec.message());
  }

  void accept() {
    if (stopped) return;
    acceptor.async_accept([self = shared_from_this()](const error_code& ec, tcp::socket socket) {
      if (self->stopped) return;
      if (!ec) {
        self->on_accepted(std::move(socket));
        self->accept();
        return;
      }
      if (ec == asio::error::operation_aborted) return;
      // Out of descriptors and the like: do not spin; try again shortly.
      self->log().warn("gossip: accept failed: {}; retrying in 100 ms", ec.message());
      if (!self->accept_retry) self->accept_retry = std::make_unique<asio::steady_timer>(self->io);
      self->accept_retry->expires_after(std::chrono::milliseconds(100));
      self->accept_retry->async_wait([self](const error_code& e) {
        if (!e && !self->stopped) self->accept();
      });
    });
  }

  void on_accepted(tcp::socket socket) {
    if (inbound.size() >= options.inbound_connections_max) {
      ++stats.connections_refused;
      log().warn("gossip: refused connection from {}: {} inbound connections already open", endpoint_text(socket),
                 inbound.size());
      error_code ignored;
      socket.close(ignored);
      return;
    }
    auto in = std::make_shared<Inbound>(io, kHelloSizeMax);
    in->socket = std::move(socket);
    in->remote = endpoint_text(in->socket);
    tune_socket(in->socket);
    inbound.insert(in);
    arm_deadline(in, options.handshake_timeout, "no handshake");
    read_inbound(in);
  }

  void arm_deadline(const std::shared_ptr<Inbound>& in, Duration after, const char* what) {
    in->deadline_armed = true;
    const uint64_t gen = ++in->deadline_generation;
    in->deadline.expires_after(after);
    in->deadline.async_wait([self = shared_from_this(), in, what, after, gen](const error_code& ec) {
      // A handler that had already fired when the deadline was moved would run with success: the
      // generation tells it apart.
      if (ec || self->stopped || in->closed || gen != in->deadline_generation) return;
      ++self->stats.connections_refused;
      self->log().warn("gossip: closed connection from {} ({}): {} within {} ms", in->remote,
                       in->peer.empty() ? "before handshake" : in->peer, what, to_ms(after));
      self->close_inbound(in);
    });
  }

  void disarm_deadline(const std::shared_ptr<Inbound>& in) {
    if (!in->deadline_armed) return;
    in->deadline_armed = false;
    ++in->deadline_generation;
    in->deadline.cancel();
  }

  void close_inbound(const std::shared_ptr<Inbound>& in) {
    if (in->closed) return;
    in->closed = true;
    error_code ignored;
    in->socket.close(ignored);
    in->deadline.cancel();
    inbound.erase(in);
  }

  void read_inbound(const std::shared_ptr<Inbound>& in) {
    in->socket.async_read_some(
        asio::buffer(in->buffer), [self = shared_from_this(), in](const error_code& ec, size_t n) {
          if (self->stopped || in->closed) return;
          if (ec) {
            if (ec != asio::error::eof && ec != asio::error::connection_reset)
              self->log().debug("gossip: connection from {} failed: {}", in->remote, ec.message());
            self->close_inbound(in);
            return;
          }
          if (!self->on_inbound_bytes(in, std::span<const uint8_t>(in->buffer.data(), n))) return;
          self->read_inbound(in);
        });
  }

  // False when the connection was closed.
  bool on_inbound_bytes(const std::shared_ptr<Inbound>& in, std::span<const uint8_t> bytes) {
    bool bad = false;
    const uint64_t frames_before = in->frames;
    const auto err = in->decoder.feed(bytes, [&](std::span<const uint8_t> frame) {
      if (bad || stopped || in->closed) return;
      if (in->peer.empty()) {
        auto hello = decode_hello_payload(frame);
        if (!hello) {
          log().warn("gossip: refused connection from {}: not a Chorus gossip handshake", in->remote);
          bad = true;
          return;
        }
        if (hello->wire_version != kWireVersion) {
          log().warn("gossip: refused connection from {}: wire version {}, this node speaks {}", in->remote,
                     hello->wire_version, kWireVersion);
          bad = true;
          return;
        }
        if (hello->cluster_name != options.cluster_name) {
          log().warn("gossip: refused connection from {} ({}): it belongs to cluster \"{}\", this node to \"{}\"",
                     in->remote, hello->address, hello->cluster_name, options.cluster_name);
          bad = true;
          return;
        }
        if (!options.cluster_key.empty()) {
          const std::string expected = hello_proof(options.cluster_key, *hello);
          if (hello->proof.size() != expected.size() ||
              CRYPTO_memcmp(hello->proof.data(), expected.data(), expected.size()) != 0) {
            log().warn("gossip: refused connection from {} ({}): it does not hold the cluster key", in->remote,
                       hello->address);
            bad = true;
            return;
          }
        }
        in->peer = hello->address;
        if (!options.cluster_key.empty()) {
          in->key = connection_key(options.cluster_key, hello->nonce);
          in->encrypted = hello->encrypted;
        }
        in->decoder.set_frame_size_max(options.frame_size_max);
        disarm_deadline(in);  // the handshake deadline is met
        // A peer has one inbound connection: a new one from the same address replaces the old (the
        // old one is from before the peer restarted, or is half-dead).
        for (const auto& other : std::vector<std::shared_ptr<Inbound>>(inbound.begin(), inbound.end()))
          if (other != in && other->peer == in->peer) {
            log().debug("gossip: replacing the older inbound connection from {}", in->peer);
            close_inbound(other);
          }
        log().debug("gossip: inbound connection from {} ({})", in->peer, in->remote);
        return;
      }
      std::span<const uint8_t> body = frame;
      if (!options.cluster_key.empty()) {
        if (!open_frame(in->key, in->encrypted, in->frames, frame, in->plain)) {
          log().warn("gossip: closed connection from {} ({}): frame {} failed authentication", in->remote, in->peer,
                     in->frames);
          bad = true;
          return;
        }
        body = in->plain;
      }
      ++stats.frames_received;
      ++in->frames;
      if (handler) handler->on_frame(in->peer, body);
    });
    if (stopped || in->closed) return false;
    if (err != FrameDecoder::Error::none) {
      log().warn("gossip: closed connection from {} ({}): frame of {} bytes exceeds the limit of {}", in->remote,
                 in->peer.empty() ? "before handshake" : in->peer, in->decoder.last_bad_length(),
                 in->peer.empty() ? kHelloSizeMax : options.frame_size_max);
      bad = true;
    }
    if (bad) {
      ++stats.connections_refused;
      close_inbound(in);
      return false;
    }
    if (!in->peer.empty()) {
      // Each frame gets partial_frame_timeout from its first byte: a new frame started after one
      // completed restarts the clock; a busy stream never trips it.
      if (in->decoder.partial()) {
        if (!in->deadline_armed || in->frames != frames_before)
          arm_deadline(in, options.partial_frame_timeout, "frame not completed");
      } else {
        disarm_deadline(in);
      }
    }
    return true;
  }

  // --- outbound

  void connect(const std::shared_ptr<Outbound>& out) {
    if (stopped || out->removed) return;
    out->state = Outbound::State::connecting;
    const uint64_t gen = ++out->generation;
    std::string host;
    uint16_t port = 0;
    if (!split_host_port(out->address, host, port)) {
      log().error("gossip: peer address \"{}\" is not host:port; not connecting", out->address);
      return;
    }
    out->timer.expires_after(options.connect_timeout);
    out->timer.async_wait([self = shared_from_this(), out, gen](const error_code& ec) {
      if (ec || self->stopped || out->generation != gen || out->state != Outbound::State::connecting) return;
      self->log().debug("gossip: connecting to {} timed out", out->address);
      self->connection_lost(out, gen, "connect timeout");
    });
    out->resolver.async_resolve(
        host, std::to_string(port),
        [self = shared_from_this(), out, gen](const error_code& ec, tcp::resolver::results_type results) {
          if (self->stopped || out->generation != gen) return;
          if (ec) {
            self->connection_lost(out, gen, "cannot resolve: " + ec.message());
            return;
          }
          asio::async_connect(out->socket, results, [self, out, gen](const error_code& ec2, const tcp::endpoint&) {
            if (self->stopped || out->generation != gen) return;
            if (ec2) {
              self->connection_lost(out, gen, ec2.message());
              return;
            }
            self->on_connected(out, gen);
          });
        });
  }

  void on_connected(const std::shared_ptr<Outbound>& out, uint64_t gen) {
    out->timer.cancel();
    tune_socket(out->socket);
    out->state = Outbound::State::up;
    out->up_since = env.now();
    out->writing = false;
    out->queue.clear();
    out->queued_bytes = 0;
    out->frames_out = 0;
    Hello hello{kWireVersion, options.advertise_address, options.cluster_name};
    if (!options.cluster_key.empty()) {
      std::array<uint8_t, 16> nonce;
      if (RAND_bytes(nonce.data(), nonce.size()) != 1)
        throw std::runtime_error("gossip: no randomness for a connection nonce (OpenSSL)");
      hello.nonce.assign(nonce.begin(), nonce.end());
      hello.encrypted = options.encrypt;
      hello.proof = hello_proof(options.cluster_key, hello);
      out->key = connection_key(options.cluster_key, hello.nonce);
    }
    Bytes hello_frame = encode_frame(encode_hello_payload(hello));
    out->queued_bytes += hello_frame.size();
    out->queue.push_back(std::move(hello_frame));
    start_write(out);
    // Read only to notice the peer closing (EOF) or dying (reset).
    watch(out, gen);
    log().debug("gossip: connected to {}", out->address);
    if (handler) handler->on_peer_up(out->address);
  }

  void watch(const std::shared_ptr<Outbound>& out, uint64_t gen) {
    out->socket.async_read_some(
        asio::buffer(out->sink), [self = shared_from_this(), out, gen](const error_code& ec, size_t) {
          if (self->stopped || out->generation != gen) return;
          if (ec) {
            self->connection_lost(out, gen, ec == asio::error::eof ? "closed by peer" : ec.message());
            return;
          }
          self->watch(out, gen);
        });
  }

  void start_write(const std::shared_ptr<Outbound>& out) {
    if (out->writing || out->queue.empty() || out->state != Outbound::State::up) return;
    out->writing = true;
    // The batch lives until the write's handler runs, even if the connection is replaced meanwhile.
    auto batch = std::make_shared<std::vector<Bytes>>();
    while (!out->queue.empty() && batch->size() < 64) {
      batch->push_back(std::move(out->queue.front()));
      out->queue.pop_front();
    }
    std::vector<asio::const_buffer> buffers;
    for (const auto& b : *batch) buffers.emplace_back(asio::buffer(b));
    const uint64_t gen = out->generation;
    asio::async_write(out->socket, buffers, [self = shared_from_this(), out, gen, batch](const error_code& ec, size_t) {
      if (self->stopped || out->generation != gen) return;  // a stale connection's write
      out->writing = false;
      for (const auto& b : *batch) out->queued_bytes -= b.size();
      if (ec) {
        self->stats.frames_dropped += batch->size();
        self->connection_lost(out, gen, ec.message());
        return;
      }
      self->start_write(out);
    });
  }

  void connection_lost(const std::shared_ptr<Outbound>& out, uint64_t gen, const std::string& why) {
    if (out->generation != gen || out->removed) return;
    const bool was_up = out->state == Outbound::State::up;
    ++out->generation;  // every handler of the old connection is now stale
    error_code ignored;
    out->socket.close(ignored);
    out->resolver.cancel();
    stats.frames_dropped += out->queue.size();
    out->queue.clear();
    out->queued_bytes = 0;
    out->state = Outbound::State::waiting;
    // Backoff starts over only after a connection that lasted: a peer that accepts and at once drops
    // us (refusing our Hello, out of slots) must not make us reconnect at full speed forever.
    if (was_up && env.now() - out->up_since >= options.reconnect_cap) out->backoff.reset();
    const Duration delay = out->backoff.next(env.random());
    if (was_up)
      log().info("gossip: connection to {} lost ({}); reconnecting in {} ms", out->address, why, to_ms(delay));
    else
      log().debug("gossip: cannot connect to {} ({}); retrying in {} ms", out->address, why, to_ms(delay));
    const uint64_t wait_gen = out->generation;
    out->timer.expires_after(delay);
    out->timer.async_wait([self = shared_from_this(), out, wait_gen](const error_code& ec) {
      if (ec || self->stopped || out->generation != wait_gen || out->removed) return;
      out->socket = tcp::socket(self->io);
      self->connect(out);
    });
    if (was_up && handler) handler->on_peer_down(out->address);
  }

  void close_outbound(const std::shared_ptr<Outbound>& out) {
    out->removed = true;
    ++out->generation;
    error_code ignored;
    out->socket.close(ignored);
    out->resolver.cancel();
    out->timer.cancel();
  }

  void shutdown() {
    if (stopped) return;
    stopped = true;
    handler = nullptr;
    error_code ignored;
    acceptor.close(ignored);
    for (auto& in : std::vector<std::shared_ptr<Inbound>>(inbound.begin(), inbound.end())) close_inbound(in);
    for (auto& [addr, out] : outbound) close_outbound(out);
    outbound.clear();
    if (accept_retry) accept_retry->cancel();
  }
};

TcpTransport::TcpTransport(asio::io_context& io, Env& env, TcpTransportOptions options)
    : impl_(std::make_shared<Impl>(io, env, std::move(options))) {
  impl_->listen();
}

TcpTransport::~TcpTransport() { impl_->shutdown(); }

void TcpTransport::set_cluster(const std::string& name, const std::string& key, bool encrypt) {
  impl_->options.cluster_name = name;
  impl_->options.cluster_key = key;
  impl_->options.encrypt = encrypt;
}

void TcpTransport::start(TransportHandler& handler) {
  impl_->handler = &handler;
  impl_->accept();
}

void TcpTransport::stop() { impl_->shutdown(); }

void TcpTransport::add_peer(const std::string& address) {
  if (impl_->stopped || impl_->outbound.contains(address)) return;
  auto out = std::make_shared<Outbound>(impl_->io, address,
                                        Backoff(impl_->options.reconnect_base, impl_->options.reconnect_cap));
  impl_->outbound.emplace(address, out);
  impl_->connect(out);
}

void TcpTransport::remove_peer(const std::string& address) {
  auto it = impl_->outbound.find(address);
  if (it == impl_->outbound.end()) return;
  impl_->close_outbound(it->second);
  impl_->outbound.erase(it);
}

SendStatus TcpTransport::send(const std::string& peer, std::span<const uint8_t> payload) {
  auto& s = impl_->stats;
  auto it = impl_->outbound.find(peer);
  if (impl_->stopped || it == impl_->outbound.end() || it->second->state != Outbound::State::up) {
    ++s.frames_dropped;
    return SendStatus::not_connected;
  }
  const std::string& key = impl_->options.cluster_key;
  if (payload.size() + (key.empty() ? 0 : kFrameTagSize) > impl_->options.frame_size_max) {
    ++s.frames_dropped;
    return SendStatus::too_large;
  }
  Outbound& out = *it->second;
  const size_t size = kFrameHeaderSize + payload.size() + (key.empty() ? 0 : kFrameTagSize);
  if (out.queue.size() >= impl_->options.send_queue_frames_max ||
      out.queued_bytes + size > impl_->options.send_queue_bytes_max) {
    ++s.frames_dropped;
    return SendStatus::queue_full;
  }
  if (key.empty()) {
    out.queue.push_back(encode_frame(payload));
  } else {
    // Tagged (or sealed) with its number on this connection: the receiver counts the same way.
    out.queue.push_back(encode_frame(seal_frame(out.key, impl_->options.encrypt, out.frames_out, payload)));
  }
  ++out.frames_out;
  out.queued_bytes += size;
  ++s.frames_sent;
  impl_->start_write(it->second);
  return SendStatus::queued;
}

bool TcpTransport::connected(const std::string& peer) const {
  auto it = impl_->outbound.find(peer);
  return it != impl_->outbound.end() && it->second->state == Outbound::State::up;
}

TransportStats TcpTransport::stats() const { return impl_->stats; }

std::map<std::string, TcpTransport::QueueDepth> TcpTransport::queue_depths() const {
  std::map<std::string, QueueDepth> out;
  for (const auto& [addr, o] : impl_->outbound) out[addr] = QueueDepth{o->queue.size(), o->queued_bytes, o->state == Outbound::State::up};
  return out;
}

uint16_t TcpTransport::local_port() const {
  error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

}  // namespace chorus::runtime
