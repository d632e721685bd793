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
}

ProcessGroups::ProcessGroups(const ProcessMesh& mesh, const WorldInfo& w, kernels::Device device,
                             const std::string& backend, double timeout_s)
    : ProcessGroups() {
  cp_algo = mesh.cp_algo();
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
  if (!device.is_cuda() || backend == "mpi") return;
#ifdef SPARTA_HAVE_NCCL
  for (size_t i = 1; i < host_.size(); ++i) {
    if (host_[i]->size() == 1) continue;
    dev_.push_back(make_nccl_comm(*host_[i], device.index, kNames[i - 1]));
    groups[i]->dev = dev_.back().get();
  }
#else
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
