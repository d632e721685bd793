// main() scaffolding shared by every sparta program (apps/, bench/, examples/): command-line
// parsing (each main() first calls kernels::select_blas_kernel, kernels/blas.h), and the
// mapping of every failure to one message on stderr and a documented exit code:
//   0 success, 1 internal error, 2 usage or config error, 3 data or file error; sparta-train
// adds 75 (checkpointed on a signal: requeue me), 76 (stopped unsaved on request) and 143
// (a second SIGTERM), trainer/control.h.
#pragma once

#include <cstdio>
#include <exception>
#include <functional>

#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include "kernels/blas.h"
#include "kernels/check.h"

namespace sparta::launch {

inline int run_main(const char* prog, CLI::App& app, int argc, char** argv,
                    const std::function<int()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "{}: error: {}\nRun with --help for usage.\n", prog, e.what());
    return static_cast<int>(ErrorKind::usage);
  }
  try {
    return body();
  } catch (const Error& e) {
    fmt::print(stderr, "{}: error: {}\n", prog, e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: internal error: {}\n", prog, e.what());
    return static_cast<int>(ErrorKind::internal);
  }
}

}  // namespace sparta::launch
