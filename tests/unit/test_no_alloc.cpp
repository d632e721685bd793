// Proves the training step allocates nothing: malloc and friends are interposed (glibc's
// __libc_* entry points do the work) and counted while Trainer::step runs, after a warm-up step.
// operator new, OpenMP and OpenBLAS all allocate through malloc, so all of them are covered.
// Not built under AddressSanitizer, which owns malloc itself.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>

#include "tests/common/data_util.h"
#include "tests/common/trainer_util.h"
#include "trainer/config.h"
#include "trainer/trainer.h"

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);
}

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocs{0};
inline void note() {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

extern "C" {
void* malloc(size_t n) {
  note();
  return __libc_malloc(n);
}
void* calloc(size_t a, size_t b) {
  note();
  return __libc_calloc(a, b);
}
void* realloc(void* p, size_t n) {
  note();
  return __libc_realloc(p, n);
}
void free(void* p) {
  __libc_free(p);
}
void* aligned_alloc(size_t a, size_t n) {
  note();
  return __libc_memalign(a, n);
}
void* memalign(size_t a, size_t n) {
  note();
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, size_t a, size_t n) {
  note();
  *out = __libc_memalign(a, n);
  return *out ? 0 : 12;
}
}

namespace sparta::test {
namespace {

TEST(NoAlloc, TrainingStepMakesNoHeapAllocation) {
  const std::string dir = prepared_data("noalloc");
  for (const char* accum :
       {"train.grad_accum=1", "train.grad_accum=2", "noise.enabled=true", "moe.experts=4"}) {
    trainer::Trainer t(tiny_config(dir, {accum}), quiet_run());
    t.step(0);  // warm-up: first-touch of OpenBLAS buffers, OpenMP thread pool
    g_allocs = 0;
    g_counting = true;
    for (int64_t s = 1; s < 4; ++s) t.step(s);
    g_counting = false;
    EXPECT_EQ(g_allocs.load(), 0) << accum;
    // The counter works: a visible allocation is seen.
    g_counting = true;
    void* volatile p = std::malloc(16);
    g_counting = false;
    std::free(p);
    EXPECT_EQ(g_allocs.load(), 1);
  }
}

}  // namespace
}  // namespace sparta::test
