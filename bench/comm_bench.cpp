// Collective microbenchmark: sparta's Comm against the raw library call on the same buffer, side
// by side in one run, 1 KiB .. 256 MiB (float32): all_reduce (sum) through MpiComm vs
// MPI_Allreduce, and through NcclComm vs ncclAllReduce when a GPU is present (one rank per GPU);
// then all_to_all_v with equal blocks (expert- and context-parallel exchanges) through MpiComm vs
// MPI_Alltoallv, 1 KiB .. max/4 sent per rank.
// Run under mpirun:  mpirun -np 2 build/bin/comm_bench [--max-mib 256] [--iters N]
// Prints one Markdown row per size: times (median of the iterations), algorithm bandwidth, bus
// bandwidth (2 (P-1)/P x bytes / time, NCCL's convention) and Comm's overhead over the raw call.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/arena.h"
#include "parallel/comm.h"
#include "parallel/mpi_comm.h"
#ifdef SPARTA_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include "parallel/nccl_comm.h"
#endif

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
double time_it(int iters, F f) {
  std::vector<double> t;
  f();  // warm-up: first touch, connection setup
  for (int i = 0; i < iters; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  // The slowest rank decides.
  double m = median(t);
  MPI_Allreduce(MPI_IN_PLACE, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sparta;
  int64_t max_mib = 256;
  int iters = 5;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--max-mib") == 0) max_mib = std::atoll(argv[i + 1]);
    if (std::strcmp(argv[i], "--iters") == 0) iters = std::atoi(argv[i + 1]);
  }
  parallel::MpiRuntime::init(&argc, &argv);
  auto world = parallel::MpiRuntime::world();
  const int P = world->size(), me = world->rank();
  const double bus = P > 1 ? 2.0 * (P - 1) / P : 1.0;
  if (me == 0) {
    std::printf("comm_bench: %d ranks, float32 all_reduce (sum), median of %d\n\n", P, iters);
    std::printf(
        "| backend | bytes | raw (ms) | Comm (ms) | raw busbw (GB/s) | Comm busbw (GB/s) | Comm "
        "overhead |\n");
    std::printf("|---|---|---|---|---|---|---|\n");
  }
  const int64_t max_n = max_mib * (1 << 20) / 4;
  std::vector<float> buf(static_cast<size_t>(max_n), 1.0f);
  for (int64_t bytes = 1024; bytes <= max_mib * (1 << 20); bytes *= 4) {
    const int64_t n = bytes / 4;
    kernels::Tensor t(buf.data(), kernels::DType::f32, kernels::Device::cpu(), {n});
    const double raw = time_it(iters, [&] {
      MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM,
                    MPI_COMM_WORLD);
    });
    const double ours = time_it(iters, [&] { world->all_reduce(t, parallel::ReduceOp::sum); });
    if (me == 0)
      std::printf("| mpi | %lld | %.3f | %.3f | %.2f | %.2f | %+.1f %% |\n",
                  static_cast<long long>(bytes), raw * 1e3, ours * 1e3, bus * bytes / raw / 1e9,
                  bus * bytes / ours / 1e9, (ours / raw - 1) * 100);
  }
#ifdef SPARTA_HAVE_NCCL
  if (kernels::cuda_available()) {
    const kernels::Device dev = kernels::Device::cuda(0);
    auto nccl = parallel::make_nccl_comm(*world, 0, "bench");
    ncclComm_t raw_comm;
    ncclUniqueId id;
    if (me == 0) ncclGetUniqueId(&id);
    MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
    ncclCommInitRank(&raw_comm, P, id, me);
    cudaStream_t s;
    cudaStreamCreate(&s);
    void* d = kernels::device_malloc(dev, static_cast<size_t>(max_n) * 4);
    for (int64_t bytes = 1024; bytes <= max_mib * (1 << 20); bytes *= 4) {
      const int64_t n = bytes / 4;
      kernels::Tensor t(d, kernels::DType::f32, dev, {n});
      const double raw = time_it(iters, [&] {
        ncclAllReduce(d, d, static_cast<size_t>(n), ncclFloat32, ncclSum, raw_comm, s);
        cudaStreamSynchronize(s);
      });
      const double ours = time_it(iters, [&] { nccl->all_reduce(t, parallel::ReduceOp::sum); });
      if (me == 0)
        std::printf("| nccl | %lld | %.3f | %.3f | %.2f | %.2f | %+.1f %% |\n",
                    static_cast<long long>(bytes), raw * 1e3, ours * 1e3, bus * bytes / raw / 1e9,
                    bus * bytes / ours / 1e9, (ours / raw - 1) * 100);
    }
    kernels::device_free(dev, d);
    cudaStreamDestroy(s);
    ncclCommDestroy(raw_comm);
  }
#endif
  {
    if (me == 0) {
      std::printf(
          "\n| backend | bytes sent per rank | raw a2a (ms) | Comm a2a (ms) | Comm overhead |\n");
      std::printf("|---|---|---|---|---|\n");
    }
    std::vector<float> out(buf.size());
    std::vector<int> counts(static_cast<size_t>(P)), displs(static_cast<size_t>(P));
    std::vector<int64_t> counts64(static_cast<size_t>(P));
    for (int64_t bytes = 1024; bytes <= max_mib * (1 << 20) / 4; bytes *= 4) {
      const int64_t per = bytes / 4 / P;  // elements to each peer
      for (int r = 0; r < P; ++r) {
        counts[static_cast<size_t>(r)] = static_cast<int>(per);
        displs[static_cast<size_t>(r)] = static_cast<int>(per * r);
        counts64[static_cast<size_t>(r)] = per;
      }
      const kernels::Tensor in(buf.data(), kernels::DType::f32, kernels::Device::cpu(), {per * P});
      const kernels::Tensor o(out.data(), kernels::DType::f32, kernels::Device::cpu(), {per * P});
      const double raw = time_it(iters, [&] {
        MPI_Alltoallv(buf.data(), counts.data(), displs.data(), MPI_FLOAT, out.data(),
                      counts.data(), displs.data(), MPI_FLOAT, MPI_COMM_WORLD);
      });
      const double ours = time_it(iters, [&] { world->all_to_all_v(o, counts64, in, counts64); });
      if (me == 0)
        std::printf("| mpi | %lld | %.3f | %.3f | %+.1f %% |\n",
                    static_cast<long long>(per * P * 4), raw * 1e3, ours * 1e3,
                    (ours / raw - 1) * 100);
    }
  }
  world.reset();
  parallel::MpiRuntime::finalize();
  return 0;
}
