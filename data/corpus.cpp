#include "data/corpus.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "kernels/check.h"

namespace sparta::data {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) SPARTA_DATA_ERROR("cannot read {}", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string collapse_spaces(const std::string& s) {
  std::string out;
  bool space = true;  // also trims the front
  for (char c : s) {
    const bool is_space = c == ' ' || c == '\t' || c == '\r';
    if (is_space) {
      if (!space) out += ' ';
      space = true;
    } else {
      out += c;
      space = false;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// Removes inline USFM: notes \f..\f* and \x..\x* whole, \w word|attrs\w* -> word, other
// character markers (\add, \nd*, ...) dropped, keeping their text.
std::string strip_inline(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '\\') {
      out += s[i++];
      continue;
    }
    size_t j = i + 1;
    while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '+')) ++j;
    const std::string marker = s.substr(i + 1, j - i - 1);
    const bool closing = j < s.size() && s[j] == '*';
    if (!closing && (marker == "f" || marker == "x" || marker == "fe")) {
      const std::string end = "\\" + marker + "*";
      const size_t e = s.find(end, j);
      i = e == std::string::npos ? s.size() : e + end.size();
      continue;
    }
    if (!closing && marker == "w") {  // \w word|lemma="..."\w*
      const size_t e = s.find("\\w*", j);
      std::string body = s.substr(j, e == std::string::npos ? std::string::npos : e - j);
      body = body.substr(0, body.find('|'));
      out += body;
      i = e == std::string::npos ? s.size() : e + 3;
      continue;
    }
    i = closing ? j + 1 : j;
    if (!closing && i < s.size() && s[i] == ' ') ++i;  // the space after an opening marker
  }
  return out;
}

}  // namespace

const std::vector<HeldOutBook>& default_validation_books() {
  static const std::vector<HeldOutBook> books = {
      {"RUT", "Ruth"}, {"JON", "Jonah"}, {"MRK", "Mark"}, {"TIT", "Titus"}, {"JUD", "Jude"}};
  return books;
}

std::vector<std::string> clean_usfm(const std::string& usfm_text, std::string* book_code) {
  static const std::set<std::string> kText = {"v",  "p",  "m",   "q",   "q1",  "q2",  "q3",
                                              "q4", "pi", "pi1", "pi2", "li",  "li1", "li2",
                                              "nb", "pc", "mi",  "pm",  "pmo", "d"};
  std::vector<std::string> lines;
  std::istringstream in(usfm_text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '\\') continue;
    size_t j = 1;
    while (j < line.size() && std::isalnum(static_cast<unsigned char>(line[j]))) ++j;
    const std::string marker = line.substr(1, j - 1);
    std::string rest = j < line.size() ? line.substr(j + 1) : "";
    if (marker == "id") {
      if (book_code) *book_code = rest.substr(0, 3);
      continue;
    }
    if (!kText.count(marker)) continue;
    if (marker == "v") {  // drop the verse number
      const size_t sp = rest.find(' ');
      rest = sp == std::string::npos ? "" : rest.substr(sp + 1);
    }
    std::string text = collapse_spaces(strip_inline(rest));
    if (!text.empty()) lines.push_back(std::move(text));
  }
  return lines;
}

std::vector<Document> split_kjv(const std::string& text) {
  std::vector<Document> docs;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    // "1Cor13:4 Charity suffereth long": book = leading digit + letters, then chapter:verse.
    size_t i = 0;
    if (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
    while (i < line.size() && std::isalpha(static_cast<unsigned char>(line[i]))) ++i;
    const size_t sp = line.find(' ', i);
    if (i == 0 || sp == std::string::npos) continue;
    const std::string book = line.substr(0, i);
    if (docs.empty() || docs.back().source != "kjv:" + book)
      docs.push_back({"kjv:" + book, {}, false});
    std::string t = collapse_spaces(line.substr(sp + 1));
    if (!t.empty()) docs.back().lines.push_back(std::move(t));
  }
  return docs;
}

std::vector<Document> load_default_corpus(const std::string& corpus_dir) {
  namespace fs = std::filesystem;
  const fs::path web = fs::path(corpus_dir) / "web", kjv = fs::path(corpus_dir) / "kjv.txt";
  if (!fs::is_directory(web) || !fs::exists(kjv))
    SPARTA_DATA_ERROR(
        "default corpus not found in '{}' (expected web/*.usfm and kjv.txt): run "
        "data/fetch-default-corpus.sh {}",
        corpus_dir, corpus_dir);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(web))
    if (e.path().extension() == ".usfm") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  std::set<std::string> val_usfm, val_kjv;
  for (const auto& b : default_validation_books()) {
    val_usfm.insert(b.usfm);
    val_kjv.insert(b.kjv);
  }
  std::vector<Document> docs;
  for (const auto& f : files) {
    std::string code;
    Document d{"", clean_usfm(read_file(f), &code), false};
    if (code.empty() || d.lines.empty()) continue;  // front matter, glossary without text
    d.source = "web:" + code;
    d.validation = val_usfm.count(code) > 0;
    docs.push_back(std::move(d));
  }
  for (auto& d : split_kjv(read_file(kjv.string()))) {
    d.validation = val_kjv.count(d.source.substr(4)) > 0;
    docs.push_back(std::move(d));
  }
  return docs;
}

std::vector<Document> load_text_file(const std::string& path, double val_fraction) {
  std::istringstream in(read_file(path));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    std::string t = collapse_spaces(line);
    if (!t.empty()) lines.push_back(std::move(t));
  }
  if (lines.empty()) SPARTA_DATA_ERROR("{} contains no text", path);
  const size_t nval = static_cast<size_t>(static_cast<double>(lines.size()) * val_fraction);
  std::vector<Document> docs;
  docs.push_back(
      {path,
       std::vector<std::string>(lines.begin(), lines.end() - static_cast<std::ptrdiff_t>(nval)),
       false});
  if (nval > 0)
    docs.push_back(
        {path + " (tail)",
         std::vector<std::string>(lines.end() - static_cast<std::ptrdiff_t>(nval), lines.end()),
         true});
  return docs;
}

}  // namespace sparta::data
