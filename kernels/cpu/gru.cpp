// CPU reference of the RMoE router's GRU cell (kernels/moe.h).
#include <cmath>

#include "kernels/moe.h"

namespace sparta::kernels {

namespace {
inline float sigm(float x) { return 1.0f / (1.0f + std::exp(-x)); }
void cpu_only(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (!t->empty() && !t->device.is_cpu())
      SPARTA_USAGE_ERROR("{}: the GRU router runs on the CPU only so far (got a {} tensor)", op,
                         to_string(t->device));
}
}  // namespace

void gru_cell_forward(Tensor h, Tensor saved, Tensor gi, Tensor gh, Tensor b_ih, Tensor b_hh,
                      Tensor h_prev) {
  cpu_only("gru_cell_forward", {&h, &saved, &gi, &gh, &b_ih, &b_hh, &h_prev});
  const int64_t P = h.dim(-1), N = h.numel() / P;
  SPARTA_CHECK(gi.numel() == N * 3 * P && gh.numel() == N * 3 * P && saved.numel() == N * 4 * P &&
                   b_ih.numel() == 3 * P && b_hh.numel() == 3 * P && h_prev.numel() == N * P,
               "gru_cell_forward: h {} gi {} gh {} saved {}", h.shape_str(), gi.shape_str(),
               gh.shape_str(), saved.shape_str());
  const float *a = gi.f32(), *b = gh.f32(), *bi = b_ih.f32(), *bh = b_hh.f32(), *hp = h_prev.f32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* ar = a + n * 3 * P;
    const float* br = b + n * 3 * P;
    float* s = saved.f32() + n * 4 * P;
    for (int64_t j = 0; j < P; ++j) {
      const float r = sigm(ar[j] + bi[j] + br[j] + bh[j]);
      const float z = sigm(ar[P + j] + bi[P + j] + br[P + j] + bh[P + j]);
      const float hn = br[2 * P + j] + bh[2 * P + j];
      const float nn = std::tanh(ar[2 * P + j] + bi[2 * P + j] + r * hn);
      h.f32()[n * P + j] = (1.0f - z) * nn + z * hp[n * P + j];
      s[j] = r;
      s[P + j] = z;
      s[2 * P + j] = nn;
      s[3 * P + j] = hn;
    }
  }
}

void gru_cell_backward(Tensor dgi, Tensor dgh, Tensor db_ih, Tensor db_hh, Tensor dh_prev,
                       Tensor dh, Tensor saved, Tensor h_prev) {
  cpu_only("gru_cell_backward", {&dgi, &dgh, &db_ih, &db_hh, &dh_prev, &dh, &saved, &h_prev});
  const int64_t P = dh.dim(-1), N = dh.numel() / P;
  const float *g = dh.f32(), *hp = h_prev.f32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* s = saved.f32() + n * 4 * P;
    float* da = dgi.f32() + n * 3 * P;
    float* db = dgh.f32() + n * 3 * P;
    for (int64_t j = 0; j < P; ++j) {
      const float r = s[j], z = s[P + j], nn = s[2 * P + j], hn = s[3 * P + j];
      const float gh = g[n * P + j];
      const float dn_pre = gh * (1.0f - z) * (1.0f - nn * nn);
      const float dz_pre = gh * (hp[n * P + j] - nn) * z * (1.0f - z);
      const float dr_pre = dn_pre * hn * r * (1.0f - r);
      da[j] = dr_pre;
      da[P + j] = dz_pre;
      da[2 * P + j] = dn_pre;
      db[j] = dr_pre;
      db[P + j] = dz_pre;
      db[2 * P + j] = dn_pre * r;
      if (!dh_prev.empty()) dh_prev.f32()[n * P + j] += gh * z;
    }
  }
  // Bias gradients: column sums in a fixed row order (deterministic).
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < 3 * P; ++j) {
      db_ih.f32()[j] += dgi.f32()[n * 3 * P + j];
      db_hh.f32()[j] += dgh.f32()[n * 3 * P + j];
    }
}

}  // namespace sparta::kernels
