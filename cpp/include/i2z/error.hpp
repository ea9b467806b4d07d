// One error style for the engine: exceptions of type i2z::Error carrying a kind that the
// Python boundary maps to the matching built-in exception. Per-image decode failures are
// not exceptions that escape the pipeline: they become ImageRecord::error.
#pragma once
#include <stdexcept>
#include <string>

namespace i2z {

enum class ErrorKind { Value, FileNotFound, FileExists, IO, Index, Corrupt, Cancelled, Runtime };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

}  // namespace i2z
