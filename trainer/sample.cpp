#include "trainer/sample.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <vector>

#include "data/tokenizer.h"
#include "kernels/rng.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/config.h"

namespace sparta::trainer {

namespace fs = std::filesystem;
namespace k = sparta::kernels;

int32_t pick_token(const float* logits, int64_t V, double temperature, int64_t top_k, double u) {
  if (temperature <= 0) return static_cast<int32_t>(std::max_element(logits, logits + V) - logits);
  std::vector<int32_t> idx(static_cast<size_t>(V));
  std::iota(idx.begin(), idx.end(), 0);
  const int64_t K = top_k > 0 ? std::min(top_k, V) : V;
  // Ties keep the lower id first, so the choice is reproducible.
  std::partial_sort(idx.begin(), idx.begin() + K, idx.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  std::vector<double> p(static_cast<size_t>(K));
  const double mx = logits[idx[0]];
  double sum = 0;
  for (int64_t i = 0; i < K; ++i) sum += p[static_cast<size_t>(i)] = std::exp((logits[idx[static_cast<size_t>(i)]] - mx) / temperature);
  double acc = 0;
  for (int64_t i = 0; i < K; ++i) {
    acc += p[static_cast<size_t>(i)] / sum;
    if (u <= acc) return idx[static_cast<size_t>(i)];
  }
  return idx[static_cast<size_t>(K - 1)];
}

std::string sample(const SampleOptions& opt, const std::function<void(const std::string&)>& on_text) {
  if (opt.temperature < 0) SPARTA_USAGE_ERROR("--temperature {} must be >= 0", opt.temperature);
  if (opt.top_k < 0) SPARTA_USAGE_ERROR("--top-k {} must be >= 0", opt.top_k);
  if (opt.tokens < 0) SPARTA_USAGE_ERROR("--tokens {} must be >= 0", opt.tokens);
  std::string dir = opt.checkpoint;
  if (!fs::exists(fs::path(dir) / "manifest.json")) {
    const auto found = checkpoint::find_resumable(dir);
    if (!found) SPARTA_DATA_ERROR("no checkpoint in {} (expected manifest.json or step_* directories)", dir);
    dir = *found;
  }
  const auto manifest = checkpoint::verify(dir);
  const Config cfg = load_config_text(manifest.config_toml, dir + "/manifest.json (config)");
  models::Transformer model(cfg.model, 1, k::Device::cpu(), 0);
  checkpoint::load(dir, model, nullptr);
  const data::Tokenizer tok((fs::path(dir) / "tokenizer.model").string());

  const int64_t T = cfg.model.seq_len, V = cfg.model.vocab_size;
  std::vector<int32_t> context = {1};  // <s>, as every training document starts
  for (int id : tok.encode(opt.prompt)) context.push_back(id);
  std::vector<int32_t> window(static_cast<size_t>(T)), targets(static_cast<size_t>(T), -1);
  std::vector<float> logits(static_cast<size_t>(V));
  std::vector<int> generated;
  std::string text = opt.prompt;
  on_text(text);
  for (int64_t i = 0; i < opt.tokens; ++i) {
    // The last T tokens; positions after the window's end are padding that causal attention
    // never lets the last real position see.
    const int64_t n = std::min<int64_t>(T, static_cast<int64_t>(context.size()));
    std::fill(window.begin(), window.end(), 0);
    std::copy(context.end() - n, context.end(), window.begin());
    model.set_batch(window.data(), targets.data());
    model.next_token_logits(n - 1, logits.data());
    const double u = k::uniform(opt.seed, k::rng_stream(k::RngPurpose::sample, 0), static_cast<uint64_t>(i));
    const int32_t next = pick_token(logits.data(), V, opt.temperature, opt.top_k, u);
    context.push_back(next);
    generated.push_back(next);
    const std::string cont = tok.decode(generated);
    const std::string full = opt.prompt.empty() ? cont : opt.prompt + (cont.empty() || cont[0] == ' ' ? "" : " ") + cont;
    on_text(full);
    text = full;
  }
  return text;
}

}  // namespace sparta::trainer
