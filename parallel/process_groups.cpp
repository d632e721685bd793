#include "parallel/process_groups.h"

#include "kernels/check.h"
#ifdef SPARTA_HAVE_MPI
#include "parallel/mpi_comm.h"
#endif
#ifdef SPARTA_HAVE_NCCL
#include "parallel/nccl_comm.h"
#endif

namespace sparta::parallel {

namespace {
constexpr const char* kNames[] = {"dp", "ep", "edp", "tp", "cp"};
}  // namespace

ProcessGroups::ProcessGroups() {
  host_.push_back(std::make_unique<SelfComm>("world"));
  for (const char* name : kNames) host_.push_back(std::make_unique<SelfComm>(name));
  Group* groups[] = {&world, &dp, &ep, &edp, &tp, &cp};
  for (size_t i = 0; i < host_.size(); ++i) *groups[i] = {host_[i].get(), host_[i].get()};
  cp_a2a = cp_ring = cp;
}

ProcessGroups::ProcessGroups(const ProcessMesh& mesh, const WorldInfo& w, kernels::Device device,
                             const std::string& backend, double timeout_s)
    : ProcessGroups() {
  // Ranks with the same ep and dp coordinates read the same sequences (tp and cp peers).
  data_size = mesh.size(Dim::ep) * mesh.size(Dim::dp);
  data_rank = mesh.coord(w.rank, Dim::dp) * mesh.size(Dim::ep) + mesh.coord(w.rank, Dim::ep);
  if (w.size == 1) return;
#ifdef SPARTA_HAVE_MPI
  if (!MpiRuntime::active())
    SPARTA_USAGE_ERROR(
        "launched as rank {} of {} by {}, but MPI was not initialised by the "
        "program",
        w.rank, w.size, w.launcher);
  MpiRuntime::set_timeout(timeout_s);
  host_.clear();
  host_.push_back(MpiRuntime::world());
  const std::vector<Dim> dims[] = {
      {Dim::cp, Dim::ep, Dim::dp}, {Dim::ep}, {Dim::cp, Dim::dp}, {Dim::tp}, {Dim::cp}};
  for (size_t i = 0; i < std::size(kNames); ++i)
    host_.push_back(host_[0]->split(mesh.group_color(w.rank, dims[i]), w.rank, kNames[i]));
  Group* groups[] = {&world, &dp, &ep, &edp, &tp, &cp};
  for (size_t i = 0; i < host_.size(); ++i) *groups[i] = {host_[i].get(), host_[i].get()};
  const bool nccl = device.is_cuda() && backend != "mpi";
  if (nccl) {
#ifdef SPARTA_HAVE_NCCL
    for (size_t i = 1; i < host_.size(); ++i) {
      if (host_[i]->size() == 1) continue;
      dev_.push_back(make_nccl_comm(*host_[i], device.index, kNames[i - 1]));
      groups[i]->dev = dev_.back().get();
    }
#endif
  }
  split_cp(mesh, device, nccl);
  if (!nccl) return;
#ifndef SPARTA_HAVE_NCCL
  if (backend == "nccl")
    SPARTA_USAGE_ERROR("parallel.backend = \"nccl\", but this sparta was built without NCCL");
#endif
#else
  (void)device;
  (void)backend;
  (void)timeout_s;
  SPARTA_USAGE_ERROR(
      "launched as rank {} of {} by {}, but this sparta was built without MPI "
      "(configure with -DSPARTA_MPI=ON)",
      w.rank, w.size, w.launcher);
#endif
}

// cp's two parts for attention: Ulysses groups of u neighbouring cp ranks, and the ring across
// them (the cp ranks at the same place in their Ulysses group).
void ProcessGroups::split_cp(const ProcessMesh& mesh, kernels::Device device, bool nccl) {
  const int u = mesh.ulysses_degree(), n = cp.size(), r = cp.rank();
  auto one = [&](const char* name) {
    host_.push_back(std::make_unique<SelfComm>(name));
    return Group{host_.back().get(), host_.back().get()};
  };
  if (u >= n) {
    cp_a2a = cp;
    cp_ring = one("cp_ring");
    return;
  }
  if (u <= 1) {
    cp_ring = cp;
    cp_a2a = one("cp_a2a");
    return;
  }
  host_.push_back(cp.host->split(r / u, r, "cp_a2a"));
  cp_a2a = {host_.back().get(), host_.back().get()};
  host_.push_back(cp.host->split(r % u, r, "cp_ring"));
  cp_ring = {host_.back().get(), host_.back().get()};
#ifdef SPARTA_HAVE_NCCL
  if (nccl)
    for (Group* g : {&cp_a2a, &cp_ring}) {
      dev_.push_back(make_nccl_comm(*g->host, device.index, g->host->name()));
      g->dev = dev_.back().get();
    }
#else
  (void)device;
  (void)nccl;
#endif
}

std::vector<const Comm*> ProcessGroups::comms() const {
  std::vector<const Comm*> out;
  for (const auto* list : {&host_, &dev_})
    for (const auto& c : *list)
      if (c->size() > 1 && c.get() != world.host) out.push_back(c.get());
  return out;
}

double ProcessGroups::collective_seconds() const {
  double s = 0;
  for (const auto* list : {&host_, &dev_})
    for (const auto& c : *list)
      for (size_t k = 0; k < kCollKinds; ++k) s += c->stats(static_cast<CollKind>(k)).seconds;
  return s;
}

}  // namespace sparta::parallel
