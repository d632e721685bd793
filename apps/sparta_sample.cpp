// sparta-sample: generate text from a checkpoint. See README.md.
#include <fmt/core.h>

#include "launch/program.h"
#include "trainer/sample.h"

int main(int argc, char** argv) {
  sparta::kernels::select_blas_kernel(argv);
  CLI::App app{"sparta-sample: generate text from a checkpoint", "sparta-sample"};
  sparta::trainer::SampleOptions opt;
  app.add_option("--checkpoint", opt.checkpoint,
                 "a checkpoint (step_* directory) or a directory of them (the newest good one)")
      ->required();
  app.add_option("--prompt", opt.prompt, "text to continue")->capture_default_str();
  app.add_option("--tokens", opt.tokens, "tokens to generate")->capture_default_str();
  app.add_option("--temperature", opt.temperature, "softmax temperature (0: greedy)")
      ->capture_default_str();
  app.add_option("--top-k", opt.top_k, "sample among the k likeliest tokens (0: all)")
      ->capture_default_str();
  app.add_option("--seed", opt.seed, "sampling seed (same seed, same text)")->capture_default_str();
  return sparta::launch::run_main("sparta-sample", app, argc, argv, [&] {
    std::string printed;
    sparta::trainer::sample(opt, [&](const std::string& text) {
      // Print what was added; if re-decoding changed earlier text, reprint it on a new line.
      if (text.rfind(printed, 0) == 0)
        fmt::print("{}", text.substr(printed.size()));
      else
        fmt::print("\n{}", text);
      printed = text;
      std::fflush(stdout);
    });
    fmt::print("\n");
    return 0;
  });
}
