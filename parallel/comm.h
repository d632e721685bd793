// Comm: the one interface through which ranks exchange tensors. Implementations: SelfComm (one
// process), MpiComm (parallel/mpi_comm.h: host memory, device tensors staged through pinned host
// buffers) and, on GPUs, NCCL. Every call goes through Comm's non-virtual wrappers, which
//   - count calls, bytes and seconds per collective kind (the metrics exporter reads these), and
//   - keep a flight recorder: the last kFlightRecords collectives with their sequence number,
//     kind, bytes, peer and start/end times, printed when a rank fails or times out, so that a
//     hang shows which collective each rank was in.
// Semantics (all ranks of the communicator call each collective in the same order):
//   all_reduce(t, op)            t = sum (mean, maximum) over ranks, in place
//   reduce_scatter(out, in, op)  out = rank's block of sum/mean(in); blocks: block_range()
//   all_gather(out, in)          out = concatenation of every rank's block; `in` may be out's own
//                                block (in place)
//   all_to_all_v(out, rc, in, sc) rank r sends in[offsets(sc)[r'] ...] (sc[r'] elements) to r',
//                                and receives rc[r'] elements from r' into out, in rank order
//   send / recv                  point to point, matched in order
//   start_sendrecv(out, from, in, to)  sends `in` to rank `to` and receives `out` from rank
//                                `from` (a ring pass: to = rank + 1, from = rank - 1), started
//                                now and completed by wait_all(); neither tensor may be touched
//                                in between. Passes between the same two ranks match in the
//                                order they were started.
//   broadcast(t, root), barrier(), split(color, key, name): a sub-communicator (MPI semantics)
//   start_all_reduce(t, op)      the same all-reduce, started now and completed by wait_all();
//                                t must not be touched in between. progress() lets a backend
//                                without a progress thread advance what is in flight (call it
//                                between computations). Backends that cannot overlap (the
//                                default, device tensors over MPI) complete it inside the start.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/tensor.h"

namespace sparta::parallel {

// max: element-wise maximum (all_reduce only; the control word's bits are OR-ed as 0/1 maxima).
enum class ReduceOp { sum, avg, max };

enum class CollKind : uint8_t {
  all_reduce,
  reduce_scatter,
  all_gather,
  all_to_all_v,
  send,
  recv,
  broadcast,
  barrier,
  sendrecv,
  count_
};
const char* to_string(CollKind k);
constexpr size_t kCollKinds = static_cast<size_t>(CollKind::count_);

struct CollStats {
  int64_t calls = 0;
  int64_t bytes = 0;  // payload this rank contributed (all_gather: its block; a2a: its sends)
  double seconds = 0;
};

struct FlightRecord {
  uint64_t seq = 0;  // 1-based, per communicator
  CollKind kind = CollKind::barrier;
  int64_t bytes = 0;
  int peer = -1;       // root or peer where there is one
  double start_s = 0;  // seconds since the process's first collective clock read
  double end_s = -1;   // < 0: still in flight
};

class FlightRecorder {
 public:
  static constexpr size_t kCapacity = 64;
  FlightRecord& begin(CollKind kind, int64_t bytes, int peer);
  // The last n records, oldest first, one per line ("#seq kind bytes peer start end|IN FLIGHT").
  std::string tail(size_t n = 8) const;
  uint64_t last_seq() const { return next_seq_ - 1; }

 private:
  std::array<FlightRecord, kCapacity> ring_{};
  uint64_t next_seq_ = 1;
};

double clock_s();  // monotonic seconds since the first call in this process

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;

  void all_reduce(kernels::Tensor t, ReduceOp op);
  void reduce_scatter(kernels::Tensor out, kernels::Tensor in, ReduceOp op);
  void all_gather(kernels::Tensor out, kernels::Tensor in);
  void all_to_all_v(kernels::Tensor out, const std::vector<int64_t>& recv_counts,
                    kernels::Tensor in, const std::vector<int64_t>& send_counts);
  void send(kernels::Tensor t, int peer);
  void recv(kernels::Tensor t, int peer);
  void broadcast(kernels::Tensor t, int root);
  void barrier();
  void start_all_reduce(kernels::Tensor t, ReduceOp op);
  void start_sendrecv(kernels::Tensor out, int from, kernels::Tensor in, int to);
  void progress();
  void wait_all();
  // Ranks with the same color form a new communicator, ordered by key (then by old rank).
  std::unique_ptr<Comm> split(int color, int key, const std::string& name);

  // The [begin, end) element range of `rank`'s block when n elements are cut into size() blocks
  // of ceil(n / size) (the last ones shorter, possibly empty): reduce_scatter's and all_gather's
  // layout, and ZeRO-1's optimizer shards.
  static std::pair<int64_t, int64_t> block_range(int64_t n, int size, int rank);

  const CollStats& stats(CollKind k) const { return stats_[static_cast<size_t>(k)]; }
  int64_t total_bytes() const;
  const FlightRecorder& flight() const { return *flight_; }
  // Shared so that the failure protocol can still print it after the communicator is gone (an
  // exception unwinds the trainer before main reports it).
  std::shared_ptr<const FlightRecorder> flight_shared() const { return flight_; }

 protected:
  virtual void do_all_reduce(kernels::Tensor t, ReduceOp op) = 0;
  virtual void do_reduce_scatter(kernels::Tensor out, kernels::Tensor in, ReduceOp op) = 0;
  virtual void do_all_gather(kernels::Tensor out, kernels::Tensor in) = 0;
  virtual void do_all_to_all_v(kernels::Tensor out, const std::vector<int64_t>& recv_counts,
                               kernels::Tensor in, const std::vector<int64_t>& send_counts) = 0;
  virtual void do_send(kernels::Tensor t, int peer) = 0;
  virtual void do_recv(kernels::Tensor t, int peer) = 0;
  virtual void do_broadcast(kernels::Tensor t, int root) = 0;
  virtual void do_barrier() = 0;
  virtual std::unique_ptr<Comm> do_split(int color, int key, const std::string& name) = 0;
  virtual void do_start_all_reduce(kernels::Tensor t, ReduceOp op) { do_all_reduce(t, op); }
  // Backends complete what they cannot overlap inside the start, like start_all_reduce.
  virtual void do_start_sendrecv(kernels::Tensor out, int from, kernels::Tensor in, int to) = 0;
  virtual void do_progress() {}
  virtual void do_wait_all() {}

 private:
  class Scope;
  struct Pending {
    FlightRecord* rec;
    uint64_t seq;  // rec is still this collective's while rec->seq == seq
    CollKind kind;
    int64_t bytes;
  };
  void begin_pending(CollKind kind, int64_t bytes, int peer);
  std::vector<Pending> pending_;  // started, not yet waited
  std::array<CollStats, kCollKinds> stats_{};
  std::shared_ptr<FlightRecorder> flight_ = std::make_shared<FlightRecorder>();
};

// A communicator of one rank: every collective is the identity on its data.
class SelfComm final : public Comm {
 public:
  explicit SelfComm(std::string name = "self") : name_(std::move(name)) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return name_; }

 protected:
  void do_all_reduce(kernels::Tensor, ReduceOp) override {}
  void do_reduce_scatter(kernels::Tensor out, kernels::Tensor in, ReduceOp) override;
  void do_all_gather(kernels::Tensor out, kernels::Tensor in) override;
  void do_all_to_all_v(kernels::Tensor out, const std::vector<int64_t>&, kernels::Tensor in,
                       const std::vector<int64_t>&) override;
  void do_send(kernels::Tensor, int peer) override;
  void do_recv(kernels::Tensor, int peer) override;
  void do_broadcast(kernels::Tensor t, int root) override;
  void do_barrier() override {}
  void do_start_sendrecv(kernels::Tensor out, int from, kernels::Tensor in, int to) override;
  std::unique_ptr<Comm> do_split(int color, int key, const std::string& name) override;

 private:
  std::string name_;
};

}  // namespace sparta::parallel
