#include "parallel/comm.h"

#include <chrono>

#include "kernels/arena.h"
#include "kernels/check.h"

namespace sparta::parallel {

const char* to_string(CollKind k) {
  static const char* const names[] = {"all_reduce",   "reduce_scatter", "all_gather",
                                      "all_to_all_v", "send",           "recv",
                                      "broadcast",    "barrier",        "sendrecv"};
  return names[static_cast<size_t>(k)];
}

double clock_s() {
  static const auto t0 = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

FlightRecord& FlightRecorder::begin(CollKind kind, int64_t bytes, int peer) {
  FlightRecord& r = ring_[(next_seq_ - 1) % kCapacity];
  r = {next_seq_++, kind, bytes, peer, clock_s(), -1.0};
  return r;
}

std::string FlightRecorder::tail(size_t n) const {
  std::string s;
  const uint64_t last = next_seq_ - 1;
  const uint64_t first = last > n ? last - n + 1 : 1;
  for (uint64_t q = first; q <= last && q + kCapacity > last; ++q) {
    const FlightRecord& r = ring_[(q - 1) % kCapacity];
    s += fmt::format("  #{} {} {} bytes{} start {:.3f} s {}\n", r.seq, to_string(r.kind), r.bytes,
                     r.peer >= 0 ? fmt::format(" peer {}", r.peer) : "", r.start_s,
                     r.end_s < 0 ? std::string("IN FLIGHT")
                                 : fmt::format("took {:.3f} ms", (r.end_s - r.start_s) * 1e3));
  }
  return s.empty() ? "  (no collectives yet)\n" : s;
}

// Records one collective: flight-recorder entry at entry, stats and end time at exit.
class Comm::Scope {
 public:
  Scope(Comm& c, CollKind k, int64_t bytes, int peer)
      : c_(c), k_(k), bytes_(bytes), rec_(c.flight_->begin(k, bytes, peer)) {}
  ~Scope() {
    rec_.end_s = clock_s();
    CollStats& s = c_.stats_[static_cast<size_t>(k_)];
    ++s.calls;
    s.bytes += bytes_;
    s.seconds += rec_.end_s - rec_.start_s;
  }

 private:
  Comm& c_;
  CollKind k_;
  int64_t bytes_;
  FlightRecord& rec_;
};

std::pair<int64_t, int64_t> Comm::block_range(int64_t n, int size, int rank) {
  const int64_t per = (n + size - 1) / size;
  const int64_t b = std::min(n, per * rank), e = std::min(n, per * (rank + 1));
  return {b, e};
}

int64_t Comm::total_bytes() const {
  int64_t b = 0;
  for (const auto& s : stats_) b += s.bytes;
  return b;
}

void Comm::all_reduce(kernels::Tensor t, ReduceOp op) {
  Scope s(*this, CollKind::all_reduce, static_cast<int64_t>(t.nbytes()), -1);
  do_all_reduce(t, op);
}

void Comm::begin_pending(CollKind kind, int64_t bytes, int peer) {
  if (pending_.size() >= FlightRecorder::kCapacity / 2) wait_all();  // records stay in the ring
  if (pending_.capacity() == 0) pending_.reserve(FlightRecorder::kCapacity / 2);
  FlightRecord& r = flight_->begin(kind, bytes, peer);
  pending_.push_back({&r, r.seq, kind, bytes});
  CollStats& s = stats_[static_cast<size_t>(kind)];
  ++s.calls;
  s.bytes += bytes;
}

void Comm::start_all_reduce(kernels::Tensor t, ReduceOp op) {
  const double t0 = clock_s();
  begin_pending(CollKind::all_reduce, static_cast<int64_t>(t.nbytes()), -1);
  do_start_all_reduce(t, op);
  // The time this rank is blocked, here and in wait_all().
  stats_[static_cast<size_t>(CollKind::all_reduce)].seconds += clock_s() - t0;
}

void Comm::start_sendrecv(kernels::Tensor out, int from, kernels::Tensor in, int to) {
  SPARTA_CHECK(from >= 0 && from < size() && to >= 0 && to < size(),
               "sendrecv on '{}' from rank {} to rank {} of {}", name(), from, to, size());
  SPARTA_CHECK(out.numel() == in.numel() && out.dtype == in.dtype && out.data != in.data,
               "sendrecv on '{}': receives {} into {} (same size and type, another buffer)", name(),
               in.shape_str(), out.shape_str());
  const double t0 = clock_s();
  begin_pending(CollKind::sendrecv, static_cast<int64_t>(in.nbytes()), to);
  do_start_sendrecv(out, from, in, to);
  stats_[static_cast<size_t>(CollKind::sendrecv)].seconds += clock_s() - t0;
}

void Comm::progress() {
  if (!pending_.empty()) do_progress();
}

void Comm::wait_all() {
  if (pending_.empty()) return;
  const double t0 = clock_s();
  do_wait_all();
  const double t1 = clock_s();
  // The wait is shared by what was in flight: each kind gets its share of the bytes.
  int64_t total = 0;
  for (const Pending& p : pending_) total += p.bytes;
  for (const Pending& p : pending_) {
    stats_[static_cast<size_t>(p.kind)].seconds +=
        (t1 - t0) * (total > 0 ? static_cast<double>(p.bytes) / static_cast<double>(total)
                               : 1.0 / static_cast<double>(pending_.size()));
    if (p.rec->seq == p.seq) p.rec->end_s = t1;
  }
  pending_.clear();
}

void Comm::reduce_scatter(kernels::Tensor out, kernels::Tensor in, ReduceOp op) {
  SPARTA_CHECK(op != ReduceOp::max, "reduce_scatter on '{}': max is not supported", name());
  const auto [b, e] = block_range(in.numel(), size(), rank());
  SPARTA_CHECK(out.numel() == e - b && out.dtype == in.dtype,
               "reduce_scatter on '{}': out {} for block [{}, {}) of {}", name(), out.shape_str(),
               b, e, in.shape_str());
  Scope s(*this, CollKind::reduce_scatter, static_cast<int64_t>(in.nbytes()), -1);
  do_reduce_scatter(out, in, op);
}

void Comm::all_gather(kernels::Tensor out, kernels::Tensor in) {
  const auto [b, e] = block_range(out.numel(), size(), rank());
  SPARTA_CHECK(in.numel() == e - b && out.dtype == in.dtype,
               "all_gather on '{}': in {} for block [{}, {}) of {}", name(), in.shape_str(), b, e,
               out.shape_str());
  Scope s(*this, CollKind::all_gather, static_cast<int64_t>(in.nbytes()), -1);
  do_all_gather(out, in);
}

void Comm::all_to_all_v(kernels::Tensor out, const std::vector<int64_t>& recv_counts,
                        kernels::Tensor in, const std::vector<int64_t>& send_counts) {
  SPARTA_CHECK(static_cast<int>(recv_counts.size()) == size() &&
                   static_cast<int>(send_counts.size()) == size(),
               "all_to_all_v on '{}': {} send / {} recv counts for {} ranks", name(),
               send_counts.size(), recv_counts.size(), size());
  int64_t ns = 0, nr = 0;
  for (int64_t c : send_counts) ns += c;
  for (int64_t c : recv_counts) nr += c;
  SPARTA_CHECK(ns <= in.numel() && nr <= out.numel(),
               "all_to_all_v on '{}': sends {} of {}, receives {} into {}", name(), ns,
               in.shape_str(), nr, out.shape_str());
  Scope s(*this, CollKind::all_to_all_v, ns * static_cast<int64_t>(kernels::dtype_size(in.dtype)),
          -1);
  do_all_to_all_v(out, recv_counts, in, send_counts);
}

void Comm::send(kernels::Tensor t, int peer) {
  SPARTA_CHECK(peer >= 0 && peer < size() && peer != rank(), "send on '{}' to rank {} of {}",
               name(), peer, size());
  Scope s(*this, CollKind::send, static_cast<int64_t>(t.nbytes()), peer);
  do_send(t, peer);
}

void Comm::recv(kernels::Tensor t, int peer) {
  SPARTA_CHECK(peer >= 0 && peer < size() && peer != rank(), "recv on '{}' from rank {} of {}",
               name(), peer, size());
  Scope s(*this, CollKind::recv, static_cast<int64_t>(t.nbytes()), peer);
  do_recv(t, peer);
}

void Comm::broadcast(kernels::Tensor t, int root) {
  SPARTA_CHECK(root >= 0 && root < size(), "broadcast on '{}' from rank {} of {}", name(), root,
               size());
  Scope s(*this, CollKind::broadcast, static_cast<int64_t>(t.nbytes()), root);
  do_broadcast(t, root);
}

void Comm::barrier() {
  Scope s(*this, CollKind::barrier, 0, -1);
  do_barrier();
}

std::unique_ptr<Comm> Comm::split(int color, int key, const std::string& name) {
  return do_split(color, key, name);
}

void SelfComm::do_reduce_scatter(kernels::Tensor out, kernels::Tensor in, ReduceOp) {
  if (out.data != in.data) kernels::copy(out, in);
}

void SelfComm::do_all_gather(kernels::Tensor out, kernels::Tensor in) {
  if (out.data != in.data) kernels::copy(out, in);
}

void SelfComm::do_all_to_all_v(kernels::Tensor out, const std::vector<int64_t>& rc,
                               kernels::Tensor in, const std::vector<int64_t>&) {
  if (rc[0] > 0 && out.data != in.data) {
    kernels::Tensor src(in.data, in.dtype, in.device, {rc[0]});
    kernels::Tensor dst(out.data, out.dtype, out.device, {rc[0]});
    kernels::copy(dst, src);
  }
}

void SelfComm::do_send(kernels::Tensor, int peer) {
  SPARTA_CHECK(false, "send to rank {} in a communicator of one rank", peer);
}

void SelfComm::do_recv(kernels::Tensor, int peer) {
  SPARTA_CHECK(false, "recv from rank {} in a communicator of one rank", peer);
}

void SelfComm::do_start_sendrecv(kernels::Tensor out, int, kernels::Tensor in, int) {
  kernels::copy(out, in);  // ranks 0 -> 0, checked by start_sendrecv
}

void SelfComm::do_broadcast(kernels::Tensor, int root) {
  SPARTA_CHECK(root == 0, "broadcast from rank {} in a communicator of one rank", root);
}

std::unique_ptr<Comm> SelfComm::do_split(int, int, const std::string& name) {
  return std::make_unique<SelfComm>(name);
}

}  // namespace sparta::parallel
