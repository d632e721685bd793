// The trainer's measurements of the model: validation loss and the unigram baseline.
#include <algorithm>
#include <cmath>

#include "trainer/trainer.h"

namespace sparta::trainer {

EvalResult Trainer::evaluate(ControlWord* pending) {
  const int64_t avail = val_loader_->eval_batches();
  const int64_t n = cfg_.train.eval_batches > 0 ? std::min(cfg_.train.eval_batches, avail) : avail;
  double nats = 0;
  int64_t count = 0;
  // Data-parallel readers split the batches (context-parallel peers share one, each scoring its
  // part of the sequences); the sums are all-reduced. A forward of a split model is collective
  // over its tp, cp and ep groups, so every rank runs the same number of forwards: a rank past
  // the end repeats batch 0 and does not count it. With `pending`, every rank agrees on the control
  // word every round (so no rank leaves the loop early) and all stop at the same round when it
  // asks for the step boundary.
  EvalResult r;
  const int64_t readers = groups_->data_size, rounds = (n + readers - 1) / readers;
  const bool collective =
      groups_->tp.size() > 1 || groups_->ep.size() > 1 || groups_->cp.size() > 1;
  for (int64_t round = 0; round < rounds; ++round) {
    if (pending) {
      if (!pending->wants_boundary()) {
        const ControlWord w = control_->agree();
        plane_->on_heartbeats(control_->last_seen());
        pending->bits |= w.bits;
        pending->signal = std::max(pending->signal, w.signal);
      }
      if (pending->wants_boundary()) {
        r.interrupted = true;
        break;
      }
    }
    const int64_t i = round * readers + groups_->data_rank;
    if (i >= n && !collective) continue;
    val_loader_->eval_batch(i < n ? i : 0, tokens_.data(), targets_.data());
    model_->set_batch(tokens_.data(), targets_.data());
    const double loss = model_->forward_loss();
    if (i >= n) continue;
    nats += loss * static_cast<double>(model_->valid_targets());
    count += model_->valid_targets();
  }
  if (groups_->dp.size() > 1) {
    scalars_[0] = static_cast<float>(nats);
    scalars_[1] = static_cast<float>(count);
    groups_->dp.host->all_reduce(host_scalars(2), parallel::ReduceOp::sum);
    nats = scalars_[0];
    count = static_cast<int64_t>(std::llround(scalars_[1]));
  }
  r.tokens = count;
  r.loss = nats / static_cast<double>(std::max<int64_t>(1, count));
  r.bpb = r.loss / std::log(2.0) / val_bytes_per_token_;
  return r;
}

EvalResult Trainer::unigram_baseline() const {
  const int64_t V = cfg_.model.vocab_size;
  std::vector<double> counts(static_cast<size_t>(V), 1.0);  // add-one smoothing
  double total = static_cast<double>(V);
  for (const auto& s : train_data_->shards())
    for (int64_t i = 0; i < s.size(); ++i) counts[s.tokens()[i]] += 1.0;
  for (const auto& s : train_data_->shards()) total += static_cast<double>(s.size());
  double nats = 0;
  int64_t n = 0;
  for (const auto& s : val_data_->shards())
    for (int64_t i = 1; i < s.size(); ++i, ++n) nats -= std::log(counts[s.tokens()[i]] / total);
  EvalResult r;
  r.tokens = n;
  r.loss = nats / static_cast<double>(std::max<int64_t>(1, n));
  r.bpb = r.loss / std::log(2.0) / val_bytes_per_token_;
  return r;
}

}  // namespace sparta::trainer
