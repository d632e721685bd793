#include "kernels/arena.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "kernels/cuda/cuda_ops.h"

namespace sparta::kernels {

static size_t round_up(size_t n, size_t a) {
  return (n + a - 1) / a * a;
}

Arena Arena::measuring(Device device) {
  Arena a;
  a.device_ = device;
  a.measuring_ = true;
  a.name_ = "measuring";
  return a;
}

Arena::Arena(Device device, size_t capacity_bytes, std::string name)
    : device_(device), name_(std::move(name)), capacity_(round_up(capacity_bytes, kAlign)) {
  if (capacity_ > 0) {
    base_ = static_cast<char*>(device_malloc(device_, capacity_));
    zero(Tensor(base_, DType::u16, device_, {static_cast<int64_t>(capacity_ / 2)}));
  }
}

Arena::~Arena() {
  release();
}

Arena::Arena(Arena&& o) noexcept {
  *this = std::move(o);
}

Arena& Arena::operator=(Arena&& o) noexcept {
  if (this != &o) {
    release();
    device_ = o.device_;
    name_ = std::move(o.name_);
    base_ = std::exchange(o.base_, nullptr);
    capacity_ = std::exchange(o.capacity_, 0);
    used_ = std::exchange(o.used_, 0);
    measuring_ = o.measuring_;
  }
  return *this;
}

void Arena::release() {
  if (base_) device_free(device_, base_);
  base_ = nullptr;
}

Tensor Arena::alloc(DType dtype, std::initializer_list<int64_t> dims) {
  return alloc(dtype, std::vector<int64_t>(dims));
}

Tensor Arena::alloc(DType dtype, const std::vector<int64_t>& dims) {
  SPARTA_CHECK(!dims.empty() && dims.size() <= Tensor::kMaxDims, "rank {} unsupported",
               dims.size());
  Tensor t(nullptr, dtype, device_, {1});
  t.ndim = static_cast<int>(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    SPARTA_CHECK(dims[i] >= 0, "negative dimension {}", dims[i]);
    t.shape[i] = dims[i];
  }
  const size_t bytes = round_up(t.nbytes(), kAlign);
  if (!measuring_) {
    SPARTA_CHECK(used_ + bytes <= capacity_,
                 "arena '{}' exhausted: {} + {} > {} bytes (the plan under-counted)", name_, used_,
                 bytes, capacity_);
    t.data = base_ + used_;
  }
  used_ += bytes;
  return t;
}

Tensor Arena::carve(size_t offset, DType dtype, const std::vector<int64_t>& dims) const {
  Arena measure = Arena::measuring(device_);
  Tensor t = measure.alloc(dtype, dims);
  SPARTA_CHECK(!measuring_ && offset + measure.used() <= capacity_,
               "arena '{}': {} bytes at {} outside its {} (the plan under-counted)", name_,
               measure.used(), offset, capacity_);
  t.data = base_ + offset;
  return t;
}

Tensor Arena::flat_f32() const {
  SPARTA_CHECK(!measuring_, "flat view of a measuring arena");
  return Tensor(base_, DType::f32, device_, {static_cast<int64_t>(used_ / 4)});
}

void ArenaPlan::add(Tensor* dst, DType dtype, std::vector<int64_t> dims, float fill) {
  SPARTA_CHECK(open_key_ < 0 || fill == 0.0f, "ArenaPlan '{}': a fill value in overlay {}", name_,
               open_key_);
  requests_.push_back({dst, dtype, std::move(dims), fill, open_key_, open_instance_});
}

void ArenaPlan::add_kept(Tensor* dst, std::vector<int64_t> dims) {
  requests_.push_back({dst, DType::f32, std::move(dims), 0.0f, -1, 0});
}

void ArenaPlan::open_overlay(int key) {
  SPARTA_CHECK(key >= 0 && open_key_ < 0, "ArenaPlan '{}': overlay {} opened inside overlay {}",
               name_, key, open_key_);
  auto it = std::find_if(instances_.begin(), instances_.end(),
                         [&](const auto& p) { return p.first == key; });
  if (it == instances_.end()) it = instances_.insert(instances_.end(), {key, 0});
  open_key_ = key;
  open_instance_ = it->second++;
}

void ArenaPlan::close_overlay() {
  SPARTA_CHECK(open_key_ >= 0, "ArenaPlan '{}': no overlay open", name_);
  open_key_ = -1;
}

namespace {
size_t bytes_of(DType dtype, const std::vector<int64_t>& dims) {
  Arena measure = Arena::measuring();
  measure.alloc(dtype, dims);
  return measure.used();
}
}  // namespace

ArenaPlan::Sizes ArenaPlan::sizes() const {
  Sizes z;
  for (const auto& [key, n] : instances_)
    z.overlays.push_back({key, std::vector<size_t>(static_cast<size_t>(n), 0)});
  for (const Request& r : requests_) {
    const size_t bytes = bytes_of(r.dtype, r.dims);
    if (r.key < 0) {
      z.plain += bytes;
      continue;
    }
    for (auto& [key, per] : z.overlays)
      if (key == r.key) per[static_cast<size_t>(r.instance)] += bytes;
  }
  return z;
}

size_t ArenaPlan::overlay_savings() const {
  size_t saved = 0;
  for (const auto& [key, per] : sizes().overlays) {
    size_t sum = 0, most = 0;
    for (size_t b : per) {
      sum += b;
      most = std::max(most, b);
    }
    saved += sum - most;
  }
  return saved;
}

Arena ArenaPlan::commit(Device device) {
  SPARTA_CHECK(open_key_ < 0, "ArenaPlan '{}': overlay {} still open at commit", name_, open_key_);
  // Plain tensors first, in request order; then one region per overlay, its largest instance's
  // bytes, every instance carved from the region's start.
  const Sizes z = sizes();
  size_t total = z.plain;
  std::vector<std::pair<int, size_t>> base;  // key -> region offset
  for (const auto& [key, per] : z.overlays) {
    base.push_back({key, total});
    total += per.empty() ? 0 : *std::max_element(per.begin(), per.end());
  }
  Arena arena(device, total, name_);
  std::vector<std::vector<size_t>> at(z.overlays.size());  // next offset per (key, instance)
  for (size_t i = 0; i < z.overlays.size(); ++i)
    at[i].assign(z.overlays[i].second.size(), base[i].second);
  std::vector<float> host;
  for (const Request& r : requests_) {
    if (r.key < 0) {
      *r.dst = arena.alloc(r.dtype, r.dims);
    } else {
      size_t i = 0;
      while (z.overlays[i].first != r.key) ++i;
      size_t& off = at[i][static_cast<size_t>(r.instance)];
      *r.dst = arena.carve(off, r.dtype, r.dims);
      off += bytes_of(r.dtype, r.dims);
    }
    if (r.fill == 0.0f) continue;
    SPARTA_CHECK(r.dtype == DType::f32, "ArenaPlan: only f32 tensors take a fill value");
    host.assign(static_cast<size_t>(r.dst->numel()), r.fill);
    Tensor h = *r.dst;
    h.device = Device::cpu();
    h.data = host.data();
    copy(*r.dst, h);
  }
  if (arena.used() < total) arena.alloc(DType::u16, {static_cast<int64_t>((total - z.plain) / 2)});
  requests_.clear();
  instances_.clear();
  return arena;
}

void* device_malloc(Device d, size_t bytes) {
  if (d.is_cuda()) return cuda::malloc_device(d.index, bytes);
  void* p = std::aligned_alloc(Arena::kAlign, round_up(bytes, Arena::kAlign));
  SPARTA_CHECK(p != nullptr, "out of host memory allocating {} bytes", bytes);
  return p;
}

void* pinned_host_malloc(size_t bytes) {
  if (cuda_available()) return cuda::malloc_pinned(bytes);
  return device_malloc(Device::cpu(), bytes);
}

void pinned_host_free(void* p) {
  if (!p) return;
  if (cuda_available())
    cuda::free_pinned(p);
  else
    std::free(p);
}

void device_free(Device d, void* p) {
  if (d.is_cuda())
    cuda::free_device(d.index, p);
  else
    std::free(p);
}

void copy(Tensor dst, Tensor src) {
  SPARTA_CHECK(dst.nbytes() == src.nbytes() && dst.dtype == src.dtype, "copy {}:{} <- {}:{}",
               to_string(dst.dtype), dst.shape_str(), to_string(src.dtype), src.shape_str());
  if (dst.nbytes() == 0) return;
  if (dst.device.is_cpu() && src.device.is_cpu()) {
    std::memcpy(dst.data, src.data, dst.nbytes());
    return;
  }
  cuda::copy_bytes(dst.data, dst.device.is_cuda(), src.data, src.device.is_cuda(), dst.nbytes());
}

void zero(Tensor t) {
  if (t.nbytes() == 0) return;
  if (t.device.is_cuda())
    cuda::zero_bytes(t.data, t.nbytes());
  else
    std::memset(t.data, 0, t.nbytes());
}

bool cuda_available() {
  return cuda_device_count() > 0;
}
int cuda_device_count() {
  return cuda::device_count();
}

}  // namespace sparta::kernels
