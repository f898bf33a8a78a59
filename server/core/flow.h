// Flows: a request that takes several steps (read the channel, then its members, then write in the
// channel's turn, then publish) written top to bottom as a C++20 coroutine, instead of a pyramid of
// callbacks each with its own `if (!*alive) return;`.
//
// The awaitables are the seam's own operations in callback form - a store call, a timer, a cluster
// request, any function that takes a completion callback - so a flow is resumed by whoever calls that
// callback: the node's loop in production, the simulator's kernel in simulation. Nothing else changes:
// the operation starts when the flow awaits it, and the flow goes on inside its completion, exactly
// where the nested lambda used to run, so the simulator's traces stay the same.
//
// The node's lifetime is handled here, once: every await carries the owner's `alive` token. When the
// completion comes after the owner is gone, or never comes (the callback is destroyed uncalled, as a
// stopped store drops its queue), the flow's frame is destroyed without running another line - as the
// lambdas that returned on `!*alive`, or were dropped, never ran theirs.
//
//   Flow App::create_post_flow(...) {
//     auto [e, channel] = co_await awaiting<AppError, std::optional<Channel>>(alive_, [&](auto resume) {
//       load_channel(id, std::move(resume));
//     });
//     ...
//   }
//
// A Flow is started by calling it and runs until its first await; it is not awaited by its caller
// (results go out through the callbacks it was given). References captured by an awaiting's start
// function are used before the flow suspends, so locals of the flow are safe to capture by reference.
#pragma once

#include <coroutine>
#include <exception>
#include <memory>
#include <optional>
#include <tuple>
#include <utility>

namespace chorus {

// A fire-and-forget coroutine: starts at once, frees its frame when it ends.
struct Flow {
  struct promise_type {
    Flow get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }  // node code does not throw across the loop
  };
};

namespace flow_detail {

// The suspended flow, owned by the completion callback (and its copies) until it is resumed once.
struct Suspended {
  std::coroutine_handle<> handle;
  std::shared_ptr<bool> alive;
  Suspended(std::coroutine_handle<> h, std::shared_ptr<bool> a) : handle(h), alive(std::move(a)) {}
  Suspended(const Suspended&) = delete;
  Suspended& operator=(const Suspended&) = delete;
  ~Suspended() {
    if (handle) handle.destroy();  // never completed: the flow ends here, unrun
  }
  void resume() {
    auto h = std::exchange(handle, {});
    if (!h) return;  // completed twice: the first one counts
    if (*alive)
      h.resume();
    else
      h.destroy();  // the owner is gone
  }
};

}  // namespace flow_detail

// Awaits an operation that reports through a callback taking Args...; the await yields them (one value,
// or a tuple for several). `start` receives that callback and starts the operation with it.
template <class... Args, class Start>
auto awaiting(std::shared_ptr<bool> alive, Start start) {
  using Value = std::conditional_t<sizeof...(Args) == 1, std::tuple_element_t<0, std::tuple<Args..., void>>,
                                   std::tuple<Args...>>;
  struct Awaiter {
    std::shared_ptr<bool> alive;
    Start start;
    std::optional<Value> value;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      auto suspended = std::make_shared<flow_detail::Suspended>(h, alive);
      // The completion may run inside start (a cache hit): then the flow resumes before start returns,
      // and this awaiter (in the flow's frame) may be gone after it: nothing touches `this` after start.
      start([this, suspended](Args... args) {
        if (!suspended->handle) return;
        value.emplace(std::move(args)...);
        suspended->resume();
      });
    }
    Value await_resume() { return std::move(*value); }
  };
  return Awaiter{std::move(alive), std::move(start), std::nullopt};
}

}  // namespace chorus
