// The gradient-noise paper's deep-network experiment (Neelakantan et al. 2015, section 4.1;
// ../shared/specs/grad-noise.md section 5), on a generated task instead of MNIST: a deep ReLU
// MLP initialised at exactly zero, trained with plain SGD and global-norm clipping, with and
// without annealed gradient noise.
//
// With zero weights every hidden ReLU outputs 0, so every gradient but the output bias's is
// exactly 0: without noise the network can only learn the class priors and predicts the majority
// class forever. Noise breaks the symmetry (weights random-walk to lr * sqrt(sum sigma_t^2)) and
// the network learns.
#pragma once

#include <cstdint>
#include <vector>

namespace sparta::examples {

struct NoiseMlpOptions {
  int depth = 20;  // hidden layers
  int width = 50;
  int inputs = 32;
  int classes = 10;
  int train_size = 8192, test_size = 2048;
  int batch = 128;
  int steps = 20000;  // seed 1 breaks away from the majority class after ~15k noisy steps
  int eval_every = 1000;
  double lr = 0.1;
  double clip = 10.0;
  double eta = 0.0;  // noise variance at step 0; 0 = plain SGD
  double gamma = 0.55;
  uint64_t seed = 1;       // noise and batch order
  uint64_t data_seed = 7;  // the task itself
  int threads = 1;         // OpenMP/OpenBLAS threads: 50-wide GEMMs run fastest on one
};

struct NoiseMlpResult {
  std::vector<int> steps;            // where the curve was measured
  std::vector<double> test_accuracy;  // test accuracy at those steps
  double majority_accuracy = 0;      // predicting the most frequent training class
  bool only_output_bias_nonzero = false;  // the zero-init invariant without noise
};

NoiseMlpResult run_noise_mlp(const NoiseMlpOptions& opt);

}  // namespace sparta::examples
