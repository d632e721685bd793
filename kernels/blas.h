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

// Call first thing in main(). If OPENBLAS_CORETYPE is unset and this CPU has a better kernel
// than OpenBLAS would detect, sets it and re-executes the program with the same arguments (same
// PID, so mpirun and Slurm are unaffected). SPARTA_BLAS_AUTO=0 disables this.
void select_blas_kernel(char** argv);

// "OpenBLAS 0.3.21 ... core=SkylakeX threads=2": for logs and benchmark output.
std::string blas_info();

}  // namespace sparta::kernels
