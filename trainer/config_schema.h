// The config schema (trainer/config.cpp's table of every key: section, name, kind, range or
// choices, documentation, how to set and read it). Internal to sparta_trainer.
#pragma once

#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "trainer/config.h"

namespace sparta::trainer::schema_detail {

enum class Kind { integer, real, boolean, string, choice };

// One configurable key. `set` receives a value already checked against kind, range and choices.
struct Key {
  std::string section, name;
  Kind kind;
  std::string doc;
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  std::vector<std::string> choices;
  std::function<void(Config&, const std::string&)> set;  // value in canonical text form
  std::function<std::string(const Config&)> get;         // canonical text form (TOML literal)
  std::string full() const { return section + "." + name; }
};

std::string quote(const std::string& s);  // a TOML string literal

// Every key, in the order of the config reference and of to_toml.
const std::vector<Key>& schema();

}  // namespace sparta::trainer::schema_detail
