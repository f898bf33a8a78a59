// One convention for everything that can fail, in every layer (store, app, config, node, runtime):
//
//   - an operation that yields a value returns (or calls back with) `Result<T, E>`: the domain's error
//     and, when `ok()`, the value;
//   - an operation that yields nothing returns its domain's error alone, whose `ok()` says it worked.
//
// Each domain keeps the error type its callers need: `db::Error` (a Status to route and retry on, and
// the server's text), `app::AppError` (Mattermost's HTTP status and stable id), `config::ConfigErrors`
// (every bad setting, each named), and `Failure` (a message) where a message is all there is. Nothing
// throws across a layer; exceptions stay inside the code that catches them (a JSON parse, a libpq call).
#pragma once

#include <concepts>
#include <string>

namespace chorus {

// An error type: default-constructed means "no error", and ok() says which it is.
template <class E>
concept ErrorType = std::default_initializable<E> && requires(const E& e) {
  { e.ok() } -> std::convertible_to<bool>;
};

template <class T, ErrorType E>
struct Result {
  E error;    // ok() when the operation worked
  T value{};  // meaningful only then
  bool ok() const { return error.ok(); }
};

// An error that is only a message for a person (empty: none).
struct Failure {
  std::string message;
  bool ok() const { return message.empty(); }
};

}  // namespace chorus
