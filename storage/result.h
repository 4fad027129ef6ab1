// Result<T>: a value or an Error, the return type of every fallible call in moat.
//
// Modelled on absl::StatusOr and shaped so it can become std::expected later.
// An Error carries what failed (message, with the image/layer/entry named by the
// caller as context is added on the way up), the errno if a system call failed,
// and a hint that tells the user what to do next. Image data never reaches an
// assert: everything that can go wrong with input is an Error value.
#pragma once

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace moat {

struct Error {
  std::string message;  // what went wrong, most specific context first
  int sys_errno = 0;    // errno of the failed system call, 0 if none
  std::string hint;     // what the user can do about it, may be empty

  // Prefixes context: Error{"bad entry"}.context("layer 2") -> "layer 2: bad entry".
  Error context(const std::string& what) && {
    message = what + ": " + message;
    return std::move(*this);
  }
  Error with_hint(std::string h) && {
    hint = std::move(h);
    return std::move(*this);
  }
  std::string describe() const {
    std::string s = message;
    if (sys_errno != 0) s += std::string(" (") + std::strerror(sys_errno) + ")";
    return s;
  }
};

// An Error from the current errno, naming the call and its subject.
inline Error sys_error(const std::string& what, int err = errno) { return Error{what, err, {}}; }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error e) : v_(std::move(e)) {}      // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success or an Error.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : e_(std::move(e)) {}  // NOLINT
  bool ok() const { return !e_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const& { return *e_; }
  Error&& error() && { return std::move(*e_); }

 private:
  std::optional<Error> e_;
};

using Status = Result<void>;
inline Status ok_status() { return {}; }

}  // namespace moat

// Propagates an error to the caller, optionally adding context.
#define MOAT_TRY(expr)                                   \
  do {                                                   \
    auto _moat_r = (expr);                               \
    if (!_moat_r.ok()) return std::move(_moat_r).error(); \
  } while (0)

#define MOAT_CONCAT_INNER(a, b) a##b
#define MOAT_CONCAT(a, b) MOAT_CONCAT_INNER(a, b)
#define MOAT_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return std::move(tmp).error();    \
  lhs = std::move(tmp).value()
#define MOAT_ASSIGN_OR_RETURN(lhs, expr) \
  MOAT_ASSIGN_OR_RETURN_IMPL(MOAT_CONCAT(_moat_r_, __LINE__), lhs, expr)
