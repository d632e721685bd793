#include "kernels/blas.h"

#include <unistd.h>

#include <cblas.h>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

namespace sparta::kernels {

std::string preferred_blas_coretype() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return "";
}

void select_blas_kernel(char** argv) {
  const char* autosel = std::getenv("SPARTA_BLAS_AUTO");
  if (autosel != nullptr && std::strcmp(autosel, "0") == 0) return;
  // Already done (by us or by the user) when the variable is present: never loop.
  if (std::getenv("SPARTA_RUNTIME_TUNED") != nullptr) return;
  setenv("SPARTA_RUNTIME_TUNED", "1", 1);
  bool changed = false;
  auto set_default = [&](const char* name, const std::string& value) {
    if (value.empty() || std::getenv(name) != nullptr) return;
    setenv(name, value.c_str(), 1);
    changed = true;
  };
  set_default("OPENBLAS_CORETYPE", preferred_blas_coretype());
  set_default("OPENBLAS_THREAD_TIMEOUT", "4");
  set_default("GOMP_SPINCOUNT", "10000");
  if (changed) execv("/proc/self/exe", argv);
  // execv returns only on failure: carry on with the libraries' own choices.
}

std::string blas_info() {
  return fmt::format("{} core={} threads={}", openblas_get_config(), openblas_get_corename(),
                     openblas_get_num_threads());
}

}  // namespace sparta::kernels
