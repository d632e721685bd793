// Shape checks and device dispatch for kernels/moe.h.
#include "kernels/moe.h"

#include <cstdint>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/dispatch.h"

namespace sparta::kernels {

namespace cpu {
#include "kernels/moe_backend.inc"
}

#ifdef SPARTA_HAVE_CUDA
namespace cuda {
#include "kernels/moe_backend.inc"
}
#endif

namespace {
float* opt(const Tensor& t) {
  return t.empty() ? nullptr : t.f32();
}
void check_n(const char* op, const char* name, const Tensor& t, int64_t n) {
  SPARTA_CHECK(t.empty() || t.numel() == n, "{}: {} has shape {}, expected {} elements", op, name,
               t.shape_str(), n);
}
}  // namespace

void moe_route_forward(Tensor probs, Tensor idx, Tensor w, Tensor logits) {
  const int64_t N = logits.dim(0), E = logits.dim(1), K = idx.dim(1);
  SPARTA_CHECK(logits.ndim == 2 && K >= 1 && K <= E && idx.dim(0) == N,
               "moe_route_forward: logits {} idx {}", logits.shape_str(), idx.shape_str());
  check_n("moe_route_forward", "probs", probs, N * E);
  check_n("moe_route_forward", "w", w, N * K);
  SPARTA_DISPATCH(logits.device,
                  moe_route_forward(probs.f32(), idx.i32(), w.f32(), logits.f32(), N, E, K));
}

void moe_route_backward(Tensor dlogits, Tensor dw, Tensor probs, Tensor idx, Tensor w) {
  const int64_t N = probs.dim(0), E = probs.dim(1), K = idx.dim(1);
  check_n("moe_route_backward", "dlogits", dlogits, N * E);
  check_n("moe_route_backward", "dw", dw, N * K);
  check_n("moe_route_backward", "w", w, N * K);
  SPARTA_DISPATCH(probs.device, moe_route_backward(dlogits.f32(), dw.f32(), probs.f32(), idx.i32(),
                                                   w.f32(), N, E, K));
}

MoeAux moe_aux_losses(Tensor logits, Tensor probs, Tensor idx, std::vector<int64_t>& counts,
                      Tensor dlogits, float lb_coef, float z_coef, float grad_scale,
                      const double* f_global) {
  const int64_t N = probs.dim(0), E = probs.dim(1), K = idx.dim(1);
  check_n("moe_aux_losses", "logits", logits, N * E);
  check_n("moe_aux_losses", "dlogits", dlogits, N * E);
  counts.assign(static_cast<size_t>(E), 0);  // no reallocation once the caller sized it
  double out[3] = {};
  SPARTA_DISPATCH(probs.device,
                  moe_aux_losses(out, counts.data(), opt(dlogits), logits.f32(), probs.f32(),
                                 idx.i32(), N, E, K, lb_coef, z_coef, grad_scale, f_global));
  return {out[0], out[1], out[2]};
}

int64_t moe_permute(Tensor pos, Tensor row_token, std::vector<int64_t>& offsets, Tensor idx,
                    int64_t num_experts, int64_t capacity) {
  const int64_t N = idx.dim(0), K = idx.dim(1);
  check_n("moe_permute", "pos", pos, N * K);
  check_n("moe_permute", "row_token", row_token, N * K);
  offsets.assign(static_cast<size_t>(num_experts + 1), 0);
  return SPARTA_DISPATCH_RET(idx.device, moe_permute(pos.i32(), row_token.i32(), offsets.data(),
                                                     idx.i32(), N, K, num_experts, capacity));
}

void moe_gather(Tensor xp, Tensor x, Tensor row_token, int64_t rows) {
  const int64_t C = x.dim(-1);
  SPARTA_CHECK(rows <= row_token.numel() && rows * C <= xp.numel(), "moe_gather: {} rows into {}",
               rows, xp.shape_str());
  SPARTA_DISPATCH(x.device, moe_gather(xp.f32(), x.f32(), row_token.i32(), rows, C));
}

void moe_gather_backward(Tensor dx, Tensor dxp, Tensor pos) {
  const int64_t C = dx.dim(-1), N = dx.numel() / C, K = pos.numel() / N;
  SPARTA_DISPATCH(dx.device, moe_gather_backward(dx.f32(), dxp.f32(), pos.i32(), N, K, C));
}

void moe_combine_forward(Tensor y, Tensor outp, Tensor w, Tensor pos) {
  const int64_t C = y.dim(-1), N = y.numel() / C, K = w.numel() / N;
  check_n("moe_combine_forward", "pos", pos, N * K);
  SPARTA_DISPATCH(y.device, moe_combine_forward(y.f32(), outp.f32(), w.f32(), pos.i32(), N, K, C));
}

void moe_combine_backward(Tensor doutp, Tensor dw, Tensor dy, Tensor outp, Tensor w, Tensor pos) {
  const int64_t C = dy.dim(-1), N = dy.numel() / C, K = w.numel() / N;
  check_n("moe_combine_backward", "pos", pos, N * K);
  check_n("moe_combine_backward", "dw", dw, N * K);
  SPARTA_DISPATCH(dy.device, moe_combine_backward(doutp.f32(), opt(dw), dy.f32(), outp.f32(),
                                                  w.f32(), pos.i32(), N, K, C));
}

void grouped_matmul_forward(Tensor out, Tensor inp, Tensor weight,
                            const std::vector<int64_t>& offsets) {
  const int64_t E = weight.dim(0), OC = weight.dim(1), IC = weight.dim(2);
  SPARTA_CHECK(weight.ndim == 3 && static_cast<int64_t>(offsets.size()) == E + 1 &&
                   inp.dim(-1) == IC && out.dim(-1) == OC && offsets.back() * IC <= inp.numel() &&
                   offsets.back() * OC <= out.numel(),
               "grouped_matmul_forward: out {} inp {} weight {} with {} offsets", out.shape_str(),
               inp.shape_str(), weight.shape_str(), offsets.size());
  SPARTA_DISPATCH(inp.device, grouped_matmul_forward(out.f32(), inp.f32(), weight.f32(),
                                                     offsets.data(), E, IC, OC));
}

void grouped_matmul_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight,
                             const std::vector<int64_t>& offsets) {
  const int64_t E = weight.dim(0), OC = weight.dim(1), IC = weight.dim(2);
  SPARTA_CHECK(weight.ndim == 3 && static_cast<int64_t>(offsets.size()) == E + 1 &&
                   inp.dim(-1) == IC && dout.dim(-1) == OC,
               "grouped_matmul_backward: dout {} inp {} weight {}", dout.shape_str(),
               inp.shape_str(), weight.shape_str());
  check_n("grouped_matmul_backward", "dweight", dweight, weight.numel());
  SPARTA_DISPATCH(inp.device,
                  grouped_matmul_backward(opt(dinp), opt(dweight), dout.f32(), inp.f32(),
                                          weight.f32(), offsets.data(), E, IC, OC));
}

void gru_cell_forward(Tensor h, Tensor saved, Tensor gi, Tensor gh, Tensor b_ih, Tensor b_hh,
                      Tensor h_prev) {
  const int64_t P = h.dim(-1), N = h.numel() / P;
  check_n("gru_cell_forward", "gi", gi, N * 3 * P);
  check_n("gru_cell_forward", "gh", gh, N * 3 * P);
  check_n("gru_cell_forward", "saved", saved, N * 4 * P);
  check_n("gru_cell_forward", "b_ih", b_ih, 3 * P);
  check_n("gru_cell_forward", "b_hh", b_hh, 3 * P);
  check_n("gru_cell_forward", "h_prev", h_prev, N * P);
  SPARTA_DISPATCH(h.device, gru_cell_forward(h.f32(), saved.f32(), gi.f32(), gh.f32(), b_ih.f32(),
                                             b_hh.f32(), h_prev.f32(), N, P));
}

void gru_cell_backward(Tensor dgi, Tensor dgh, Tensor db_ih, Tensor db_hh, Tensor dh_prev,
                       Tensor dh, Tensor saved, Tensor h_prev) {
  const int64_t P = dh.dim(-1), N = dh.numel() / P;
  check_n("gru_cell_backward", "dgi", dgi, N * 3 * P);
  check_n("gru_cell_backward", "dgh", dgh, N * 3 * P);
  check_n("gru_cell_backward", "dh_prev", dh_prev, N * P);
  SPARTA_DISPATCH(dh.device,
                  gru_cell_backward(dgi.f32(), dgh.f32(), db_ih.f32(), db_hh.f32(), opt(dh_prev),
                                    dh.f32(), saved.f32(), h_prev.f32(), N, P));
}

}  // namespace sparta::kernels
