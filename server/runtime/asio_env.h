// The production side of the seam for one node: real clocks, Asio timers on the node's io_context, a
// CSPRNG (the OS's, through OpenSSL), and the TCP transport. All callbacks run on the thread that runs the
// io_context (the node's loop). Only server/runtime and its tests include this header.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "server/core/env.h"
#include "server/runtime/db_connector.h"
#include "server/runtime/local_files.h"
#include "server/runtime/tcp_transport.h"

namespace boost::asio {
class thread_pool;
}

namespace chorus::runtime {

// Production randomness: every draw comes from the operating system's CSPRNG (OpenSSL's RAND_bytes,
// seeded and reseeded from the kernel), bought 512 bytes at a time. Session tokens, bcrypt salts, the
// cluster key and every id come from here, so no output tells anything about another (a seeded PRNG
// such as the simulator's xoshiro256** gives its state away in two outputs). Not seedable on purpose.
// Used on the node's loop only (the buffer is not locked).
class SystemRandom final : public Random {
 public:
  uint64_t next_u64() override;

 private:
  unsigned char buffer_[512];
  size_t used_ = sizeof(buffer_);
};

class AsioEnv final : public Env {
 public:
  AsioEnv(boost::asio::io_context& io, std::string node_name, LogSink& sink, LogLevel level,
          TcpTransportOptions transport_options, size_t database_threads = 8);
  ~AsioEnv() override;

  MonoTime now() const override;
  WallTime wall_now() const override;
  TimerId set_timer(Duration delay, Task fn) override;
  bool cancel_timer(TimerId id) override;
  void post(Task fn) override;
  void run_blocking(Task work, Task done) override;
  Random& random() override { return random_; }
  Logger& log() override { return logger_; }
  Transport& transport() override { return *transport_; }
  db::Connector& database() override { return *database_; }
  FileStore& files() override { return s3_ ? static_cast<FileStore&>(*s3_) : *files_; }
  LocalFiles& local_files() { return *files_; }
  // FileSettings.DriverName "amazons3": the shared files are the bucket's from now on.
  void use_s3(std::unique_ptr<FileStore> s3) { s3_ = std::move(s3); }
  const std::string& node_name() const override { return name_; }

  TcpTransport& tcp() { return *transport_; }

 private:
  struct Timers;
  boost::asio::io_context& io_;
  std::string name_;
  Logger logger_;
  SystemRandom random_;
  std::shared_ptr<Timers> timers_;
  std::unique_ptr<TcpTransport> transport_;
  std::unique_ptr<DbConnector> database_;
  std::unique_ptr<LocalFiles> files_;
  std::unique_ptr<FileStore> s3_;
  std::unique_ptr<boost::asio::thread_pool> cpu_;  // run_blocking's workers
};

}  // namespace chorus::runtime
