// Token dispatchers of the MoE layers (trainer/models/moe.h): where the permuted rows are
// computed.
#pragma once

#include <vector>

#include "trainer/models/moe.h"

namespace sparta::models {

// ep = 1: every expert is local; the rows stay where they are.
class LocalDispatcher final : public TokenDispatcher {
 public:
  ExpertRows dispatch(const ExpertRows& local) override { return local; }
  void combine(Tensor, const ExpertRows&) override {}
  ExpertGrads dispatch_grad(const ExpertGrads& local) override { return local; }
  void combine_grad(Tensor, const ExpertGrads&) override {}
};

// ep > 1: each rank owns E / ep experts. The per-expert row counts are all-gathered over the ep
// group (host), which fixes the rows each peer sends and receives; rows travel with one
// all_to_all_v, are reordered expert-major for the grouped GEMMs (a host-built permutation) and
// return to their places the same way. The router ran where the token lives (RMoE's GRU
// included), so nothing else moves.
class AllToAllDispatcher final : public TokenDispatcher {
 public:
  AllToAllDispatcher(kernels::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
                     const parallel::Group& ep, MoeScratch& s);
  ExpertRows dispatch(const ExpertRows& local) override;
  void combine(Tensor outp, const ExpertRows& r) override;
  ExpertGrads dispatch_grad(const ExpertGrads& local) override;
  void combine_grad(Tensor dxp, const ExpertGrads& g) override;

 private:
  void plan(const std::vector<int64_t>& offsets);
  // Rows `src` (width C) to the peers by the plan's counts, or back (reverse = true).
  void exchange(Tensor dst, Tensor src, bool reverse);
  int64_t E_, C_;
  parallel::Group ep_;
  MoeScratch& s_;
  // The rows of this rank's experts gathered from every rank of the ep group, in expert-major
  // order [ep * N * K max, .]; perm_ maps such a row to its place in the source-major receive
  // buffer, invperm_ back.
  Tensor xr_, hr_, actr_, perm_, invperm_;
  std::vector<int64_t> local_offsets_, send_rows_, recv_rows_, send_el_, recv_el_;
  std::vector<int32_t> counts_, perm_host_, invperm_host_;
  int64_t received_ = 0;
};

}  // namespace sparta::models
