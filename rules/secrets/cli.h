// `moat rules list` and `moat rules check`: the logic behind the subcommands,
// printing to the given streams so scanner/main.cc only parses options.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace moat::secrets {

struct RulesOptions {
  std::vector<std::string> rule_dirs;  // --rules DIR, repeatable, merged in order
  std::vector<std::string> disabled;   // --disable ID, repeatable
  bool builtin = true;                 // false: only the --rules files (to lint a user rule set alone)
  bool json = false;                   // list: one JSON document instead of a table
};

// Prints every enabled rule: id, severity, title (or JSON with the patterns).
// Exit status: 0, or 2 if the rules cannot be loaded.
int rules_list(const RulesOptions& opts, std::ostream& out, std::ostream& err);

// Loads, validates and compiles every rule, runs every example and negative
// example through the real engine, and prints one line per problem plus a
// summary. Exit status: 0 all good, 2 any problem (the CI gate).
int rules_check(const RulesOptions& opts, std::ostream& out, std::ostream& err);

}  // namespace moat::secrets
