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
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  const char* autosel = std::getenv("SPARTA_BLAS_AUTO");
  if (autosel != nullptr && std::strcmp(autosel, "0") == 0) return;
  const std::string core = preferred_blas_coretype();
  if (core.empty()) return;
  setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
  execv("/proc/self/exe", argv);
  // execv only returns on failure: carry on with OpenBLAS's own choice.
  unsetenv("OPENBLAS_CORETYPE");
}

std::string blas_info() {
  return fmt::format("{} core={} threads={}", openblas_get_config(), openblas_get_corename(),
                     openblas_get_num_threads());
}

}  // namespace sparta::kernels
