// Every process group a rank takes part in, built once from the mesh and handed by const
// reference to the model and the trainer, which never make communicators of their own
// (DESIGN.md principle 6; Megatron-Core's ProcessGroupCollection).
//
// Groups (parallel/mesh.h for the dimensions):
//   world  every rank
//   dp     the dense data-parallel group: cp x ep x dp ranks holding the same dense parameters
//          (context-parallel peers see other tokens of the same sequences, so they reduce
//          gradients with the data-parallel ranks)
//   tp     tensor parallel: the ranks splitting heads, FFN columns, vocabulary, UoE experts
//   cp     context parallel: the ranks splitting every sequence
//   ep     expert parallel: the ranks splitting the MoE experts
//   edp    expert data parallel: cp x dp ranks holding the same experts
// Each group has a host communicator (MPI, or SelfComm in one process: host scalars, counts and
// checkpoint gathers) and a device one (NCCL on GPUs when parallel.backend allows, else the
// host one: the model's device tensors and the gradients).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/tensor.h"
#include "parallel/comm.h"
#include "parallel/mesh.h"

namespace sparta::parallel {

struct Group {
  Comm* host = nullptr;
  Comm* dev = nullptr;
  int size() const { return host->size(); }
  int rank() const { return host->rank(); }
};

struct WorldInfo {
  int rank = 0, size = 1;
  std::string launcher = "none";  // how the ranks were started (for messages)
};

class ProcessGroups {
 public:
  // One process: every group is this rank alone (SelfComm).
  ProcessGroups();
  // The groups of `world.rank` in `mesh` (collective over the world: every rank builds its
  // groups in the same order). Device twins over NCCL when `device` is a GPU, the job has
  // several ranks and `backend` is not "mpi". Errors (MPI not initialised, NCCL asked for but
  // not built) are usage errors.
  ProcessGroups(const ProcessMesh& mesh, const WorldInfo& world, kernels::Device device,
                const std::string& backend, double timeout_s);
  ProcessGroups(ProcessGroups&&) = default;
  ProcessGroups& operator=(ProcessGroups&&) = default;

  Group world, dp, tp, cp, ep, edp;
  // The parts of cp that attention uses (parallel::CpAlgo): cp_a2a, the Ulysses all-to-all group
  // (cp's neighbouring ulysses_degree ranks); cp_ring, the ring across those groups. Either is
  // cp itself or a group of one when the algorithm is pure.
  Group cp_a2a, cp_ring;
  // Which sequences this rank reads: ranks with the same ep and dp coordinates (tp and cp peers)
  // read the same ones; data_size is the number of distinct readers.
  int data_rank = 0, data_size = 1;

  // Every communicator of more than one rank, host ones first (their counters and recorders).
  std::vector<const Comm*> comms() const;
  // Seconds spent inside collectives so far, over every communicator (allocates nothing).
  double collective_seconds() const;

 private:
  void split_cp(const ProcessMesh& mesh, kernels::Device device, bool nccl);
  std::vector<std::unique_ptr<Comm>> host_, dev_;
};

}  // namespace sparta::parallel
