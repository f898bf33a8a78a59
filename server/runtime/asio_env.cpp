#include "server/runtime/asio_env.h"

#include <openssl/rand.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstring>
#include <stdexcept>

namespace chorus::runtime {

namespace asio = boost::asio;

uint64_t SystemRandom::next_u64() {
  if (used_ + sizeof(uint64_t) > sizeof(buffer_)) {
    // Fails only when OpenSSL cannot seed from the kernel: nothing secret can be made, so stop.
    if (RAND_bytes(buffer_, sizeof(buffer_)) != 1)
      throw std::runtime_error("no randomness from the operating system (OpenSSL RAND_bytes)");
    used_ = 0;
  }
  uint64_t v = 0;
  std::memcpy(&v, buffer_ + used_, sizeof(v));
  std::memset(buffer_ + used_, 0, sizeof(v));  // a drawn secret does not stay behind
  used_ += sizeof(v);
  return v;
}

// Live timers by id. Shared with pending handlers so a handler that runs after the env is gone sees
// `alive == false` and does nothing.
struct AsioEnv::Timers {
  bool alive = true;
  TimerId next_id = 1;
  std::map<TimerId, std::unique_ptr<asio::steady_timer>> live;
  std::map<TimerId, Task> tasks;
};

AsioEnv::AsioEnv(asio::io_context& io, std::string node_name, LogSink& sink, LogLevel level,
                 TcpTransportOptions transport_options, size_t database_threads)
    : io_(io), name_(std::move(node_name)), logger_(name_, *this, sink, level), timers_(std::make_shared<Timers>()) {
  transport_ = std::make_unique<TcpTransport>(io, *this, std::move(transport_options));
  database_ = std::make_unique<DbConnector>(io, logger_, database_threads);
  cpu_ = std::make_unique<asio::thread_pool>(2);
  files_ = std::make_unique<LocalFiles>(*this);
}

AsioEnv::~AsioEnv() {
  cpu_->join();       // work in flight finishes; its completions find the env gone and do nothing
  database_.reset();  // joins its worker threads: nothing is posted after this
  transport_.reset();
  timers_->alive = false;
  for (auto& [id, timer] : timers_->live) timer->cancel();
  // Callbacks can own objects whose destructors cancel timers: take them out, then destroy them.
  auto doomed = std::move(timers_->tasks);
  timers_->tasks.clear();
  doomed.clear();
  timers_->live.clear();
}

MonoTime AsioEnv::now() const {
  return MonoTime{
      std::chrono::duration_cast<microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count()};
}

WallTime AsioEnv::wall_now() const {
  return WallTime{
      std::chrono::duration_cast<microseconds>(std::chrono::system_clock::now().time_since_epoch()).count()};
}

TimerId AsioEnv::set_timer(Duration delay, Task fn) {
  const TimerId id = timers_->next_id++;
  auto timer = std::make_unique<asio::steady_timer>(io_, std::max(delay, Duration{0}));
  timer->async_wait([timers = timers_, id](const boost::system::error_code& ec) {
    if (!timers->alive || ec) return;
    auto it = timers->tasks.find(id);
    if (it == timers->tasks.end()) return;  // cancelled
    Task task = std::move(it->second);
    timers->tasks.erase(it);
    timers->live.erase(id);  // destroys the timer object; safe: its handler is this one, already dequeued
    task();
  });
  timers_->live.emplace(id, std::move(timer));
  timers_->tasks.emplace(id, std::move(fn));
  return id;
}

bool AsioEnv::cancel_timer(TimerId id) {
  auto it = timers_->tasks.find(id);
  if (it == timers_->tasks.end()) return false;
  timers_->tasks.erase(it);
  auto t = timers_->live.find(id);
  if (t != timers_->live.end()) {
    t->second->cancel();
    timers_->live.erase(t);
  }
  return true;
}

void AsioEnv::post(Task fn) {
  asio::post(io_, [timers = timers_, fn = std::move(fn)] {
    if (timers->alive) fn();
  });
}

void AsioEnv::run_blocking(Task work, Task done) {
  asio::post(*cpu_, [this, timers = timers_, work = std::move(work), done = std::move(done)]() mutable {
    work();
    asio::post(io_, [timers, done = std::move(done)] {
      if (timers->alive) done();
    });
  });
}

}  // namespace chorus::runtime
