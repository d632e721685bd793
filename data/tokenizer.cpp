#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include "kernels/check.h"

namespace sparta::data {

void train_tokenizer(const std::string& text_file, const std::string& prefix, int vocab_size,
                     int threads) {
  // Lines longer than max_sentence_length are silently skipped by SentencePiece; corpus lines
  // here are verses and paragraphs split at sentence ends, far below the limit.
  const std::string args = fmt::format(
      "--input={} --model_prefix={} --vocab_size={} --model_type=bpe --character_coverage=1.0 "
      "--input_sentence_size=2000000 --shuffle_input_sentence=true --num_threads={} "
      "--unk_id=0 --bos_id=1 --eos_id=2 --pad_id=3 --max_sentence_length=16384 --minloglevel=2",
      text_file, prefix, vocab_size, threads);
  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  if (!status.ok())
    SPARTA_DATA_ERROR("tokenizer training on {} failed: {}", text_file, status.ToString());
}

Tokenizer::Tokenizer(const std::string& model_path)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto status = sp_->Load(model_path);
  if (!status.ok())
    SPARTA_DATA_ERROR("cannot load tokenizer model {}: {}", model_path, status.ToString());
}

Tokenizer::~Tokenizer() = default;

int Tokenizer::vocab_size() const {
  return sp_->GetPieceSize();
}

std::vector<int> Tokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  SPARTA_CHECK(status.ok(), "encode failed: {}", status.ToString());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::string text;
  const auto status = sp_->Decode(ids, &text);
  SPARTA_CHECK(status.ok(), "decode failed: {}", status.ToString());
  return text;
}

}  // namespace sparta::data
