// MpiComm and MpiRuntime (parallel/mpi_comm.h).
#include "parallel/mpi_comm.h"

#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "kernels/arena.h"
#include "kernels/check.h"
#include "parallel/init_watchdog.h"

namespace sparta::parallel {

namespace {

constexpr int kAbortTag = 7001;

struct State {
  bool inited = false;
  double timeout_s = 60.0;
  int world_rank = 0, world_size = 1;
  MPI_Comm control = MPI_COMM_NULL;  // failure notices only
  // Every MPI communicator's name and flight recorder, kept past the communicator's life.
  std::vector<std::pair<std::string, std::shared_ptr<const FlightRecorder>>> recorders;
  // Page-locked staging for device tensors: [0] send side, [1] receive side.
  void* stage[2] = {nullptr, nullptr};
  size_t stage_bytes[2] = {0, 0};
};
State& st() {
  static State s;
  return s;
}

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(ErrorKind::internal, fmt::format("{} failed: {}", what, std::string(msg, len)));
}

std::string recorder_tails() {
  std::string s;
  for (const auto& [name, rec] : st().recorders)
    if (rec->last_seq() > 0)
      s += fmt::format("flight recorder of communicator '{}' (last {}):\n{}", name,
                       std::min<uint64_t>(rec->last_seq(), 8), rec->tail(8));
  return s;
}

[[noreturn]] void abort_now(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // not reached
}

// A failure notice from another rank: print it and end the job with that rank's exit code.
void check_notice() {
  State& s = st();
  int flag = 0;
  MPI_Status status;
  MPI_Iprobe(MPI_ANY_SOURCE, kAbortTag, s.control, &flag, &status);
  if (!flag) return;
  int n = 0;
  MPI_Get_count(&status, MPI_CHAR, &n);
  std::vector<char> buf(static_cast<size_t>(std::max(n, 4)));
  MPI_Recv(buf.data(), n, MPI_CHAR, status.MPI_SOURCE, kAbortTag, s.control, MPI_STATUS_IGNORE);
  int code = 1;
  std::memcpy(&code, buf.data(), sizeof(int));
  const std::string msg(buf.data() + sizeof(int), buf.data() + std::max<int>(n, 4));
  fmt::print(stderr, "sparta: rank {}: stopping because rank {} failed: {}\n{}", s.world_rank,
             status.MPI_SOURCE, msg, recorder_tails());
  // Let the other ranks that got the notice print theirs before the job is torn down.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  abort_now(code);
}

// Completes `req`, watching for failure notices and the timeout.
void wait(MPI_Request& req, const Comm& c, CollKind kind, int64_t bytes) {
  State& s = st();
  const double t0 = clock_s();
  // Open MPI progresses a non-blocking collective only inside MPI calls (no progress thread), so
  // the loop keeps testing: a sleep between tests stalls the transfer (measured: 2x slower
  // all-reduces). It yields the core instead, which costs nothing when no other process waits
  // for it, and looks at notices and the clock every 64 tests.
  for (uint64_t polls = 0;; ++polls) {
    int done = 0;
    check_mpi(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done) return;
    if (polls % 64 != 63) {
      std::this_thread::yield();
      continue;
    }
    check_notice();
    if (clock_s() - t0 > s.timeout_s) {
      fmt::print(stderr,
                 "sparta: rank {}: {} of {} bytes on communicator '{}' (collective #{}) made no "
                 "progress for {:.0f} s (parallel.timeout_s): another rank died or is stuck "
                 "outside this collective; ending the job\n{}",
                 s.world_rank, to_string(kind), bytes, c.name(), c.flight().last_seq(), s.timeout_s,
                 recorder_tails());
      abort_now(1);
    }
  }
}

MPI_Datatype mpi_type(kernels::DType t) {
  switch (t) {
    case kernels::DType::f32:
      return MPI_FLOAT;
    case kernels::DType::i32:
      return MPI_INT;
    default:
      return MPI_UINT16_T;  // bf16, f16, u16: moved, never reduced
  }
}

int as_int(int64_t n, const char* what) {
  SPARTA_CHECK(n >= 0 && n <= INT_MAX, "{}: {} elements exceed MPI's int counts", what, n);
  return static_cast<int>(n);
}

// Host view of a tensor: itself, or a staging buffer (copied in when `load`).
void* host_of(const kernels::Tensor& t, int slot, bool load) {
  if (t.device.is_cpu()) return t.data;
  State& s = st();
  if (s.stage_bytes[slot] < t.nbytes()) {
    kernels::pinned_host_free(s.stage[slot]);
    s.stage[slot] = kernels::pinned_host_malloc(t.nbytes());
    s.stage_bytes[slot] = t.nbytes();
  }
  if (load) {
    kernels::Tensor h = t;
    h.device = kernels::Device::cpu();
    h.data = s.stage[slot];
    kernels::copy(h, t);
  }
  return s.stage[slot];
}

void store(const kernels::Tensor& t, void* host) {
  if (t.device.is_cpu()) return;
  kernels::Tensor h = t;
  h.device = kernels::Device::cpu();
  h.data = host;
  kernels::copy(t, h);
}

void scale_host(void* p, int64_t n, int size) {
  auto* f = static_cast<float*>(p);
  const float inv = 1.0f / static_cast<float>(size);
  for (int64_t i = 0; i < n; ++i) f[i] *= inv;
}

class MpiComm final : public Comm {
 public:
  MpiComm(MPI_Comm c, std::string name) : comm_(c), name_(std::move(name)) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    st().recorders.emplace_back(name_, flight_shared());
    async_.reserve(FlightRecorder::kCapacity);
  }
  ~MpiComm() override {
    if (comm_ != MPI_COMM_NULL && st().inited) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return name_; }

 protected:
  void do_all_reduce(kernels::Tensor t, ReduceOp op) override {
    SPARTA_CHECK(
        t.dtype == kernels::DType::f32 || (t.dtype == kernels::DType::i32 && op != ReduceOp::avg),
        "all_reduce of {} tensors is not supported", kernels::to_string(t.dtype));
    void* h = host_of(t, 0, true);
    MPI_Request req;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, h, as_int(t.numel(), "all_reduce"), mpi_type(t.dtype),
                             op == ReduceOp::max ? MPI_MAX : MPI_SUM, comm_, &req),
              "MPI_Iallreduce");
    wait(req, *this, CollKind::all_reduce, static_cast<int64_t>(t.nbytes()));
    if (op == ReduceOp::avg) scale_host(h, t.numel(), size_);
    store(t, h);
  }

  // Host f32 tensors overlap (MPI_Iallreduce in place, tested in progress(), completed in
  // wait_all()); device tensors share one staging buffer, so they complete at once.
  void do_start_all_reduce(kernels::Tensor t, ReduceOp op) override {
    if (!t.device.is_cpu() || t.dtype != kernels::DType::f32 || op == ReduceOp::max) {
      do_all_reduce(t, op);
      return;
    }
    MPI_Request req;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, t.data, as_int(t.numel(), "all_reduce"), MPI_FLOAT,
                             MPI_SUM, comm_, &req),
              "MPI_Iallreduce");
    async_.push_back({req, t, op});
  }
  void do_progress() override {
    for (Async& a : async_) {
      if (a.req == MPI_REQUEST_NULL) continue;
      int done = 0;
      check_mpi(MPI_Test(&a.req, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (!done) break;  // libnbc advances in order; one test per call is enough
    }
  }
  void do_wait_all() override {
    for (Async& a : async_) {
      if (a.req != MPI_REQUEST_NULL)
        wait(a.req, *this, CollKind::all_reduce, static_cast<int64_t>(a.t.nbytes()));
      if (a.op == ReduceOp::avg) scale_host(a.t.data, a.t.numel(), size_);
    }
    async_.clear();
  }

  // Host tensors overlap (MPI_Irecv + MPI_Isend on their own tag, completed in wait_all());
  // device tensors share the two staging buffers, so they complete at once.
  void do_start_sendrecv(kernels::Tensor out, int from, kernels::Tensor in, int to) override {
    constexpr int kShiftTag = 1;  // apart from send/recv's 0: the two never match each other
    const int n = as_int(in.numel(), "sendrecv");
    const bool host = in.device.is_cpu() && out.device.is_cpu();
    void* hin = host ? in.data : host_of(in, 0, true);
    void* hout = host ? out.data : host_of(out, 1, false);
    MPI_Request recv, send;
    check_mpi(MPI_Irecv(hout, n, mpi_type(out.dtype), from, kShiftTag, comm_, &recv), "MPI_Irecv");
    check_mpi(MPI_Isend(hin, n, mpi_type(in.dtype), to, kShiftTag, comm_, &send), "MPI_Isend");
    if (host) {
      async_.push_back({recv, out, ReduceOp::sum});
      async_.push_back({send, in, ReduceOp::sum});
      return;
    }
    wait(recv, *this, CollKind::sendrecv, static_cast<int64_t>(in.nbytes()));
    wait(send, *this, CollKind::sendrecv, static_cast<int64_t>(in.nbytes()));
    store(out, hout);
  }

  void do_reduce_scatter(kernels::Tensor out, kernels::Tensor in, ReduceOp op) override {
    SPARTA_CHECK(in.dtype == kernels::DType::f32, "reduce_scatter needs f32 tensors");
    std::vector<int>& counts = counts_;
    counts.resize(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) {
      const auto [b, e] = block_range(in.numel(), size_, r);
      counts[static_cast<size_t>(r)] = as_int(e - b, "reduce_scatter");
    }
    void* hin = host_of(in, 0, true);
    void* hout = host_of(out, 1, false);
    MPI_Request req;
    check_mpi(MPI_Ireduce_scatter(hin, hout, counts.data(), MPI_FLOAT, MPI_SUM, comm_, &req),
              "MPI_Ireduce_scatter");
    wait(req, *this, CollKind::reduce_scatter, static_cast<int64_t>(in.nbytes()));
    if (op == ReduceOp::avg) scale_host(hout, out.numel(), size_);
    store(out, hout);
  }

  void do_all_gather(kernels::Tensor out, kernels::Tensor in) override {
    const int64_t n = out.numel();
    const size_t es = kernels::dtype_size(out.dtype);
    counts_.resize(static_cast<size_t>(size_));
    displs_.resize(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) {
      const auto [b, e] = block_range(n, size_, r);
      counts_[static_cast<size_t>(r)] = as_int(e - b, "all_gather");
      displs_[static_cast<size_t>(r)] = as_int(b, "all_gather");
    }
    const auto [mb, me] = block_range(n, size_, rank_);
    const bool in_place = in.device == out.device &&
                          in.data == static_cast<char*>(out.data) + mb * static_cast<int64_t>(es);
    void* hout = host_of(out, 1, in_place);  // in place: out's own block is the input
    const void* hin = in_place ? MPI_IN_PLACE : host_of(in, 0, true);
    MPI_Request req;
    check_mpi(MPI_Iallgatherv(hin, as_int(me - mb, "all_gather"), mpi_type(in.dtype), hout,
                              counts_.data(), displs_.data(), mpi_type(out.dtype), comm_, &req),
              "MPI_Iallgatherv");
    wait(req, *this, CollKind::all_gather, static_cast<int64_t>(in.nbytes()));
    store(out, hout);
  }

  void do_all_to_all_v(kernels::Tensor out, const std::vector<int64_t>& rc, kernels::Tensor in,
                       const std::vector<int64_t>& sc) override {
    std::vector<int>& scount = counts_;
    std::vector<int>& sdispl = displs_;
    scount.resize(static_cast<size_t>(size_));
    sdispl.resize(static_cast<size_t>(size_));
    rcount_.resize(static_cast<size_t>(size_));
    rdispl_.resize(static_cast<size_t>(size_));
    int64_t so = 0, ro = 0;
    for (size_t r = 0; r < static_cast<size_t>(size_); ++r) {
      scount[r] = as_int(sc[r], "all_to_all_v");
      sdispl[r] = as_int(so, "all_to_all_v");
      rcount_[r] = as_int(rc[r], "all_to_all_v");
      rdispl_[r] = as_int(ro, "all_to_all_v");
      so += sc[r];
      ro += rc[r];
    }
    void* hin = host_of(in, 0, true);
    void* hout = host_of(out, 1, false);
    MPI_Request req;
    check_mpi(MPI_Ialltoallv(hin, scount.data(), sdispl.data(), mpi_type(in.dtype), hout,
                             rcount_.data(), rdispl_.data(), mpi_type(out.dtype), comm_, &req),
              "MPI_Ialltoallv");
    wait(req, *this, CollKind::all_to_all_v,
         so * static_cast<int64_t>(kernels::dtype_size(in.dtype)));
    store(out, hout);
  }

  void do_send(kernels::Tensor t, int peer) override {
    void* h = host_of(t, 0, true);
    MPI_Request req;
    check_mpi(MPI_Isend(h, as_int(t.numel(), "send"), mpi_type(t.dtype), peer, 0, comm_, &req),
              "MPI_Isend");
    wait(req, *this, CollKind::send, static_cast<int64_t>(t.nbytes()));
  }

  void do_recv(kernels::Tensor t, int peer) override {
    void* h = host_of(t, 1, false);
    MPI_Request req;
    check_mpi(MPI_Irecv(h, as_int(t.numel(), "recv"), mpi_type(t.dtype), peer, 0, comm_, &req),
              "MPI_Irecv");
    wait(req, *this, CollKind::recv, static_cast<int64_t>(t.nbytes()));
    store(t, h);
  }

  void do_broadcast(kernels::Tensor t, int root) override {
    void* h = host_of(t, 0, rank_ == root);
    MPI_Request req;
    check_mpi(MPI_Ibcast(h, as_int(t.numel(), "broadcast"), mpi_type(t.dtype), root, comm_, &req),
              "MPI_Ibcast");
    wait(req, *this, CollKind::broadcast, static_cast<int64_t>(t.nbytes()));
    store(t, h);
  }

  void do_barrier() override {
    MPI_Request req;
    check_mpi(MPI_Ibarrier(comm_, &req), "MPI_Ibarrier");
    wait(req, *this, CollKind::barrier, 0);
  }

  std::unique_ptr<Comm> do_split(int color, int key, const std::string& name) override {
    MPI_Comm c = MPI_COMM_NULL;
    check_mpi(MPI_Comm_split(comm_, color, key, &c), "MPI_Comm_split");
    return std::make_unique<MpiComm>(c, name);
  }

 private:
  MPI_Comm comm_;
  std::string name_;
  int rank_ = 0, size_ = 1;
  std::vector<int> counts_, displs_, rcount_, rdispl_;  // reused: no allocation per call
  struct Async {
    MPI_Request req;
    kernels::Tensor t;
    ReduceOp op;
  };
  // Started all-reduces and pass halves (capacity reserved for Comm's limit on what is in flight:
  // none allocated per step).
  std::vector<Async> async_;
};

// Ends the process when MPI_Init has not returned in time. Only write(2) and _exit(2) run on
// the timeout path: MPI is half-initialised, and nothing else in the process can be trusted.
std::string init_timeout_message(double timeout_s, const std::string& who) {
  return fmt::format(
      "sparta-train: MPI did not initialise within {:.0f} s (SPARTA_INIT_TIMEOUT_S) on {}: "
      "MPI_Init waits for every rank of the job and for the launcher's PMIx server (mpirun, or "
      "srun --mpi=pmix). A rank that never started, a node that cannot reach this one, or a "
      "launcher without PMIx support leaves it waiting; ending this rank (exit 1)\n",
      timeout_s, who.empty() ? std::string("this rank") : who);
}

}  // namespace

void MpiRuntime::init(int* argc, char*** argv, double init_timeout_s, const std::string& who) {
  State& s = st();
  if (s.inited) return;
  // Open MPI's non-blocking all-reduce (libnbc) defaults to binomial / recursive doubling, which
  // measured 2x slower than the blocking MPI_Allreduce at 4-256 MiB on 2 ranks; its ring
  // algorithm matches or beats it (bench/comm_bench). A user's own setting wins.
  setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", /*overwrite=*/0);
  int provided = 0;
  {
    InitWatchdog watchdog(init_timeout_s, init_timeout_message(init_timeout_s, who));
    check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  }
  s.inited = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &s.world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &s.world_size);
  // Errors come back as codes (check_mpi turns them into exceptions) instead of aborting inside
  // MPI, so the failure protocol can report them; duplicates inherit this.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &s.control), "MPI_Comm_dup");
}

bool MpiRuntime::active() {
  return st().inited;
}

void MpiRuntime::set_timeout(double seconds) {
  st().timeout_s = seconds;
}

double MpiRuntime::timeout() {
  return st().timeout_s;
}

void MpiRuntime::finalize() {
  State& s = st();
  if (!s.inited) return;
  for (int i = 0; i < 2; ++i) kernels::pinned_host_free(s.stage[i]);
  s.stage[0] = s.stage[1] = nullptr;
  MPI_Comm_free(&s.control);
  s.recorders.clear();
  MPI_Finalize();
  s.inited = false;
}

void MpiRuntime::fail_job(int exit_code, const std::string& message) {
  State& s = st();
  fmt::print(stderr, "sparta: rank {} failed: {}\n{}", s.world_rank, message, recorder_tails());
  std::fflush(stderr);
  std::vector<char> buf(sizeof(int) + message.size());
  std::memcpy(buf.data(), &exit_code, sizeof(int));
  std::memcpy(buf.data() + sizeof(int), message.data(), message.size());
  std::vector<MPI_Request> reqs;
  for (int r = 0; r < s.world_size; ++r) {
    if (r == s.world_rank) continue;
    reqs.emplace_back();
    MPI_Isend(buf.data(), static_cast<int>(buf.size()), MPI_CHAR, r, kAbortTag, s.control,
              &reqs.back());
  }
  // The others abort the job once they have printed the notice; if none does within the
  // timeout (all stuck elsewhere), end it from here.
  const double t0 = clock_s();
  while (clock_s() - t0 < s.timeout_s) {
    int done = 0;
    MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE);
    check_notice();  // two ranks failing at once: the first notice wins
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  abort_now(exit_code);
}

void MpiRuntime::poll_failures() {
  if (st().inited) check_notice();
}

void MpiRuntime::abort_job(int exit_code, const std::string& message) {
  fmt::print(stderr, "sparta: rank {}: {}\n{}", st().world_rank, message, recorder_tails());
  if (!st().inited) {
    std::fflush(stderr);
    std::_Exit(exit_code);
  }
  abort_now(exit_code);
}

void MpiRuntime::register_recorder(const std::string& name,
                                   std::shared_ptr<const FlightRecorder> r) {
  st().recorders.emplace_back(name, std::move(r));
}

std::unique_ptr<Comm> MpiRuntime::world() {
  SPARTA_CHECK(st().inited, "MpiRuntime::world() before MpiRuntime::init()");
  MPI_Comm c = MPI_COMM_NULL;
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &c), "MPI_Comm_dup");
  return std::make_unique<MpiComm>(c, "world");
}

}  // namespace sparta::parallel
