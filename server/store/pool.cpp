#include "server/store/pool.h"

#include <cassert>

namespace chorus::store {

namespace {
db::Outcome failure(db::Status status, std::string message) {
  db::Outcome o;
  o.error = db::Error{status, std::move(message)};
  return o;
}
}  // namespace

Pool::Pool(Env& env, PoolOptions options) : env_(env), options_(std::move(options)) {
  assert(options_.max_open >= 1);
  schedule_sweep();
}

Pool::~Pool() {
  *alive_ = false;
  if (sweep_timer_) env_.cancel_timer(sweep_timer_);
}

PoolStats Pool::stats() const {
  PoolStats s = counters_;
  s.open = open_;
  s.idle = static_cast<int64_t>(idle_.size());
  s.busy = busy_;
  s.waiting = static_cast<int64_t>(waiters_.size());
  return s;
}

void Pool::run(std::vector<db::Statement> statements, bool transaction, Duration query_timeout, db::Done done) {
  ++counters_.requests;
  if (closed_) {
    env_.post([done = std::move(done)] { done(failure(db::Status::overloaded, "the connection pool is closed")); });
    return;
  }
  dispatch(Request{std::move(statements), transaction, query_timeout, std::move(done), env_.now()});
}

void Pool::dispatch(Request request) {
  const MonoTime now = env_.now();
  while (!idle_.empty()) {
    Idle i = std::move(idle_.back());
    idle_.pop_back();
    const bool expired = (options_.max_lifetime.count() > 0 && now - i.opened_at >= options_.max_lifetime) ||
                         (options_.max_idle_time.count() > 0 && now - i.idle_since >= options_.max_idle_time);
    if (i.generation != generation_ || !i.conn->usable() || expired) {
      drop(std::move(i.conn));
      continue;
    }
    ++busy_;
    execute(std::move(i.conn), i.opened_at, i.generation, std::move(request));
    return;
  }
  if (open_ < options_.max_open) {
    open_for(std::move(request));
    return;
  }
  if (waiters_.size() >= options_.waiters_max) {
    ++counters_.rejected;
    env_.post([done = std::move(request.done), n = waiters_.size()] {
      done(failure(db::Status::overloaded,
                   "all database connections are busy and " + std::to_string(n) + " requests are already waiting"));
    });
    return;
  }
  ++counters_.waited;
  waiters_.push_back(std::move(request));
}

void Pool::open_for(Request request) {
  ++open_;
  ++busy_;
  ++counters_.opened;
  auto alive = alive_;
  env_.database().connect(options_.driver, options_.data_source, options_.application_name, options_.connect_timeout,
                          [this, alive, request = std::move(request)](db::ConnectOutcome outcome) mutable {
                            if (!*alive) return;
                            if (!outcome.value) {
                              --open_;
                              --busy_;
                              ++counters_.connect_failures;
                              request.done(db::Outcome{outcome.error, {}});
                              // Capacity freed: let a waiter try (it opens its own connection and reports its own
                              // failure).
                              if (*alive) open_for_waiters();
                              return;
                            }
                            execute(std::move(outcome.value), env_.now(), generation_, std::move(request));
                          });
}

void Pool::execute(std::unique_ptr<db::Connection> conn, MonoTime opened_at, uint64_t generation, Request request) {
  db::Connection* raw = conn.get();
  auto holder = std::make_shared<std::unique_ptr<db::Connection>>(std::move(conn));
  auto alive = alive_;
  raw->run(std::move(request.statements), request.transaction, request.query_timeout,
           [this, alive, holder, opened_at, generation, done = std::move(request.done)](db::Outcome outcome) {
             if (!*alive) return;  // the pool is gone (node stopping): the connection closes with holder
             --busy_;
             release(std::move(*holder), opened_at, generation);
             done(std::move(outcome));
           });
}

void Pool::release(std::unique_ptr<db::Connection> conn, MonoTime opened_at, uint64_t generation) {
  const MonoTime now = env_.now();
  const bool too_old = options_.max_lifetime.count() > 0 && now - opened_at >= options_.max_lifetime;
  if (closed_ || generation != generation_ || !conn->usable() || too_old || open_ > options_.max_open) {
    drop(std::move(conn));
    open_for_waiters();
    return;
  }
  if (!waiters_.empty()) {
    Request next = std::move(waiters_.front());
    waiters_.pop_front();
    ++busy_;
    execute(std::move(conn), opened_at, generation, std::move(next));
    return;
  }
  if (static_cast<int64_t>(idle_.size()) >= options_.max_idle) {
    drop(std::move(conn));
    return;
  }
  idle_.push_back(Idle{std::move(conn), opened_at, now, generation});
}

void Pool::drop(std::unique_ptr<db::Connection> conn) {
  assert(open_ > 0);
  --open_;
  ++counters_.closed;
  conn.reset();
}

void Pool::probe(Duration timeout, db::Done done) {
  auto alive = alive_;
  env_.database().connect(options_.driver, options_.data_source, options_.application_name, timeout,
                          [alive, timeout, done = std::move(done)](db::ConnectOutcome outcome) mutable {
                            if (!*alive) return;
                            if (!outcome.value) {
                              done(db::Outcome{outcome.error, {}});
                              return;
                            }
                            db::Connection* raw = outcome.value.get();
                            auto holder = std::make_shared<std::unique_ptr<db::Connection>>(std::move(outcome.value));
                            raw->run({db::Statement{"SELECT 1", {}}}, false, timeout,
                                     [alive, holder, done = std::move(done)](db::Outcome o) {
                                       if (*alive) done(std::move(o));
                                     });
                          });
}

void Pool::recycle() {
  ++generation_;
  std::vector<Idle> idle = std::move(idle_);
  idle_.clear();
  for (auto& i : idle) drop(std::move(i.conn));
}

void Pool::set_limits(const PoolOptions& options) {
  const std::string driver = options_.driver, ds = options_.data_source;
  options_ = options;
  options_.driver = driver;
  options_.data_source = ds;
  while (static_cast<int64_t>(idle_.size()) > options_.max_idle) {
    drop(std::move(idle_.front().conn));
    idle_.erase(idle_.begin());
  }
  open_for_waiters();  // a higher MaxOpenConns serves waiting requests at once
}

void Pool::open_for_waiters() {
  while (!closed_ && !waiters_.empty() && open_ < options_.max_open) {
    Request next = std::move(waiters_.front());
    waiters_.pop_front();
    open_for(std::move(next));
  }
}

void Pool::close() {
  closed_ = true;
  std::vector<Idle> idle = std::move(idle_);
  idle_.clear();
  for (auto& i : idle) drop(std::move(i.conn));
  std::deque<Request> waiters = std::move(waiters_);
  waiters_.clear();
  for (auto& w : waiters) {
    ++counters_.rejected;
    w.done(failure(db::Status::overloaded, "the connection pool is closed"));
  }
}

void Pool::schedule_sweep() {
  sweep_timer_ = env_.set_timer(Duration{1'000'000}, [this] {
    sweep_timer_ = 0;
    sweep();
    if (!closed_) schedule_sweep();
  });
}

void Pool::sweep() {
  const MonoTime now = env_.now();
  // Idle connections past their lifetime or idle time.
  std::vector<Idle> keep;
  for (auto& i : idle_) {
    const bool expired = (options_.max_lifetime.count() > 0 && now - i.opened_at >= options_.max_lifetime) ||
                         (options_.max_idle_time.count() > 0 && now - i.idle_since >= options_.max_idle_time) ||
                         !i.conn->usable();
    if (expired)
      drop(std::move(i.conn));
    else
      keep.push_back(std::move(i));
  }
  idle_ = std::move(keep);
  // Waiters past the acquire timeout.
  while (!waiters_.empty() && now - waiters_.front().queued_at >= options_.acquire_timeout) {
    Request r = std::move(waiters_.front());
    waiters_.pop_front();
    ++counters_.rejected;
    r.done(failure(db::Status::timeout, "no database connection became free within the acquire timeout"));
  }
}

}  // namespace chorus::store
