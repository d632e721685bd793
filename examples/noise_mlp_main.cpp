// Prints the two learning curves of the zero-init deep MLP: plain SGD and SGD + annealed
// gradient noise (eta 0.01, gamma 0.55), same task, same seed. See examples/noise_mlp.h.
#include <fmt/core.h>

#include "examples/noise_mlp.h"
#include "launch/program.h"

int main(int argc, char** argv) {
  sparta::kernels::select_blas_kernel(argv);
  CLI::App app{"zero-init 20-layer MLP with and without gradient noise", "noise_mlp"};
  sparta::examples::NoiseMlpOptions o;
  double eta = 0.01;
  app.add_option("--steps", o.steps)->capture_default_str();
  app.add_option("--eta", eta, "noise variance at step 0")->capture_default_str();
  app.add_option("--seed", o.seed)->capture_default_str();
  app.add_option("--lr", o.lr)->capture_default_str();
  return sparta::launch::run_main("noise_mlp", app, argc, argv, [&] {
    const auto plain = sparta::examples::run_noise_mlp(o);
    o.eta = eta;
    const auto noisy = sparta::examples::run_noise_mlp(o);
    fmt::print(
        "{}-layer ReLU MLP, width {}, zero init, SGD lr {}, clip {}; majority class: {:.3f}\n",
        o.depth, o.width, o.lr, o.clip, plain.majority_accuracy);
    fmt::print("{:>6}  {:>14}  {:>22}\n", "step", "test acc SGD",
               fmt::format("test acc SGD+noise({})", eta));
    for (size_t i = 0; i < plain.steps.size(); ++i)
      fmt::print("{:>6}  {:>14.3f}  {:>22.3f}\n", plain.steps[i], plain.test_accuracy[i],
                 noisy.test_accuracy[i]);
    fmt::print("without noise only the output bias moved: {}\n",
               plain.only_output_bias_nonzero ? "yes" : "no");
    return 0;
  });
}
