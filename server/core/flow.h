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
// A Flow runs from start() until its first await; it is not awaited by its caller (results go out
// through the callbacks it was given). References captured by an awaiting's start
// function are used before the flow suspends, so locals of the flow are safe to capture by reference.
#pragma once

#include <coroutine>
#include <exception>
#include <memory>
#include <optional>
#include <tuple>
#include <utility>

namespace chorus {

// A fire-and-forget coroutine, run by start() (`create_post_flow(...).start();`), that frees its frame
// when it ends. [[nodiscard]]: a flow never started would never run.
//
// An exception that leaves a flow's body (in the simulator a failed CHORUS_ASSERT throws, so the seed
// fails instead of chorus-sim) goes where a callback's exception went: to whoever ran that part of the
// flow - start()'s caller, or the code that called the completion it was waiting on - and the frame is
// freed on the way.
struct [[nodiscard]] Flow {
  struct State {
    std::exception_ptr exception;  // set when the body threw; the frame then waits at its end to be freed
  };
  struct promise_type {
    std::shared_ptr<State> state = std::make_shared<State>();
    Flow get_return_object() noexcept { return Flow{std::coroutine_handle<promise_type>::from_promise(*this), state}; }
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct End {
      bool failed;
      bool await_ready() const noexcept { return !failed; }  // normally the frame goes at once
      void await_suspend(std::coroutine_handle<>) const noexcept {}
      void await_resume() const noexcept {}
    };
    End final_suspend() noexcept { return End{state->exception != nullptr}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { state->exception = std::current_exception(); }
  };
  using Handle = std::coroutine_handle<promise_type>;

  Flow(Handle h, std::shared_ptr<State> s) : handle_(h), state_(std::move(s)) {}
  Flow(const Flow&) = delete;
  Flow(Flow&& other) noexcept : handle_(std::exchange(other.handle_, {})), state_(std::move(other.state_)) {}  // clang 14
  Flow& operator=(const Flow&) = delete;
  ~Flow() {
    if (handle_) handle_.destroy();  // never started
  }

  // Runs the flow up to its first wait (or its end); what that part throws goes to the caller.
  void start() && {
    auto h = std::exchange(handle_, {});
    h.resume();
    rethrow_if_failed(h, state_);
  }

  // After running a flow's frame: if its body threw, the frame is freed and the exception rethrown.
  static void rethrow_if_failed(Handle h, const std::shared_ptr<State>& state) {
    if (!state->exception) return;
    auto e = std::exchange(state->exception, nullptr);
    h.destroy();
    std::rethrow_exception(e);
  }

 private:
  Handle handle_;
  std::shared_ptr<State> state_;
};

namespace flow_detail {

// The suspended flow, owned by the completion callback (and its copies) until it is resumed once.
struct Suspended {
  Flow::Handle handle;
  std::shared_ptr<Flow::State> state;
  std::shared_ptr<bool> alive;
  bool starting = true;  // the operation is being started: a completion now needs no resume
  Suspended(Flow::Handle h, std::shared_ptr<bool> a) : handle(h), state(h.promise().state), alive(std::move(a)) {}
  Suspended(const Suspended&) = delete;
  Suspended& operator=(const Suspended&) = delete;
  ~Suspended() {
    if (handle) handle.destroy();  // never completed: the flow ends here, unrun
  }
  void resume() {
    auto h = std::exchange(handle, {});
    if (!h) return;                   // completed twice: the first one counts
    if (!*alive) return h.destroy();  // the owner is gone
    h.resume();
    Flow::rethrow_if_failed(h, state);
  }
};

}  // namespace flow_detail

// Awaits an operation that reports through a callback taking Args...; the await yields them (one value,
// or a tuple for several). `start` receives that callback and starts the operation with it.
template <class... Args, class Start>
auto awaiting(std::shared_ptr<bool> alive, Start start) {
  using Value =
      std::conditional_t<sizeof...(Args) == 1, std::tuple_element_t<0, std::tuple<Args..., void>>, std::tuple<Args...>>;
  struct Awaiter {
    std::shared_ptr<bool> alive;
    Start start;
    std::optional<Value> value;
    bool await_ready() const noexcept { return false; }
    bool await_suspend(Flow::Handle h) {
      auto suspended = std::make_shared<flow_detail::Suspended>(h, alive);
      // If start throws, the exception goes into the flow's body, whose frame must stay: let go of it.
      struct LetGoOnThrow {
        flow_detail::Suspended& s;
        int exceptions = std::uncaught_exceptions();
        ~LetGoOnThrow() {
          if (std::uncaught_exceptions() > exceptions) s.handle = {};
        }
      } let_go{*suspended};
      start([this, suspended](Args... args) {
        if (!suspended->handle) return;
        value.emplace(std::move(args)...);  // the frame (and this awaiter in it) still stands here
        if (suspended->starting) {
          suspended->handle = {};  // completed inside start (a cache hit): the flow goes on without suspending
          return;
        }
        suspended->resume();
      });
      suspended->starting = false;
      // Suspended unless it completed already. (If the operation dropped the callback uncalled, the last
      // owner is `suspended` here, and the frame is freed as this returns: nothing touches it after.)
      return suspended->handle != nullptr;
    }
    Value await_resume() { return std::move(*value); }
  };
  return Awaiter{std::move(alive), std::move(start), std::nullopt};
}

}  // namespace chorus
