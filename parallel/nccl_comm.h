// NCCL communicators for device tensors (built with CUDA + NCCL + MPI).
//
// A group's NCCL communicator is bootstrapped through an existing communicator of the same
// ranks (in practice MPI): its rank 0 creates the unique id and broadcasts it. Collectives run on
// a dedicated CUDA stream (a blocking stream, so it is ordered after the model's kernels on the
// legacy default stream and before the next ones); the call then polls the stream until it is
// done, watching ncclCommGetAsyncError, MPI failure notices and parallel.timeout_s exactly as
// the MPI communicator does (parallel/mpi_comm.h), so an NCCL hang ends the job with a diagnosis
// too. Uneven blocks (reduce_scatter, all_gather) are grouped ncclReduce / ncclBroadcast calls;
// all_to_all_v is grouped ncclSend/ncclRecv. Host tensors are refused: use the MPI
// communicator for those. One rank per GPU: NCCL refuses two ranks on one device, so multi-rank
// runs on a single GPU use parallel.backend = "mpi".
#pragma once

#include <memory>
#include <string>

#include "parallel/comm.h"

namespace sparta::parallel {

std::unique_ptr<Comm> make_nccl_comm(Comm& bootstrap, int cuda_device, const std::string& name);

}  // namespace sparta::parallel
