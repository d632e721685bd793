// The MoE, GRU and UoE ops' cases of the op table (tests/common/op_cases.h).
#include "kernels/moe.h"
#include "kernels/ops.h"
#include "kernels/uoe.h"
#include "tests/common/op_cases.h"
#include "tests/common/reference_ops.h"

namespace sparta::test {

namespace k = sparta::kernels;
using Refs = std::vector<std::pair<std::string, std::vector<double>>>;
using Outs = std::vector<OpOutput>;
using B = OpBackend;
using ref::Vec;

namespace {
std::vector<double> d(const std::vector<int64_t>& v) {
  return {v.begin(), v.end()};
}

constexpr int64_t kN = 300, kE = 7, kK = 2;

// Routes z [N, E] on `be`: probs, idx, w.
struct Routed {
  Tensor z, probs, idx, w;
};
Routed route(B& be) {
  Routed r{be.put(randn({kN, kE}, 1, 2.0f)), be.zeros({kN, kE}), be.zeros({kN, kK}, k::DType::i32),
           be.zeros({kN, kK})};
  k::moe_route_forward(r.probs, r.idx, r.w, r.z);
  return r;
}

OpCase moe_route_aux() {
  return {"moe_route_aux", "N300_E7_K2", k::DType::f32,
          [](B& be) {
            const Routed r = route(be);
            const Tensor dw = be.put(randn({kN, kK}, 2)), dz = be.zeros({kN, kE});
            k::moe_route_backward(dz, dw, r.probs, r.idx, r.w);
            std::vector<int64_t> counts;
            const auto a = k::moe_aux_losses(r.z, r.probs, r.idx, counts, dz, 0.3f, 0.2f, 0.5f);
            return Outs{{"probs", B::get(r.probs), 1e-6},
                        {"idx", B::get(r.idx), 0},
                        {"w", B::get(r.w), 1e-6},
                        {"counts", d(counts), 0},
                        {"load_balance", {a.load_balance}, 1e-9, true},
                        {"z", {a.z}, 1e-6},
                        {"router_entropy", {a.router_entropy}, 1e-6, true},
                        {"dlogits", B::get(dz), 1e-5}};
          },
          nullptr};
}

OpCase moe_permute_combine(int64_t capacity) {
  const int64_t C = 24;
  return {"moe_permute_combine", "N300_E7_K2_C24_capacity" + std::to_string(capacity),
          k::DType::f32,
          [capacity](B& be) {
            const Routed r = route(be);
            const Tensor pos = be.zeros({kN * kK}, k::DType::i32),
                         rt = be.zeros({kN * kK}, k::DType::i32);
            std::vector<int64_t> off;
            const int64_t dropped = k::moe_permute(pos, rt, off, r.idx, kE, capacity);
            const int64_t rows = off.back();
            const Tensor x = be.put(randn({kN, C}, 3)), outp = be.put(randn({kN * kK, C}, 4)),
                         dy = be.put(randn({kN, C}, 5));
            const Tensor xp = be.zeros({kN * kK, C}), y = be.zeros({kN, C}),
                         doutp = be.zeros({kN * kK, C}), dwc = be.zeros({kN, kK}),
                         dx = be.zeros({kN, C});
            k::moe_gather(xp, x, rt, rows);
            k::moe_combine_forward(y, outp, r.w, pos);
            k::moe_combine_backward(doutp, dwc, dy, outp, r.w, pos);
            k::moe_gather_backward(dx, doutp, pos);
            return Outs{{"dropped", {static_cast<double>(dropped)}, 0},
                        {"offsets", d(off), 0},
                        {"pos", B::get(pos), 0},
                        {"gather", B::get(xp), 0},
                        {"combine", B::get(y), 1e-6},
                        {"combine_back_doutp", B::get(doutp), 1e-6},
                        {"combine_back_dw", B::get(dwc), 1e-5},
                        {"gather_back", B::get(dx), 1e-6}};
          },
          nullptr};
}

// The grouped expert GEMM with an empty expert and uneven row counts.
OpCase grouped_gemm() {
  const int64_t E = 5, IC = 48, OC = 40;
  static const std::vector<int64_t> off = {0, 37, 37, 100, 101, 164};
  const int64_t R = off.back();
  return {"grouped_gemm", "E5_IC48_OC40_R164", k::DType::f32,
          [R](B& be) {
            const Tensor x = be.put(randn({R, IC}, 20)), w = be.put(randn({E, OC, IC}, 21)),
                         dy = be.put(randn({R, OC}, 22));
            const Tensor y = be.zeros({R, OC}), dx = be.zeros({R, IC}), dw = be.zeros({E, OC, IC});
            k::grouped_matmul_forward(y, x, w, off);
            k::grouped_matmul_backward(dx, dw, dy, x, w, off);
            return Outs{{"y", B::get(y), 1e-5}, {"dx", B::get(dx), 1e-5}, {"dw", B::get(dw), 1e-5}};
          },
          [R] {
            const Vec x = randn({R, IC}, 20).d(), w = randn({E, OC, IC}, 21).d();
            Vec y;
            for (int64_t e = 0; e < E; ++e) {
              const int64_t n = off[static_cast<size_t>(e + 1)] - off[static_cast<size_t>(e)];
              const Vec xe(x.begin() + off[static_cast<size_t>(e)] * IC,
                           x.begin() + off[static_cast<size_t>(e + 1)] * IC);
              const Vec we(w.begin() + e * OC * IC, w.begin() + (e + 1) * OC * IC);
              const Vec ye = ref::matmul(xe, we, n, IC, OC);
              y.insert(y.end(), ye.begin(), ye.end());
            }
            return Refs{{"y", y}};
          }};
}

OpCase gru_cell() {
  const int64_t N = 50, P = 40;
  return {"gru_cell", "N50_P40", k::DType::f32,
          [](B& be) {
            const Tensor gi = be.put(randn({N, 3 * P}, 6)), gh = be.put(randn({N, 3 * P}, 7)),
                         bih = be.put(randn({3 * P}, 8)), bhh = be.put(randn({3 * P}, 9)),
                         hp = be.put(randn({N, P}, 10)), dh = be.put(randn({N, P}, 11));
            const Tensor h = be.zeros({N, P}), saved = be.zeros({N, 4 * P}),
                         dgi = be.zeros({N, 3 * P}), dgh = be.zeros({N, 3 * P}),
                         dbih = be.zeros({3 * P}), dbhh = be.zeros({3 * P}), dhp = be.zeros({N, P});
            k::gru_cell_forward(h, saved, gi, gh, bih, bhh, hp);
            k::gru_cell_backward(dgi, dgh, dbih, dbhh, dhp, dh, saved, hp);
            return Outs{{"h", B::get(h), 1e-6},       {"dgi", B::get(dgi), 1e-5},
                        {"dgh", B::get(dgh), 1e-5},   {"dbih", B::get(dbih), 1e-5},
                        {"dbhh", B::get(dbhh), 1e-5}, {"dh_prev", B::get(dhp), 1e-5}};
          },
          nullptr};
}

// UoE slot maps must be identical on every backend (the spec's T10 across devices). The
// routing inputs come from the CPU router, so every backend maps the same choices.
OpCase uoe_assign(const std::string& shape, k::UoeGrouping g, k::UoeMode mode, int64_t slots) {
  const int64_t Bn = 4, L = 33, E = 6, K = 3, N = Bn * L;
  return {"uoe_assign", shape, k::DType::f32,
          [=](B& be) {
            HostF32 probs({N, E}), w({N, K});
            HostI32 idx({N, K});
            k::moe_route_forward(probs.t, idx.t, w.t, randn({N, E}, 1, 2.0f).t);
            const Tensor ti = be.put(idx), tp = be.put(probs);
            const int64_t cap = E * g.groups * g.items;
            const Tensor rt = be.zeros({cap}, k::DType::i32),
                         pos = be.zeros({N * E}, k::DType::i32),
                         sp = be.zeros({cap}, k::DType::i32);
            k::UoeAssignStats st;
            k::uoe_assign(rt, pos, sp, ti, tp, E, g, mode, slots, st);
            const int64_t used = E * g.groups * st.slots;
            return Outs{{"slots", {static_cast<double>(st.slots)}, 0},
                        {"members", d(st.members), 0},
                        {"admitted", d(st.admitted), 0},
                        {"row_token", B::get(rt.rows(0, used)), 0},
                        {"slot_pos", B::get(sp.rows(0, used)), 0},
                        {"pos", B::get(pos), 0}};
          },
          nullptr};
}

OpCase rope_at_grouped_bias() {
  const int64_t G = 5, H = 3, T = 17, D = 32, E = 4, R = 300, C = 24;
  return {"rope_at_grouped_bias", "G5_H3_T17_D32_E4_R300_C24", k::DType::f32,
          [](B& be) {
            HostI32 hpos({G, T});
            for (int64_t i = 0; i < G * T; ++i)
              hpos.v[static_cast<size_t>(i)] = static_cast<int32_t>((i * 131) % 4000);
            const Tensor x = be.put(randn({G, H, T, D}, 2)), pos = be.put(hpos);
            k::rope_at_forward(x, pos, 10000.0f);
            Outs out{{"rope_at", B::get(x), 1e-6}};
            k::rope_at_backward(x, pos, 10000.0f);
            out.push_back({"rope_at_back", B::get(x), 1e-6});
            const Tensor y = be.put(randn({E, R, C}, 3)), b = be.put(randn({E, C}, 4)),
                         dy = be.put(randn({E, R, C}, 5)), db = be.zeros({E, C});
            k::grouped_bias_forward(y, b);
            k::grouped_bias_backward(db, dy);
            out.push_back({"bias", B::get(y), 0});
            out.push_back({"bias_back", B::get(db), 1e-6});
            return out;
          },
          nullptr};
}
}  // namespace

std::vector<OpCase> sparse_op_cases() {
  const int64_t Bn = 4, L = 33;
  const k::UoeGrouping per_seq{Bn, L, L, 1}, per_step{L, Bn, 1, L};
  return {moe_route_aux(),
          moe_permute_combine(0),
          moe_permute_combine(70),
          grouped_gemm(),
          gru_cell(),
          uoe_assign("clean_per_sequence_T9", per_seq, k::UoeMode::clean, 9),
          uoe_assign("clean_per_step_T2", per_step, k::UoeMode::clean, 2),
          uoe_assign("paper_per_sequence_dynamic", per_seq, k::UoeMode::paper, 0),
          uoe_assign("paper_per_step_T2", per_step, k::UoeMode::paper, 2),
          rope_at_grouped_bias()};
}

}  // namespace sparta::test
