// The built-in corpus: two public-domain English Bible translations that Debian packages ship,
// the World English Bible (bibledit-data, USFM markup) and the King James Version
// (bible-kjv-text, through the `bible` program). Both translate the same text, so validation
// holds out whole books in BOTH, or the validation set would leak into training.
#pragma once

#include <string>
#include <vector>

namespace sparta::data {

struct Document {
  std::string source;  // "web:MRK", "kjv:Mark", or a file path
  std::vector<std::string> lines;
  bool validation = false;
};

// Held-out books as (USFM code, KJV abbreviation).
struct HeldOutBook {
  const char* usfm;
  const char* kjv;
};
const std::vector<HeldOutBook>& default_validation_books();

// Plain text of one USFM file: verse and paragraph lines, markup, footnotes (\f..\f*) and
// cross references (\x..\x*) removed, \w word|attrs\w* reduced to the word. book_code gets the
// \id code.
std::vector<std::string> clean_usfm(const std::string& usfm_text, std::string* book_code);

// KJV text as printed by `bible -f gen1:1-rev22:21`: lines "Ge1:1 In the beginning ...", split
// into one document per book.
std::vector<Document> split_kjv(const std::string& text);

// Everything under `corpus_dir` (web/*.usfm and kjv.txt, as data/fetch-default-corpus.sh lays
// them out), with the default validation books marked.
std::vector<Document> load_default_corpus(const std::string& corpus_dir);

// A user text file: its lines; the last `val_fraction` of them form a validation document.
std::vector<Document> load_text_file(const std::string& path, double val_fraction);

}  // namespace sparta::data
