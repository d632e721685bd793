#include "examples/noise_mlp.h"

#include <omp.h>

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "kernels/ops.h"
#include "kernels/rng.h"
#include "trainer/optim/grad_noise.h"

namespace sparta::examples {

namespace k = sparta::kernels;

namespace {

// Gaussian clusters with unequal class priors (p_c proportional to c + 1), so "predict the
// majority class" has a known accuracy distinct from chance.
struct Task {
  std::vector<float> x_train, x_test;
  std::vector<int32_t> y_train, y_test;
};

Task make_task(const NoiseMlpOptions& o) {
  Task t;
  const uint64_t s = o.data_seed;
  std::vector<float> centers(static_cast<size_t>(o.classes * o.inputs));
  for (size_t i = 0; i < centers.size(); ++i)
    centers[i] = static_cast<float>(k::normal(s, k::rng_stream(k::RngPurpose::test, 1), i));
  const double total = o.classes * (o.classes + 1) / 2.0;
  auto fill = [&](int n, uint64_t stream, std::vector<float>& x, std::vector<int32_t>& y) {
    x.resize(static_cast<size_t>(n * o.inputs));
    y.resize(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      const double u =
          k::uniform(s, k::rng_stream(k::RngPurpose::test, stream), static_cast<uint64_t>(i));
      double acc = 0;
      int c = 0;
      while (c < o.classes - 1 && (acc += (c + 1) / total) < u) ++c;
      y[static_cast<size_t>(i)] = c;
      for (int d = 0; d < o.inputs; ++d) {
        const uint64_t idx =
            static_cast<uint64_t>(i) * static_cast<uint64_t>(o.inputs) + static_cast<uint64_t>(d);
        x[idx] = centers[static_cast<size_t>(c * o.inputs + d)] +
                 0.7f * static_cast<float>(
                            k::normal(s, k::rng_stream(k::RngPurpose::test, stream + 1), idx));
      }
    }
  };
  fill(o.train_size, 2, t.x_train, t.y_train);
  fill(o.test_size, 4, t.x_test, t.y_test);
  return t;
}

k::Tensor host(float* p, std::initializer_list<int64_t> dims) {
  return k::Tensor(p, k::DType::f32, k::Device::cpu(), dims);
}

}  // namespace

NoiseMlpResult run_noise_mlp(const NoiseMlpOptions& o) {
  if (o.threads > 0) {
    omp_set_num_threads(o.threads);
    openblas_set_num_threads(o.threads);
  }
  const Task task = make_task(o);
  const int L = o.depth + 1;  // weight layers: inputs -> width (depth times) -> classes
  auto in_dim = [&](int l) { return l == 0 ? o.inputs : o.width; };
  auto out_dim = [&](int l) { return l == L - 1 ? o.classes : o.width; };

  // All parameters (W_0, b_0, W_1, b_1, ...) and their gradients in two flat buffers.
  std::vector<size_t> w_off(static_cast<size_t>(L)), b_off(static_cast<size_t>(L));
  size_t n = 0;
  for (int l = 0; l < L; ++l) {
    w_off[static_cast<size_t>(l)] = n;
    n += static_cast<size_t>(in_dim(l) * out_dim(l));
    b_off[static_cast<size_t>(l)] = n;
    n += static_cast<size_t>(out_dim(l));
  }
  std::vector<float> theta(n, 0.0f), grad(n, 0.0f);
  std::vector<models::Param> params;  // views for clip_and_noise: id = index in this list
  for (int l = 0; l < L; ++l) {
    params.push_back({fmt::format("w{}", l),
                      l,
                      true,
                      host(theta.data() + w_off[static_cast<size_t>(l)], {out_dim(l), in_dim(l)}),
                      host(grad.data() + w_off[static_cast<size_t>(l)], {out_dim(l), in_dim(l)}),
                      {},
                      {out_dim(l), in_dim(l)}});
    params.push_back({fmt::format("b{}", l),
                      l,
                      false,
                      host(theta.data() + b_off[static_cast<size_t>(l)], {out_dim(l)}),
                      host(grad.data() + b_off[static_cast<size_t>(l)], {out_dim(l)}),
                      {},
                      {out_dim(l)}});
  }

  const int maxB = std::max(o.batch, o.test_size);
  std::vector<std::vector<float>> acts(static_cast<size_t>(L + 1)),
      dacts(static_cast<size_t>(L + 1));
  for (int l = 0; l <= L; ++l) {
    const int d = l == 0 ? o.inputs : out_dim(l - 1);
    acts[static_cast<size_t>(l)].resize(static_cast<size_t>(maxB * d));
    dacts[static_cast<size_t>(l)].resize(static_cast<size_t>(maxB * d));
  }
  std::vector<float> probs(static_cast<size_t>(maxB * o.classes));

  // Forward of B rows already in acts[0]; hidden layers apply ReLU in place.
  auto forward = [&](int B) {
    for (int l = 0; l < L; ++l) {
      float* out = acts[static_cast<size_t>(l + 1)].data();
      k::matmul_forward(host(out, {B, out_dim(l)}),
                        host(acts[static_cast<size_t>(l)].data(), {B, in_dim(l)}),
                        params[static_cast<size_t>(2 * l)].w);
      const float* b = theta.data() + b_off[static_cast<size_t>(l)];
      for (int i = 0; i < B; ++i)
        for (int j = 0; j < out_dim(l); ++j) {
          float& v = out[i * out_dim(l) + j];
          v += b[j];
          if (l < L - 1) v = std::max(v, 0.0f);
        }
    }
  };
  auto accuracy = [&] {
    std::copy(task.x_test.begin(), task.x_test.end(), acts[0].begin());
    forward(o.test_size);
    const float* z = acts[static_cast<size_t>(L)].data();
    int right = 0;
    for (int i = 0; i < o.test_size; ++i) {
      const float* row = z + i * o.classes;
      right += static_cast<int>(std::max_element(row, row + o.classes) - row) ==
               task.y_test[static_cast<size_t>(i)];
    }
    return static_cast<double>(right) / o.test_size;
  };

  NoiseMlpResult r;
  {
    std::vector<int> counts(static_cast<size_t>(o.classes));
    for (int32_t y : task.y_train) ++counts[static_cast<size_t>(y)];
    const int maj =
        static_cast<int>(std::max_element(counts.begin(), counts.end()) - counts.begin());
    r.majority_accuracy =
        static_cast<double>(std::count(task.y_test.begin(), task.y_test.end(), maj)) / o.test_size;
  }
  const trainer::NoiseParams noise{o.eta, o.gamma, o.seed};
  const int B = o.batch;
  for (int step = 0; step <= o.steps; ++step) {
    if (step % o.eval_every == 0 || step == o.steps) {
      r.steps.push_back(step);
      r.test_accuracy.push_back(accuracy());
    }
    if (step == o.steps) break;
    std::vector<int32_t> y(static_cast<size_t>(B));
    for (int i = 0; i < B; ++i) {
      const auto idx =
          static_cast<size_t>(k::philox(o.seed, k::rng_stream(k::RngPurpose::data_order, 0),
                                        static_cast<uint64_t>(step) * static_cast<uint64_t>(B) +
                                            static_cast<uint64_t>(i))[0] %
                              static_cast<uint32_t>(o.train_size));
      std::copy_n(
          task.x_train.begin() + static_cast<std::ptrdiff_t>(idx * static_cast<size_t>(o.inputs)),
          o.inputs, acts[0].begin() + i * o.inputs);
      y[static_cast<size_t>(i)] = task.y_train[idx];
    }
    forward(B);
    // Softmax cross-entropy, mean over the batch: dz = (softmax - onehot) / B.
    float* dz = dacts[static_cast<size_t>(L)].data();
    const float* z = acts[static_cast<size_t>(L)].data();
    for (int i = 0; i < B; ++i) {
      const float* row = z + i * o.classes;
      const float mx = *std::max_element(row, row + o.classes);
      double sum = 0;
      for (int c = 0; c < o.classes; ++c) sum += std::exp(static_cast<double>(row[c] - mx));
      for (int c = 0; c < o.classes; ++c)
        dz[i * o.classes + c] =
            static_cast<float>(std::exp(static_cast<double>(row[c] - mx)) / sum) /
            static_cast<float>(B);
      dz[i * o.classes + y[static_cast<size_t>(i)]] -= 1.0f / static_cast<float>(B);
    }
    std::fill(grad.begin(), grad.end(), 0.0f);
    for (int l = L - 1; l >= 0; --l) {
      float* d = dacts[static_cast<size_t>(l + 1)].data();
      const float* a = acts[static_cast<size_t>(l + 1)].data();
      if (l < L - 1)  // ReLU: gradient flows where the output was positive
        for (int i = 0; i < B * out_dim(l); ++i) d[i] = a[i] > 0 ? d[i] : 0.0f;
      float* db = grad.data() + b_off[static_cast<size_t>(l)];
      for (int i = 0; i < B; ++i)
        for (int j = 0; j < out_dim(l); ++j) db[j] += d[i * out_dim(l) + j];
      std::fill_n(dacts[static_cast<size_t>(l)].begin(), B * in_dim(l), 0.0f);
      k::matmul_backward(
          l > 0 ? host(dacts[static_cast<size_t>(l)].data(), {B, in_dim(l)}) : k::Tensor(),
          params[static_cast<size_t>(2 * l)].g, host(d, {B, out_dim(l)}),
          host(acts[static_cast<size_t>(l)].data(), {B, in_dim(l)}),
          params[static_cast<size_t>(2 * l)].w);
    }
    const auto post = trainer::clip_and_noise(params, host(grad.data(), {static_cast<int64_t>(n)}),
                                              o.clip, noise, step);
    const float g = static_cast<float>(post.optimizer_grad_scale);
    for (size_t i = 0; i < n; ++i) theta[i] -= static_cast<float>(o.lr) * g * grad[i];
  }
  bool zero = true;
  for (int l = 0; l < L; ++l) {
    const size_t end =
        l == L - 1 ? b_off[static_cast<size_t>(l)] : w_off[static_cast<size_t>(l + 1)];
    for (size_t i = w_off[static_cast<size_t>(l)]; i < end; ++i) zero = zero && theta[i] == 0.0f;
  }
  r.only_output_bias_nonzero = zero;
  return r;
}

}  // namespace sparta::examples
