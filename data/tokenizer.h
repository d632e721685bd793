// SentencePiece BPE tokenizer: training (in process) and encode/decode. Ids fit uint16 shards.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace sparta::data {

// Trains a BPE model on the lines of `text_file` and writes `<prefix>.model`.
// Special ids: 0 <unk>, 1 <s>, 2 </s>, 3 <pad>.
void train_tokenizer(const std::string& text_file, const std::string& prefix, int vocab_size,
                     int threads);

class Tokenizer {
 public:
  explicit Tokenizer(const std::string& model_path);
  ~Tokenizer();
  int vocab_size() const;
  std::vector<int> encode(const std::string& text) const;
  std::string decode(const std::vector<int>& ids) const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace sparta::data
