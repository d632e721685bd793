// Error reporting for every layer of sparta.
//
// Invariant: an error never passes silently. Every failed check throws sparta::Error carrying the
// file, the line and the failed expression (or system call), so the top-level CLI can print one
// precise message and choose the documented exit code from Error::kind.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace sparta {

// Exit codes are part of the CLI contract (README "Exit codes").
enum class ErrorKind : int {
  internal = 1,  // a bug or an unexpected system failure
  usage = 2,     // bad command line or configuration
  data = 3,      // missing, unreadable or corrupt input file
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const { return kind_; }
  int exit_code() const { return static_cast<int>(kind_); }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void fail_check(const char* file, int line, const char* expr,
                                    const std::string& msg) {
  throw Error(ErrorKind::internal, fmt::format("{}:{}: check failed: {}{}{}", file, line, expr,
                                               msg.empty() ? "" : ": ", msg));
}

}  // namespace sparta

// SPARTA_CHECK(cond, "format {}", args...): internal invariant; message names file and line.
#define SPARTA_CHECK(cond, ...)                                                                \
  do {                                                                                         \
    if (!(cond)) ::sparta::fail_check(__FILE__, __LINE__, #cond, fmt::format("" __VA_ARGS__)); \
  } while (0)

// Errors a user caused: these carry their own exit code and a message meant for the user.
#define SPARTA_USAGE_ERROR(...) \
  throw ::sparta::Error(::sparta::ErrorKind::usage, fmt::format(__VA_ARGS__))
#define SPARTA_DATA_ERROR(...) \
  throw ::sparta::Error(::sparta::ErrorKind::data, fmt::format(__VA_ARGS__))
