// sparta-prep: build a data directory (tokenizer + llm.c-format token shards + meta.json) from
// the built-in corpus or from user text files. See README.md.
#include "data/prep.h"
#include "launch/program.h"

int main(int argc, char** argv) {
  sparta::kernels::select_blas_kernel(argv);
  CLI::App app{"sparta-prep: tokenize text into training shards", "sparta-prep"};
  sparta::data::PrepOptions opt;
  opt.corpus_dir = "data/cache/corpus";
  app.add_option("--out", opt.out_dir, "output data directory")->required();
  app.add_option("--corpus-dir", opt.corpus_dir,
                 "the built-in corpus as laid out by data/fetch-default-corpus.sh")
      ->capture_default_str();
  app.add_option("--input", opt.inputs, "text file(s) to use instead of the built-in corpus")
      ->check(CLI::ExistingFile);
  app.add_option("--val-fraction", opt.val_fraction,
                 "with --input: fraction of each file's last lines held out for validation")
      ->capture_default_str();
  app.add_option("--vocab-size", opt.vocab_size, "BPE vocabulary size to train")
      ->capture_default_str();
  app.add_option("--tokenizer", opt.tokenizer,
                 "use this SentencePiece .model instead of training one")
      ->check(CLI::ExistingFile);
  app.add_flag("--force", opt.force, "rebuild even if the data directory is complete");
  return sparta::launch::run_main("sparta-prep", app, argc, argv, [&] {
    sparta::data::run_prep(opt);
    return 0;
  });
}
