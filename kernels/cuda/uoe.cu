// CUDA twin of the UoE stages (kernels/uoe_backend.inc). The clean-mode assignment runs one
// thread per (expert, group) scanning the group's items in order, which makes the admitted set
// and the slot order identical to the CPU's (the spec's deterministic, atomics-free maps).
#include <vector>

#include "kernels/cuda/common.cuh"

namespace sparta::kernels::cuda {
#include "kernels/uoe_backend.inc"

namespace {
constexpr int kThreads = 128;

unsigned grid(int64_t n) {
  return static_cast<unsigned>((n + kThreads - 1) / kThreads);
}

__global__ void fill_k(int32_t* p, int32_t v, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    p[i] = v;
}

// counts[(e*G + g)*2 + {0,1}] = members, admitted of (e, g).
__global__ void assign_clean_k(int32_t* row_token, int32_t* pos, int32_t* slot_pos, int64_t* counts,
                               const int32_t* idx, int64_t K, int64_t E, int64_t G, int64_t I,
                               int64_t gs, int64_t is, int64_t T) {
  const int64_t eg = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (eg >= E * G) return;
  const int64_t e = eg / G, g = eg % G, base = eg * T;
  int64_t t = 0, members = 0;
  for (int64_t i = 0; i < I; ++i) {
    const int64_t n = g * gs + i * is;
    bool chose = false;
    for (int64_t k = 0; k < K; ++k) chose = chose || idx[n * K + k] == e;
    if (!chose) continue;
    ++members;
    if (t == T) continue;
    row_token[base + t] = static_cast<int32_t>(n);
    slot_pos[base + t] = static_cast<int32_t>(i);
    pos[n * E + e] = static_cast<int32_t>(base + t);
    ++t;
  }
  counts[eg * 2] = members;
  counts[eg * 2 + 1] = t;
  for (; t < T; ++t) {
    row_token[base + t] = static_cast<int32_t>(g * gs);
    slot_pos[base + t] = 0;
  }
}

__global__ void bias_fwd_k(float* x, const float* b, int64_t R, int64_t C, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    x[i] += b[(i / (R * C)) * C + i % C];
}

// One thread per (e, c), rows in order: the same summation order as the CPU's (in double).
__global__ void bias_bwd_k(float* db, const float* dx, int64_t E, int64_t R, int64_t C) {
  const int64_t ec = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (ec >= E * C) return;
  const int64_t e = ec / C, c = ec % C;
  double s = 0;
  for (int64_t r = 0; r < R; ++r) s += dx[(e * R + r) * C + c];
  db[ec] += static_cast<float>(s);
}
}  // namespace

void uoe_assign_clean(int32_t* row_token, int32_t* pos, int32_t* slot_pos, int64_t* counts_host,
                      const int32_t* idx, int64_t N, int64_t K, int64_t E, int64_t G, int64_t I,
                      int64_t gs, int64_t is, int64_t T) {
  fill_k<<<blocks_for(N * E, kThreads), kThreads>>>(pos, -1, N * E);
  SPARTA_CUDA_LAUNCHED();
  auto* counts = static_cast<int64_t*>(scratch(static_cast<size_t>(E * G * 2) * sizeof(int64_t)));
  assign_clean_k<<<grid(E * G), kThreads>>>(row_token, pos, slot_pos, counts, idx, K, E, G, I, gs,
                                            is, T);
  SPARTA_CUDA_LAUNCHED();
  std::vector<int64_t> h(static_cast<size_t>(E * G * 2));
  SPARTA_CUDA_CHECK(
      cudaMemcpy(h.data(), counts, h.size() * sizeof(int64_t), cudaMemcpyDeviceToHost));
  for (int64_t i = 0; i < 3 * E; ++i) counts_host[i] = 0;
  for (int64_t eg = 0; eg < E * G; ++eg) {
    counts_host[eg / G] += h[static_cast<size_t>(eg * 2)];
    counts_host[E + eg / G] += h[static_cast<size_t>(eg * 2 + 1)];
  }
}

// rope_at shares its kernel with rope (kernels/cuda/embedding.cu).

void grouped_bias_forward(float* x, const float* b, int64_t E, int64_t R, int64_t C) {
  bias_fwd_k<<<blocks_for(E * R * C, kThreads), kThreads>>>(x, b, R, C, E * R * C);
  SPARTA_CUDA_LAUNCHED();
}

void grouped_bias_backward(float* db, const float* dx, int64_t E, int64_t R, int64_t C) {
  bias_bwd_k<<<grid(E * C), kThreads>>>(db, dx, E, R, C);
  SPARTA_CUDA_LAUNCHED();
}

}  // namespace sparta::kernels::cuda
