// NcclComm (parallel/nccl_comm.h).
#include "parallel/nccl_comm.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "kernels/check.h"
#include "parallel/init_watchdog.h"
#include "parallel/mpi_comm.h"

namespace sparta::parallel {

namespace {

void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess && r != ncclInProgress)
    throw Error(ErrorKind::internal, fmt::format("{} failed: {}", what, ncclGetErrorString(r)));
}

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(ErrorKind::internal, fmt::format("{} failed: {}", what, cudaGetErrorString(e)));
}

ncclRedOp_t nccl_op(ReduceOp op) {
  return op == ReduceOp::avg ? ncclAvg : op == ReduceOp::max ? ncclMax : ncclSum;
}

ncclDataType_t nccl_type(kernels::DType t) {
  switch (t) {
    case kernels::DType::f32:
      return ncclFloat32;
    case kernels::DType::i32:
      return ncclInt32;
    case kernels::DType::bf16:
      return ncclBfloat16;
    case kernels::DType::f16:
      return ncclFloat16;
    default:
      return ncclUint8;  // u16 moved as bytes (counts doubled by the caller)
  }
}

// Element count in NCCL's unit for a tensor type (u16 travels as bytes).
size_t nccl_count(kernels::DType t, int64_t n) {
  return t == kernels::DType::u16 ? static_cast<size_t>(n) * 2 : static_cast<size_t>(n);
}

class NcclComm final : public Comm {
 public:
  NcclComm(ncclComm_t c, int device, std::string name)
      : comm_(c), device_(device), name_(std::move(name)) {
    check_nccl(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank");
    check_nccl(ncclCommCount(comm_, &size_), "ncclCommCount");
    check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    // A non-blocking stream does not serialise with the legacy default stream that sparta's
    // kernels run on, so a started all-reduce (a gradient bucket) runs beside the rest of the
    // backward. Ordering is explicit instead: every collective first waits for the compute
    // enqueued before it (after_compute), and every wait returns only once the stream is done,
    // before the caller launches anything that reads the results.
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check_cuda(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreate");
    MpiRuntime::register_recorder(name_, flight_shared());
  }
  ~NcclComm() override {
    if (barrier_buf_) cudaFree(barrier_buf_);
    cudaEventDestroy(ready_);
    cudaStreamDestroy(stream_);
    ncclCommDestroy(comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return name_ + " (nccl)"; }

 protected:
  void do_all_reduce(kernels::Tensor t, ReduceOp op) override {
    do_start_all_reduce(t, op);
    do_wait_all();
  }

  void do_reduce_scatter(kernels::Tensor out, kernels::Tensor in, ReduceOp op) override {
    device_only(in, "reduce_scatter");
    device_only(out, "reduce_scatter");
    after_compute();
    const size_t es = kernels::dtype_size(in.dtype);
    check_nccl(ncclGroupStart(), "ncclGroupStart");
    for (int r = 0; r < size_; ++r) {
      const auto [b, e] = block_range(in.numel(), size_, r);
      if (e == b) continue;
      check_nccl(ncclReduce(static_cast<char*>(in.data) + b * static_cast<int64_t>(es),
                            r == rank_ ? out.data : nullptr, static_cast<size_t>(e - b),
                            nccl_type(in.dtype), nccl_op(op), r, comm_, stream_),
                 "ncclReduce");
    }
    check_nccl(ncclGroupEnd(), "ncclGroupEnd");
    wait(CollKind::reduce_scatter, static_cast<int64_t>(in.nbytes()));
  }

  void do_all_gather(kernels::Tensor out, kernels::Tensor in) override {
    device_only(in, "all_gather");
    device_only(out, "all_gather");
    after_compute();
    const size_t es = kernels::dtype_size(out.dtype);
    check_nccl(ncclGroupStart(), "ncclGroupStart");
    for (int r = 0; r < size_; ++r) {
      const auto [b, e] = block_range(out.numel(), size_, r);
      if (e == b) continue;
      check_nccl(
          ncclBroadcast(r == rank_ ? in.data : nullptr,
                        static_cast<char*>(out.data) + b * static_cast<int64_t>(es),
                        nccl_count(out.dtype, e - b), nccl_type(out.dtype), r, comm_, stream_),
          "ncclBroadcast");
    }
    check_nccl(ncclGroupEnd(), "ncclGroupEnd");
    wait(CollKind::all_gather, static_cast<int64_t>(in.nbytes()));
  }

  void do_all_to_all_v(kernels::Tensor out, const std::vector<int64_t>& rc, kernels::Tensor in,
                       const std::vector<int64_t>& sc) override {
    device_only(in, "all_to_all_v");
    device_only(out, "all_to_all_v");
    after_compute();
    const int64_t es = static_cast<int64_t>(kernels::dtype_size(in.dtype));
    int64_t so = 0, ro = 0, bytes = 0;
    check_nccl(ncclGroupStart(), "ncclGroupStart");
    for (int r = 0; r < size_; ++r) {
      const size_t rs = static_cast<size_t>(r);
      if (sc[rs] > 0)
        check_nccl(ncclSend(static_cast<char*>(in.data) + so * es, nccl_count(in.dtype, sc[rs]),
                            nccl_type(in.dtype), r, comm_, stream_),
                   "ncclSend");
      if (rc[rs] > 0)
        check_nccl(ncclRecv(static_cast<char*>(out.data) + ro * es, nccl_count(out.dtype, rc[rs]),
                            nccl_type(out.dtype), r, comm_, stream_),
                   "ncclRecv");
      so += sc[rs];
      ro += rc[rs];
      bytes += sc[rs] * es;
    }
    check_nccl(ncclGroupEnd(), "ncclGroupEnd");
    wait(CollKind::all_to_all_v, bytes);
  }

  void do_send(kernels::Tensor t, int peer) override {
    device_only(t, "send");
    after_compute();
    check_nccl(
        ncclSend(t.data, nccl_count(t.dtype, t.numel()), nccl_type(t.dtype), peer, comm_, stream_),
        "ncclSend");
    wait(CollKind::send, static_cast<int64_t>(t.nbytes()));
  }

  void do_recv(kernels::Tensor t, int peer) override {
    device_only(t, "recv");
    after_compute();
    check_nccl(
        ncclRecv(t.data, nccl_count(t.dtype, t.numel()), nccl_type(t.dtype), peer, comm_, stream_),
        "ncclRecv");
    wait(CollKind::recv, static_cast<int64_t>(t.nbytes()));
  }

  void do_broadcast(kernels::Tensor t, int root) override {
    device_only(t, "broadcast");
    after_compute();
    check_nccl(ncclBroadcast(t.data, t.data, nccl_count(t.dtype, t.numel()), nccl_type(t.dtype),
                             root, comm_, stream_),
               "ncclBroadcast");
    wait(CollKind::broadcast, static_cast<int64_t>(t.nbytes()));
  }

  void do_barrier() override {
    // An all-reduce of one float: NCCL has no barrier.
    if (!barrier_buf_) check_cuda(cudaMalloc(&barrier_buf_, sizeof(float)), "cudaMalloc");
    after_compute();
    check_nccl(ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclFloat32, ncclSum, comm_, stream_),
               "ncclAllReduce");
    wait(CollKind::barrier, 0);
  }

  // Gradient buckets: enqueued now, completed by wait_all (the stream is in order, so one wait
  // covers every started all-reduce).
  void do_start_all_reduce(kernels::Tensor t, ReduceOp op) override {
    device_only(t, "all_reduce");
    after_compute();
    check_nccl(ncclAllReduce(t.data, t.data, nccl_count(t.dtype, t.numel()), nccl_type(t.dtype),
                             nccl_op(op), comm_, stream_),
               "ncclAllReduce");
    pending_bytes_ += static_cast<int64_t>(t.nbytes());
  }
  // A ring pass: both halves in one group on the communicator's stream, completed by wait_all
  // like the buckets.
  void do_start_sendrecv(kernels::Tensor out, int from, kernels::Tensor in, int to) override {
    device_only(in, "sendrecv");
    device_only(out, "sendrecv");
    after_compute();
    const size_t n = nccl_count(in.dtype, in.numel());
    check_nccl(ncclGroupStart(), "ncclGroupStart");
    check_nccl(ncclSend(in.data, n, nccl_type(in.dtype), to, comm_, stream_), "ncclSend");
    check_nccl(ncclRecv(out.data, n, nccl_type(out.dtype), from, comm_, stream_), "ncclRecv");
    check_nccl(ncclGroupEnd(), "ncclGroupEnd");
    pending_bytes_ += static_cast<int64_t>(in.nbytes());
  }
  void do_wait_all() override {
    wait(CollKind::all_reduce, pending_bytes_);
    pending_bytes_ = 0;
  }

  std::unique_ptr<Comm> do_split(int color, int key, const std::string& name) override {
    ncclComm_t c = nullptr;
    check_nccl(ncclCommSplit(comm_, color, key, &c, nullptr), "ncclCommSplit");
    return std::make_unique<NcclComm>(c, device_, name);
  }

 private:
  void device_only(const kernels::Tensor& t, const char* op) const {
    SPARTA_CHECK(t.device.is_cuda(),
                 "{} on NCCL communicator '{}' with a host tensor {}: NCCL "
                 "moves device memory only (use the MPI communicator)",
                 op, name_, t.shape_str());
  }

  // The communicator's stream waits for everything enqueued on the compute stream so far.
  void after_compute() {
    check_cuda(cudaEventRecord(ready_, cudaStreamLegacy), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream_, ready_, 0), "cudaStreamWaitEvent");
  }

  // Polls the stream until the collective is done; failure notices and the timeout as in MPI.
  void wait(CollKind kind, int64_t bytes) {
    const double t0 = clock_s();
    for (int polls = 0;; ++polls) {
      const cudaError_t q = cudaStreamQuery(stream_);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) check_cuda(q, "cudaStreamQuery");
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        ncclCommAbort(comm_);
        MpiRuntime::abort_job(1, fmt::format("NCCL error in {} on communicator '{}': {}",
                                             to_string(kind), name_, ncclGetErrorString(async)));
      }
      MpiRuntime::poll_failures();
      if (clock_s() - t0 > MpiRuntime::timeout()) {
        ncclCommAbort(comm_);
        MpiRuntime::abort_job(
            1, fmt::format("{} of {} bytes on communicator '{}' (collective #{}) made no progress "
                           "for {:.0f} s (parallel.timeout_s): another rank died or is stuck "
                           "outside this collective; ending the job",
                           to_string(kind), bytes, name(), flight().last_seq(),
                           MpiRuntime::timeout()));
      }
      if (polls > 200)
        std::this_thread::sleep_for(std::chrono::microseconds(polls > 2000 ? 200 : 20));
    }
  }

  ncclComm_t comm_;
  int device_;
  std::string name_;
  int rank_ = 0, size_ = 1;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
  int64_t pending_bytes_ = 0;  // started all-reduces and passes not yet waited for
  void* barrier_buf_ = nullptr;
};

}  // namespace

std::unique_ptr<Comm> make_nccl_comm(Comm& bootstrap, int cuda_device, const std::string& name) {
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (bootstrap.rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  static_assert(sizeof(ncclUniqueId) % 2 == 0, "the unique id travels as u16");
  bootstrap.broadcast(kernels::Tensor(&id, kernels::DType::u16, kernels::Device::cpu(),
                                      {static_cast<int64_t>(sizeof(id) / 2)}),
                      0);
  check_cuda(cudaSetDevice(cuda_device), "cudaSetDevice");
  // tests/mpi/startup.sh: this rank stands for one that never reaches ncclCommInitRank.
  if (const char* h = std::getenv("SPARTA_TEST_NCCL_INIT_HANG");
      h && std::atoi(h) == bootstrap.rank())
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  ncclComm_t c = nullptr;
  {
    const double bound = MpiRuntime::timeout();
    const InitWatchdog watchdog(
        bound,
        fmt::format("sparta-train: NCCL communicator '{}' (rank {} of {}) did not initialise "
                    "within {:.0f} s (parallel.timeout_s): ncclCommInitRank waits for every rank "
                    "of the group. A rank that died or is stuck before it, or a network NCCL "
                    "cannot use (NCCL_DEBUG=INFO names the transports it tried), leaves it "
                    "waiting; ending this rank (exit 1)\n",
                    name, bootstrap.rank(), bootstrap.size(), bound));
    check_nccl(ncclCommInitRank(&c, bootstrap.size(), id, bootstrap.rank()), "ncclCommInitRank");
  }
  return std::make_unique<NcclComm>(c, cuda_device, name);
}

}  // namespace sparta::parallel
