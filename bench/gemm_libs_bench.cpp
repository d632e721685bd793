// SGEMM of one BLAS-like library, loaded at run time, on the training step's own GEMM shapes
// (the CPU-speed issue: choose the GEMM library by measurement). Each linear layer of the dense
// default model (B 16 x T 128 = 2048 rows, d_model 256, d_ff 683, 6 layers, 4096 vocabulary,
// the LM head in 1024-row chunks) appears in its three forms: forward Y = X W^T, input gradient dX
// = dY W, weight gradient dW = dY^T X. One library per process (their thread pools must not meet);
// bench/gemm_libs.sh runs each in turn, alternating rounds, and prints the comparison. Prints
// "bench_json: {...}"; asserts nothing.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

namespace {

// cblas_sgemm's signature, with the CBLAS enum values as ints (row major 101, no trans 111,
// trans 112).
using CblasSgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*,
                            int, float, float*, int);
// oneDNN's row-major C API.
using DnnlSgemm = int (*)(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
using SetThreads = void (*)(int);

struct Shape {
  std::string name;
  int M, N, K;
  bool ta, tb;   // op(A) = A^T, op(B) = B^T
  int per_step;  // how many times the step runs it (the per-layer ones: n_layers)
};

std::vector<Shape> step_shapes() {
  struct Linear {
    const char* name;
    int m, n, k, per_step;  // m rows at a time (the LM head: 1024-row chunks, twice)
  };
  const int L = 6;
  std::vector<Shape> out;
  for (const Linear& l : {Linear{"qkv", 2048, 768, 256, L}, Linear{"proj", 2048, 256, 256, L},
                          Linear{"up+gate", 2048, 1366, 256, L}, Linear{"down", 2048, 256, 683, L},
                          Linear{"lm_head", 1024, 4096, 256, 2}}) {
    out.push_back({fmt::format("{} fwd", l.name), l.m, l.n, l.k, false, true, l.per_step});
    out.push_back({fmt::format("{} dX", l.name), l.m, l.k, l.n, false, false, l.per_step});
    out.push_back({fmt::format("{} dW", l.name), l.n, l.k, l.m, true, false, l.per_step});
  }
  out.push_back({"square 1024", 1024, 1024, 1024, false, false, 0});
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: gemm_libs_bench NAME LIBRARY.so [threads] [reps]\n"
                 "  LIBRARY exports cblas_sgemm, or dnnl_sgemm (oneDNN)\n");
    return 2;
  }
  const std::string name = argv[1], path = argv[2];
  const int threads = argc > 3 ? std::atoi(argv[3]) : 2, reps = argc > 4 ? std::atoi(argv[4]) : 5;
  // OpenBLAS picks its kernels when it loads: the same choice as sparta's (kernels/blas.cpp
  // preferred_blas_coretype), unless the caller set one.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    setenv("OPENBLAS_CORETYPE", "Haswell", 0);
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    std::fprintf(stderr, "gemm_libs_bench: cannot load %s: %s\n", path.c_str(), dlerror());
    return 1;
  }
  auto cblas = reinterpret_cast<CblasSgemm>(dlsym(lib, "cblas_sgemm"));
  auto dnnl = reinterpret_cast<DnnlSgemm>(dlsym(lib, "dnnl_sgemm"));
  if (!cblas && !dnnl) {
    std::fprintf(stderr, "gemm_libs_bench: %s has neither cblas_sgemm nor dnnl_sgemm\n",
                 path.c_str());
    return 1;
  }
  for (const char* setter : {"openblas_set_num_threads", "bli_thread_set_num_threads"})
    if (auto set = reinterpret_cast<SetThreads>(dlsym(lib, setter))) set(threads);

  nlohmann::json rows = nlohmann::json::array();
  double step_s = 0;
  for (const Shape& s : step_shapes()) {
    const int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
    std::vector<float> a(static_cast<size_t>(s.M) * s.K, 0.01f),
        b(static_cast<size_t>(s.K) * s.N, 0.02f), c(static_cast<size_t>(s.M) * s.N);
    auto run = [&] {
      if (cblas)
        cblas(101, s.ta ? 112 : 111, s.tb ? 112 : 111, s.M, s.N, s.K, 1.0f, a.data(), lda, b.data(),
              ldb, 0.0f, c.data(), s.N);
      else
        dnnl(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.M, s.N, s.K, 1.0f, a.data(), lda, b.data(), ldb,
             0.0f, c.data(), s.N);
    };
    run();  // warm: thread pools, JIT, pages
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      run();
      t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    // Every element of C is K * 0.01 * 0.02: a library that skips work shows here.
    const float want = static_cast<float>(s.K) * 0.01f * 0.02f;
    float worst = 0;
    for (float v : c) worst = std::max(worst, std::abs(v - want) / want);
    if (worst > 1e-3f) {
      std::fprintf(stderr, "gemm_libs_bench: %s %s: wrong result (relative error %g)\n",
                   name.c_str(), s.name.c_str(), static_cast<double>(worst));
      return 1;
    }
    std::sort(t.begin(), t.end());
    const double med = t[t.size() / 2];
    const double gflops = 2.0 * s.M * s.N * s.K / med / 1e9;
    step_s += med * s.per_step;
    rows.push_back(
        {{"shape", s.name}, {"M", s.M}, {"N", s.N}, {"K", s.K}, {"s", med}, {"gflops", gflops}});
    std::printf("%-16s %-14s M %5d N %5d K %5d  %8.3f ms  %6.1f GFLOP/s\n", name.c_str(),
                s.name.c_str(), s.M, s.N, s.K, med * 1e3, gflops);
  }
  std::printf("%-16s GEMMs of one training step (forward and backward): %.1f ms\n", name.c_str(),
              step_s * 1e3);
  const nlohmann::json out = {
      {"lib", name}, {"path", path}, {"threads", threads}, {"step_gemm_s", step_s}, {"rows", rows}};
  std::printf("bench_json: %s\n", out.dump().c_str());
  return 0;
}
