// Discovery of input files: supported extensions, include/exclude globs, sorted by path,
// symlink loops skipped, a file reached twice (a folder and `dir/./f`) kept once.
#include <fnmatch.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string_view>

#include "formats/format.hpp"
#include "i2z/convert.hpp"

namespace i2z {
namespace fs = std::filesystem;

namespace {

// Paths travel to Python as str (strict UTF-8): a file whose name is not valid UTF-8 would
// abort the whole run with a UnicodeDecodeError, so it is skipped with a warning instead.
bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    std::uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (std::size_t k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = cp << 6 | (cc & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are invalid too.
    static constexpr std::uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
    i += n;
  }
  return true;
}

// The path with every byte outside printable ASCII written as \xNN, for messages.
std::string escaped(std::string_view s) {
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7F) {
      out += ch;
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

using FileId = std::pair<dev_t, ino_t>;

}  // namespace

bool selected(const std::string& relative, const std::vector<std::string>& include,
              const std::vector<std::string>& exclude) {
  const std::string base = fs::path(relative).filename().string();
  // A pattern with a '/' is matched against the path relative to the input folder, one
  // without against the file name (as .gitignore does); '*' also matches '/'.
  auto match = [&](const std::vector<std::string>& ps) {
    for (const auto& p : ps)
      if (::fnmatch(p.c_str(), (p.find('/') == std::string::npos ? base : relative).c_str(), 0) == 0) return true;
    return false;
  };
  return (include.empty() || match(include)) && !match(exclude);
}

std::vector<std::string> discover_files(const std::vector<std::string>& folders, bool recursive,
                                        std::vector<std::string>* warnings, const std::vector<std::string>& include,
                                        const std::vector<std::string>& exclude) {
  std::vector<std::string> out;
  std::set<FileId> seen_dirs;  // symlink loops and folders given twice
  // Files given directly, by identity: one also reached through a folder (or given twice, as
  // `f` and `dir/./f`) is kept once. Only these few identities are held, not one per file.
  std::set<FileId> direct_ids;
  std::vector<std::pair<FileId, std::string>> direct;
  auto add = [&](std::string path) {
    if (valid_utf8(path)) {
      out.push_back(std::move(path));
    } else if (warnings) {
      warnings->push_back("skipped '" + escaped(path) + "': its name is not valid UTF-8");
    }
  };
  for (const auto& f : folders) {
    std::error_code ec;
    struct stat st;
    if (!fs::is_directory(f, ec) && fs::is_regular_file(f, ec) && format_for_path(f) &&
        selected(fs::path(f).filename().string(), include, exclude) && ::stat(f.c_str(), &st) == 0 &&
        direct_ids.insert({st.st_dev, st.st_ino}).second)
      direct.emplace_back(FileId{st.st_dev, st.st_ino}, f);
  }
  fs::path root;
  auto walk = [&](auto&& self, const fs::path& dir) -> void {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !seen_dirs.insert({st.st_dev, st.st_ino}).second) return;
    std::error_code ec;
    std::vector<fs::path> subdirs;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path& p = it->path();
      std::error_code e2;
      if (fs::is_directory(p, e2)) {
        if (recursive) subdirs.push_back(p);
      } else if (fs::is_regular_file(p, e2) && format_for_path(p.filename().string()) &&
                 selected(p.lexically_relative(root).string(), include, exclude)) {
        struct stat st;
        if (!direct_ids.empty() && ::stat(p.c_str(), &st) == 0) direct_ids.erase({st.st_dev, st.st_ino});
        add(p.string());
      }
    }
    if (ec && warnings) warnings->push_back("cannot list folder '" + dir.string() + "': " + ec.message());
    for (const auto& s : subdirs) self(self, s);
  };
  for (const auto& f : folders) {
    std::error_code ec;
    if (fs::is_directory(f, ec)) {
      root = fs::path(f);
      walk(walk, root);
    } else if (!(fs::is_regular_file(f, ec) && format_for_path(f)) && warnings) {
      warnings->push_back("folder '" + f + "' does not exist; skipped");
    }
  }
  for (auto& [id, f] : direct)  // those not also found in a folder
    if (direct_ids.count(id)) add(std::move(f));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace i2z
