#include "trainer/models/transformer.h"

#include <algorithm>
#include <cmath>

#include "kernels/moe.h"
#include "kernels/ops.h"
#include "kernels/rng.h"
#include "kernels/uoe.h"

namespace sparta::models {

namespace k = sparta::kernels;
using k::DType;

namespace {
constexpr float kOnes = -1.0f;  // init_scale_ markers
constexpr float kZeros = 0.0f;
constexpr int64_t kLogitRows = 1024;  // rows of logits materialised at once by the fused head
}  // namespace

Transformer::Transformer(const ModelConfig& cfg, int batch, k::Device device, uint64_t seed,
                         const ModelParallel& par)
    : cfg_(cfg), B_(batch), device_(device), par_(par) {
  SPARTA_CHECK(par.tp >= 1 && par.ep >= 1 && par.tp_rank >= 0 && par.tp_rank < par.tp &&
                   par.ep_rank >= 0 && par.ep_rank < par.ep,
               "model split tp {} (rank {}) ep {} (rank {})", par.tp, par.tp_rank, par.ep,
               par.ep_rank);
  SPARTA_CHECK(par.tp == 1 || (cfg.moe_experts == 0 && par.tp_dev && par.tp_host &&
                               par.tp_dev->size() == par.tp),
               "tensor parallel over {} ranks: MoE layers are split by expert parallelism "
               "(parallel.ep), not tp; and it needs its communicators",
               par.tp);
  SPARTA_CHECK(cfg.n_heads % par.tp == 0 && cfg.d_ff % par.tp == 0 && cfg.vocab_size % par.tp == 0,
               "tensor parallel over {} ranks needs n_heads {}, d_ff {} and vocab {} divisible",
               par.tp, cfg.n_heads, cfg.d_ff, cfg.vocab_size);
  SPARTA_CHECK(par.cp == 1 ||
                   (!cfg.uoe && cfg.seq_len % par.cp == 0 && cfg.n_heads % (par.tp * par.cp) == 0 &&
                    par.cp_dev && par.cp_dev->size() == par.cp),
               "context parallel over {} ranks needs seq_len {} and n_heads / tp {} divisible by "
               "it, no UoE, and its communicator",
               par.cp, cfg.seq_len, cfg.n_heads / par.tp);
  SPARTA_CHECK(par.ep == 1 || (cfg.moe_experts > 0 && cfg.moe_experts % par.ep == 0 && par.ep_dev &&
                               par.ep_host && par.ep_dev->size() == par.ep),
               "expert parallel over {} ranks needs moe.experts divisible by it and its "
               "communicators",
               par.ep);
  SPARTA_CHECK(cfg.d_model % cfg.n_heads == 0, "d_model {} not divisible by n_heads {}",
               cfg.d_model, cfg.n_heads);
  SPARTA_CHECK(cfg.pos != PosEncoding::rope || cfg.head_dim() % 2 == 0,
               "rope needs an even head dim, got {}", cfg.head_dim());
  auto mp = k::Arena::measuring(device), mg = k::Arena::measuring(device),
       ma = k::Arena::measuring(device), mb = k::Arena::measuring(device);
  plan(mp, mg, ma, mb);
  param_arena_ = k::Arena(device, mp.used(), "parameters");
  grad_arena_ = k::Arena(device, mg.used(), "gradients");
  act_arena_ = k::Arena(device, ma.used(), "activations");
  buffer_arena_ = k::Arena(device, mb.used(), "buffers");
  plan(param_arena_, grad_arena_, act_arena_, buffer_arena_);
  host_losses_.resize(static_cast<size_t>(B_) * static_cast<size_t>(seq_len_local()));
  init_params(seed);
}

void Transformer::plan(k::Arena& pa, k::Arena& ga, k::Arena& aa, k::Arena& ba) {
  const int64_t L = cfg_.n_layers, C = cfg_.d_model, H = cfg_.n_heads, D = cfg_.head_dim();
  // T: this rank's tokens per sequence (context parallel: seq_len / cp); Tf: the whole sequence.
  const int64_t Tf = cfg_.seq_len, T = Tf / par_.cp, V = cfg_.vocab_size, B = B_, N = B * T;
  const int64_t F = cfg_.d_ff, FC = cfg_.ffn == FfnType::swiglu ? 2 * F : F;
  const bool ln = cfg_.norm == NormType::layernorm;
  const std::vector<bool> moe_mask = cfg_.moe_layer_mask();
  const int64_t E = cfg_.moe_experts, K = cfg_.moe_top_k, Fe = cfg_.expert_ffn();
  const int64_t FCe = cfg_.ffn == FfnType::swiglu ? 2 * Fe : Fe;
  const bool gru = cfg_.moe_experts > 0 && cfg_.moe_router == "gru";
  const int64_t P = cfg_.moe_gru_dim;
  // UoE (kernels/uoe.h): Ea attention experts of Wa = C / Ea columns, Em MLP experts of F / Em.
  const bool uoe = cfg_.uoe, paper = cfg_.uoe_mode == "paper";
  const int64_t Ea = cfg_.uoe_attn_experts_or_default(), ka = cfg_.uoe_attn_top_k_or_default();
  const int64_t Wa = C / Ea, Em = cfg_.uoe_mlp_experts, km = cfg_.uoe_mlp_top_k;
  const int64_t Fm = F / Em, FCm = cfg_.ffn == FfnType::swiglu ? 2 * Fm : Fm;
  auto ceil_slots = [&](double c, int64_t items, int64_t kk, int64_t EE) {
    const auto t = static_cast<int64_t>(
        std::ceil(c * static_cast<double>(items * kk) / static_cast<double>(EE) - 1e-9));
    return std::clamp<int64_t>(t, 1, items);
  };
  if (uoe) {
    uoe_Ta_ = paper ? T : ceil_slots(cfg_.uoe_attn_capacity, T, ka, Ea);  // paper: the max T
    uoe_Gm_ = paper ? T : B;  // paper: the [L,B] layout, a group per time step
    uoe_Tm_ = paper ? std::clamp<int64_t>(static_cast<int64_t>(std::floor(
                                              cfg_.uoe_mlp_capacity * static_cast<double>(B * km) /
                                                  static_cast<double>(Em) +
                                              1e-9)),
                                          1, B)
                    : ceil_slots(cfg_.uoe_mlp_capacity, T, km, Em);
  }
  params_.clear();
  buffers_.clear();
  moe_stats_.clear();
  init_scale_.clear();
  buffer_init_.clear();

  // One parameter = a weight and its gradient carved at the same offsets of the two arenas. The
  // list keeps the canonical order (init streams and noise are keyed by the index in it);
  // memory is carved after the list is complete, grouped by shard group (group_range()).
  // `split_dim`: the dimension of `shape` (the full shape) that the shard divides.
  struct Pending {
    Tensor *w, *g;
    std::vector<int64_t> local_shape;
  };
  std::vector<Pending> pending;
  auto param = [&](const std::string& name, int layer, std::initializer_list<int64_t> shape,
                   float init, bool decay, Tensor& w, Tensor& g, Shard sh = {}, int split_dim = 0) {
    std::vector<int64_t> local(shape);
    SPARTA_CHECK(local[static_cast<size_t>(split_dim)] % sh.parts == 0 && sh.mid % sh.parts == 0,
                 "internal: {} cannot be split {} ways", name, sh.parts);
    local[static_cast<size_t>(split_dim)] /= sh.parts;
    if (sh.parts == 1) sh = Shard{};  // one part: a whole tensor, laid out with the others
    params_.push_back({name, layer, decay, Tensor(), Tensor(), sh, std::vector<int64_t>(shape)});
    pending.push_back({&w, &g, local});
    init_scale_.push_back(init);
  };
  auto ep_split = [&](int64_t E, int64_t inner) {
    return Shard{ShardGroup::ep, 1, E, inner, par_.ep, par_.ep_rank};
  };
  // Tensor parallel (Megatron): column-parallel layers split their output rows (QKV as
  // [3, C, C] so each rank gets whole heads of q, k and v; SwiGLU's fc as [2, F, C] so gate and
  // up stay paired), row-parallel layers their input columns, embedding and head the
  // vocabulary, UoE its experts. Norms and positions are replicated.
  auto tp_split = [&](int64_t outer, int64_t mid, int64_t inner) {
    return Shard{ShardGroup::tp, outer, mid, inner, par_.tp, par_.tp_rank};
  };
  const int64_t tp = par_.tp, Hl = H / tp, Cl = C / tp, Fl = F / tp, FCl = FC / tp;
  const int64_t Hc = Hl / par_.cp;  // heads this rank attends with (every token of them)
  const int64_t Vl = V / tp, Eal = Ea / tp, Eml = Em / tp;
  auto buffer = [&](const std::string& name, int layer, std::initializer_list<int64_t> shape,
                    float init, Tensor& w) {
    w = ba.alloc(DType::f32, shape);
    buffers_.push_back({name, layer, false, w, Tensor(), Shard{}, std::vector<int64_t>(shape)});
    buffer_init_.push_back(init);
  };
  const float s = cfg_.init_std;
  param("wte", -1, {V, C}, cfg_.embed_init_std, true, wte_, dwte_, tp_split(1, V, C));
  if (cfg_.pos == PosEncoding::learned)
    param("wpe", -1, {Tf, C}, cfg_.embed_init_std, true, wpe_, dwpe_);
  layers_.assign(static_cast<size_t>(L), {});
  for (int l = 0; l < L; ++l) {
    LayerParams& p = layers_[static_cast<size_t>(l)];
    const std::string pre = "layers." + std::to_string(l) + ".";
    param(pre + "norm_a.weight", l, {C}, kOnes, false, p.na_g, p.d_na_g);
    if (ln) param(pre + "norm_a.bias", l, {C}, kZeros, false, p.na_b, p.d_na_b);
    p.uoe = uoe;
    if (uoe) {
      // The experts are the tensor-parallel slices of a dense block, stored expert-major so that
      // each expert's GEMM reads one contiguous matrix (spec section 2).
      param(pre + "attn.experts.qkv.weight", l, {Ea, 3 * Wa, C}, s, true, p.wqkv, p.dwqkv,
            tp_split(1, Ea, 3 * Wa * C));
      param(pre + "attn.experts.qkv.bias", l, {Ea, 3 * Wa}, kZeros, false, p.bqkv, p.dbqkv,
            tp_split(1, Ea, 3 * Wa));
      param(pre + "attn.experts.proj.weight", l, {Ea, C, Wa}, s, true, p.wproj, p.dwproj,
            tp_split(1, Ea, C * Wa));
      param(pre + "attn.experts.proj.bias", l, {Ea, C}, kZeros, false, p.bproj, p.dbproj,
            tp_split(1, Ea, C));
    } else {
      param(pre + "attn.qkv.weight", l, {3 * C, C}, s, true, p.wqkv, p.dwqkv, tp_split(3, C, C));
      param(pre + "attn.proj.weight", l, {C, C}, s, true, p.wproj, p.dwproj, tp_split(C, C, 1), 1);
    }
    param(pre + "norm_f.weight", l, {C}, kOnes, false, p.nf_g, p.d_nf_g);
    if (ln) param(pre + "norm_f.bias", l, {C}, kZeros, false, p.nf_b, p.d_nf_b);
    p.moe = moe_mask[static_cast<size_t>(l)];
    if (uoe) {
      param(pre + "mlp.experts.fc.weight", l, {Em, FCm, C}, s, true, p.wfc, p.dwfc,
            tp_split(1, Em, FCm * C));
      param(pre + "mlp.experts.fc.bias", l, {Em, FCm}, kZeros, false, p.bfc, p.dbfc,
            tp_split(1, Em, FCm));
      param(pre + "mlp.experts.proj.weight", l, {Em, C, Fm}, s, true, p.wout, p.dwout,
            tp_split(1, Em, C * Fm));
      param(pre + "mlp.experts.proj.bias", l, {Em, C}, kZeros, false, p.bout, p.dbout,
            tp_split(1, Em, C));
      // Spec 4.1: router weights N(0, init_std), zero bias, frozen.
      buffer(pre + "attn.router.weight", l, {Ea, C}, s, p.wg_a);
      buffer(pre + "attn.router.bias", l, {Ea}, kZeros, p.cg_a);
      buffer(pre + "mlp.router.weight", l, {Em, C}, s, p.wg_m);
      buffer(pre + "mlp.router.bias", l, {Em}, kZeros, p.cg_m);
      p.uoe_slot = static_cast<int>(moe_stats_.size());
      moe_stats_.push_back({});
      moe_stats_.back().layer = l;
      moe_stats_.back().kind = "uoe.attn";
      moe_stats_.back().expert_tokens.assign(static_cast<size_t>(Ea), 0);
      moe_stats_.push_back({});
      moe_stats_.back().layer = l;
      moe_stats_.back().kind = "uoe.mlp";
      moe_stats_.back().expert_tokens.assign(static_cast<size_t>(Em), 0);
    } else if (p.moe) {
      p.moe_slot = static_cast<int>(moe_stats_.size());
      moe_stats_.push_back({});
      moe_stats_.back().layer = l;
      if (gru) {
        param(pre + "ffn.router.proj.weight", l, {P, C}, s, true, p.wgproj, p.dwgproj);
        param(pre + "ffn.router.weight", l, {E, P}, s, true, p.wrouter, p.dwrouter);
      } else {
        param(pre + "ffn.router.weight", l, {E, C}, s, true, p.wrouter, p.dwrouter);
      }
      param(pre + "ffn.experts.fc.weight", l, {E, FCe, C}, s, true, p.wfc, p.dwfc,
            ep_split(E, FCe * C));
      param(pre + "ffn.experts.proj.weight", l, {E, C, Fe}, s, true, p.wout, p.dwout,
            ep_split(E, C * Fe));
    } else {
      param(pre + "ffn.fc.weight", l, {FC, C}, s, true, p.wfc, p.dwfc, tp_split(FC / F, F, C));
      param(pre + "ffn.proj.weight", l, {C, F}, s, true, p.wout, p.dwout, tp_split(C, F, 1), 1);
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
  if (!cfg_.tie_embeddings)
    param("lm_head.weight", -1, {V, C}, s, true, head_, dhead_, tp_split(1, V, C));
  for (int grp = 0; grp < kShardGroups; ++grp) {
    const int64_t begin = static_cast<int64_t>(pa.used() / sizeof(float));
    for (size_t i = 0; i < params_.size(); ++i) {
      if (static_cast<int>(params_[i].shard.group) != grp) continue;
      const auto& ls = pending[i].local_shape;
      *pending[i].w = params_[i].w = pa.alloc(DType::f32, ls);
      *pending[i].g = params_[i].g = ga.alloc(DType::f32, ls);
    }
    group_range_[static_cast<size_t>(grp)] = {begin,
                                              static_cast<int64_t>(pa.used() / sizeof(float))};
  }
  if (cfg_.tie_embeddings) {
    head_ = wte_;
    dhead_ = dwte_;
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
    if (!uoe) {  // this rank's heads
      a.qkv = f32({N, 3 * Cl});
      a.q = f32({B, Hc, Tf, D});
      a.k = f32({B, Hc, Tf, D});
      a.v = f32({B, Hc, Tf, D});
      a.o = f32({B, Hc, Tf, D});
      a.lse = f32({B, Hc, Tf});
      a.att = f32({N, Cl});
    }
    a.att_proj = f32({N, C});
    a.sum1 = f32({N, C});
    if (post) a.sum2 = f32({N, C});
    a.mlp_out = f32({N, C});
    if (uoe) {
      UoeActs& u = a.uoe;
      auto route = [&](UoeRoute& r, int64_t E, int64_t K, int64_t slots_total) {
        r.logits = f32({N, E});
        r.probs = f32({N, E});
        r.idx = aa.alloc(DType::i32, {N, K});
        r.w = f32({N, K});
        r.pos = aa.alloc(DType::i32, {N * E});
        r.row_token = aa.alloc(DType::i32, {slots_total});
        r.slot_pos = aa.alloc(DType::i32, {slots_total});
      };
      const int64_t Ra = Ea * B * uoe_Ta_, Rm = Em * uoe_Gm_ * uoe_Tm_;
      route(u.ra, Ea, ka, Ra);
      route(u.rm, Em, km, Rm);
      u.ra.offsets.assign(static_cast<size_t>(Eal + 1), 0);  // this rank's experts
      u.rm.offsets.assign(static_cast<size_t>(Eml + 1), 0);
      u.xs_a = f32({Ra, C});
      u.qkv_a = f32({Ra, 3 * Wa});
      u.q = f32({Ra * Wa});
      u.k = f32({Ra * Wa});
      u.v = f32({Ra * Wa});
      u.o = f32({Ra * Wa});
      u.lse = f32({Ra * (Wa / D)});
      u.att_a = f32({Ra, Wa});
      u.y_a = f32({Ra, C});
      u.xs_m = f32({Rm, C});
      u.h_m = f32({Rm, FCm});
      u.act_m = f32({Rm, Fm});
      u.y_m = f32({Rm, C});
    } else if (!layers_[static_cast<size_t>(l)].moe) {
      a.fc = f32({N, FCl});
      a.act = f32({N, Fl});
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
      m.f_global.assign(static_cast<size_t>(E), 0.0);
      if (par_.ep > 1) {  // a rank's experts may receive every row of the ep group
        const int64_t R = par_.ep * N * K;
        m.xr = f32({R, C});
        m.hr = f32({R, FCe});
        m.actr = f32({R, Fe});
        m.perm = aa.alloc(DType::i32, {R});
        m.invperm = aa.alloc(DType::i32, {R});
        m.local_offsets.assign(static_cast<size_t>(E / par_.ep + 1), 0);
        m.send_rows.assign(static_cast<size_t>(par_.ep), 0);
        m.recv_rows.assign(static_cast<size_t>(par_.ep), 0);
      }
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
  logits_ws_ = f32({std::min(N, kLogitRows), Vl});
  logit_row_ = f32({1, Vl});
  g_resid_ = f32({N, C});
  g_tmp_ = f32({N, C});
  g_norm_ = f32({N, C});
  g_att_ = f32({N, Cl});
  g_qkv_ = f32({N, 3 * Cl});
  g_q_ = f32({B, Hc, Tf, D});
  g_k_ = f32({B, Hc, Tf, D});
  g_v_ = f32({B, Hc, Tf, D});
  g_o_ = f32({B, Hc, Tf, D});
  if (par_.cp > 1) {
    for (Tensor* t : {&cp_q_, &cp_k_, &cp_v_}) *t = f32({B, Hl, T, D});
    cp_send_ = f32({B * Hl * T * D});
    cp_recv_ = f32({B * Hl * T * D});
    cp_counts_.assign(static_cast<size_t>(par_.cp), B * Hc * T * D);
  }
  g_fc_ = f32({N, FCl});
  g_act_ = f32({N, Fl});
  if (tp > 1) {
    g_tpx_ = f32({N, C});
    tp_lse_parts_ = f32({tp * N});
    tp_tlogit_ = f32({N});
    tp_row_lse_ = f32({N});
    tp_host_.assign(static_cast<size_t>((tp + 2) * N), 0.0f);
    tp_targets_host_.assign(static_cast<size_t>(N), -1);
  }
  if (uoe) {
    const int64_t Ra = Ea * B * uoe_Ta_, Rm = Em * uoe_Gm_ * uoe_Tm_;
    uoe_ones_a_ = f32({N, Ea});  // filled with ones by init_params
    uoe_ones_m_ = f32({N, Em});
    g_u_xs_ = f32({std::max(Ra, Rm), C});
    g_u_y_ = f32({std::max(Ra, Rm), C});
    g_u_qkv_ = f32({Ra, 3 * Wa});
    g_u_q_ = f32({Ra * Wa});
    g_u_k_ = f32({Ra * Wa});
    g_u_v_ = f32({Ra * Wa});
    g_u_o_ = f32({Ra * Wa});
    g_u_att_ = f32({Ra, Wa});
    g_u_h_ = f32({Rm, FCm});
    g_u_act_ = f32({Rm, Fm});
    moe_counts_.assign(static_cast<size_t>(std::max(Ea, Em)), 0);
  }
  if (E > 0 && !moe_stats_.empty()) {
    g_dlogits_ = f32({N, E});
    g_dw_ = f32({N, K});
    g_doutp_ = f32({N * K, C});
    g_dh_ = f32({N * K, FCe});
    g_dact_ = f32({N * K, Fe});
    g_dxp_ = f32({N * K, C});
    moe_counts_.assign(static_cast<size_t>(E), 0);
    global_counts_.assign(static_cast<size_t>(E), 0);
    if (par_.ep > 1) {
      const int64_t R = par_.ep * N * K;
      ep_ex_ = f32({R, C});
      ep_out_ = f32({R, C});
      g_r_h_ = f32({R, FCe});
      g_r_act_ = f32({R, Fe});
      g_r_x_ = f32({R, C});
      ep_counts_.assign(static_cast<size_t>(par_.ep * E), 0);
      ep_perm_.assign(static_cast<size_t>(R), 0);
      ep_invperm_.assign(static_cast<size_t>(R), 0);
      ep_send_el_.assign(static_cast<size_t>(par_.ep), 0);
      ep_recv_el_.assign(static_cast<size_t>(par_.ep), 0);
    }
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
  // Buffers draw from streams above every parameter's, so adding them changes no parameter.
  constexpr uint64_t kBufferStreams = uint64_t{1} << 32;
  const size_t n_params = params_.size();
  for (size_t i = 0; i < n_params + buffers_.size(); ++i) {
    const bool buf = i >= n_params;
    const Tensor& w = buf ? buffers_[i - n_params].w : params_[i].w;
    host.assign(static_cast<size_t>(w.numel()), 0.0f);
    const float sc = buf ? buffer_init_[i - n_params] : init_scale_[i];
    const uint64_t stream =
        k::rng_stream(k::RngPurpose::init, buf ? kBufferStreams + (i - n_params) : i);
    const Shard sh = buf ? Shard{} : params_[i].shard;  // values keyed by the full tensor's index
    for (size_t j = 0; j < host.size(); ++j)
      host[j] = sc == kOnes ? 1.0f
                : sc == kZeros
                    ? 0.0f
                    : sc * static_cast<float>(k::normal(
                               seed, stream,
                               static_cast<uint64_t>(sh.global_index(static_cast<int64_t>(j)))));
    Tensor h = w;
    h.device = k::Device::cpu();
    h.data = host.data();
    k::copy(w, h);
  }
  for (Tensor ones : {uoe_ones_a_, uoe_ones_m_}) {
    if (ones.empty()) continue;
    host.assign(static_cast<size_t>(ones.numel()), 1.0f);
    Tensor h = ones;
    h.device = k::Device::cpu();
    h.data = host.data();
    k::copy(ones, h);
  }
}

int64_t Transformer::num_params() const {
  int64_t n = 0;
  for (const Param& p : params_) {
    int64_t f = 1;
    for (int64_t d : p.full_shape) f *= d;
    n += f;
  }
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
  if (p.uoe) {
    uoe_attention_forward(p, a, x);
    return;
  }
  k::matmul_forward(a.qkv, x, p.wqkv);
  if (par_.cp == 1) {
    k::split_heads(a.q, a.k, a.v, a.qkv);
  } else {  // this rank's tokens of all heads -> all tokens of this rank's heads
    k::split_heads(cp_q_, cp_k_, cp_v_, a.qkv);
    cp_to_heads(a.q, cp_q_);
    cp_to_heads(a.k, cp_k_);
    cp_to_heads(a.v, cp_v_);
  }
  if (cfg_.pos == PosEncoding::rope) {  // whole sequences here: positions 0..T-1 as they are
    k::rope_forward(a.q, cfg_.rope_theta);
    k::rope_forward(a.k, cfg_.rope_theta);
  }
  k::attention_forward(a.o, a.lse, a.q, a.k, a.v, /*causal=*/true);
  if (par_.cp == 1) {
    k::merge_heads(a.att, a.o);
  } else {
    cp_to_tokens(cp_q_, a.o);
    k::merge_heads(a.att, cp_q_);
  }
  k::matmul_forward(a.att_proj, a.att, p.wproj);
  tp_sum(a.att_proj);  // row-parallel: each rank's heads contribute a share
}

// dout: d(att_proj), only read before dx is first written, so dx may alias dout.
void Transformer::attention_backward(const LayerParams& p, const LayerActs& a, Tensor x,
                                     Tensor dout, Tensor dx) {
  if (p.uoe) {
    uoe_attention_backward(p, a, dout, dx);
    return;
  }
  k::zero(g_att_);
  k::matmul_backward(g_att_, p.dwproj, dout, a.att, p.wproj);
  if (par_.cp == 1) {
    k::zero(g_o_);
    k::merge_heads_backward(g_o_, g_att_);
  } else {
    k::zero(cp_q_);
    k::merge_heads_backward(cp_q_, g_att_);
    cp_to_heads(g_o_, cp_q_);
  }
  k::zero(g_q_);
  k::zero(g_k_);
  k::zero(g_v_);
  k::attention_backward(g_q_, g_k_, g_v_, g_o_, a.q, a.k, a.v, a.o, a.lse, /*causal=*/true);
  if (cfg_.pos == PosEncoding::rope) {
    k::rope_backward(g_q_, cfg_.rope_theta);
    k::rope_backward(g_k_, cfg_.rope_theta);
  }
  k::zero(g_qkv_);
  if (par_.cp == 1) {
    k::split_heads_backward(g_qkv_, g_q_, g_k_, g_v_);
  } else {
    cp_to_tokens(cp_q_, g_q_);
    cp_to_tokens(cp_k_, g_k_);
    cp_to_tokens(cp_v_, g_v_);
    k::split_heads_backward(g_qkv_, cp_q_, cp_k_, cp_v_);
  }
  k::matmul_backward(tp_dx(dx), p.dwqkv, g_qkv_, x, p.wqkv);
  tp_dx_done(dx);
}

void Transformer::ffn_forward(const LayerParams& p, LayerActs& a, Tensor x) {
  if (p.moe) {
    moe_forward(p, a, x, moe_stats_[static_cast<size_t>(p.moe_slot)]);
    return;
  }
  if (p.uoe) {
    uoe_mlp_forward(p, a, x);
    return;
  }
  k::matmul_forward(a.fc, x, p.wfc);
  if (cfg_.ffn == FfnType::swiglu)
    k::swiglu_forward(a.act, a.fc);
  else
    k::gelu_forward(a.act, a.fc);
  k::matmul_forward(a.mlp_out, a.act, p.wout);
  tp_sum(a.mlp_out);
}

// Same aliasing rule as attention_backward: dx may be dout.
void Transformer::ffn_backward(const LayerParams& p, const LayerActs& a, Tensor x, Tensor dout,
                               Tensor dx) {
  if (p.moe) {
    moe_backward(p, a, x, dout, dx);
    return;
  }
  if (p.uoe) {
    uoe_mlp_backward(p, a, dout, dx);
    return;
  }
  k::zero(g_act_);
  k::matmul_backward(g_act_, p.dwout, dout, a.act, p.wout);
  k::zero(g_fc_);
  if (cfg_.ffn == FfnType::swiglu)
    k::swiglu_backward(g_fc_, g_act_, a.fc);
  else
    k::gelu_backward(g_fc_, g_act_, a.fc);
  k::matmul_backward(tp_dx(dx), p.dwfc, g_fc_, x, p.wfc);
  tp_dx_done(dx);
}

void Transformer::forward_hidden() {
  SPARTA_CHECK(valid_targets_ >= 0, "forward before set_batch()");
  // Vocab-parallel: each rank embeds the tokens of its vocabulary part (zeros elsewhere), the
  // sum over the tp group completes every row; positions are added by one rank only.
  const int64_t vb = par_.tp_rank * (cfg_.vocab_size / par_.tp);
  k::embedding_forward(emb_out_, tokens_, wte_, par_.tp_rank == 0 ? positions(wpe_) : Tensor(), vb);
  tp_sum(emb_out_);
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
  training_forward_ = false;
  forward_hidden();
  k::matmul_forward(logit_row_, fin_out_.rows(row, row + 1), head_);
  const int64_t Vl = cfg_.vocab_size / par_.tp;
  const Tensor mine(host_logits + par_.tp_rank * Vl, DType::f32, k::Device::cpu(), {1, Vl});
  k::copy(mine, logit_row_);
  if (par_.tp > 1)
    par_.tp_host->all_gather(Tensor(host_logits, DType::f32, k::Device::cpu(), {cfg_.vocab_size}),
                             mine.view({Vl}));
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
  if (par_.ep == 1) {
    k::grouped_matmul_forward(m.h, m.xp, p.wfc, m.offsets);
    if (cfg_.ffn == FfnType::swiglu)
      k::swiglu_forward(m.act.rows(0, m.rows), m.h.rows(0, m.rows));
    else
      k::gelu_forward(m.act.rows(0, m.rows), m.h.rows(0, m.rows));
    k::grouped_matmul_forward(m.outp, m.act, p.wout, m.offsets);
  } else {
    // Expert parallel: rows travel to the rank that owns their expert, are computed there in
    // expert-major order, and come back to the same places; the router ran here (RMoE's GRU
    // included), so nothing else moves.
    ep_plan(m);
    const int64_t R = m.received, C = cfg_.d_model;
    ep_exchange(m, ep_ex_, m.xp, C, false);
    k::moe_gather(m.xr, ep_ex_, m.perm, R);
    k::grouped_matmul_forward(m.hr, m.xr, p.wfc, m.local_offsets);
    if (cfg_.ffn == FfnType::swiglu)
      k::swiglu_forward(m.actr.rows(0, R), m.hr.rows(0, R));
    else
      k::gelu_forward(m.actr.rows(0, R), m.hr.rows(0, R));
    k::grouped_matmul_forward(ep_out_, m.actr, p.wout, m.local_offsets);
    k::moe_gather(ep_ex_, ep_out_, m.invperm, R);
    ep_exchange(m, m.outp, ep_ex_, C, true);
  }
  k::moe_combine_forward(a.mlp_out, m.outp, m.w, m.pos);
  auto aux = k::moe_aux_losses(m.logits, m.probs, m.idx, st.expert_tokens, Tensor(), 0, 0, 0);
  m.use_f_global = dp_ != nullptr && dp_->size() > 1 && training_forward_;
  if (m.use_f_global) {
    for (int64_t e = 0; e < E; ++e)
      global_counts_[static_cast<size_t>(e)] =
          static_cast<int32_t>(st.expert_tokens[static_cast<size_t>(e)]);
    dp_->all_reduce(Tensor(global_counts_.data(), DType::i32, k::Device::cpu(), {E}),
                    parallel::ReduceOp::sum);
    const double assignments = static_cast<double>(N * K * dp_->size());
    for (int64_t e = 0; e < E; ++e) {
      const auto c = global_counts_[static_cast<size_t>(e)];
      st.expert_tokens[static_cast<size_t>(e)] = c;
      m.f_global[static_cast<size_t>(e)] = static_cast<double>(c) / assignments;
    }
    // Reported value: the global fractions with this rank's mean probabilities.
    aux = k::moe_aux_losses(m.logits, m.probs, m.idx, moe_counts_, Tensor(), 0, 0, 0,
                            m.f_global.data());
  }
  st.load_balance_loss = aux.load_balance;
  st.z_loss = aux.z;
  st.router_entropy = aux.router_entropy;
}

// Same aliasing rule as ffn_backward: dout is fully read (combine backward) before dx is written.
void Transformer::moe_backward(const LayerParams& p, const LayerActs& a, Tensor x, Tensor dout,
                               Tensor dx) {
  const MoeActs& m = a.moe;
  k::zero(g_doutp_);
  k::zero(g_dw_);
  k::moe_combine_backward(g_doutp_, g_dw_, dout, m.outp, m.w, m.pos);
  k::zero(g_dxp_);
  if (par_.ep == 1) {
    k::zero(g_dact_);
    k::zero(g_dh_);
    k::grouped_matmul_backward(g_dact_, p.dwout, g_doutp_, m.act, p.wout, m.offsets);
    if (cfg_.ffn == FfnType::swiglu)
      k::swiglu_backward(g_dh_.rows(0, m.rows), g_dact_.rows(0, m.rows), m.h.rows(0, m.rows));
    else
      k::gelu_backward(g_dh_.rows(0, m.rows), g_dact_.rows(0, m.rows), m.h.rows(0, m.rows));
    k::grouped_matmul_backward(g_dxp_, p.dwfc, g_dh_, m.xp, p.wfc, m.offsets);
  } else {  // the forward's exchanges, reversed
    const int64_t R = m.received, C = cfg_.d_model;
    ep_exchange(m, ep_ex_, g_doutp_, C, false);
    k::moe_gather(ep_out_, ep_ex_, m.perm, R);
    for (const Tensor& t : {g_r_act_, g_r_h_, g_r_x_}) k::zero(t.rows(0, R));  // rows in use
    k::grouped_matmul_backward(g_r_act_, p.dwout, ep_out_, m.actr, p.wout, m.local_offsets);
    if (cfg_.ffn == FfnType::swiglu)
      k::swiglu_backward(g_r_h_.rows(0, R), g_r_act_.rows(0, R), m.hr.rows(0, R));
    else
      k::gelu_backward(g_r_h_.rows(0, R), g_r_act_.rows(0, R), m.hr.rows(0, R));
    k::grouped_matmul_backward(g_r_x_, p.dwfc, g_r_h_, m.xr, p.wfc, m.local_offsets);
    k::moe_gather(ep_ex_, g_r_x_, m.invperm, R);
    ep_exchange(m, g_dxp_, ep_ex_, C, true);
  }
  k::moe_gather_backward(dx, g_dxp_, m.pos);
  k::zero(g_dlogits_);
  k::moe_route_backward(g_dlogits_, g_dw_, m.probs, m.idx, m.w);
  k::moe_aux_losses(m.logits, m.probs, m.idx, moe_counts_, g_dlogits_,
                    static_cast<float>(cfg_.moe_aux_loss_coef),
                    static_cast<float>(cfg_.moe_z_loss_coef), grad_scale_,
                    m.use_f_global ? m.f_global.data() : nullptr);
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
  training_forward_ = with_backward;
  forward_hidden();
  const float denom = static_cast<float>(valid_targets_ > 0 ? valid_targets_ : 1);
  if (par_.tp > 1) return vocab_parallel_loss(with_backward, grad_scale / denom);

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
    if (backward_hook_) backward_hook_(l);
  }
  k::embedding_backward(dwte_, positions(dwpe_), g_resid_, tokens_,
                        par_.tp_rank * (cfg_.vocab_size / par_.tp));
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
  if (!tp_targets_host_.empty()) std::copy_n(targets, N, tp_targets_host_.data());
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
  const int64_t C = cfg_.d_model, T = seq_len_local();
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
      d[static_cast<size_t>(l)] +=
          angular_distance(a.data(), b.data(), C) / static_cast<double>(B_);
    }
  }
  return d;
}

double Transformer::aux_loss() const {
  double s = 0;
  for (const auto& st : moe_stats_)
    if (st.kind == "moe")
      s += cfg_.moe_aux_loss_coef * st.load_balance_loss + cfg_.moe_z_loss_coef * st.z_loss;
  return s;
}

std::vector<double> Transformer::layer_grad_norms() const {
  const auto L = static_cast<size_t>(cfg_.n_layers);
  std::vector<double> ss(L, 0.0);
  // Split parameters: each rank's part, summed over the part's group (collective then).
  std::array<std::vector<float>, kShardGroups> split;
  for (auto& s : split) s.assign(L, 0.0f);
  for (const Param& p : params_) {
    if (p.layer < 0) continue;
    const double v = k::sum_squares(p.g);
    if (p.shard.parts == 1)
      ss[static_cast<size_t>(p.layer)] += v;
    else
      split[static_cast<size_t>(p.shard.group)][static_cast<size_t>(p.layer)] +=
          static_cast<float>(v);
  }
  for (const ShardGroup grp : {ShardGroup::tp, ShardGroup::ep}) {
    parallel::Comm* c = shard_comm(grp);
    std::vector<float>& s = split[static_cast<size_t>(grp)];
    if (c && c->size() > 1 && L > 0)
      c->all_reduce(Tensor(s.data(), DType::f32, k::Device::cpu(), {static_cast<int64_t>(L)}),
                    parallel::ReduceOp::sum);
    for (size_t l = 0; l < L; ++l) ss[l] += s[l];
  }
  for (double& v : ss) v = std::sqrt(v);
  return ss;
}

}  // namespace sparta::models
