#include "scanner/report/ignore.h"

#include <fnmatch.h>

#include <cctype>
#include <ctime>
#include <fstream>
#include <sstream>

namespace moat {

namespace {

bool valid_date(std::string_view d) {
  if (d.size() != 10 || d[4] != '-' || d[7] != '-') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (!std::isdigit(static_cast<unsigned char>(d[i]))) return false;
  int month = (d[5] - '0') * 10 + (d[6] - '0');
  int day = (d[8] - '0') * 10 + (d[9] - '0');
  int year = std::stoi(std::string(d.substr(0, 4)));
  static const int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1) return false;
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  int max = kDays[month - 1] - (month == 2 && !leap ? 1 : 0);
  return day <= max;
}

bool is_hex(std::string_view s) {
  for (char c : s)
    if (!std::isxdigit(static_cast<unsigned char>(c)) || std::isupper(static_cast<unsigned char>(c))) return false;
  return !s.empty();
}

}  // namespace

bool IgnoreEntry::matches(const Finding& f) const {
  if (!rule.empty() && rule != f.rule_id) return false;
  if (!fingerprint.empty() && f.fingerprint.compare(0, fingerprint.size(), fingerprint) != 0) return false;
  if (!path_glob.empty()) {
    if (f.target != Target::Filesystem || f.path.empty()) return false;
    if (fnmatch(path_glob.c_str(), f.path.c_str(), 0) != 0) return false;
  }
  return true;
}

std::string IgnoreEntry::describe() const {
  std::string s = source + ":" + std::to_string(line);
  if (!rule.empty()) s += " rule=" + rule;
  if (!path_glob.empty()) s += " path=" + path_glob;
  if (!fingerprint.empty()) s += " fingerprint=" + fingerprint;
  if (!expires.empty()) s += " expires=" + expires;
  if (!reason.empty()) s += " (" + reason + ")";
  return s;
}

Result<IgnoreList> parse_ignore(std::string_view text, const std::string& source) {
  IgnoreList out;
  size_t pos = 0, lineno = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto err = [&](const std::string& what) {
      return Error{source + ":" + std::to_string(lineno) + ": " + what}.with_hint(
          "entries are key=value fields: rule=, path=, fingerprint=, expires=YYYY-MM-DD, reason= (docs/moatignore.md)");
    };
    size_t i = 0;
    auto skip_blanks = [&] {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    };
    skip_blanks();
    if (i == line.size() || line[i] == '#') continue;

    IgnoreEntry e;
    e.source = source;
    e.line = lineno;
    bool seen_rule = false, seen_path = false, seen_fp = false, seen_exp = false, seen_reason = false;
    while (i < line.size()) {
      size_t eq = line.find('=', i);
      if (eq == std::string_view::npos) return err("expected key=value at \"" + std::string(line.substr(i)) + "\"");
      std::string key(line.substr(i, eq - i));
      i = eq + 1;
      std::string value;
      if (key == "reason") {
        // The rest of the line, trailing blanks trimmed.
        std::string_view rest = line.substr(i);
        while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t')) rest.remove_suffix(1);
        value = rest;
        i = line.size();
      } else if (i < line.size() && line[i] == '"') {
        ++i;
        bool closed = false;
        while (i < line.size()) {
          char c = line[i++];
          if (c == '\\' && i < line.size()) {
            value.push_back(line[i++]);
          } else if (c == '"') {
            closed = true;
            break;
          } else {
            value.push_back(c);
          }
        }
        if (!closed) return err("unterminated quoted value for " + key);
      } else {
        while (i < line.size() && line[i] != ' ' && line[i] != '\t') value.push_back(line[i++]);
      }
      if (value.empty()) return err("empty value for " + key);
      auto once = [&](bool& seen) -> Status {
        if (seen) return err("repeated key " + key);
        seen = true;
        return {};
      };
      if (key == "rule") {
        MOAT_TRY(once(seen_rule));
        e.rule = value;
      } else if (key == "path") {
        MOAT_TRY(once(seen_path));
        e.path_glob = value;
      } else if (key == "fingerprint") {
        MOAT_TRY(once(seen_fp));
        if (!is_hex(value) || value.size() < 12 || value.size() > 64)
          return err("fingerprint must be 12 to 64 lowercase hex digits");
        e.fingerprint = value;
      } else if (key == "expires") {
        MOAT_TRY(once(seen_exp));
        if (!valid_date(value)) return err("expires must be a date YYYY-MM-DD, got \"" + value + "\"");
        e.expires = value;
      } else if (key == "reason") {
        MOAT_TRY(once(seen_reason));
        e.reason = value;
      } else {
        return err("unknown key \"" + key + "\"");
      }
      skip_blanks();
    }
    if (e.rule.empty() && e.path_glob.empty() && e.fingerprint.empty())
      return err("an entry needs rule=, path= or fingerprint=");
    out.entries.push_back(std::move(e));
  }
  return out;
}

Result<IgnoreList> load_ignore_file(const std::string& path, bool must_exist) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT && !must_exist) return IgnoreList{};
    return sys_error("open ignore file " + path);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return sys_error("read ignore file " + path);
  return parse_ignore(ss.str(), path);
}

IgnoreOutcome apply_ignores(std::vector<Finding> findings, const IgnoreList& list, std::string_view today) {
  IgnoreOutcome out;
  std::vector<const IgnoreEntry*> live;
  for (const auto& e : list.entries) {
    if (e.expired(today)) out.expired.push_back(e);
    else live.push_back(&e);
  }
  std::vector<bool> used(live.size(), false);
  for (auto& f : findings) {
    bool hit = false;
    for (size_t k = 0; k < live.size(); ++k)
      if (live[k]->matches(f)) used[k] = true, hit = true;
    (hit ? out.suppressed : out.kept).push_back(std::move(f));
  }
  for (size_t k = 0; k < live.size(); ++k)
    if (!used[k]) out.unused.push_back(*live[k]);
  return out;
}

std::string today_utc() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

}  // namespace moat
