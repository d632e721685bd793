#include "trainer/models/transformer.h"

#include <algorithm>
#include <cmath>

#include "kernels/moe.h"
#include "kernels/ops.h"
#include "kernels/rng.h"

namespace sparta::models {

namespace k = sparta::kernels;
using k::DType;

namespace {
constexpr float kOnes = -1.0f;  // init_scale_ markers
constexpr float kZeros = 0.0f;
constexpr int64_t kLogitRows = 1024;  // rows of logits materialised at once by the fused head
}  // namespace

Transformer::Transformer(const ModelConfig& cfg, int batch, k::Device device, uint64_t seed)
    : cfg_(cfg), B_(batch), device_(device) {
  SPARTA_CHECK(cfg.d_model % cfg.n_heads == 0, "d_model {} not divisible by n_heads {}",
               cfg.d_model, cfg.n_heads);
  SPARTA_CHECK(cfg.pos != PosEncoding::rope || cfg.head_dim() % 2 == 0,
               "rope needs an even head dim, got {}", cfg.head_dim());
  auto mp = k::Arena::measuring(device), mg = k::Arena::measuring(device),
       ma = k::Arena::measuring(device);
  plan(mp, mg, ma);
  param_arena_ = k::Arena(device, mp.used(), "parameters");
  grad_arena_ = k::Arena(device, mg.used(), "gradients");
  act_arena_ = k::Arena(device, ma.used(), "activations");
  plan(param_arena_, grad_arena_, act_arena_);
  host_losses_.resize(static_cast<size_t>(B_) * static_cast<size_t>(cfg_.seq_len));
  init_params(seed);
}

void Transformer::plan(k::Arena& pa, k::Arena& ga, k::Arena& aa) {
  const int64_t L = cfg_.n_layers, C = cfg_.d_model, H = cfg_.n_heads, D = cfg_.head_dim();
  const int64_t T = cfg_.seq_len, V = cfg_.vocab_size, B = B_, N = B * T;
  const int64_t F = cfg_.d_ff, FC = cfg_.ffn == FfnType::swiglu ? 2 * F : F;
  const bool ln = cfg_.norm == NormType::layernorm;
  const std::vector<bool> moe_mask = cfg_.moe_layer_mask();
  const int64_t E = cfg_.moe_experts, K = cfg_.moe_top_k, Fe = cfg_.expert_ffn();
  const int64_t FCe = cfg_.ffn == FfnType::swiglu ? 2 * Fe : Fe;
  const bool gru = cfg_.moe_experts > 0 && cfg_.moe_router == "gru";
  const int64_t P = cfg_.moe_gru_dim;
  params_.clear();
  moe_stats_.clear();
  init_scale_.clear();

  // One parameter = a weight and its gradient carved at the same offsets of the two arenas.
  auto param = [&](const std::string& name, int layer, std::initializer_list<int64_t> shape,
                   float init, bool decay, Tensor& w, Tensor& g) {
    w = pa.alloc(DType::f32, shape);
    g = ga.alloc(DType::f32, shape);
    params_.push_back({name, layer, decay, w, g});
    init_scale_.push_back(init);
  };
  const float s = cfg_.init_std;
  param("wte", -1, {V, C}, cfg_.embed_init_std, true, wte_, dwte_);
  if (cfg_.pos == PosEncoding::learned)
    param("wpe", -1, {T, C}, cfg_.embed_init_std, true, wpe_, dwpe_);
  layers_.assign(static_cast<size_t>(L), {});
  for (int l = 0; l < L; ++l) {
    LayerParams& p = layers_[static_cast<size_t>(l)];
    const std::string pre = "layers." + std::to_string(l) + ".";
    param(pre + "norm_a.weight", l, {C}, kOnes, false, p.na_g, p.d_na_g);
    if (ln) param(pre + "norm_a.bias", l, {C}, kZeros, false, p.na_b, p.d_na_b);
    param(pre + "attn.qkv.weight", l, {3 * C, C}, s, true, p.wqkv, p.dwqkv);
    param(pre + "attn.proj.weight", l, {C, C}, s, true, p.wproj, p.dwproj);
    param(pre + "norm_f.weight", l, {C}, kOnes, false, p.nf_g, p.d_nf_g);
    if (ln) param(pre + "norm_f.bias", l, {C}, kZeros, false, p.nf_b, p.d_nf_b);
    p.moe = moe_mask[static_cast<size_t>(l)];
    if (p.moe) {
      p.moe_slot = static_cast<int>(moe_stats_.size());
      moe_stats_.push_back({});
      moe_stats_.back().layer = l;
      if (gru) {
        param(pre + "ffn.router.proj.weight", l, {P, C}, s, true, p.wgproj, p.dwgproj);
        param(pre + "ffn.router.weight", l, {E, P}, s, true, p.wrouter, p.dwrouter);
      } else {
        param(pre + "ffn.router.weight", l, {E, C}, s, true, p.wrouter, p.dwrouter);
      }
      param(pre + "ffn.experts.fc.weight", l, {E, FCe, C}, s, true, p.wfc, p.dwfc);
      param(pre + "ffn.experts.proj.weight", l, {E, C, Fe}, s, true, p.wout, p.dwout);
    } else {
      param(pre + "ffn.fc.weight", l, {FC, C}, s, true, p.wfc, p.dwfc);
      param(pre + "ffn.proj.weight", l, {C, F}, s, true, p.wout, p.dwout);
    }
  }
  if (gru && !moe_stats_.empty()) {
    // Shared by every MoE layer; PyTorch's GRU init scale 1/sqrt(P).
    const float gs = 1.0f / std::sqrt(static_cast<float>(P));
    param("router.gru.weight_ih", -1, {3 * P, P}, gs, true, gru_wih_, dgru_wih_);
    param("router.gru.weight_hh", -1, {3 * P, P}, gs, true, gru_whh_, dgru_whh_);
    param("router.gru.bias_ih", -1, {3 * P}, gs, false, gru_bih_, dgru_bih_);
    param("router.gru.bias_hh", -1, {3 * P}, gs, false, gru_bhh_, dgru_bhh_);
  }
  param("norm_final.weight", -1, {C}, kOnes, false, fin_g_, dfin_g_);
  if (ln) param("norm_final.bias", -1, {C}, kZeros, false, fin_b_, dfin_b_);
  if (cfg_.tie_embeddings) {
    head_ = wte_;
    dhead_ = dwte_;
  } else {
    param("lm_head.weight", -1, {V, C}, s, true, head_, dhead_);
  }

  auto f32 = [&](std::initializer_list<int64_t> shape) { return aa.alloc(DType::f32, shape); };
  tokens_ = aa.alloc(DType::i32, {B, T});
  targets_ = aa.alloc(DType::i32, {B, T});
  emb_out_ = f32({N, C});
  acts_.assign(static_cast<size_t>(L), {});
  for (int l = 0; l < L; ++l) {
    LayerActs& a = acts_[static_cast<size_t>(l)];
    const bool post = cfg_.layer_is_post_ln(l);
    a.out = f32({N, C});
    a.na_out = f32({N, C});
    a.na_mean = f32({N});
    a.na_rstd = f32({N});
    if (!post) a.nf_out = f32({N, C});  // Post-LN's second norm writes the layer output
    a.nf_mean = f32({N});
    a.nf_rstd = f32({N});
    a.qkv = f32({N, 3 * C});
    a.q = f32({B, H, T, D});
    a.k = f32({B, H, T, D});
    a.v = f32({B, H, T, D});
    a.o = f32({B, H, T, D});
    a.lse = f32({B, H, T});
    a.att = f32({N, C});
    a.att_proj = f32({N, C});
    a.sum1 = f32({N, C});
    if (post) a.sum2 = f32({N, C});
    a.mlp_out = f32({N, C});
    if (!layers_[static_cast<size_t>(l)].moe) {
      a.fc = f32({N, FC});
      a.act = f32({N, F});
    } else {
      MoeActs& m = a.moe;
      m.logits = f32({N, E});
      m.probs = f32({N, E});
      m.idx = aa.alloc(DType::i32, {N, K});
      m.w = f32({N, K});
      m.pos = aa.alloc(DType::i32, {N * K});
      m.row_token = aa.alloc(DType::i32, {N * K});
      m.xp = f32({N * K, C});
      m.h = f32({N * K, FCe});
      m.act = f32({N * K, Fe});
      m.outp = f32({N * K, C});
      m.offsets.assign(static_cast<size_t>(E + 1), 0);
      if (gru) {
        m.xg = f32({N, P});
        m.gi = f32({N, 3 * P});
        m.gh = f32({N, 3 * P});
        m.gates = f32({N, 4 * P});
        m.h_state = f32({N, P});
      }
    }
  }
  fin_out_ = f32({N, C});
  fin_mean_ = f32({N});
  fin_rstd_ = f32({N});
  losses_ = f32({N});
  logits_ws_ = f32({std::min(N, kLogitRows), V});
  logit_row_ = f32({1, V});
  g_resid_ = f32({N, C});
  g_tmp_ = f32({N, C});
  g_norm_ = f32({N, C});
  g_att_ = f32({N, C});
  g_qkv_ = f32({N, 3 * C});
  g_q_ = f32({B, H, T, D});
  g_k_ = f32({B, H, T, D});
  g_v_ = f32({B, H, T, D});
  g_o_ = f32({B, H, T, D});
  g_fc_ = f32({N, FC});
  g_act_ = f32({N, F});
  if (!moe_stats_.empty()) {
    g_dlogits_ = f32({N, E});
    g_dw_ = f32({N, K});
    g_doutp_ = f32({N * K, C});
    g_dh_ = f32({N * K, FCe});
    g_dact_ = f32({N * K, Fe});
    g_dxp_ = f32({N * K, C});
    moe_counts_.assign(static_cast<size_t>(E), 0);
    if (gru) {
      gru_h0_ = f32({N, P});  // zero: the arena is zero-filled and nothing writes it
      g_gru_dh_ = f32({N, P});
      g_gru_dh_prev_ = f32({N, P});
      g_gru_dx_ = f32({N, P});
      g_gru_dgi_ = f32({N, 3 * P});
      g_gru_dgh_ = f32({N, 3 * P});
      // The GRU state flows through the MoE layers in order.
      Tensor prev = gru_h0_;
      for (int l = 0; l < L; ++l) {
        if (!layers_[static_cast<size_t>(l)].moe) continue;
        acts_[static_cast<size_t>(l)].moe.h_prev = prev;
        prev = acts_[static_cast<size_t>(l)].moe.h_state;
      }
    }
    for (auto& st : moe_stats_) st.expert_tokens.assign(static_cast<size_t>(E), 0);
  }
}

void Transformer::init_params(uint64_t seed) {
  std::vector<float> host;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& w = params_[i].w;
    host.assign(static_cast<size_t>(w.numel()), 0.0f);
    const float sc = init_scale_[i];
    const uint64_t stream = k::rng_stream(k::RngPurpose::init, i);
    for (size_t j = 0; j < host.size(); ++j)
      host[j] = sc == kOnes    ? 1.0f
                : sc == kZeros ? 0.0f
                               : sc * static_cast<float>(k::normal(seed, stream, j));
    Tensor h = w;
    h.device = k::Device::cpu();
    h.data = host.data();
    k::copy(w, h);
  }
}

int64_t Transformer::num_params() const {
  int64_t n = 0;
  for (const Param& p : params_) n += p.w.numel();
  return n;
}

void Transformer::zero_grads() {
  k::zero(flat_grads());
}

void Transformer::norm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor in, Tensor g,
                               Tensor b) {
  if (cfg_.norm == NormType::layernorm)
    k::layernorm_forward(out, mean, rstd, in, g, b, cfg_.norm_eps);
  else
    k::rmsnorm_forward(out, rstd, in, g, cfg_.norm_eps);
}

void Transformer::norm_backward(Tensor din, Tensor dg, Tensor db, Tensor dout, Tensor in, Tensor g,
                                Tensor mean, Tensor rstd) {
  if (cfg_.norm == NormType::layernorm)
    k::layernorm_backward(din, dg, db, dout, in, g, mean, rstd);
  else
    k::rmsnorm_backward(din, dg, dout, in, g, rstd);
}

void Transformer::attention_forward(const LayerParams& p, LayerActs& a, Tensor x) {
  k::matmul_forward(a.qkv, x, p.wqkv);
  k::split_heads(a.q, a.k, a.v, a.qkv);
  if (cfg_.pos == PosEncoding::rope) {
    k::rope_forward(a.q, cfg_.rope_theta);
    k::rope_forward(a.k, cfg_.rope_theta);
  }
  k::attention_forward(a.o, a.lse, a.q, a.k, a.v, /*causal=*/true);
  k::merge_heads(a.att, a.o);
  k::matmul_forward(a.att_proj, a.att, p.wproj);
}

// dout: d(att_proj), only read before dx is first written, so dx may alias dout.
void Transformer::attention_backward(const LayerParams& p, const LayerActs& a, Tensor x,
                                     Tensor dout, Tensor dx) {
  k::zero(g_att_);
  k::matmul_backward(g_att_, p.dwproj, dout, a.att, p.wproj);
  k::zero(g_o_);
  k::merge_heads_backward(g_o_, g_att_);
  k::zero(g_q_);
  k::zero(g_k_);
  k::zero(g_v_);
  k::attention_backward(g_q_, g_k_, g_v_, g_o_, a.q, a.k, a.v, a.o, a.lse, /*causal=*/true);
  if (cfg_.pos == PosEncoding::rope) {
    k::rope_backward(g_q_, cfg_.rope_theta);
    k::rope_backward(g_k_, cfg_.rope_theta);
  }
  k::zero(g_qkv_);
  k::split_heads_backward(g_qkv_, g_q_, g_k_, g_v_);
  k::matmul_backward(dx, p.dwqkv, g_qkv_, x, p.wqkv);
}

void Transformer::ffn_forward(const LayerParams& p, LayerActs& a, Tensor x) {
  if (p.moe) {
    moe_forward(p, a, x, moe_stats_[static_cast<size_t>(p.moe_slot)]);
    return;
  }
  k::matmul_forward(a.fc, x, p.wfc);
  if (cfg_.ffn == FfnType::swiglu)
    k::swiglu_forward(a.act, a.fc);
  else
    k::gelu_forward(a.act, a.fc);
  k::matmul_forward(a.mlp_out, a.act, p.wout);
}

// Same aliasing rule as attention_backward: dx may be dout.
void Transformer::ffn_backward(const LayerParams& p, const LayerActs& a, Tensor x, Tensor dout,
                               Tensor dx) {
  if (p.moe) {
    moe_backward(p, a, x, dout, dx);
    return;
  }
  k::zero(g_act_);
  k::matmul_backward(g_act_, p.dwout, dout, a.act, p.wout);
  k::zero(g_fc_);
  if (cfg_.ffn == FfnType::swiglu)
    k::swiglu_backward(g_fc_, g_act_, a.fc);
  else
    k::gelu_backward(g_fc_, g_act_, a.fc);
  k::matmul_backward(dx, p.dwfc, g_fc_, x, p.wfc);
}

void Transformer::forward_hidden() {
  SPARTA_CHECK(valid_targets_ >= 0, "forward before set_batch()");
  k::embedding_forward(emb_out_, tokens_, wte_, wpe_);
  Tensor x = emb_out_;
  for (int l = 0; l < cfg_.n_layers; ++l) {
    const LayerParams& p = layers_[static_cast<size_t>(l)];
    LayerActs& a = acts_[static_cast<size_t>(l)];
    if (cfg_.layer_is_post_ln(l)) {
      attention_forward(p, a, x);
      k::add(a.sum1, x, a.att_proj);
      norm_forward(a.na_out, a.na_mean, a.na_rstd, a.sum1, p.na_g, p.na_b);
      ffn_forward(p, a, a.na_out);
      k::add(a.sum2, a.na_out, a.mlp_out);
      norm_forward(a.out, a.nf_mean, a.nf_rstd, a.sum2, p.nf_g, p.nf_b);
    } else {
      norm_forward(a.na_out, a.na_mean, a.na_rstd, x, p.na_g, p.na_b);
      attention_forward(p, a, a.na_out);
      k::add(a.sum1, x, a.att_proj);
      norm_forward(a.nf_out, a.nf_mean, a.nf_rstd, a.sum1, p.nf_g, p.nf_b);
      ffn_forward(p, a, a.nf_out);
      k::add(a.out, a.sum1, a.mlp_out);
    }
    x = a.out;
  }
  norm_forward(fin_out_, fin_mean_, fin_rstd_, x, fin_g_, fin_b_);
}

void Transformer::next_token_logits(int64_t row, float* host_logits) {
  SPARTA_CHECK(row >= 0 && row < fin_out_.dim(0), "row {} outside [0, {})", row, fin_out_.dim(0));
  forward_hidden();
  k::matmul_forward(logit_row_, fin_out_.rows(row, row + 1), head_);
  Tensor h = logit_row_;
  h.device = k::Device::cpu();
  h.data = host_logits;
  k::copy(h, logit_row_);
}

Tensor Transformer::expert(Tensor w3, int64_t e) {
  Tensor t(static_cast<float*>(w3.data) + e * w3.dim(1) * w3.dim(2), w3.dtype, w3.device,
           {w3.dim(1), w3.dim(2)});
  return t;
}

// Top-k MoE FFN: route -> permute -> gather -> per-expert FFN on its row range -> combine.
void Transformer::moe_forward(const LayerParams& p, LayerActs& a, Tensor x, MoeLayerStats& st) {
  MoeActs& m = a.moe;
  const int64_t E = cfg_.moe_experts, N = x.dim(0), K = cfg_.moe_top_k;
  if (p.wgproj.empty()) {
    k::matmul_forward(m.logits, x, p.wrouter);
  } else {  // RMoE: x -> projector -> GRU(., h_prev) -> h -> router matrix
    k::matmul_forward(m.xg, x, p.wgproj);
    k::matmul_forward(m.gi, m.xg, gru_wih_);
    k::matmul_forward(m.gh, m.h_prev, gru_whh_);
    k::gru_cell_forward(m.h_state, m.gates, m.gi, m.gh, gru_bih_, gru_bhh_, m.h_prev);
    k::matmul_forward(m.logits, m.h_state, p.wrouter);
  }
  k::moe_route_forward(m.probs, m.idx, m.w, m.logits);
  const int64_t capacity =
      cfg_.moe_capacity_factor > 0
          ? static_cast<int64_t>(std::ceil(cfg_.moe_capacity_factor * static_cast<double>(N * K) /
                                           static_cast<double>(E)))
          : 0;
  st.dropped = k::moe_permute(m.pos, m.row_token, m.offsets, m.idx, E, capacity);
  m.rows = m.offsets.back();
  k::moe_gather(m.xp, x, m.row_token, m.rows);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = m.offsets[static_cast<size_t>(e)], r1 = m.offsets[static_cast<size_t>(e + 1)];
    if (r1 > r0) k::matmul_forward(m.h.rows(r0, r1), m.xp.rows(r0, r1), expert(p.wfc, e));
  }
  if (cfg_.ffn == FfnType::swiglu)
    k::swiglu_forward(m.act.rows(0, m.rows), m.h.rows(0, m.rows));
  else
    k::gelu_forward(m.act.rows(0, m.rows), m.h.rows(0, m.rows));
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = m.offsets[static_cast<size_t>(e)], r1 = m.offsets[static_cast<size_t>(e + 1)];
    if (r1 > r0) k::matmul_forward(m.outp.rows(r0, r1), m.act.rows(r0, r1), expert(p.wout, e));
  }
  k::moe_combine_forward(a.mlp_out, m.outp, m.w, m.pos);
  const auto aux = k::moe_aux_losses(m.logits, m.probs, m.idx, st.expert_tokens, Tensor(), 0, 0, 0);
  st.load_balance_loss = aux.load_balance;
  st.z_loss = aux.z;
  st.router_entropy = aux.router_entropy;
}

// Same aliasing rule as ffn_backward: dout is fully read (combine backward) before dx is written.
void Transformer::moe_backward(const LayerParams& p, const LayerActs& a, Tensor x, Tensor dout,
                               Tensor dx) {
  const MoeActs& m = a.moe;
  const int64_t E = cfg_.moe_experts;
  k::zero(g_doutp_);
  k::zero(g_dw_);
  k::moe_combine_backward(g_doutp_, g_dw_, dout, m.outp, m.w, m.pos);
  k::zero(g_dact_);
  k::zero(g_dh_);
  k::zero(g_dxp_);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = m.offsets[static_cast<size_t>(e)], r1 = m.offsets[static_cast<size_t>(e + 1)];
    if (r1 > r0)
      k::matmul_backward(g_dact_.rows(r0, r1), expert(p.dwout, e), g_doutp_.rows(r0, r1),
                         m.act.rows(r0, r1), expert(p.wout, e));
  }
  if (cfg_.ffn == FfnType::swiglu)
    k::swiglu_backward(g_dh_.rows(0, m.rows), g_dact_.rows(0, m.rows), m.h.rows(0, m.rows));
  else
    k::gelu_backward(g_dh_.rows(0, m.rows), g_dact_.rows(0, m.rows), m.h.rows(0, m.rows));
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = m.offsets[static_cast<size_t>(e)], r1 = m.offsets[static_cast<size_t>(e + 1)];
    if (r1 > r0)
      k::matmul_backward(g_dxp_.rows(r0, r1), expert(p.dwfc, e), g_dh_.rows(r0, r1),
                         m.xp.rows(r0, r1), expert(p.wfc, e));
  }
  k::moe_gather_backward(dx, g_dxp_, m.pos);
  k::zero(g_dlogits_);
  k::moe_route_backward(g_dlogits_, g_dw_, m.probs, m.idx, m.w);
  k::moe_aux_losses(m.logits, m.probs, m.idx, moe_counts_, g_dlogits_,
                    static_cast<float>(cfg_.moe_aux_loss_coef), static_cast<float>(cfg_.moe_z_loss_coef),
                    grad_scale_);
  if (p.wgproj.empty()) {
    k::matmul_backward(dx, p.dwrouter, g_dlogits_, x, p.wrouter);
    return;
  }
  // RMoE: g_gru_dh_ holds d(h) from the MoE layers above (the recurrent gradient: no detach).
  k::matmul_backward(g_gru_dh_, p.dwrouter, g_dlogits_, m.h_state, p.wrouter);
  k::zero(g_gru_dh_prev_);
  k::gru_cell_backward(g_gru_dgi_, g_gru_dgh_, dgru_bih_, dgru_bhh_, g_gru_dh_prev_, g_gru_dh_,
                       m.gates, m.h_prev);
  k::zero(g_gru_dx_);
  k::matmul_backward(g_gru_dx_, dgru_wih_, g_gru_dgi_, m.xg, gru_wih_);
  k::matmul_backward(g_gru_dh_prev_, dgru_whh_, g_gru_dgh_, m.h_prev, gru_whh_);
  k::matmul_backward(dx, p.dwgproj, g_gru_dx_, x, p.wgproj);
  std::swap(g_gru_dh_, g_gru_dh_prev_);  // now d(h_prev): what the MoE layer below receives
}

float Transformer::forward(bool with_backward, float grad_scale) {
  grad_scale_ = grad_scale;
  forward_hidden();
  const float denom = static_cast<float>(valid_targets_ > 0 ? valid_targets_ : 1);

  if (with_backward) {
    k::zero(g_norm_);
    k::lm_head_xent(losses_, logits_ws_, fin_out_, head_, targets_, grad_scale / denom, g_norm_,
                    dhead_);
  } else {
    k::lm_head_xent(losses_, logits_ws_, fin_out_, head_, targets_, 0.0f, Tensor(), Tensor());
  }
  Tensor hl = losses_;
  hl.device = k::Device::cpu();
  hl.data = host_losses_.data();
  k::copy(hl, losses_);
  double sum = 0.0;
  for (float v : host_losses_) sum += v;
  return static_cast<float>(sum / denom);
}

void Transformer::backward() {
  // g_resid_ carries d(layer output) downwards and is updated in place into d(layer input).
  k::zero(g_resid_);
  if (!g_gru_dh_.empty()) k::zero(g_gru_dh_);  // nothing flows into the last MoE layer's state
  Tensor x_last = cfg_.n_layers > 0 ? acts_.back().out : emb_out_;
  norm_backward(g_resid_, dfin_g_, dfin_b_, g_norm_, x_last, fin_g_, fin_mean_, fin_rstd_);
  for (int l = cfg_.n_layers - 1; l >= 0; --l) {
    const LayerParams& p = layers_[static_cast<size_t>(l)];
    const LayerActs& a = acts_[static_cast<size_t>(l)];
    const Tensor x = l == 0 ? emb_out_ : acts_[static_cast<size_t>(l - 1)].out;
    Tensor g = g_resid_;
    if (cfg_.layer_is_post_ln(l)) {
      // g = d(out). d(sum2) = N_f^T g, and d(u) starts as d(sum2) (residual branch), then the
      // FFN adds into it in place.
      k::zero(g_tmp_);
      norm_backward(g_tmp_, p.d_nf_g, p.d_nf_b, g, a.sum2, p.nf_g, a.nf_mean, a.nf_rstd);
      ffn_backward(p, a, a.na_out, g_tmp_, g_tmp_);
      // d(sum1) = N_a^T d(u); d(x) = d(sum1) + Attn^T d(sum1), accumulated in g in place.
      k::zero(g);
      norm_backward(g, p.d_na_g, p.d_na_b, g_tmp_, a.sum1, p.na_g, a.na_mean, a.na_rstd);
      attention_backward(p, a, x, g, g);
    } else {
      // g = d(out) = d(sum1) from the residual branch + N_f^T FFN^T g.
      k::zero(g_tmp_);
      ffn_backward(p, a, a.nf_out, g, g_tmp_);
      norm_backward(g, p.d_nf_g, p.d_nf_b, g_tmp_, a.sum1, p.nf_g, a.nf_mean, a.nf_rstd);
      // g = d(sum1); d(x) = g + N_a^T Attn^T g.
      k::zero(g_tmp_);
      attention_backward(p, a, a.na_out, g, g_tmp_);
      norm_backward(g, p.d_na_g, p.d_na_b, g_tmp_, x, p.na_g, a.na_mean, a.na_rstd);
    }
  }
  k::embedding_backward(dwte_, dwpe_, g_resid_, tokens_);
}

void Transformer::set_batch(const int32_t* tokens, const int32_t* targets) {
  const int64_t N = tokens_.numel();
  valid_targets_ = 0;
  for (int64_t i = 0; i < N; ++i) {
    SPARTA_CHECK(tokens[i] >= 0 && tokens[i] < cfg_.vocab_size,
                 "token {} at position {} outside [0,{})", tokens[i], i, cfg_.vocab_size);
    SPARTA_CHECK(targets[i] < cfg_.vocab_size, "target {} at position {} >= vocab {}", targets[i],
                 i, cfg_.vocab_size);
    valid_targets_ += targets[i] >= 0;
  }
  Tensor ht = tokens_;
  ht.device = k::Device::cpu();
  ht.data = const_cast<int32_t*>(tokens);
  k::copy(tokens_, ht);
  ht.data = const_cast<int32_t*>(targets);
  k::copy(targets_, ht);
}

float Transformer::forward_backward(float grad_scale) {
  const float loss = forward(true, grad_scale);
  backward();
  return loss;
}

float Transformer::forward_loss() {
  return forward(false, 0.0f);
}

double angular_distance(const float* a, const float* b, int64_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < n; ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  const double cos = ab / std::sqrt(aa * bb);
  if (std::isnan(cos)) return 0.5;
  return std::acos(std::clamp(cos, -1.0, 1.0)) / M_PI;
}

std::vector<double> Transformer::angular_distances() const {
  const int64_t C = cfg_.d_model, T = cfg_.seq_len;
  std::vector<float> a(static_cast<size_t>(C)), b(static_cast<size_t>(C));
  auto last_token = [&](const Tensor& t, int64_t seq, std::vector<float>& out) {
    Tensor h(out.data(), DType::f32, k::Device::cpu(), {1, C});
    k::copy(h, t.rows(seq * T + T - 1, seq * T + T));
  };
  std::vector<double> d(static_cast<size_t>(cfg_.n_layers), 0.0);
  for (int l = 0; l < cfg_.n_layers; ++l) {
    const Tensor in = l == 0 ? emb_out_ : acts_[static_cast<size_t>(l - 1)].out;
    const Tensor out = acts_[static_cast<size_t>(l)].out;
    for (int64_t s = 0; s < B_; ++s) {
      last_token(in, s, a);
      last_token(out, s, b);
      d[static_cast<size_t>(l)] += angular_distance(a.data(), b.data(), C) / static_cast<double>(B_);
    }
  }
  return d;
}

double Transformer::aux_loss() const {
  double s = 0;
  for (const auto& st : moe_stats_)
    s += cfg_.moe_aux_loss_coef * st.load_balance_loss + cfg_.moe_z_loss_coef * st.z_loss;
  return s;
}

std::vector<double> Transformer::layer_grad_norms() const {
  std::vector<double> ss(static_cast<size_t>(cfg_.n_layers), 0.0);
  for (const Param& p : params_)
    if (p.layer >= 0) ss[static_cast<size_t>(p.layer)] += k::sum_squares(p.g);
  for (double& v : ss) v = std::sqrt(v);
  return ss;
}

}  // namespace sparta::models
