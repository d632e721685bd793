#include "parallel/comm.h"

namespace sparta::parallel {

void SelfComm::do_broadcast(kernels::Tensor, int root) {
  SPARTA_CHECK(root == 0, "broadcast from rank {} in a communicator of one rank", root);
}

}  // namespace sparta::parallel
