// BLAS kernel selection. Debian's OpenBLAS 0.3.21 is a DYNAMIC_ARCH build that picks its kernels
// once, when the library loads, from OPENBLAS_CORETYPE or CPUID. On CPUs newer than the library
// (Zen 5, Emerald Rapids) CPUID detection falls back to Haswell or even Prescott (SSE3) kernels:
// measured here on an Intel model-207 CPU, sgemm 1024^3 ran at 38.6 GFLOP/s with the detected
// Prescott kernel and 228 GFLOP/s with SkylakeX. Because the choice is made at load time, the
// only way to fix it from inside a program is to set the variable and re-execute it.
#pragma once

#include <string>

namespace sparta::kernels {

// The OpenBLAS core type right for this CPU ("SkylakeX" with AVX-512 F/BW/DQ/VL, "Haswell" with
// AVX2+FMA, "" otherwise: leave OpenBLAS's own choice).
std::string preferred_blas_coretype();

// Call first thing in main(). Sets, where the user has not, the environment that OpenBLAS and
// libgomp read only when they load, then re-executes the program with the same arguments (same
// PID, so mpirun and Slurm are unaffected). SPARTA_BLAS_AUTO=0 disables all of it.
//  - OPENBLAS_CORETYPE = preferred_blas_coretype().
//  - OPENBLAS_THREAD_TIMEOUT=4 and GOMP_SPINCOUNT=10000: OpenBLAS's pthreads and OpenMP's threads
//    alternate on the same cores (GEMM, then a norm, then GEMM...). With the default long spins
//    each pool's idle threads burn the cores the other pool needs (perf: ~20% of cycles in
//    sched_yield and libgomp spin loops). Measured on the default model, 2 cores:
//    2030 tok/s before, 2950 tok/s after.
void select_blas_kernel(char** argv);

// "OpenBLAS 0.3.21 ... core=SkylakeX threads=2": for logs and benchmark output.
std::string blas_info();

}  // namespace sparta::kernels
