// Comm: the one interface through which ranks exchange tensors. Implementations: SelfComm (one
// process; every collective is the identity on its data), and, with the distributed runtime, MPI
// and NCCL. Every call goes through Comm's non-virtual wrappers, which count calls and bytes per
// communicator; the metrics exporter reads these counters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kernels/tensor.h"

namespace sparta::parallel {

enum class ReduceOp { sum, avg };

struct CommStats {
  int64_t calls = 0;
  int64_t bytes = 0;
};

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;

  // In place over all ranks of this communicator.
  void all_reduce(kernels::Tensor t, ReduceOp op) {
    count(t);
    do_all_reduce(t, op);
  }
  void broadcast(kernels::Tensor t, int root) {
    count(t);
    do_broadcast(t, root);
  }
  void barrier() { do_barrier(); }
  const CommStats& stats() const { return stats_; }

 protected:
  virtual void do_all_reduce(kernels::Tensor t, ReduceOp op) = 0;
  virtual void do_broadcast(kernels::Tensor t, int root) = 0;
  virtual void do_barrier() = 0;

 private:
  void count(const kernels::Tensor& t) {
    ++stats_.calls;
    stats_.bytes += static_cast<int64_t>(t.nbytes());
  }
  CommStats stats_;
};

// A communicator of one rank: a sum or average over one rank is the data itself.
class SelfComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "self"; }

 protected:
  void do_all_reduce(kernels::Tensor, ReduceOp) override {}
  void do_broadcast(kernels::Tensor, int root) override;
  void do_barrier() override {}
};

}  // namespace sparta::parallel
